"""The model against the brute-force Reference, era by era: which tables remain.

One small Hypothesis rule-based machine per (era, geometry): the five eras
(linux-2.6.10, -2.6.11, -2.6.12-rc, -2.6.12, -6.18) on i386 and x86_64
(linux-2.6.10 on x86_64 is its own 3-level layout, ``x86_64-2.6.10``),
plus i386-pae, where 2.6.10 is PGDIR-granular with 1 GiB slots.  Rules: fixed mmap of private anonymous
memory, munmap, touch, a device mmap whose driver fills page tables and
fails (the route to orphan tables in 2.6.10/2.6.11), and exit.  After every
operation the invariant compares, level by level, the model's set of page
tables (``p.mm.pt.tables``) with :class:`freepgt.checks.Reference`, the vma
list, the tables no vma spans ("left behind"), and checks that every table
left behind is one the era's declarative rule allows
(``Reference.allowed_left_behind``).  The model's counters must match its
tree (nothing is ever stranded by these operations).

Addresses stay in small windows around PMD, PUD and PGDIR boundaries so
that the floors, ceilings and gaps of each era's arithmetic are exercised.
Bounded: a handful of short runs per machine (derandomized), ~30 s total.
"""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from freepgt import KernelBug, Process
from freepgt.checks import Reference, check_mm
from freepgt.errors import SegmentationFault

K4 = 0x1000
M2 = 0x200000
M4 = 0x400000
G1 = 0x40000000
G512 = 0x8000000000
B = 0x100000000000

ERAS = ("linux-2.6.10", "linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12", "linux-6.18")
LEGACY = ("linux-2.6.10", "linux-2.6.11")

#: per geometry: pages per PTE table, anchors (table boundaries), TASK_SIZE
CONFIGS = {
    "x86_64": {
        "pte_pages": 512,
        # PTE, PMD (1 GiB) and PUD (512 GiB) boundaries; B + 1 TiB lies past
        # 2.6.11's end + PGDIR_SIZE - 1 bound for anything around B
        "anchors": (B, B + M2, B + G1, B + G1 + M2, B + G512, B + 2 * G512),
        "task_size": 0x800000000000 - K4,
    },
    "x86_64-2.6.10": {
        "pte_pages": 512,
        # pgd slots are 1 GiB here: slot 1, 2, 3 and the last user slot 510
        "anchors": (G1, G1 + M2, 2 * G1, 2 * G1 + M2, 3 * G1, 0x7F80000000),
        "task_size": 0x7FC0000000,
    },
    "i386": {
        # one pgd slot = one PTE table = 4 MiB
        "pte_pages": 1024,
        "anchors": (0x08000000, 0x08400000, 0x08800000, 0x40000000, 0xBFC00000),
        "task_size": 0xC0000000,
    },
    "i386-pae": {
        # PTE tables 2 MiB, pgd slots 1 GiB
        "pte_pages": 512,
        "anchors": (0x3FE00000, 0x40000000, 0x40200000, 0x80000000, 0x80200000, 0xBFE00000),
        "task_size": 0xC0000000,
    },
}

PROTS = ("rw-", "rw-", "r--")
STEPS = int(os.environ.get("FREEPGT_REF_ERAS_STEPS", "20"))
EXAMPLES = int(os.environ.get("FREEPGT_REF_ERAS_EXAMPLES", "50"))


def model_tables(p: Process) -> dict[str, set[int]]:
    pt = p.mm.pt
    return {name: {i for a, b, _ in pt.tables[name].runs() for i in range(a, b)}
            for name in pt.levels if name not in pt.prealloc}


def model_left_behind(p: Process) -> dict[str, set[int]]:
    pt = p.mm.pt
    vmas = [(v.vm_start, v.vm_end) for v in p.mm.vmas.all()]
    out = {}
    for name, idxs in model_tables(p).items():
        s = pt.shifts[name]
        out[name] = {i for i in idxs if not any(a < (i + 1) << s and i << s < b for a, b in vmas)}
    return out


def _hexset(s: set[int]) -> str:
    return "{" + ", ".join(f"{i:#x}" for i in sorted(s)) + "}"


def same_sets(got: dict[str, set[int]], want: dict[str, set[int]], who: str) -> None:
    assert got.keys() == want.keys(), f"{who}: levels {sorted(got)} vs reference {sorted(want)}"
    for level in want:
        extra, missing = got[level] - want[level], want[level] - got[level]
        assert not extra and not missing, (
            f"{who}: {level} differs: model has extra {_hexset(extra)}, lacks {_hexset(missing)}")


def outcome(fn, *args) -> tuple:
    try:
        ret = fn(*args)
    except OSError as e:
        return ("errno", e.errno)
    except SegmentationFault as e:
        return ("segv", e.addr)
    return ("ok", ret)


