"""Stateful comparison of the model with the brute-force Reference (freepgt.checks).

One Hypothesis rule-based state machine per (era, geometry): linux-2.6.12 and
linux-6.18 on x86_64, i386 and i386-pae.  Rules are system calls (mmap of
private/shared anonymous memory, munmap, mprotect, madvise dontneed, touch)
and fork; after every step the invariants compare, level by level, the set
of page tables present, VmPTE, rss and the vma list with the Reference, and
run ``check_mm``.

Addresses cluster around table boundaries so that floor/ceiling edges are
hit: a range lies within a window of about one PTE table's span around an
anchor (a PTE-, PMD- or PUD-table boundary), runs from one anchor's window to
another's, or is built from the current state: vma edges and the table
boundaries inside vmas, a page or a table span either side.  x86_64 uses the
host arena base 0x100000000000 and anchors at +0, +2 MiB, +1 GiB (+2 MiB)
and +512 GiB, plus the top of user space; i386 anchors sit on 4 MiB
boundaries below 0xC0000000; i386-pae on 2 MiB and 1 GiB boundaries.  The
hidden vma state that decides merging and fork (VM_ACCOUNT, which vmas share
an anon_vma) is compared too.

Restrictions (all stated so the Reference can stay simple):

* only anonymous memory, so no SIGBUS and no page cache outside shmem;
* mmap is ``fixed``, a hint only when the range is free (the model and
  Linux then honour it), and ``fixed_noreplace`` only in 6.18 (the flag
  does not exist in 2.6.12, which would ignore it and treat ADDR as a hint);
* no mremap, brk, populate, files or devices;
* the child of a fork is compared and exited at once, so anon_vma reuse
  (host-kernel-notes §9) is only ever decided in the parent, where the
  kernel's "singular anon_vma_chain" condition always holds; the Reference
  models reuse (next first, then prev) rather than avoiding it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from freepgt import Process
from freepgt.checks import Reference, check_mm
from freepgt.errors import BusError, KernelBug, SegmentationFault
from freepgt.vma import VM_ACCOUNT

K4 = 0x1000
M2 = 0x200000
G1 = 0x40000000
G512 = 0x8000000000
B = 0x100000000000

CONFIGS = {
    "x86_64": {
        "pte_pages": 512,
        "anchors": (B, B + M2, B + G1, B + G1 + M2, B + G512, 0x800000000000),
        "task_size": 0x800000000000 - K4,
    },
    "i386": {
        "pte_pages": 1024,
        "anchors": (0x08000000, 0x08400000, 0x40000000, 0xBFC00000, 0xC0000000),
        "task_size": 0xC0000000,
    },
    "i386-pae": {
        "pte_pages": 512,
        "anchors": (0x3FE00000, 0x40000000, 0x40200000, 0x80000000, 0xBFE00000, 0xC0000000),
        "task_size": 0xC0000000,
    },
}

PROTS = ("rw-", "rw-", "rw-", "r--", "r--", "---", "-w-", "r-x")
STEPS = 30
EXAMPLES = 120


def page_offsets(span: int) -> st.SearchStrategy[int]:
    """Page offsets from an anchor, biased to the table edges either side of it."""
    edges = [-span - 1, -span, -span + 1, -2, -1, 0, 1, 2, span - 1, span, span + 1]
    return st.one_of(st.sampled_from(edges), st.integers(-span - 8, span + 8))


def model_tables(p: Process) -> dict[str, set[int]]:
    pt = p.mm.pt
    out = {}
    for name in pt.levels:
        if name in pt.prealloc:
            continue
        out[name] = {i for a, b, _ in pt.tables[name].runs() for i in range(a, b)}
    return out


def _hexset(s: set[int]) -> str:
    return "{" + ", ".join(f"{i:#x}" for i in sorted(s)) + "}"


def assert_same_tables(got: dict[str, set[int]], want: dict[str, set[int]], who: str) -> None:
    assert got.keys() == want.keys(), f"{who}: levels {sorted(got)} vs reference {sorted(want)}"
    for level in want:
        extra = got[level] - want[level]
        missing = want[level] - got[level]
        assert not extra and not missing, (
            f"{who}: {level} tables differ from the reference: "
            f"model has extra {_hexset(extra)}, lacks {_hexset(missing)}"
        )


def _labels(keys: list) -> list:
    """anon_vma identities renamed by first appearance (None stays None)."""
    seen: dict = {}
    return [None if k is None else seen.setdefault(k, len(seen)) for k in keys]


def hidden_state(p: Process) -> list[tuple]:
    """Per vma: start, VM_ACCOUNT, and which vmas share an anon_vma."""
    vmas = p.mm.vmas.all()
    labels = _labels([None if v.anon_vma is None else id(v.anon_vma) for v in vmas])
    return [(hex(v.vm_start), bool(v.vm_flags & VM_ACCOUNT), lab) for v, lab in zip(vmas, labels)]


def ref_hidden_state(r: Reference) -> list[tuple]:
    labels = _labels([v.anon for v in r.vmas])
    return [(hex(v.start), v.account, lab) for v, lab in zip(r.vmas, labels)]


def outcome(fn, *args) -> tuple:
    """Run a model call and describe its result the way the Reference does."""
    try:
        ret = fn(*args)
    except OSError as e:
        return ("errno", e.errno)
    except SegmentationFault as e:
        return ("segv", e.addr)
    except BusError as e:
        return ("sigbus", e.addr)
    return ("ok", ret)


def make_machine(era: str, arch: str) -> type[RuleBasedStateMachine]:
    cfg = CONFIGS[arch]
    span = cfg["pte_pages"]
    anchors = cfg["anchors"]
    task_size = cfg["task_size"]
    offs = page_offsets(span)
    modes = ("fixed", "hint", "fixed_noreplace") if era == "linux-6.18" else ("fixed", "hint")

    def clamp(start: int, end: int) -> tuple[int, int]:
        end = min(end, task_size)
        start = min(start, end - K4)
        return start, end

    @st.composite
    def window_range(draw) -> tuple[int, int]:
        a = draw(st.sampled_from(anchors))
        o1, o2 = sorted((draw(offs), draw(offs)))
        if o1 == o2:
            o2 += 1
        return clamp(a + o1 * K4, a + o2 * K4)

    @st.composite
    def short_range(draw) -> tuple[int, int]:
        a = draw(st.sampled_from(anchors))
        o = draw(offs)
        n = draw(st.integers(1, 8))
        return clamp(a + o * K4, a + (o + n) * K4)

    @st.composite
    def cross_range(draw) -> tuple[int, int]:
        i, j = sorted(draw(st.lists(st.integers(0, len(anchors) - 1), min_size=2, max_size=2, unique=True)))
        return clamp(anchors[i] + draw(offs) * K4, anchors[j] + draw(offs) * K4)

    static_ranges = st.one_of(window_range(), short_range(), short_range(), cross_range())
    deltas = st.one_of(st.sampled_from([-span, -1, 0, 0, 0, 1, 2, span]), st.integers(-16, 16))
    lengths = st.one_of(st.integers(1, 8), st.sampled_from([span - 1, span, span + 1, 2 * span]))

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.p = Process(era=era, arch=arch, check=True)
            self.ref = Reference(era, arch)

        # --- address generation driven by the current state -------------------
        def points(self) -> list[int]:
            """Anchors, vma edges and the PTE-table boundaries just inside vmas."""
            pts = set(anchors)
            step = span * K4
            for v in self.ref.vmas:
                pts.update((v.start, v.end))
                first = -(-v.start // step) * step
                last = v.end // step * step
                if first < v.end:
                    pts.add(first)
                if last > v.start:
                    pts.add(last)
            return sorted(pts)

        def near_point(self, data) -> int:
            return data.draw(st.sampled_from(self.points())) + data.draw(deltas) * K4

        def inside(self, data, v) -> int:
            """A page of vma ``v``, biased to its edges and the table boundaries in it."""
            pts = [p for p in self.points() if v.start <= p < v.end] or [v.start]
            a = data.draw(st.sampled_from(pts)) + data.draw(deltas) * K4
            return min(max(a, v.start), v.end - K4)

        def draw_range(self, data) -> tuple[int, int]:
            hows = ["static", "points", "length"] + (["vma", "vma", "slot"] if self.ref.vmas else [])
            how = data.draw(st.sampled_from(hows))
            if how == "static":
                return data.draw(static_ranges)
            if how == "slot":  # exactly one PTE table's span, or two, from a boundary
                p = data.draw(st.sampled_from(self.points()))
                p -= p % (span * K4)
                n = data.draw(st.sampled_from([-2, -1, 1, 1, 2]))
                a, b = sorted((p, p + n * span * K4))
                return clamp(max(a, K4 * 16), max(b, K4 * 17))
            if how == "vma":
                i = data.draw(st.integers(0, len(self.ref.vmas) - 1))
                j = data.draw(st.integers(i, min(i + 2, len(self.ref.vmas) - 1)))
                a = self.inside(data, self.ref.vmas[i])
                b = self.inside(data, self.ref.vmas[j]) + K4
                if data.draw(st.booleans()):
                    b = self.ref.vmas[j].end
                a, b = min(a, b), max(a, b)
                return a, b if b > a else a + K4
            a = self.near_point(data)
            if how == "points":
                b = self.near_point(data)
                a, b = min(a, b), max(a, b)
                if a == b:
                    b += K4
            else:
                b = a + data.draw(lengths) * K4
            return clamp(max(a, K4 * 16), max(b, K4 * 17))

        def draw_touch(self, data) -> tuple[int, int]:
            if self.ref.vmas and data.draw(st.integers(0, 4)):
                v = data.draw(st.sampled_from(self.ref.vmas))
                a = self.inside(data, v)
                n = data.draw(lengths)
                if data.draw(st.integers(0, 3)):
                    n = min(n, (v.end - a) // K4)  # stay inside the vma
                return a, a + n * K4
            a = self.near_point(data)
            return clamp(max(a, K4 * 16), max(a, K4 * 16) + data.draw(lengths) * K4)

        def _same(self, what: str, got: tuple, want: tuple) -> None:
            assert got == want, f"{what}: model {got} but reference {want}"

        # --- rules ---------------------------------------------------------------
        # Hypothesis switches rules off at random per test case ("swarm
        # testing"), so mapping and touching come in two flavours each and the
        # machine starts from a few mapped, touched vmas.
        def do_mmap(self, start, end, prot, shared, mode):
            if mode == "hint" and not self.ref.is_free(start, end):
                mode = "fixed"
            flags = ("shared" if shared else "private") + ",anon" + ("" if mode == "hint" else "," + mode)
            got = outcome(self.p.mmap, start, end - start, prot, flags)
            want = self.ref.mmap(start, end - start, prot, shared, mode)
            self._same(f"mmap({start:#x}, {end - start:#x}, {prot}, {flags})", got, want)

        def do_touch(self, start, end, access):
            got = outcome(self.p.touch, start, end - start, access)
            want = self.ref.touch(start, end - start, access)
            self._same(f"touch({start:#x}, {end - start:#x}, {access})", got, want)

        @initialize(data=st.data(), n=st.integers(1, 4))
        def start_with_some_vmas(self, data, n):
            for _ in range(n):
                start, end = data.draw(static_ranges)
                self.do_mmap(start, end, data.draw(st.sampled_from(PROTS)), data.draw(st.booleans()), "fixed")
            for _ in range(n):
                start, end = self.draw_touch(data)
                self.do_touch(start, end, data.draw(st.sampled_from("rw")))

        @rule(data=st.data(), prot=st.sampled_from(PROTS), shared=st.booleans(), mode=st.sampled_from(modes))
        def mmap(self, data, prot, shared, mode):
            start, end = self.draw_range(data)
            self.do_mmap(start, end, prot, shared, mode)

        @precondition(lambda self: self.ref.vmas)
        @rule(data=st.data(), prot=st.sampled_from(PROTS), shared=st.booleans(), below=st.booleans(),
              n=lengths)
        def mmap_next_to_a_vma(self, data, prot, shared, below, n):
            v = data.draw(st.sampled_from(self.ref.vmas))
            start, end = (v.start - n * K4, v.start) if below else (v.end, v.end + n * K4)
            start, end = clamp(max(start, 16 * K4), end)
            self.do_mmap(start, end, prot, shared, "fixed")

        @rule(data=st.data())
        def munmap(self, data):
            start, end = self.draw_range(data)
            got = outcome(self.p.munmap, start, end - start)
            want = self.ref.munmap(start, end - start)
            self._same(f"munmap({start:#x}, {end - start:#x})", got, want)

        @rule(data=st.data(), prot=st.sampled_from(PROTS))
        def mprotect(self, data, prot):
            start, end = self.draw_range(data)
            got = outcome(self.p.mprotect, start, end - start, prot)
            want = self.ref.mprotect(start, end - start, prot)
            self._same(f"mprotect({start:#x}, {end - start:#x}, {prot})", got, want)

        @rule(data=st.data())
        def dontneed(self, data):
            start, end = self.draw_range(data)
            got = outcome(self.p.madvise, start, end - start, "dontneed")
            want = self.ref.madvise_dontneed(start, end - start)
            self._same(f"madvise({start:#x}, {end - start:#x}, dontneed)", got, want)

        @rule(data=st.data(), access=st.sampled_from("rrw"))
        def touch(self, data, access):
            start, end = self.draw_touch(data)
            self.do_touch(start, end, access)

        @precondition(lambda self: self.ref.vmas)
        @rule(data=st.data(), access=st.sampled_from("rw"))
        def touch_inside_a_vma(self, data, access):
            v = data.draw(st.sampled_from(self.ref.vmas))
            a = self.inside(data, v)
            n = min(data.draw(lengths), (v.end - a) // K4)
            self.do_touch(a, a + n * K4, access)

        def whole_slots(self) -> list[int]:
            """Starts of PTE-table spans lying entirely inside one vma."""
            step = span * K4
            out = []
            for v in self.ref.vmas:
                a = -(-v.start // step) * step
                while a + step <= v.end and len(out) < 64:
                    out.append(a)
                    a += step
            return out

        @precondition(lambda self: self.whole_slots())
        @rule(data=st.data(), touch_first=st.booleans(), edge=st.sampled_from([(0, 0), (0, 0), (-1, 0), (0, 1), (1, 0)]))
        def dontneed_a_whole_slot(self, data, touch_first, edge):
            """PT_RECLAIM's case: a dontneed over a whole PTE table's span in one vma."""
            a = data.draw(st.sampled_from(self.whole_slots()))
            if touch_first:
                self.do_touch(a + span * K4 // 2, a + span * K4 // 2 + K4, "r")
            start, end = a + edge[0] * K4, a + span * K4 + edge[1] * K4
            got = outcome(self.p.madvise, start, end - start, "dontneed")
            want = self.ref.madvise_dontneed(start, end - start)
            self._same(f"madvise({start:#x}, {end - start:#x}, dontneed)", got, want)

        @rule(data=st.data(), op=st.sampled_from(["mmap", "munmap", "mprotect", "dontneed"]),
              unaligned=st.booleans())
        def bad_arguments(self, data, op, unaligned):
            """An unaligned address or a zero length: the errno (or 0) Linux gives."""
            a = self.near_point(data)
            a, n = (a + data.draw(st.integers(1, K4 - 1)), K4) if unaligned else (a, 0)
            if op == "mmap":
                got = outcome(self.p.mmap, a, n, "rw-", "private,anon,fixed")
                want = self.ref.mmap(a, n, "rw-", False, "fixed")
            elif op == "munmap":
                got, want = outcome(self.p.munmap, a, n), self.ref.munmap(a, n)
            elif op == "mprotect":
                got, want = outcome(self.p.mprotect, a, n, "r--"), self.ref.mprotect(a, n, "r--")
            else:
                got, want = outcome(self.p.madvise, a, n, "dontneed"), self.ref.madvise_dontneed(a, n)
            self._same(f"{op}({a:#x}, {n:#x})", got, want)

        @precondition(lambda self: len(self.ref.vmas) >= 3)
        @rule(now=st.integers(0, 3))
        def munmap_everything(self, now):
            if now:
                return
            start = anchors[0] - 2 * span * K4
            got = outcome(self.p.munmap, start, task_size - start)
            want = self.ref.munmap(start, task_size - start)
            self._same("munmap(all)", got, want)

        @precondition(lambda self: any(self.ref.tables.values()))
        @rule(now=st.integers(0, 2))
        def fork(self, now):
            if now:
                return
            child = self.p.fork()
            want = self.ref.fork()
            check_mm(child.mm)
            assert_same_tables(model_tables(child), want["tables"], "fork child")
            assert child.pgtables_bytes == want["pgtables_bytes"], (
                f"fork child VmPTE {child.pgtables_bytes} but reference {want['pgtables_bytes']}")
            assert child.rss == want["rss"], f"fork child rss {child.rss} but reference {want['rss']}"
            assert child.vmas() == want["vmas"], "fork child vmas differ from the parent's"
            try:
                child.exit()
            except KernelBug as e:
                raise AssertionError(f"child.exit() raised {e}") from e
            assert not any(child.mm.nr_tables.values()), f"child left tables: {child.mm.nr_tables}"

        @invariant()
        def agrees_with_reference(self):
            check_mm(self.p.mm)
            assert_same_tables(model_tables(self.p), self.ref.table_sets(), "parent")
            assert self.p.pgtables_bytes == self.ref.pgtables_bytes(), (
                f"VmPTE {self.p.pgtables_bytes} but reference {self.ref.pgtables_bytes()}")
            assert self.p.rss == self.ref.rss(), f"rss {self.p.rss} but reference {self.ref.rss()}"
            assert hidden_state(self.p) == ref_hidden_state(self.ref), (
                "vma hidden state (VM_ACCOUNT, anon_vma sharing) differs:\n  model     "
                + str(hidden_state(self.p)) + "\n  reference " + str(ref_hidden_state(self.ref)))
            got, want = self.p.vmas(), self.ref.vma_list()
            assert got == want, (
                "vmas differ:\n  model     " + " ".join(f"{a:#x}-{b:#x}:{f}" for a, b, f in got)
                + "\n  reference " + " ".join(f"{a:#x}-{b:#x}:{f}" for a, b, f in want))

        def teardown(self):
            if not self.p.mm.dead:
                self.p.exit()
                assert not any(self.p.mm.nr_tables.values()), f"exit left tables: {self.p.mm.nr_tables}"

    Machine.__name__ = f"Machine_{era}_{arch}".replace("-", "_").replace(".", "_")
    return Machine


#: Shrinking a failing run costs minutes; CI reports the unshrunk (at most
#: STEPS-step, deterministic) run instead.  FREEPGT_SHRINK=1 shrinks it.
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

for _era in ("linux-2.6.12", "linux-6.18"):
    for _arch in ("x86_64", "i386", "i386-pae"):
        _machine = make_machine(_era, _arch)
        _case = _machine.TestCase
        _case.settings = SETTINGS
        _name = "Test" + _machine.__name__[len("Machine"):]
        globals()[_name] = type(_name, (_case,), {"settings": SETTINGS})
        del _machine, _case, _name


# --- a fixed regression for what the machines found ---------------------------------

def test_2_6_12_mprotect_read_only_keeps_vm_account():
    """2.6.12's mprotect_fixup only ever adds VM_ACCOUNT; dropping it from an
    unwritten anonymous vma made read-only came in 2023 ("mm/mprotect: allow
    unfaulted VMAs to be unaccounted on mprotect()", 6.7).  So in 2.6.12 an
    rw- vma made r-- stays apart from a fresh r-- neighbour; 6.18 merges them
    (host-kernel-notes §9)."""
    for era, expected in (("linux-2.6.12", 2), ("linux-6.18", 1)):
        p = Process(era=era, arch="x86_64", check=True)
        p.mmap(B, 2 * K4, "rw-", "private,anon,fixed")
        p.mprotect(B, 2 * K4, "r--")
        p.mmap(B + 2 * K4, 2 * K4, "r--", "private,anon,fixed")
        r = Reference(era, "x86_64")
        r.mmap(B, 2 * K4, "rw-", False)
        r.mprotect(B, 2 * K4, "r--")
        r.mmap(B + 2 * K4, 2 * K4, "r--", False)
        assert len(r.vma_list()) == expected
        assert p.vmas() == r.vma_list(), f"{era}: model {p.vmas()} but reference {r.vma_list()}"


def test_mprotect_to_the_same_prot_changes_nothing():
    """mprotect_fixup returns at ``newflags == oldflags`` before it touches
    VM_ACCOUNT (mm/mprotect.c, 2.6.12 and 6.x alike), so a same-prot mprotect
    never drops the charge.  The one 6.18 vma that is read-only, charged and
    without anon_vma is the old vma after a whole-vma MREMAP_DONTUNMAP
    (host-kernel-notes §7: it keeps its flags, VM_ACCOUNT included, and loses
    its anon_vma); a fresh r-- neighbour (not charged) must stay apart."""
    p = Process(era="linux-6.18", arch="x86_64", check=True)
    p.mmap(B, 2 * K4, "rw-", "private,anon,fixed")
    p.touch(B, K4, "w")
    p.mprotect(B, 2 * K4, "r--")                       # has an anon_vma: stays charged
    p.mremap(B, 2 * K4, 2 * K4, "maymove,fixed,dontunmap", B + G1)
    p.mmap(B + 2 * K4, 2 * K4, "r--", "private,anon,fixed")
    before = p.vmas()
    assert before[:2] == [(B, B + 2 * K4, "r--p"), (B + 2 * K4, B + 4 * K4, "r--p")]
    p.mprotect(B, 2 * K4, "r--")                       # newflags == oldflags: nothing to do
    assert p.vmas() == before