def make_machine(era: str, arch: str) -> type[RuleBasedStateMachine]:
    cfg = CONFIGS["x86_64-2.6.10" if (era == "linux-2.6.10" and arch == "x86_64") else arch]
    span = cfg["pte_pages"]
    anchors = cfg["anchors"]
    task_size = cfg["task_size"]
    offs = st.one_of(st.sampled_from([-span - 1, -span, -span + 1, -2, -1, 0, 1, 2, span - 1, span, span + 1]),
                     st.integers(-span - 4, span + 4))
    legacy = era in LEGACY

    def clamp(start: int, end: int) -> tuple[int, int]:
        end = min(end, task_size)
        start = max(min(start, end - K4), 16 * K4)
        return start, max(end, start + K4)

    @st.composite
    def near(draw) -> tuple[int, int]:
        """A range within about one PTE table's span of one anchor."""
        a = draw(st.sampled_from(anchors))
        o1, o2 = sorted((draw(offs), draw(offs)))
        return clamp(a + o1 * K4, a + max(o2, o1 + 1) * K4)

    @st.composite
    def short(draw) -> tuple[int, int]:
        a = draw(st.sampled_from(anchors))
        o = draw(offs)
        return clamp(a + o * K4, a + (o + draw(st.integers(1, 4))) * K4)

    @st.composite
    def across(draw) -> tuple[int, int]:
        """From one anchor's window to another's (munmap and mmap only: may be huge)."""
        i, j = sorted(draw(st.lists(st.integers(0, len(anchors) - 1), min_size=2, max_size=2, unique=True)))
        return clamp(anchors[i] + draw(offs) * K4, anchors[j] + draw(offs) * K4)

    small = st.one_of(near(), short(), short())
    any_range = st.one_of(near(), short(), across())

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.p = Process(era=era, arch=arch)
            self.ref = Reference(era, arch)
            self.in_teardown = False

        def alive(self) -> bool:
            return not self.ref.dead

        def _same(self, what: str, got: tuple, want: tuple) -> None:
            assert got == want, f"{what}: model {got} but reference {want}"

        def do_mmap(self, start: int, end: int, prot: str) -> None:
            got = outcome(self.p.mmap, start, end - start, prot, "private,anon,fixed")
            want = self.ref.mmap(start, end - start, prot, False, "fixed")
            self._same(f"mmap({start:#x}, {end - start:#x}, {prot})", got, want)

        def do_touch(self, start: int, end: int, access: str) -> None:
            got = outcome(self.p.touch, start, end - start, access)
            want = self.ref.touch(start, end - start, access)
            self._same(f"touch({start:#x}, {end - start:#x}, {access})", got, want)

        def vma_touch_range(self, data) -> tuple[int, int]:
            v = data.draw(st.sampled_from(self.ref.vmas))
            pages = (v.end - v.start) // K4
            first = data.draw(st.sampled_from([0, pages - 1, pages // 2, data.draw(st.integers(0, pages - 1))]))
            n = data.draw(st.integers(1, 4))
            a = v.start + first * K4
            return a, min(a + n * K4, v.end)

        @initialize(data=st.data(), n=st.integers(1, 3))
        def some_vmas(self, data, n):
            for _ in range(n):
                self.do_mmap(*data.draw(small), data.draw(st.sampled_from(PROTS)))
            for _ in range(n):
                if self.ref.vmas:
                    self.do_touch(*self.vma_touch_range(data), data.draw(st.sampled_from("rw")))

        @rule(data=st.data(), prot=st.sampled_from(PROTS))
        def mmap(self, data, prot):
            self.do_mmap(*data.draw(any_range), prot)

        def do_munmap(self, start: int, end: int) -> None:
            got = outcome(self.p.munmap, start, end - start)
            want = self.ref.munmap(start, end - start)
            self._same(f"munmap({start:#x}, {end - start:#x})", got, want)

        @precondition(lambda self: self.alive() and self.ref.vmas)
        @rule(data=st.data())
        def munmap_vmas(self, data):
            """A vma, a piece of one, or it and up to two neighbours."""
            vs = self.ref.vmas
            i = data.draw(st.integers(0, len(vs) - 1))
            j = data.draw(st.integers(i, min(i + 2, len(vs) - 1)))
            start, end = vs[i].start, vs[j].end
            if data.draw(st.booleans()):
                start = data.draw(st.sampled_from([start, start + K4, start - K4]))
                end = data.draw(st.sampled_from([end, end - K4, end + K4]))
            self.do_munmap(*clamp(start, end))

        @precondition(lambda self: self.alive())
        @rule(data=st.data())
        def munmap(self, data):
            self.do_munmap(*data.draw(any_range))

        @precondition(lambda self: self.alive() and self.ref.vmas)
        @rule(data=st.data(), access=st.sampled_from("rrw"))
        def touch(self, data, access):
            self.do_touch(*self.vma_touch_range(data), access)

        @precondition(lambda self: self.alive())
        @rule(data=st.data(), access=st.sampled_from("rw"))
        def touch_anywhere(self, data, access):
            self.do_touch(*data.draw(short()), access)

        @precondition(lambda self: self.alive())
        @rule(data=st.data())
        def driver_fails(self, data):
            start, end = data.draw(small)
            dev = self.p.device("drv", fail=errno.EIO)
            got = outcome(self.p.mmap, start, end - start, "rw-", "shared,fixed", dev)
            want = self.ref.driver_fail(start, end - start, errno.EIO)
            self._same(f"driver mmap({start:#x}, {end - start:#x})", got, want)

        @precondition(lambda self: self.alive())
        @rule(now=st.integers(0, 3))
        def exit(self, now):
            if now:
                return
            try:
                self.p.exit()
                got = ("ok", None)
            except KernelBug as e:
                got = ("bug", e.check)
            want = self.ref.exit()
            assert (got[0], want[0]) == ("ok", "ok"), f"exit: model {got} but reference {want}"
            # what exit left (nothing, in every era, with these operations)
            self.agrees_with_reference()
            if not self.in_teardown:
                # go on with a fresh mm, as an exec would
                self.p = Process(era=era, arch=arch)
                self.ref = Reference(era, arch)

        @invariant()
        def agrees_with_reference(self):
            same_sets(model_tables(self.p), self.ref.table_sets(), f"{era} {arch} tables")
            if self.alive():
                got, want = self.p.vmas(), self.ref.vma_list()
                assert got == want, f"vmas: model {got} but reference {want}"
                check_mm(self.p.mm, orphans=legacy)
            left = self.ref.left_behind()
            same_sets(model_left_behind(self.p), left, f"{era} {arch} left behind")
            # every table left behind is one the era is allowed to leave
            same_sets(self.ref.allowed_left_behind(), left, f"{era} {arch} allowed vs left behind")
            # counters agree with the tree: nothing stranded
            assert not any(self.p.mm.stranded.values()), f"stranded: {self.p.mm.stranded}"
            for name, idxs in model_tables(self.p).items():
                assert self.p.mm.nr_tables[name] == len(idxs), f"nr_tables[{name}]"

        def teardown(self):
            self.in_teardown = True
            if self.alive():
                self.exit(0)

    Machine.__name__ = f"Machine_{era}_{arch}".replace("-", "_").replace(".", "_")
    return Machine


PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
if os.environ.get("FREEPGT_SHRINK"):
    PHASES += [Phase.shrink, Phase.explain]

SETTINGS = settings(
    phases=PHASES,
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("arch", ["i386", "x86_64", "i386-pae"])
@pytest.mark.parametrize("era", ERAS)
def test_model_matches_reference(era, arch):
    machine = make_machine(era, arch)
    machine.TestCase.settings = SETTINGS
    case = machine.TestCase("runTest")
    case.runTest()


# --- the Reference's era rules on hand-worked states (kernel-notes §8) ---------------

def test_reference_2_6_10_keeps_shared_pgd_slots():
    # case 9 on PAE: P=[0x3fe000, 0x3ff000), V=[0x401000, 0x5ff000),
    # N=[0x601000, +4K): 2.6.10 first = 0x3ff000 + 1G - 1 > last 0x601000 ->
    # PTE@0x400000 stays, allowed (its 1 GiB pgd slot still holds P and N).
    r = Reference("linux-2.6.10", "i386-pae")
    for s, e in ((0x3FE000, 0x3FF000), (0x401000, 0x5FF000), (0x601000, 0x602000)):
        r.mmap(s, e - s, "rw-", False)
        r.touch(s, K4, "w")
    r.munmap(0x401000, 0x5FF000 - 0x401000)
    assert r.table_sets() == {"pte": {1, 2, 3}}
    assert r.left_behind() == {"pte": {2}} == r.allowed_left_behind()
    assert r.exit() == ("ok", None) and r.table_sets() == {"pte": set()}


def test_reference_2_6_11_frees_driver_orphans_in_a_later_gap():
    # case 19 on x86_64: P=[B, B+4K), N=[B+6M+4K, +4K), a driver fills [B+8K,
    # B+6M) and fails: 2.6.11 keeps PTE@B+2M and PTE@B+4M (allowed: driver's);
    # munmap N: gap [B+4K, N.end + 512G - 1) covers their 2M slots: freed.
    r = Reference("linux-2.6.11", "x86_64")
    for s in (B, B + 6 * 0x100000 + K4):
        r.mmap(s, K4, "rw-", False)
        r.touch(s, K4, "w")
    assert r.driver_fail(B + 2 * K4, 6 * 0x100000 - 2 * K4) == ("errno", errno.EIO)
    pte = {(B >> 21) + k for k in (1, 2)}
    assert r.left_behind()["pte"] == pte == r.allowed_left_behind()["pte"]
    r.munmap(B + 6 * 0x100000 + K4, K4)
    assert r.table_sets()["pte"] == {B >> 21}


def test_reference_2_6_12_rc_exit_bug_on_nothing_left():
    # the newer eras free a failed driver's tables at once; exit leaves nothing
    for era in ("linux-2.6.12-rc", "linux-2.6.12", "linux-6.18"):
        r = Reference(era, "i386")
        r.mmap(0x08000000, K4, "rw-", False)
        r.touch(0x08000000, K4, "w")
        r.driver_fail(0x10000000, M4)
        assert r.table_sets() == {"pte": {0x08000000 >> 22}}
        assert r.exit() == ("ok", None)
