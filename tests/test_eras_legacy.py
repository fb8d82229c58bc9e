"""kernel-notes §8, every tricky case, for every era: what is freed, read and leaked.

Every expected value here was worked out by hand from the pseudo-code of
kernel-notes.md (§2 2.6.10 ``clear_page_tables`` / old ``free_pgtables``,
§3 2.6.11 ``clear_page_range`` / old ``free_pgtables`` / exit, §4 the seed's
``free_pgtables`` / ``free_pgd_range`` / ``may_free``, §4.6 FIRST_USER_ADDRESS,
§4.8 driver failure, §4.9 exit, §5 geometry), never by running the model.
The comment next to each expectation shows the arithmetic.

Eras: A = linux-2.6.10, B = linux-2.6.11, C1 = linux-2.6.12-rc (the seed as
first merged: floor/ceiling default 0, exact ``BUG_ON(nr_ptes)``), C =
linux-2.6.12, D = linux-6.18.  "C*" in a comment means C1, C and D alike.

Geometries (kernel-notes §5):
  X    x86_64 4-level: PTE table 2M, PMD table 1G (PUD_SIZE), PUD table 512G
       (PGDIR_SIZE); MM_VM_SIZE = 0x800000000000.  2.6.10 has no 4-level
       code: era A on "x86_64" runs on
  X10  x86_64-2.6.10: 3 generic levels, PGDIR 1G (512 slots), PMD 2M,
       TASK_SIZE 0x7fc0000000, USER_PTRS_PER_PGD 511.
  I    i386: 2-level, one pgd slot = one PTE table = 4M, 768 user slots.
  PAE  i386-pae: PGDIR 1G (3 user slots), PMD 2M, the 3 PMD pages
       preallocated with the pgd (never freed, never counted).

What is counted as "read" (``mm.entries_examined``, level -> entries): a
walk reads, at each *real* level, every entry of its range inside the
tables present (folded levels are not counted).  A munmap or exit also
zaps first, and the zap reads the ptes of each removed vma's range as well
as the upper entries above them.  The expectations below are the totals,
written as "zap {..} + free {..}" so the freeing walk can be read off on
its own: for a vma [s, e) the zap reads, per level, the entries of [s, e)
in present tables (ptes included), measured before anything is freed.
  A's free walk: ``clear_page_tables(si, n)`` reads n pgd entries and every
  entry (PTRS_PER_PMD) of each present table above the PTE level under
  those slots; it reads no pte.
  B's free walk: ``clear_page_range(s, e)`` reads every pgd entry from
  pgd_index(s) to pgd_index(e - 1) and every entry of [s, e) in each present
  PUD/PMD table; no pte.
  C*'s free walk: ``free_pgd_range`` reads the entries of its PMD-trimmed
  range in present tables, no pte; a call that returns early reads nothing.

"Left behind" = tables in the tree whose span meets no vma; "stranded" =
tables made unreachable when a higher table above them was freed (still
counted in nr_ptes / VmPTE).

Notation: "PTE@X" is the PTE table whose span starts at X, likewise PMD@X,
PUD@X; rd = round down; fpr(addr, end, floor, ceiling) = one free_pgd_range.
"""

from __future__ import annotations

import errno

import pytest

from freepgt import KernelBug, Process
from freepgt.arch import Geometry, _levels
from freepgt.eras import get_era

A = "linux-2.6.10"
B = "linux-2.6.11"
C1 = "linux-2.6.12-rc"
C = "linux-2.6.12"
D = "linux-6.18"
ALL = (A, B, C1, C, D)
CLS = {A: "A", B: "B", C1: "C", C: "C", D: "C"}

K4 = 0x1000
M1 = 0x100000
M2 = 0x200000
M4 = 0x400000
G1 = 0x40000000
G512 = 0x8000000000
BASE = 0x100000000000          # x86_64: pgd slot 32, PGDIR-aligned, far from everything
TS = 0x7FFFFFFFF000            # x86_64 TASK_SIZE (2.6.12 value, the preset's)
TOP_PTE = 0x7FFFFFE00000       # rd(TS - 4K, 2M)
TOP_PMD = 0x7FFFC0000000       # rd(TS - 4K, 1G)
TOP_PUD = 0x7F8000000000       # rd(TS - 4K, 512G): pgd slot 255

ARCH = {"X": "x86_64", "X10": "x86_64", "I": "i386", "PAE": "i386-pae"}


# ---------------------------------------------------------------------------
# helpers: build processes and read what the model holds (no expectations)
# ---------------------------------------------------------------------------

def geo_params(*geos: str):
    """(era, geometry) pairs: X runs B, C1, C, D; X10 runs A; I and PAE run all five."""
    out = []
    for g in geos:
        eras = {"X": (B, C1, C, D), "X10": (A,), "I": ALL, "PAE": ALL}[g]
        out += [pytest.param(e, g, id=f"{e}-{g}") for e in eras]
    return pytest.mark.parametrize("era, geo", out)


def make(era: str, geo: str) -> Process:
    p = Process(era=era, arch=ARCH[geo])
    if geo == "X10":
        # linux-2.6.10 maps "x86_64" to its own 3-level layout (Era.geometry)
        assert p.geom.name == "x86_64-2.6.10"
    return p


def pick(table: dict, era: str, geo: str):
    """The expectation for (geometry, era), falling back to the era's class, then '*'."""
    for key in ((geo, era), (geo, CLS[era]), (geo, "*")):
        if key in table:
            return table[key]
    raise KeyError((geo, era))


def anon(p: Process, start: int, end: int, prot: str = "rw-") -> None:
    assert p.mmap(start, end - start, prot, "private,anon,fixed") == start


def touch(p: Process, *pages: int) -> None:
    """Touch single pages (write where the vma is writable, else read)."""
    for a in pages:
        v = p.mm.vmas.find_vma(a)
        p.touch(a, 1, "w" if "w" in v.perms else "r")


def addrs(p: Process, level: str) -> list[int]:
    pt = p.mm.pt
    s = pt.shifts[level]
    return [i << s for a, b, _ in pt.tables[level].runs() for i in range(a, b)]


def tree(p: Process) -> dict[str, list[int]]:
    """Table start addresses per level (non-empty levels, preallocated ones left out)."""
    pt = p.mm.pt
    out = {lvl: addrs(p, lvl) for lvl in pt.levels if lvl not in pt.prealloc}
    return {k: v for k, v in out.items() if v}


def left_behind(p: Process) -> dict[str, list[int]]:
    """Tables present whose span meets no vma."""
    pt = p.mm.pt
    vmas = [(s, e) for s, e, _ in p.vmas()]
    out = {}
    for lvl, lst in tree(p).items():
        span = 1 << pt.shifts[lvl]
        lonely = [a for a in lst if not any(s < a + span and a < e for s, e in vmas)]
        if lonely:
            out[lvl] = lonely
    return out


def reads(p: Process) -> dict[str, int]:
    return {k: v for k, v in p.mm.entries_examined.items() if v}


def run(p: Process, fn, *args):
    """Do one operation; return (entries read, tables freed per level) during it."""
    p.mm.entries_examined.clear()
    before = dict(p.mm.tlb_stats.tables_freed)
    fn(*args)
    return reads(p), freed_since(p, before)


def freed_since(p: Process, before: dict) -> dict[str, int]:
    now = p.mm.tlb_stats.tables_freed
    return {k: v - before.get(k, 0) for k, v in now.items() if v - before.get(k, 0)}


def expect(p: Process, era: str, want: dict, left: dict | None = None, stranded: dict | None = None) -> None:
    """The exact tree, the left-behind tables, stranded tables, nr_ptes and VmPTE."""
    assert tree(p) == want
    assert left_behind(p) == (left or {})
    stranded = stranded or {}
    assert {k: v for k, v in p.mm.stranded.items() if v} == stranded
    # nr_ptes counts PTE tables only (kernel-notes 1.3), stranded ones included
    assert p.nr_ptes == len(want.get("pte", [])) + stranded.get("pte", 0)
    # VmPTE: PTE tables before 6.x; PUD+PMD+PTE of unfolded, non-preallocated
    # levels in 6.x (kernel-notes 6.1)
    counted = ("pud", "pmd", "pte") if era == D else ("pte",)
    g = p.geom
    total = 0
    for lvl in counted:
        lv = g.level(lvl)
        if lv.folded or lv.preallocated:
            continue
        total += (len(want.get(lvl, [])) + stranded.get(lvl, 0)) * lv.table_bytes
    assert p.pgtables_bytes == total


def calls(p: Process) -> int:
    return p.mm.stats["free_pgd_range_calls"]


def T(pte=(), pmd=(), pud=()) -> dict[str, list[int]]:
    """A tree written by hand (empty levels left out)."""
    out = {"pud": list(pud), "pmd": list(pmd), "pte": list(pte)}
    return {k: v for k, v in out.items() if v}


# ===========================================================================
# Geometry sanity (the constants every derivation below relies on)
# ===========================================================================

def test_geometries_as_the_notes_give_them():
    x = Process(era=C, arch="x86_64").geom
    assert (x.PGDIR_SIZE, x.PUD_SIZE, x.PMD_SIZE, x.task_size) == (G512, G1, M2, TS)
    i = Process(era=C, arch="i386").geom
    assert (i.PGDIR_SIZE, i.PMD_SIZE, i.task_size) == (M4, M4, 0xC0000000)
    pae = Process(era=C, arch="i386-pae")
    assert (pae.geom.PGDIR_SIZE, pae.geom.PMD_SIZE) == (G1, M2)
    assert pae.mm.pt.count("pmd") == 3 and pae.tables() == {"pte": 0}
    # 2.6.10 has three-level generic code only: the 4-level x86_64 preset is
    # refused unless the era's own x86_64 layout exists
    with pytest.raises(ValueError):
        Process(era=A, arch="x86_64-la57")


def test_2_6_10_x86_64_layout():
    g = Process(era=A, arch="x86_64").geom
    assert g.name == "x86_64-2.6.10"
    assert (g.PGDIR_SIZE, g.PMD_SIZE, g.task_size) == (G1, M2, 0x7FC0000000)
    assert Process(era=A, arch="x86_64").tables() == {"pmd": 0, "pte": 0}
    # the other eras keep the 4-level preset
    assert Process(era=B, arch="x86_64").geom.name == "x86_64"


# ===========================================================================
# Case 1: ceiling 0 = top.  Lone vma [0x400000, 0x401000) munmapped.
# ===========================================================================

CASE1_TREE = {"X": T([0x400000], [0], [0]), "X10": T([0x400000], [0]),
              "I": T([0x400000]), "PAE": T([0x400000])}
CASE1_FREED = {("X", "*"): {"pud": 1, "pmd": 1, "pte": 1}, ("X10", "*"): {"pmd": 1, "pte": 1},
               ("I", "*"): {"pte": 1}, ("PAE", "*"): {"pte": 1}}
CASE1_READS = {
    # zap [0x400000, 0x401000): one entry per real level (X: pgd, pud, pmd, pte).
    # C*: fpr(0x400000, 0x401000, 0, 0): walk reads 1 pgd, 1 pud, 1 pmd entry;
    #     frees PTE@0x400000, PMD@0 (0 >= floor 0, ceiling 0 = top), PUD@0.
    ("X", "C"): {"pgd": 2, "pud": 2, "pmd": 2, "pte": 1},
    # B: first = rd(0x400000, 512G) = 0, last = 0x401000 + 512G - 1 = 0x8000400fff
    #    (< MM_VM_SIZE); clear_page_range(0, 0x8000400fff) reads pgd 0..1 (2),
    #    all 512 entries of PUD@0 and of PMD@0; PTE@0x400000 [4M, 6M), PMD@0
    #    [0, 1G), PUD@0 [0, 512G) are all covered -> all three freed.
    ("X", "B"): {"pgd": 1 + 2, "pud": 1 + 512, "pmd": 1 + 512, "pte": 1},
    # A on X10: first 0, last = 0x401000 + 1G - 1 -> si 0, ei 1: slot 0 cleared,
    #    reading 1 pgd entry and the 512 entries of PMD@0; PMD@0 and PTE freed.
    ("X10", "A"): {"pgd": 1 + 1, "pmd": 1 + 512, "pte": 1},
    # A on I: first = 0x400000, last = 0x800fff -> si 1, ei 2: 1 pgd entry read
    ("I", "A"): {"pgd": 1 + 1, "pte": 1},
    # B on I: clear_page_range(0x400000, 0x800fff): pgd 1..2 (2 entries)
    ("I", "B"): {"pgd": 1 + 2, "pte": 1},
    ("I", "C"): {"pgd": 1 + 1, "pte": 1},
    # PAE zap: pgd 1, pmd 1 (preallocated PMD@0 is present), pte 1.
    # A: slot 0 cleared: 1 pgd + the 512 entries of the (preallocated) PMD@0;
    #    PMD pages are never freed (pmd_free_tlb is a no-op on PAE).
    ("PAE", "A"): {"pgd": 1 + 1, "pmd": 1 + 512, "pte": 1},
    # B: clear_page_range(0, 0x40400fff): pgd 0..1 (2); pmd: all 512 of PMD@0
    #    and [1G, 0x40400fff) of PMD@1G = entries 0..2 (3) -> 515
    ("PAE", "B"): {"pgd": 1 + 2, "pmd": 1 + 515, "pte": 1},
    ("PAE", "C"): {"pgd": 1 + 1, "pmd": 1 + 1, "pte": 1},
}


@geo_params("X", "X10", "I", "PAE")
def test_case1_ceiling_zero_is_top(era, geo):
    p = make(era, geo)
    anon(p, 0x400000, 0x401000)
    touch(p, 0x400000)
    expect(p, era, CASE1_TREE[geo])
    r, f = run(p, p.munmap, 0x400000, K4)
    expect(p, era, {})
    assert f == pick(CASE1_FREED, era, geo)
    assert r == pick(CASE1_READS, era, geo)


# ===========================================================================
# Case 2: a ceiling that rounds to 0.  V=[0x1000, 0x2000), next N at 0x100000.
# ===========================================================================
# C*: ceiling rd(0x100000, PMD_SIZE) == 0 -> return at once: nothing freed,
#     nothing read by the free walk.
# B:  first = 0, last = min(0x2000 + PGDIR - 1, 0x100000) = 0x100000;
#     rd(first, PMD) == rd(last, PMD) == 0 -> early-out: nothing.
# A:  last = 0x100000 -> pgd_index(last) = 0 = si -> nothing (I, PAE, X10).
# Every geometry keeps the one PTE table at 0 (shared with N).

CASE2_TREE = {"X": T([0], [0], [0]), "X10": T([0], [0]), "I": T([0]), "PAE": T([0])}
CASE2_ZAP = {"X": {"pgd": 1, "pud": 1, "pmd": 1, "pte": 1}, "X10": {"pgd": 1, "pmd": 1, "pte": 1},
             "I": {"pgd": 1, "pte": 1}, "PAE": {"pgd": 1, "pmd": 1, "pte": 1}}


@geo_params("X", "X10", "I", "PAE")
def test_case2_ceiling_rounding_to_zero(era, geo):
    p = make(era, geo)
    anon(p, 0x1000, 0x2000)
    anon(p, 0x100000, 0x101000)
    touch(p, 0x1000, 0x100000)
    expect(p, era, CASE2_TREE[geo])
    r, f = run(p, p.munmap, 0x1000, K4)
    expect(p, era, CASE2_TREE[geo])
    assert f == {}
    assert r == CASE2_ZAP[geo]


# ===========================================================================
# Case 3: floor-side sharing.  P=[0x400000, 0x401000), hole V=[0x402000,
# 0x403000), no next.  Nothing is freed anywhere.
# ===========================================================================
# C*: addr rd 0x400000 < floor 0x401000 -> 0x400000 + PMD > end - 1 -> return.
# B:  first = prev.vm_end = 0x401000 (> rd(start, PGDIR)), last = 0x403000 +
#     PGDIR - 1; clear_page_range covers no whole table (PTE@0x400000 starts
#     below first) but reads:
#       X:   pgd 0..1 (2); PUD@0 over [0x401000, 512G): 512; PMD@0 over
#            [0x401000, 1G): entries 2..511 = 510.
#       I:   [0x401000, 0x802fff): pgd 1..2 (2).
#       PAE: [0x401000, 0x40402fff): pgd 0..1 (2); PMD@0 entries 2..511 (510)
#            + PMD@1G entries 0..2 (3) = 513.
# A:  I: first = 0x401000 + 4M - 1 = 0x800fff, last = 0x802fff: si = ei = 2.
#     PAE/X10: first = 0x401000 + 1G - 1, last = 0x403000 + 1G - 1: si = ei = 1.

CASE3_TREE = {"X": T([0x400000], [0], [0]), "X10": T([0x400000], [0]),
              "I": T([0x400000]), "PAE": T([0x400000])}
CASE3_READS = {
    ("X", "C"): {"pgd": 1, "pud": 1, "pmd": 1, "pte": 1},
    ("X", "B"): {"pgd": 1 + 2, "pud": 1 + 512, "pmd": 1 + 510, "pte": 1},
    ("X10", "A"): {"pgd": 1, "pmd": 1, "pte": 1},
    ("I", "A"): {"pgd": 1, "pte": 1},
    ("I", "B"): {"pgd": 1 + 2, "pte": 1},
    ("I", "C"): {"pgd": 1, "pte": 1},
    ("PAE", "A"): {"pgd": 1, "pmd": 1, "pte": 1},
    ("PAE", "B"): {"pgd": 1 + 2, "pmd": 1 + 513, "pte": 1},
    ("PAE", "C"): {"pgd": 1, "pmd": 1, "pte": 1},
}


@geo_params("X", "X10", "I", "PAE")
def test_case3_prev_in_same_pmd(era, geo):
    p = make(era, geo)
    anon(p, 0x400000, 0x401000)
    anon(p, 0x402000, 0x403000)
    touch(p, 0x400000, 0x402000)
    r, f = run(p, p.munmap, 0x402000, K4)
    expect(p, era, CASE3_TREE[geo])
    assert f == {}
    assert r == pick(CASE3_READS, era, geo)


# ===========================================================================
# Case 4: both sides share the PTE table.  P=[4M, 4.5M), V=[5M, 5.5M),
# N=[5.75M, +4K): all in PTE@4M on every geometry.  Nothing freed or walked.
# ===========================================================================
# C*: addr 4M < floor 4.5M -> 6M; ceiling rd(5.75M) = 4M; end 5.5M - 1 > 4M - 1
#     -> end = 3.5M; addr > end - 1 -> return.
# B:  first = 4.5M, last = 5.75M: rd(first, PMD) == rd(last, PMD) == 4M (2M
#     and 4M PMDs alike) -> early-out.
# A:  first = 4.5M + PGDIR - 1 > last = 5.75M -> return.
# Reads are the zap of V only: 128 ptes (the whole range lies in PTE@4M).

CASE4_TREE = {"X": T([M4], [0], [0]), "X10": T([M4], [0]), "I": T([M4]), "PAE": T([M4])}
CASE4_ZAP = {"X": {"pgd": 1, "pud": 1, "pmd": 1, "pte": 128}, "X10": {"pgd": 1, "pmd": 1, "pte": 128},
             "I": {"pgd": 1, "pte": 128}, "PAE": {"pgd": 1, "pmd": 1, "pte": 128}}


@geo_params("X", "X10", "I", "PAE")
def test_case4_both_sides_share(era, geo):
    p = make(era, geo)
    anon(p, 4 * M1, 4 * M1 + 512 * 1024)
    anon(p, 5 * M1, 5 * M1 + 512 * 1024)
    anon(p, 0x5C0000, 0x5C1000)
    touch(p, 4 * M1, 5 * M1, 0x5C0000)
    r, f = run(p, p.munmap, 5 * M1, 512 * 1024)
    expect(p, era, CASE4_TREE[geo])
    assert f == {}
    assert r == CASE4_ZAP[geo]


# ===========================================================================
# Case 5: end trimming.  X-shape (X, X10, PAE): P=[1M-4K, 1M), V=[5M, 7M),
# N=[7.5M, +4K).  I-shape (scaled x2 for 4M tables): P=[2M-4K, 2M),
# V=[10M, 14M), N=[15M, +4K).
# ===========================================================================
# C* (X/PAE): addr 4M >= floor 1M; ceiling rd 7.5M = 6M; end 7M - 1 > 6M - 1
#     -> end = 5M; walk [4M, 5M): PTE@4M freed, PTE@6M (shared with N) kept,
#     PMD@0 kept (0 < floor).  Walk reads pgd 1, (pud 1,) pmd 1.
# B (X/PAE): first = 1M, last = min(7M + PGDIR - 1, 7.5M) = 7.5M:
#     clear_page_range(1M, 7.5M) covers [4M, 6M) only -> PTE@4M; reads pgd 1,
#     (pud 1,) pmd entries 0..3 = 4.
# A (X10/PAE): first = 1M + 1G - 1 > last = 7.5M -> nothing: PTE@4M stays,
#     spanned by no vma (slot 0 is shared with P and N) until exit.
# I-shape: C*: addr 8M, ceiling rd 15M = 12M, end 14M -> 10M; walk [8M, 10M)
#     frees PTE@8M, reads pgd 1.  A: first = 8M, last = min(18M - 1, 15M) =
#     15M -> si 2, ei 3: slot 2 = PTE@8M, reads pgd 1.  B: clear_page_range(8M,
#     15M) frees PTE@8M, reads pgd 2..3 (2).
# Zap of V: X {pgd 1, pud 1, pmd 2, pte 512}; PAE/X10 {pgd 1, pmd 2, pte 512};
#     I {pgd 2, pte 1024}.

CASE5_BEFORE = {"X": T([0, M4, 6 * M1], [0], [0]), "X10": T([0, M4, 6 * M1], [0]),
                "PAE": T([0, M4, 6 * M1]), "I": T([0, 8 * M1, 12 * M1])}
CASE5_AFTER = {
    ("X", "*"): (T([0, 6 * M1], [0], [0]), None, {"pte": 1}),
    ("X10", "A"): (T([0, M4, 6 * M1], [0]), {"pte": [M4]}, {}),
    ("PAE", "A"): (T([0, M4, 6 * M1]), {"pte": [M4]}, {}),
    ("PAE", "*"): (T([0, 6 * M1]), None, {"pte": 1}),
    ("I", "*"): (T([0, 12 * M1]), None, {"pte": 1}),
}
CASE5_READS = {
    ("X", "C"): {"pgd": 1 + 1, "pud": 1 + 1, "pmd": 2 + 1, "pte": 512},
    ("X", "B"): {"pgd": 1 + 1, "pud": 1 + 1, "pmd": 2 + 4, "pte": 512},
    ("X10", "A"): {"pgd": 1, "pmd": 2, "pte": 512},
    ("PAE", "A"): {"pgd": 1, "pmd": 2, "pte": 512},
    ("PAE", "B"): {"pgd": 1 + 1, "pmd": 2 + 4, "pte": 512},
    ("PAE", "C"): {"pgd": 1 + 1, "pmd": 2 + 1, "pte": 512},
    ("I", "A"): {"pgd": 2 + 1, "pte": 1024},
    ("I", "B"): {"pgd": 2 + 2, "pte": 1024},
    ("I", "C"): {"pgd": 2 + 1, "pte": 1024},
}


@geo_params("X", "X10", "I", "PAE")
def test_case5_end_trimming(era, geo):
    p = make(era, geo)
    if geo == "I":
        prv, v, nxt = (2 * M1 - K4, 2 * M1), (10 * M1, 14 * M1), (15 * M1, 15 * M1 + K4)
    else:
        prv, v, nxt = (M1 - K4, M1), (5 * M1, 7 * M1), (7 * M1 + 512 * 1024, 7 * M1 + 512 * 1024 + K4)
    for s, e in (prv, v, nxt):
        anon(p, s, e)
    touch(p, prv[0], v[0], v[1] - K4, nxt[0])
    expect(p, era, CASE5_BEFORE[geo])
    r, f = run(p, p.munmap, v[0], v[1] - v[0])
    want, left, freed = pick(CASE5_AFTER, era, geo)
    expect(p, era, want, left)
    assert f == freed
    assert r == pick(CASE5_READS, era, geo)


# ===========================================================================
# Case 6: floor raise.  X-shape: P=[4.5M-4K, 4.5M), V=[5M, 7M), N=[9M, +4K).
# I-shape (x2): P=[9M-4K, 9M), V=[10M, 14M), N=[18M, +4K).
# ===========================================================================
# C* (X/PAE): addr 4M < floor 4.5M -> 6M; ceiling rd 9M = 8M; end 7M not
#     trimmed; walk [6M, 7M) frees PTE@6M only (reads pgd 1, (pud 1,) pmd 1).
# B (X/PAE): first 4.5M, last = min(7M + PGDIR - 1, 9M) = 9M; covers [6M, 8M)
#     -> PTE@6M; reads pgd 1, (pud 1,) pmd entries 2..4 = 3.
# A (X10/PAE): first = 4.5M + 1G - 1 > last 9M -> nothing; PTE@6M left behind.
# I-shape: C*: addr 8M < 9M -> 12M, ceiling 16M, walk [12M, 14M): PTE@12M,
#     reads pgd 1.  A: first = 9M + 4M - 1 = 13M - 1, last = min(18M - 1, 18M)
#     = 18M - 1 -> si 3, ei 4: PTE@12M, reads pgd 1.  B: clear_page_range(9M,
#     18M - 1) covers [12M, 16M) only -> PTE@12M, reads pgd 2..4 (3).

CASE6_BEFORE = {"X": T([M4, 6 * M1, 8 * M1], [0], [0]), "X10": T([M4, 6 * M1, 8 * M1], [0]),
                "PAE": T([M4, 6 * M1, 8 * M1]), "I": T([8 * M1, 12 * M1, 16 * M1])}
CASE6_AFTER = {
    ("X", "*"): (T([M4, 8 * M1], [0], [0]), None, {"pte": 1}),
    ("X10", "A"): (T([M4, 6 * M1, 8 * M1], [0]), {"pte": [6 * M1]}, {}),
    ("PAE", "A"): (T([M4, 6 * M1, 8 * M1]), {"pte": [6 * M1]}, {}),
    ("PAE", "*"): (T([M4, 8 * M1]), None, {"pte": 1}),
    ("I", "*"): (T([8 * M1, 16 * M1]), None, {"pte": 1}),
}
CASE6_READS = {
    ("X", "C"): {"pgd": 1 + 1, "pud": 1 + 1, "pmd": 2 + 1, "pte": 512},
    ("X", "B"): {"pgd": 1 + 1, "pud": 1 + 1, "pmd": 2 + 3, "pte": 512},
    ("X10", "A"): {"pgd": 1, "pmd": 2, "pte": 512},
    ("PAE", "A"): {"pgd": 1, "pmd": 2, "pte": 512},
    ("PAE", "B"): {"pgd": 1 + 1, "pmd": 2 + 3, "pte": 512},
    ("PAE", "C"): {"pgd": 1 + 1, "pmd": 2 + 1, "pte": 512},
    ("I", "A"): {"pgd": 2 + 1, "pte": 1024},
    ("I", "B"): {"pgd": 2 + 3, "pte": 1024},
    ("I", "C"): {"pgd": 2 + 1, "pte": 1024},
}


@geo_params("X", "X10", "I", "PAE")
def test_case6_floor_raise(era, geo):
    p = make(era, geo)
    if geo == "I":
        prv, v, nxt = (9 * M1 - K4, 9 * M1), (10 * M1, 14 * M1), (18 * M1, 18 * M1 + K4)
    else:
        prv, v, nxt = (4 * M1 + 512 * 1024 - K4, 4 * M1 + 512 * 1024), (5 * M1, 7 * M1), (9 * M1, 9 * M1 + K4)
    for s, e in (prv, v, nxt):
        anon(p, s, e)
    touch(p, prv[0], v[0], v[1] - K4, nxt[0])
    expect(p, era, CASE6_BEFORE[geo])
    r, f = run(p, p.munmap, v[0], v[1] - v[0])
    want, left, freed = pick(CASE6_AFTER, era, geo)
    expect(p, era, want, left)
    assert f == freed
    assert r == pick(CASE6_READS, era, geo)


# ===========================================================================
# Case 7: floor exactly on a boundary.  X-shape: P=[1G-4K, 1G) r--,
# V=[1G, 1G+4K) rw- (different prot: no merge).  I-shape: P=[4M-4K, 4M),
# V=[4M, 4M+4K).
# ===========================================================================
# C* X: addr 1G not < floor 1G; walk [1G, 1G+4K): PTE@1G freed, PMD@1G freed
#     (slot start 1G not < floor), PUD@0 kept (0 < floor).
# B X: first = max(rd(1G, 512G) = 0 -> prev.vm_end 1G) = 1G, last = 1G + 4K +
#     512G - 1: covers [1G, 2G) -> PTE@1G and PMD@1G; reads pgd 0..1 (2),
#     PUD@0 entries 1..511 (511), PMD@1G all 512.
# A X10: first = rd(1G, 1G) = 1G, prev.vm_end 1G not > first, last = 2G + 4K
#     - 1 -> si 1, ei 2: slot 1 cleared: PMD@1G (its 512 entries read) and
#     PTE@1G freed.
# PAE: every era frees PTE@1G; A reads pgd 1 + PMD@1G's 512; B reads pgd 1..2
#     and PMD@1G (512) + PMD@2G entry 0 (1); C* walk reads pgd 1, pmd 1.
# I: A first = 4M -> si 1, ei 2 (PTE@4M), reads pgd 1; B clear_page_range(4M,
#     8M + 4K - 1), reads pgd 1..2 (2); C* walk reads pgd 1.

CASE7_BEFORE = {"X": T([G1 - M2, G1], [0, G1], [0]), "X10": T([G1 - M2, G1], [0, G1]),
                "PAE": T([G1 - M2, G1]), "I": T([0, M4])}
CASE7_AFTER = {"X": T([G1 - M2], [0], [0]), "X10": T([G1 - M2], [0]), "PAE": T([G1 - M2]), "I": T([0])}
CASE7_FREED = {"X": {"pmd": 1, "pte": 1}, "X10": {"pmd": 1, "pte": 1}, "PAE": {"pte": 1}, "I": {"pte": 1}}
CASE7_READS = {
    ("X", "C"): {"pgd": 1 + 1, "pud": 1 + 1, "pmd": 1 + 1, "pte": 1},
    ("X", "B"): {"pgd": 1 + 2, "pud": 1 + 511, "pmd": 1 + 512, "pte": 1},
    ("X10", "A"): {"pgd": 1 + 1, "pmd": 1 + 512, "pte": 1},
    ("PAE", "A"): {"pgd": 1 + 1, "pmd": 1 + 512, "pte": 1},
    ("PAE", "B"): {"pgd": 1 + 2, "pmd": 1 + 513, "pte": 1},
    ("PAE", "C"): {"pgd": 1 + 1, "pmd": 1 + 1, "pte": 1},
    ("I", "A"): {"pgd": 1 + 1, "pte": 1},
    ("I", "B"): {"pgd": 1 + 2, "pte": 1},
    ("I", "C"): {"pgd": 1 + 1, "pte": 1},
}


@geo_params("X", "X10", "I", "PAE")
def test_case7_floor_on_boundary(era, geo):
    p = make(era, geo)
    edge = M4 if geo == "I" else G1
    anon(p, edge - K4, edge, "r--")
    anon(p, edge, edge + K4)
    touch(p, edge - K4, edge)
    expect(p, era, CASE7_BEFORE[geo])
    r, f = run(p, p.munmap, edge, K4)
    expect(p, era, CASE7_AFTER[geo])
    assert f == CASE7_FREED[geo]
    assert r == pick(CASE7_READS, era, geo)


# ===========================================================================
# Case 8: addr + PMD_SIZE wraps to 0 (32-bit geometry whose user space runs
# to the top; a unit test of the arithmetic, no real arch).
# ===========================================================================

def i386_4g() -> Geometry:
    """An i386-like 2-level geometry with TASK_SIZE 0xfffff000."""
    return Geometry(name="i386-4g", word_bits=32, page_shift=12,
                    levels=_levels(("pgd", 22, 1024, 4), ("pte", 12, 1024, 4)), task_size=0xFFFFF000)


def case8_process(era: str) -> Process:
    # L=[0x10000, 0x11000) (PTE@0), P=[0xffc00000, 0xffc01000) r--,
    # V=[0xffc01000, 0xffc02000) rw- (PTE@0xffc00000, shared with P)
    p = Process(era=era, arch=i386_4g())
    anon(p, 0x10000, 0x11000)
    anon(p, 0xFFC00000, 0xFFC01000, "r--")
    anon(p, 0xFFC01000, 0xFFC02000)
    touch(p, 0x10000, 0xFFC00000, 0xFFC01000)
    return p


@pytest.mark.parametrize("era", ALL)
def test_case8_addr_plus_pmd_wraps(era):
    # munmap V: floor 0xffc01000, no next.
    # C*: addr rd 0xffc00000 < floor -> addr + 4M = 2**32 wraps to 0 -> return:
    #     nothing freed, nothing walked (a walk from 0 would have freed PTE@0).
    # A:  first = rd(V, 4M) = 0xffc00000; prev.vm_end > first -> first =
    #     u(0xffc01000 + 4M - 1) = 0xfff; last = u(0xffc02000 + 4M - 1) =
    #     0x1fff; si = pgd_index(0xfff) = 0 = ei -> nothing.
    # B:  last = u(end + 4M - 1) = 0x1fff < end -> last = MM_VM_SIZE; whatever
    #     that is, no whole PTE table lies in [0xffc01000, ...): nothing freed.
    p = case8_process(era)
    n = calls(p)
    r, f = run(p, p.munmap, 0xFFC01000, K4)
    expect(p, era, T([0, 0xFFC00000]))
    assert f == {}
    if CLS[era] == "C":
        assert calls(p) == n + 1
    if era != B:
        assert r == {"pgd": 1, "pte": 1}        # the zap of V only


def test_case8_2_6_11_reads_only_the_zap():
    # B: last = u(0xffc02000 + 4M - 1) = 0x1fff < end -> last = MM_VM_SIZE =
    #    u(rd(0xfffff000 + 4M - 1, 4M)) = u(2**32) = 0; first = prev.vm_end =
    #    0xffc01000; last 0 < first -> return: only the zap's reads.  (Were
    #    MM_VM_SIZE taken as TASK_SIZE instead, rd(first, 4M) == rd(0xfffff000,
    #    4M) would stop it at the PMD early-out: the same reads.)
    p = case8_process(B)
    r, _ = run(p, p.munmap, 0xFFC01000, K4)
    assert r == {"pgd": 1, "pte": 1}


# ===========================================================================
# Case 9: PMD-granular (B, C*) vs PGDIR-granular (A).
# X-shape: P=[0x3fe000, 0x3ff000), V=[0x401000, 0x5ff000), N=[0x601000, +4K).
# I-shape: P=[0x3fe000, 0x3ff000), V=[0x401000, 0x7ff000), N=[0x801000, +4K).
# ===========================================================================
# C* X/PAE: addr 0x400000 >= floor 0x3ff000; ceiling rd 0x601000 = 0x600000;
#     end 0x5ff000 not trimmed; walk [0x400000, 0x5ff000) frees PTE@0x400000;
#     PMD@0 kept (0 < floor).  Reads pgd 1, (pud 1,) pmd 1.
# B X/PAE: first 0x3ff000, last = 0x601000: only [4M, 6M) covered ->
#     PTE@0x400000; reads pgd 1, (pud 1,) pmd entries 1..3 = 3.
# A X10/PAE: first = 0x3ff000 + 1G - 1 > last = 0x601000 -> nothing: the 2M
#     table stays until exit (left behind).
# I: A first = 0x400000 (prev.vm_end 0x3ff000 is below it), last = 0x801000
#     -> si 1, ei 2: PTE@0x400000, reads pgd 1.  B: first = rd(0x401000, 4M) =
#     0x400000 (prev.vm_end 0x3ff000 is not above it), clear_page_range(0x400000,
#     0x801000): PTE@0x400000, reads pgd 1..2 (2).  C*: walk [0x400000,
#     0x7ff000): PTE@0x400000, reads pgd 1.  "frees PTE page 0x400000 in A, B,
#     C alike".
# Zap of V: X {1, 1, 1, 510 ptes}; PAE/X10 {pgd 1, pmd 1, pte 510}; I
#     {pgd 1, pte 1022}.

CASE9_BEFORE = {"X": T([M2, M4, 3 * M2], [0], [0]), "X10": T([M2, M4, 3 * M2], [0]),
                "PAE": T([M2, M4, 3 * M2]), "I": T([0, M4, 2 * M4])}
CASE9_AFTER = {
    ("X", "*"): (T([M2, 3 * M2], [0], [0]), None, {"pte": 1}),
    ("X10", "A"): (T([M2, M4, 3 * M2], [0]), {"pte": [M4]}, {}),
    ("PAE", "A"): (T([M2, M4, 3 * M2]), {"pte": [M4]}, {}),
    ("PAE", "*"): (T([M2, 3 * M2]), None, {"pte": 1}),
    ("I", "*"): (T([0, 2 * M4]), None, {"pte": 1}),
}
CASE9_READS = {
    ("X", "C"): {"pgd": 1 + 1, "pud": 1 + 1, "pmd": 1 + 1, "pte": 510},
    ("X", "B"): {"pgd": 1 + 1, "pud": 1 + 1, "pmd": 1 + 3, "pte": 510},
    ("X10", "A"): {"pgd": 1, "pmd": 1, "pte": 510},
    ("PAE", "A"): {"pgd": 1, "pmd": 1, "pte": 510},
    ("PAE", "B"): {"pgd": 1 + 1, "pmd": 1 + 3, "pte": 510},
    ("PAE", "C"): {"pgd": 1 + 1, "pmd": 1 + 1, "pte": 510},
    ("I", "A"): {"pgd": 1 + 1, "pte": 1022},
    ("I", "B"): {"pgd": 1 + 2, "pte": 1022},
    ("I", "C"): {"pgd": 1 + 1, "pte": 1022},
}


@geo_params("X", "X10", "I", "PAE")
def test_case9_pmd_vs_pgdir_granular(era, geo):
    p = make(era, geo)
    if geo == "I":
        prv, v, nxt = (0x3FE000, 0x3FF000), (0x401000, 0x7FF000), (0x801000, 0x802000)
    else:
        prv, v, nxt = (0x3FE000, 0x3FF000), (0x401000, 0x5FF000), (0x601000, 0x602000)
    for s, e in (prv, v, nxt):
        anon(p, s, e)
    touch(p, prv[0], v[0], nxt[0])
    expect(p, era, CASE9_BEFORE[geo])
    r, f = run(p, p.munmap, v[0], v[1] - v[0])
    want, left, freed = pick(CASE9_AFTER, era, geo)
    expect(p, era, want, left)
    assert f == freed
    assert r == pick(CASE9_READS, era, geo)


# ===========================================================================
# Case 10: orphan page tables, and the exit check of each era.
# ===========================================================================

#: per C* era, (check, detail) of the check after exit_mmap for nr_ptes PTE
#: tables and left page-table bytes still counted.  FIRST_USER_ADDRESS is 0
#: on x86_64 and i386, so C allows (0 + PMD_SIZE - 1) >> PMD_SHIFT = 0.
EXIT_BUGS = {
    C1: lambda nr_ptes, left: ("BUG_ON(mm->nr_ptes)", f"nr_ptes is {nr_ptes} after exit_mmap"),
    C: lambda nr_ptes, left: ("BUG_ON(mm->nr_ptes > (FIRST_USER_ADDRESS+PMD_SIZE-1)>>PMD_SHIFT)",
                              f"nr_ptes is {nr_ptes} after exit_mmap, at most 0 allowed"),
    D: lambda nr_ptes, left: ("check_mm: non-zero pgtables_bytes on freeing mm", f"{left} bytes left"),
}


def exit_outcome(p: Process):
    """Run exit; return (KernelBug or None, reads, freed)."""
    p.mm.entries_examined.clear()
    before = dict(p.mm.tlb_stats.tables_freed)
    bug = None
    try:
        p.exit()
    except KernelBug as e:
        bug = e
    return bug, reads(p), freed_since(p, before)


@pytest.mark.parametrize("era, geo", [pytest.param(e, "X", id=f"{e}-X") for e in (B, C1, C, D)]
                         + [pytest.param(A, "X10", id=f"{A}-X10")])
def test_case10_vsyscall32_orphan(era, geo):
    # The literal case: a 32-bit task on x86_64 before Andi's fix, stack top
    # 0xc0000000, vsyscall page 0xffffe000 mapped by the fault handler with no
    # vma.  Stack S=[0xbffdf000, 0xc0000000) (33 pages, top page touched).
    # X tables: PUD@0; PMD@2G (S, PUD slot 2) and PMD@3G (vsyscall, slot 3);
    #    PTE@0xbfe00000 and PTE@0xffe00000.  Left behind: PMD@3G, PTE@0xffe00000.
    # X10: PMD@2G (pgd slot 2) and PMD@3G (slot 3); the same two PTE tables.
    p = make(era, geo)
    anon(p, 0xBFFDF000, 0xC0000000)
    touch(p, 0xBFFFF000)
    p.map_syscall32()
    if geo == "X":
        before = T([0xBFE00000, 0xFFE00000], [2 * G1, 3 * G1], [0])
        left = {"pmd": [3 * G1], "pte": [0xFFE00000]}
    else:
        before = T([0xBFE00000, 0xFFE00000], [2 * G1, 3 * G1])
        left = {"pmd": [3 * G1], "pte": [0xFFE00000]}
    expect(p, era, before, left)
    bug, r, f = exit_outcome(p)
    if era == B:
        # exit: clear_page_range(0, MM_VM_SIZE) covers everything: all freed.
        # zap S {pgd 1, pud 1, pmd 1, pte 33} + pgd 256, PUD@0's 512, the 512
        # of each of PMD@2G and PMD@3G.
        assert bug is None
        expect(p, era, {})
        assert f == {"pud": 1, "pmd": 2, "pte": 2}
        assert r == {"pgd": 1 + 256, "pud": 1 + 512, "pmd": 1 + 1024, "pte": 33}
        return
    if era == A:
        # exit: clear_page_tables(0, 511): every slot; zap {pgd 1, pmd 1, pte
        # 33} + 511 pgd entries + the 512 entries of each of the 2 PMD tables.
        assert bug is None
        expect(p, era, {})
        assert f == {"pmd": 2, "pte": 2}
        assert r == {"pgd": 1 + 511, "pmd": 1 + 1024, "pte": 33}
        return
    # C*: free_pgtables([S], floor 0, ceiling 0): fpr(0xbffdf000, 0xc0000000,
    # 0, 0) walks [0xbfe00000, 0xc0000000): PTE@0xbfe00000 freed, PMD@2G freed
    # (its slot lies in [0, top)), PUD@0 freed (0 >= floor, ceiling 0) -- which
    # strands PMD@3G and PTE@0xffe00000: unreachable, still counted.
    # nr_ptes 1 -> C1 BUG_ON(nr_ptes); C: 1 > (0 + 2M - 1) >> 21 = 0 -> BUG;
    # D: check_mm "non-zero pgtables_bytes" (PMD + PTE = 8192 bytes).
    assert isinstance(bug, KernelBug)
    assert (bug.check, bug.detail) == EXIT_BUGS[era](1, 8192)
    expect(p, era, {}, stranded={"pmd": 1, "pte": 1})
    assert f == {"pud": 1, "pmd": 1, "pte": 1}
    # zap {1, 1, 1, 33} + walk of [0xbfe00000, 0xc0000000): pgd 1, pud 1, pmd 1
    assert r == {"pgd": 2, "pud": 2, "pmd": 2, "pte": 33}


@pytest.mark.parametrize("era", (B, C1, C, D))
def test_case10_vsyscall_sharing_the_stack_pmd_slot(era):
    # kernel-notes 4.12: a stack ending at 0xffffe000 shares the PMD slot
    # [0xffe00000, 0x100000000) with the vsyscall page; the stack's exit walk
    # frees that PTE page: fpr(0xfffdd000, 0xffffe000, 0, 0) walks
    # [0xffe00000, 0xffffe000): PTE@0xffe00000, PMD@3G, PUD@0 -> all freed, no
    # BUG in any era (B's full walk frees them anyway).
    p = make(era, "X")
    anon(p, 0xFFFDD000, 0xFFFFE000)
    touch(p, 0xFFFFD000)
    p.map_syscall32()
    expect(p, era, T([0xFFE00000], [3 * G1], [0]))
    bug, _, f = exit_outcome(p)
    assert bug is None
    expect(p, era, {})
    assert f == {"pud": 1, "pmd": 1, "pte": 1}


@pytest.mark.parametrize("era", ALL)
def test_case10_orphan_and_exit_bug_i386(era):
    # V=[0x08048000, +4K) (PTE@0x08000000) and an orphan PTE@0x10000000 (no vma;
    # allocated as a fault handler without a vma would).
    # A: clear_page_tables(0, 768) and B: clear_page_range(0, 0xc0000000) free
    #    both; neither era checks nr_ptes -> no BUG.
    # C*: free_pgtables([V], 0/FUA=0, 0) frees PTE@0x08000000 only; orphan left
    #    -> nr_ptes 1: C1 BUG_ON(nr_ptes), C 1 > 0 -> BUG, D check_mm (4096 B).
    p = make(era, "I")
    anon(p, 0x08048000, 0x08049000)
    touch(p, 0x08048000)
    p.mm.alloc_tables(0x10000000, 0x10001000)
    expect(p, era, T([0x08000000, 0x10000000]), {"pte": [0x10000000]})
    bug, r, f = exit_outcome(p)
    if era in (A, B):
        assert bug is None
        expect(p, era, {})
        assert f == {"pte": 2}
        # zap {pgd 1, pte 1} + the 768 user pgd entries (A: slots [0, 768);
        # B: pgd_index(0) .. pgd_index(0xbfffffff))
        assert r == {"pgd": 1 + 768, "pte": 1}
    else:
        assert isinstance(bug, KernelBug)
        assert (bug.check, bug.detail) == EXIT_BUGS[era](1, 4096)
        expect(p, era, T([0x10000000]), {"pte": [0x10000000]})
        assert f == {"pte": 1}
        assert r == {"pgd": 1 + 1, "pte": 1}


@geo_params("X", "X10", "I", "PAE")
def test_case10_driver_orphan_until_exit(era, geo):
    # An orphan made the 2.6.10/2.6.11 way: a driver mmap fills tables and fails;
    # zap_page_range clears the ptes and frees no table.  X/X10/PAE: the driver
    # range [G1, G1 + 2M) (PTE@1G; on X also PMD@1G under PUD@0, on X10 PMD@1G
    # in pgd slot 1); I: [G1, G1 + 4M) (PTE@1G).  No vma at all.
    # A/B: the tables stay (left behind) and exit frees them, no BUG.
    # C*: unmap_region(floor 0/FUA, ceiling 0) frees them at once: nothing left.
    p = make(era, geo)
    dev = p.device("drv", fail=errno.EIO)
    length = M4 if geo == "I" else M2
    with pytest.raises(OSError) as exc:
        p.mmap(G1, length, "rw-", "shared,fixed", file=dev)
    assert exc.value.errno == errno.EIO
    assert p.vmas() == []
    if CLS[era] == "C":
        expect(p, era, {})
    else:
        orphan = {"X": T([G1], [G1], [0]), "X10": T([G1], [G1]), "I": T([G1]), "PAE": T([G1])}[geo]
        expect(p, era, orphan, left=orphan)
    bug, _, _ = exit_outcome(p)
    assert bug is None
    expect(p, era, {})


@pytest.mark.parametrize("era", (B, C1, C, D))
def test_case10_orphan_stranded_under_freed_pmd(era):
    # V=[BASE, BASE+4K) (PTE@BASE, PMD@BASE, PUD@BASE) and an orphan PTE@BASE+4M.
    # munmap V (no neighbours):
    # C*: fpr(BASE, BASE+4K, 0, 0): PTE@BASE freed, PMD@BASE freed (its 1G slot
    #     lies in [0, top)) -- stranding the orphan PTE@BASE+4M --, PUD@BASE freed.
    # B:  first = rd(BASE, 512G) = BASE, last = BASE + 4K + 512G - 1:
    #     clear_page_range(BASE, ...) covers [BASE, BASE+512G): the orphan, PTE@BASE,
    #     PMD@BASE and PUD@BASE all freed bottom-up, nothing stranded.
    p = make(era, "X")
    anon(p, BASE, BASE + K4)
    touch(p, BASE)
    p.mm.alloc_tables(BASE + M4, BASE + M4 + K4)
    expect(p, era, T([BASE, BASE + M4], [BASE], [BASE]), {"pte": [BASE + M4]})
    r, f = run(p, p.munmap, BASE, K4)
    if era == B:
        expect(p, era, {})
        assert f == {"pud": 1, "pmd": 1, "pte": 2}
        # zap {1, 1, 1, 1} + pgd 32..33 (2), all of PUD@BASE (512), all of PMD@BASE (512)
        assert r == {"pgd": 1 + 2, "pud": 1 + 512, "pmd": 1 + 512, "pte": 1}
        assert exit_outcome(p)[0] is None
    else:
        expect(p, era, {}, stranded={"pte": 1})
        assert f == {"pud": 1, "pmd": 1, "pte": 1}
        assert r == {"pgd": 2, "pud": 2, "pmd": 2, "pte": 1}
        # the stranded PTE table: nr_ptes 1, and 4096 bytes for D's check_mm
        bug = exit_outcome(p)[0]
        assert isinstance(bug, KernelBug)
        assert (bug.check, bug.detail) == EXIT_BUGS[era](1, 4096)


# ===========================================================================
# Case 11: gather threshold and what lies in the gap.
# ===========================================================================

@pytest.mark.parametrize("era", (B, C1, C, D))
@pytest.mark.parametrize("gathered", [True, False])
def test_case11_gather_x86_64(era, gathered):
    # Av=[BASE, BASE+2M), Bv=[BASE+4M, BASE+5M) (or [BASE+4M+4K, BASE+5M+4K)),
    # orphan PTE@BASE+2M, survivor N=[BASE+512M, +4K).  munmap [BASE, Bv.end).
    # Gap exactly PMD_SIZE: Bv.start <= Av.end + 2M -> one group:
    #   C*: fpr(BASE, BASE+5M, 0, BASE+512M): ceiling rd 2M = BASE+512M, walk
    #       [BASE, BASE+5M) frees PTE@BASE, the orphan PTE@BASE+2M, PTE@BASE+4M;
    #       PMD@BASE: rd(BASE+512M, 1G) = BASE -> end-1 > ceiling-1 -> kept.
    #       Walk reads pgd 1, pud 1, pmd entries 0..2 (3).
    # Gap PMD_SIZE + 4K: two groups:
    #   C*: fpr(BASE, BASE+2M, 0, BASE+4M+4K) frees PTE@BASE (walk 1, 1, 1);
    #       fpr(BASE+4M+4K, BASE+5M+4K, 0, BASE+512M): addr rd BASE+4M, frees
    #       PTE@BASE+4M (walk 1, 1, 1).  Nobody walks [BASE+2M, BASE+4M): the
    #       orphan stays, left behind.
    # B (both): first = BASE (no prev), last = min(end + 512G - 1, BASE+512M) =
    #   BASE+512M; clear_page_range(BASE, BASE+512M) covers every 2M slot there:
    #   the three PTE tables go, orphan included; reads pgd 1, pud 1, pmd
    #   entries 0..255 (256).  PMD@BASE [BASE, BASE+1G) not covered: kept.
    # Zap: Av {1, 1, 1, 512 ptes} + Bv {1, 1, 1, 256 ptes}.
    p = make(era, "X")
    bv = BASE + M4 + (0 if gathered else K4)
    anon(p, BASE, BASE + M2)
    anon(p, bv, bv + M1)
    anon(p, BASE + 512 * M1, BASE + 512 * M1 + K4)
    touch(p, BASE, bv, BASE + 512 * M1)
    p.mm.alloc_tables(BASE + M2, BASE + M2 + K4)
    expect(p, era, T([BASE, BASE + M2, BASE + M4, BASE + 512 * M1], [BASE], [BASE]), {"pte": [BASE + M2]})
    n = calls(p)
    r, f = run(p, p.munmap, BASE, bv + M1 - BASE)
    # the zap alone reads {"pgd": 2, "pud": 2, "pmd": 2, "pte": 768}
    if era == B or gathered:
        expect(p, era, T([BASE + 512 * M1], [BASE], [BASE]))
        assert f == {"pte": 3}
    else:
        expect(p, era, T([BASE + M2, BASE + 512 * M1], [BASE], [BASE]), {"pte": [BASE + M2]})
        assert f == {"pte": 2}
    if era == B:
        assert r == {"pgd": 2 + 1, "pud": 2 + 1, "pmd": 2 + 256, "pte": 768}
    elif gathered:
        assert calls(p) == n + 1
        assert r == {"pgd": 2 + 1, "pud": 2 + 1, "pmd": 2 + 3, "pte": 768}
    else:
        assert calls(p) == n + 2
        assert r == {"pgd": 2 + 2, "pud": 2 + 2, "pmd": 2 + 2, "pte": 768}


@pytest.mark.parametrize("era", ALL)
@pytest.mark.parametrize("gathered", [True, False])
def test_case11_gather_i386(era, gathered):
    # I (4M PMD): BI = 0x20000000 (pgd slot 128).  Av=[BI, BI+4M),
    # Bv=[BI+8M, BI+10M) (or +4K), orphan PTE@BI+4M, no survivor; munmap
    # [BI, Bv.end).
    # Gathered (gap = 4M = PMD_SIZE): C*: fpr(BI, BI+10M, 0, 0) frees all three,
    #   walk reads pgd 128..130 (3).
    # Not gathered: C*: fpr(BI, BI+4M, 0, BI+8M+4K) frees PTE@BI (ceiling rd
    #   BI+8M, no trim), fpr(BI+8M+4K, BI+10M+4K, 0, 0) frees PTE@BI+8M; the
    #   orphan PTE@BI+4M stays.  Reads pgd 1 + 1.
    # A (both): first = BI, last = Bv.end + 4M - 1 (BI+14M-1 or BI+14M+4K-1):
    #   si 128, ei 131 -> slots 128..130 cleared: all three, orphan included;
    #   reads pgd 3.
    # B (both): clear_page_range(BI, last): [BI, BI+12M) covered -> all three;
    #   reads pgd 128..131 (4).
    # Zap: Av {pgd 1, pte 1024} + Bv {pgd 1, pte 512}.
    bi = 0x20000000
    p = make(era, "I")
    bv = bi + 8 * M1 + (0 if gathered else K4)
    anon(p, bi, bi + M4)
    anon(p, bv, bv + M2)
    touch(p, bi, bv)
    p.mm.alloc_tables(bi + M4, bi + M4 + K4)
    expect(p, era, T([bi, bi + M4, bi + 2 * M4]), {"pte": [bi + M4]})
    r, f = run(p, p.munmap, bi, bv + M2 - bi)
    zap_pgd = 2
    if CLS[era] == "C" and not gathered:
        expect(p, era, T([bi + M4]), {"pte": [bi + M4]})
        assert f == {"pte": 2}
        assert r == {"pgd": zap_pgd + 2, "pte": 1536}
        return
    expect(p, era, {})
    assert f == {"pte": 3}
    assert r == {"pgd": zap_pgd + {"A": 3, "B": 4, "C": 3}[CLS[era]], "pte": 1536}


# ===========================================================================
# Case 12: intermediate group ceiling, global floor (exit on x86_64).
# ===========================================================================

@pytest.mark.parametrize("era", (B, C1, C, D))
def test_case12_exit_groups_x86_64(era):
    # G1=[0x400000, 0x600000), G2=[5G, 5G+4K) (pgd slot 0 like G1, PUD slot 5),
    # G3=[TS-4K, TS) (pgd slot 255).  (The notes' literal G2 0x2aaaaaaab000 is
    # in pgd slot 85, where G1 would free PUD@0 itself; 5G puts G2 in slot 0.)
    # C*: G1: fpr(4M, 6M, 0, 5G): PTE@4M; PMD@0 (rd(5G, 1G) = 5G >= end);
    #       PUD@0 kept: rd(5G, 512G) = 0 -> "rounded to 0".
    #     G2: fpr(5G, 5G+4K, 0 (global floor), TS-4K): PTE@5G, PMD@5G and PUD@0
    #       (0 >= floor 0, rd(TS-4K, 512G) = TOP_PUD >= end).
    #     G3: fpr(TS-4K, TS, 0, 0): PTE, PMD, PUD at the top.
    #     3 calls, all freed, nothing stranded; walks read {1, 1, 1} each.
    # B: clear_page_range(0, 0x800000000000): all freed; reads pgd 256, the 512
    #     entries of each of the 2 PUD tables and of the 3 PMD tables.
    # Zap: G1 {1, 1, 1, 512} + G2 {1, 1, 1, 1} + G3 {1, 1, 1, 1}.
    p = make(era, "X")
    g2 = 5 * G1
    for s, e in ((0x400000, 0x600000), (g2, g2 + K4), (TS - K4, TS)):
        anon(p, s, e)
        touch(p, s)
    expect(p, era, T([0x400000, g2, TOP_PTE], [0, g2, TOP_PMD], [0, TOP_PUD]))
    n = calls(p)
    bug, r, f = exit_outcome(p)
    assert bug is None
    expect(p, era, {})
    assert f == {"pud": 2, "pmd": 3, "pte": 3}
    if era == B:
        assert r == {"pgd": 3 + 256, "pud": 3 + 1024, "pmd": 3 + 1536, "pte": 514}
    else:
        assert calls(p) == n + 3
        assert r == {"pgd": 6, "pud": 6, "pmd": 6, "pte": 514}


def test_case12_exit_2_6_10_x86_64():
    # X10 layout: G1=[0x400000, 0x600000), G2=[5G, 5G+4K), G3=[0x7fbffff000,
    # 0x7fc0000000): PMD@0, PMD@5G, PMD@0x7f80000000 (pgd slots 0, 5, 510).
    # exit: clear_page_tables(0, 511): all freed; reads 511 pgd entries + the
    # 512 entries of each of the 3 PMD tables; zap {pgd 3, pmd 3, pte 514}.
    p = make(A, "X10")
    top = 0x7FC0000000
    for s, e in ((0x400000, 0x600000), (5 * G1, 5 * G1 + K4), (top - K4, top)):
        anon(p, s, e)
        touch(p, s)
    expect(p, A, T([0x400000, 5 * G1, top - M2], [0, 5 * G1, top - G1]))
    bug, r, f = exit_outcome(p)
    assert bug is None
    expect(p, A, {})
    assert f == {"pmd": 3, "pte": 3}
    assert r == {"pgd": 3 + 511, "pmd": 3 + 1536, "pte": 514}


# ===========================================================================
# Case 13: ARM's first PMD (FIRST_USER_ADDRESS 4096, vector PTE page).
# ===========================================================================

@pytest.mark.parametrize("era", ALL)
def test_case13_arm_first_pmd(era):
    # A fresh ARM mm already holds the vector PTE table PTE@0 (get_pgd_slow,
    # nr_ptes 1).  Only vma V=[0x8000, 0x9000), touched (PTE@0 again), then
    # munmapped, no prev/next.
    # C/D (floor FIRST_USER_ADDRESS 4096): addr rd 0 < 4096 -> 2M > end - 1 ->
    #     nothing: the vector page survives.
    # C1 (floor 0): walk [0, 0x9000) frees PTE@0 -- the vectors' table -- the
    #     bug freepgt2 fixed; reads pgd 1.
    # B: first = rd(0x8000, 2M) = 0 clamped to FIRST_USER_PGD_NR * PGDIR = 2M;
    #     last = 0x9000 + 2M - 1 = 0x208fff; rd both to 2M -> early-out.
    # A: si = max(0, FIRST_USER_PGD_NR 1) = 1, ei = pgd_index(0x208fff) = 1.
    # Zap of V: {pgd 1, pte 1}.
    p = Process(era=era, arch="arm")
    assert p.geom.first_user_address == 4096 and p.geom.PMD_SIZE == M2
    assert tree(p) == T([0]) and p.nr_ptes == 1
    anon(p, 0x8000, 0x9000)
    touch(p, 0x8000)
    r, f = run(p, p.munmap, 0x8000, K4)
    if era == C1:
        assert tree(p) == {} and p.nr_ptes == 0
        assert f == {"pte": 1}
        assert r == {"pgd": 1 + 1, "pte": 1}
    else:
        assert tree(p) == T([0]) and p.nr_ptes == 1
        assert f == {}
        assert r == {"pgd": 1, "pte": 1}
    if era == D:
        return  # modern ARM vector-page accounting at mm teardown: notes §9, unverified
    # exit: C allows nr_ptes <= (4096 + 2M - 1) >> 21 = 1; C1 has nothing left;
    # A's clear_page_tables starts at FIRST_USER_PGD_NR 1 and B's
    # clear_page_range at 2M: PTE@0 stays for pgd_free.
    assert exit_outcome(p)[0] is None
    assert tree(p) == ({} if era == C1 else T([0]))


@pytest.mark.parametrize("era", (C1, C))
def test_case13_arm_exit_walk(era):
    # exit with V=[0x8000, 0x9000) still mapped: free_pgtables([V], floor, 0).
    # C1 floor 0: walk [0, 0x9000) frees the vector table -> nr_ptes 0, no BUG
    #   (but the vectors are gone).  C floor 4096: nothing freed, nr_ptes 1 is
    #   exactly what the relaxed BUG_ON allows.
    p = Process(era=era, arch="arm")
    anon(p, 0x8000, 0x9000)
    touch(p, 0x8000)
    bug, _, f = exit_outcome(p)
    assert bug is None
    if era == C1:
        assert f == {"pte": 1} and tree(p) == {} and p.nr_ptes == 0
    else:
        assert f == {} and tree(p) == T([0]) and p.nr_ptes == 1


@pytest.mark.parametrize("era", (A, B, C1, C))
def test_case13_arm_exact_bug_on(era):
    # The only vma far from the first PMD: V=[0x10000000, +4K).  Exit:
    # C1: free_pgtables([V], 0, 0) walks [0x10000000, 0x10001000) only; the
    #     vector table PTE@0 stays -> nr_ptes 1 -> the exact BUG_ON(nr_ptes)
    #     fires (what freepgt2 1/6 relaxed).
    # C:  the same table stays; 1 <= (4096 + 2M - 1) >> 21 = 1 -> no BUG.
    # A/B: no nr_ptes check (their walks skip pgd slot 0 / [0, 2M)).
    p = Process(era=era, arch="arm")
    anon(p, 0x10000000, 0x10001000)
    touch(p, 0x10000000)
    bug, _, f = exit_outcome(p)
    assert f == {"pte": 1}
    assert tree(p) == T([0]) and p.nr_ptes == 1
    if era == C1:
        assert isinstance(bug, KernelBug) and bug.check == "BUG_ON(mm->nr_ptes)"
    else:
        assert bug is None


# ===========================================================================
# Case 14: hugetlb neighbours (needs a hugetlb mapping in the model).
# ===========================================================================

@pytest.mark.parametrize("era", [C, D])
def test_case14_x86_hugetlb_gathering(era):
    # N=[BASE, BASE+4K) and a hugetlb H=[BASE+2M, BASE+4M), munmapped together,
    # no survivors.  C: hugetlb vmas are ordinary for free_pgtables on x86:
    # H.start <= N.end + 2M -> one group, one call.  D: is_vm_hugetlb_page
    # vmas are never gathered -> two calls.  Either way nothing is left.
    p = make(era, "X")
    anon(p, BASE, BASE + K4)
    touch(p, BASE)
    p.mmap(BASE + M2, M2, "rw-", "private,anon,fixed,hugetlb")
    p.touch(BASE + M2, K4, "w")
    n = calls(p)
    p.munmap(BASE, M4)
    assert tree(p) == {}
    assert calls(p) == n + (1 if era == C else 2)


def test_case14_ia64_hugetlb_never_gathered():
    # ia64 C: N in region 3, H in region 4 (REGION_HPAGE); munmap H alone
    # (prev N survives): hugetlb_free_pgd_range scales addr/end, the region-3
    # floor stays unscaled -> H's tables go, N's stay exactly as before H.
    p = Process(era=C, arch="ia64")
    r3, r4 = 0x6000000000000000, 0x8000000000000000
    hp = p.geom.HPAGE_SIZE
    anon(p, r3 + 0x100000, r3 + 0x104000)
    touch(p, r3 + 0x100000)
    before = tree(p)
    p.mmap(r4, hp, "rw-", "private,anon,fixed,hugetlb")
    p.touch(r4, 1, "w")
    n = calls(p)
    p.munmap(r4, hp)
    assert calls(p) == n + 1
    assert tree(p) == before


def test_case14_ppc64_huge_call_is_a_noop():
    # ppc64 C: N=[512G, 512G+4K) and a hugetlb H=[1T, 1T+16M) in the
    # hugepage-only area, munmapped together, no survivors.
    # N's group: fpr(N, N+4K, 0, H.start): PTE@512G freed; its PMD table (span
    #   2G = PGDIR): rd(H.start, 2G) = 1T >= end -> freed.  One call.
    # H: hugetlb_free_pgd_range is a no-op on ppc64: its separately kept huge
    #   tables stay until destroy_context.
    p = Process(era=C, arch="ppc64")
    n0, h = 0x8000000000, 0x10000000000
    hp = p.geom.HPAGE_SIZE
    anon(p, n0, n0 + K4)
    touch(p, n0)
    p.mmap(h, hp, "rw-", "private,anon,fixed,hugetlb")
    p.touch(h, 1, "w")
    assert tree(p) == T([n0], [n0])
    # hugepgd_alloc makes the huge pgdir; the one 16M huge page needs one
    # hugepte page (each spans 2**(24 + 12 - 3) = 8G)
    huge = dict(p.mm.huge_tables)
    assert huge == {"huge_pgdir": 1, "hugepte": 1}
    n = calls(p)
    p.munmap(n0, h + hp - n0)
    assert tree(p) == {}
    assert calls(p) == n + 1
    assert p.mm.huge_tables == huge


# ===========================================================================
# Case 15: what exit reads.  Vmas only at the bottom and the top of user space.
# ===========================================================================

CASE15 = {
    # X: V1=[0x400000, +4K), V2=[TS-4K, TS): PUD@0, PMD@0, PTE@4M, and the top
    # three.  Zap {pgd 2, pud 2, pmd 2, pte 2}.
    # C*: two groups (far apart), each walk {1, 1, 1}.
    # B: clear_page_range(0, 0x800000000000): pgd 0..255 (256), 2 PUD tables x
    #    512, 2 PMD tables x 512: every entry of every present table.
    ("X", "C"): {"pgd": 2 + 2, "pud": 2 + 2, "pmd": 2 + 2, "pte": 2},
    ("X", "B"): {"pgd": 2 + 256, "pud": 2 + 1024, "pmd": 2 + 1024, "pte": 2},
    # X10: V2=[0x7fbffff000, 0x7fc0000000): A clear_page_tables(0, 511): 511
    #    pgd entries + 2 PMD tables x 512.
    ("X10", "A"): {"pgd": 2 + 511, "pmd": 2 + 1024, "pte": 2},
    # I: V1=[0x08048000, +4K), V2=[0xbffff000, 0xc0000000): zap {pgd 2, pte 2};
    #    A: 768 pgd entries (clear_page_tables(0, 768)); B: pgd 0..767 (768).
    ("I", "A"): {"pgd": 2 + 768, "pte": 2},
    ("I", "B"): {"pgd": 2 + 768, "pte": 2},
    ("I", "C"): {"pgd": 2 + 2, "pte": 2},
    # PAE: zap {pgd 2, pmd 2, pte 2}; A: 3 pgd entries + the 3 preallocated
    #    PMD tables x 512 (all present); B: pgd 0..2 + the same 1536.
    ("PAE", "A"): {"pgd": 2 + 3, "pmd": 2 + 1536, "pte": 2},
    ("PAE", "B"): {"pgd": 2 + 3, "pmd": 2 + 1536, "pte": 2},
    ("PAE", "C"): {"pgd": 2 + 2, "pmd": 2 + 2, "pte": 2},
}
CASE15_FREED = {"X": {"pud": 2, "pmd": 2, "pte": 2}, "X10": {"pmd": 2, "pte": 2},
                "I": {"pte": 2}, "PAE": {"pte": 2}}


@geo_params("X", "X10", "I", "PAE")
def test_case15_exit_cost(era, geo):
    p = make(era, geo)
    if geo in ("X",):
        low, top = 0x400000, TS
    elif geo == "X10":
        low, top = 0x400000, 0x7FC0000000
    else:
        low, top = 0x08048000, 0xC0000000
    anon(p, low, low + K4)
    anon(p, top - K4, top)
    touch(p, low, top - K4)
    bug, r, f = exit_outcome(p)
    assert bug is None
    expect(p, era, {})
    assert f == CASE15_FREED[geo]
    assert r == pick(CASE15, era, geo)
    if geo == "PAE":
        assert p.mm.pt.count("pmd") == 3        # the PMD pages wait for pgd_free


# ===========================================================================
# Case 16: end exactly on a PMD boundary equal to the rounded ceiling.
# X-shape: V=[4M, 6M), N=[6.5M, +4K).  I-shape: V=[8M, 12M), N=[13M, +4K).
# ===========================================================================
# C* X/PAE: ceiling rd 6.5M = 6M; end - 1 = 6M - 1 not > 6M - 1 -> no trim;
#     walk [4M, 6M) frees PTE@4M; PMD@0: rd(6.5M, 1G) = 0 -> kept.
# B X/PAE: first 0 (no prev), last = min(6M + PGDIR - 1, 6.5M) = 6.5M: covers
#     [4M, 6M) -> PTE@4M; reads pgd 1, (pud 1,) pmd entries 0..3 (4).
# A X10/PAE: first 0, last 6.5M -> ei = 0 = si: nothing; PTE@4M left behind.
# I: A first 8M, last = min(12M + 4M - 1, 13M) = 13M -> si 2, ei 3: PTE@8M;
#     B clear_page_range(8M, 13M): PTE@8M, reads pgd 2..3 (2); C* walk
#     [8M, 12M): PTE@8M, reads pgd 1.

CASE16_BEFORE = {"X": T([M4, 6 * M1], [0], [0]), "X10": T([M4, 6 * M1], [0]),
                 "PAE": T([M4, 6 * M1]), "I": T([8 * M1, 12 * M1])}
CASE16_AFTER = {
    ("X", "*"): (T([6 * M1], [0], [0]), None, {"pte": 1}),
    ("X10", "A"): (T([M4, 6 * M1], [0]), {"pte": [M4]}, {}),
    ("PAE", "A"): (T([M4, 6 * M1]), {"pte": [M4]}, {}),
    ("PAE", "*"): (T([6 * M1]), None, {"pte": 1}),
    ("I", "*"): (T([12 * M1]), None, {"pte": 1}),
}
CASE16_READS = {
    ("X", "C"): {"pgd": 1 + 1, "pud": 1 + 1, "pmd": 1 + 1, "pte": 512},
    ("X", "B"): {"pgd": 1 + 1, "pud": 1 + 1, "pmd": 1 + 4, "pte": 512},
    ("X10", "A"): {"pgd": 1, "pmd": 1, "pte": 512},
    ("PAE", "A"): {"pgd": 1, "pmd": 1, "pte": 512},
    ("PAE", "B"): {"pgd": 1 + 1, "pmd": 1 + 4, "pte": 512},
    ("PAE", "C"): {"pgd": 1 + 1, "pmd": 1 + 1, "pte": 512},
    ("I", "A"): {"pgd": 1 + 1, "pte": 1024},
    ("I", "B"): {"pgd": 1 + 2, "pte": 1024},
    ("I", "C"): {"pgd": 1 + 1, "pte": 1024},
}


@geo_params("X", "X10", "I", "PAE")
def test_case16_end_on_rounded_ceiling(era, geo):
    p = make(era, geo)
    if geo == "I":
        v, nxt = (8 * M1, 12 * M1), (13 * M1, 13 * M1 + K4)
    else:
        v, nxt = (4 * M1, 6 * M1), (6 * M1 + 512 * 1024, 6 * M1 + 512 * 1024 + K4)
    anon(p, *v)
    anon(p, *nxt)
    touch(p, v[0], nxt[0])
    expect(p, era, CASE16_BEFORE[geo])
    r, f = run(p, p.munmap, v[0], v[1] - v[0])
    want, left, freed = pick(CASE16_AFTER, era, geo)
    expect(p, era, want, left)
    assert f == freed
    assert r == pick(CASE16_READS, era, geo)


# ===========================================================================
# Case 17: i386 PAE: PMD pages are never freed (pud_clear/pmd_free_tlb no-ops)
# ===========================================================================

@pytest.mark.parametrize("era", ALL)
def test_case17_pae_pmd_pages_stay(era):
    # Lone V=[1G, 1G+4K).  Every era frees PTE@1G and no PMD page:
    # A: first 1G, last 2G + 4K - 1 -> slot 1: reads pgd 1 + PMD@1G's 512.
    # B: clear_page_range(1G, 2G + 4K - 1): covers PMD@1G's slot (a no-op free);
    #    reads pgd 1..2 (2), PMD@1G 512 + PMD@2G entry 0 (1).
    # C*: fpr(1G, 1G+4K, 0, 0): may_free for PMD@1G passes, with no effect;
    #    walk reads pgd 1, pmd 1.
    # Zap {pgd 1, pmd 1, pte 1}.
    p = make(era, "PAE")
    anon(p, G1, G1 + K4)
    touch(p, G1)
    expect(p, era, T([G1]))
    r, f = run(p, p.munmap, G1, K4)
    expect(p, era, {})
    assert f == {"pte": 1}
    assert p.mm.pt.count("pmd") == 3
    assert r == {"A": {"pgd": 2, "pmd": 513, "pte": 1}, "B": {"pgd": 3, "pmd": 514, "pte": 1},
                 "C": {"pgd": 2, "pmd": 2, "pte": 1}}[CLS[era]]
    assert exit_outcome(p)[0] is None
    assert p.mm.pt.count("pmd") == 3 and p.nr_ptes == 0


# ===========================================================================
# Case 18: munmap of nothing / of length 0.
# ===========================================================================

@geo_params("X", "X10", "I", "PAE")
def test_case18_munmap_nothing(era, geo):
    # len 0 -> EINVAL; a range holding no vma -> do_munmap returns 0 before
    # touching any table (all eras) -- even an orphan table in that range stays,
    # and nothing is read or walked.  V=[0x400000, +4K); orphan at 1G.
    p = make(era, geo)
    anon(p, 0x400000, 0x401000)
    touch(p, 0x400000)
    p.mm.alloc_tables(G1, G1 + K4)
    before, left = tree(p), left_behind(p)
    assert left == {"X": {"pmd": [G1], "pte": [G1]}, "X10": {"pmd": [G1], "pte": [G1]},
                    "I": {"pte": [G1]}, "PAE": {"pte": [G1]}}[geo]
    with pytest.raises(OSError) as exc:
        p.munmap(0x400000, 0)
    assert exc.value.errno == errno.EINVAL
    n = calls(p)
    r, f = run(p, p.munmap, G1, M4)
    assert (r, f, calls(p)) == ({}, {}, n)
    assert tree(p) == before and left_behind(p) == left


# ===========================================================================
# Case 19: do_mmap_pgoff driver failure.
# ===========================================================================

CASE19 = {
    # X: P=[BASE, BASE+4K), N=[BASE+6M+4K, +4K), driver [BASE+8K, BASE+6M)
    # fills PTE@BASE (shared with P), PTE@BASE+2M, PTE@BASE+4M, then fails.
    # C*: unmap_region(floor BASE+4K, ceiling BASE+6M+4K): addr rd BASE < floor
    #     -> BASE+2M; ceiling rd BASE+6M = end: walk [BASE+2M, BASE+6M) frees
    #     PTE@BASE+2M, PTE@BASE+4M; PMD@BASE kept (BASE < floor).  Walk reads
    #     {1, 1, 2}; zap of the device range reads {1, 1, 3, 1534}.
    # B: zap_page_range only: both stay, left behind.
    # Later munmap N: C*: fpr(N, floor BASE+4K, 0) frees PTE@BASE+6M;
    #     B: first = max(rd(N, 512G) = BASE, prev.vm_end BASE+4K) = BASE+4K,
    #     last = N.end + 512G - 1: clear_page_range frees the two orphans and
    #     PTE@BASE+6M (their 2M slots lie inside).
    "X": dict(base=BASE, drv=(BASE + 2 * K4, BASE + 6 * M1), nxt=(BASE + 6 * M1 + K4, BASE + 6 * M1 + 2 * K4),
              before=T([BASE, BASE + 6 * M1], [BASE], [BASE]),
              orphans=[BASE + M2, BASE + M4],
              upper=dict(pmd=[BASE], pud=[BASE]),
              reads={"C": {"pgd": 2, "pud": 2, "pmd": 5, "pte": 1534},
                     "B": {"pgd": 1, "pud": 1, "pmd": 3, "pte": 1534}},
              after_n={"B": [BASE], "C": [BASE]}),
    # X10 (A): same shape at 1G (pgd slot 1).  munmap N: first = rd(N, 1G) =
    #     1G; prev.vm_end 1G+4K > 1G -> first = 1G + 4K + 1G - 1 (slot 2),
    #     last = N.end + 1G - 1 (slot 2): nothing; PTE@1G+6M joins the orphans.
    "X10": dict(base=G1, drv=(G1 + 2 * K4, G1 + 6 * M1), nxt=(G1 + 6 * M1 + K4, G1 + 6 * M1 + 2 * K4),
                before=T([G1, G1 + 6 * M1], [G1]),
                orphans=[G1 + M2, G1 + M4],
                upper=dict(pmd=[G1]),
                reads={"A": {"pgd": 1, "pmd": 3, "pte": 1534}},
                after_n={"A": [G1, G1 + M2, G1 + M4, G1 + 6 * M1]}),
    # I: P=[4M, 4M+4K), driver [8M, 16M) (PTE@8M, PTE@12M), N=[20M, +4K).
    # C*: unmap_region(floor 4M+4K, ceiling 20M): walk [8M, 16M) frees both;
    #     reads zap {pgd 2, pte 2048} + walk {pgd 2}.
    # A/B: both stay.  munmap N: A: first = rd(20M, 4M) = 20M (prev.vm_end 4M+4K
    #     is below it), last = 24M + 4K - 1 -> slot 5 only: PTE@20M; B: first =
    #     20M likewise, clear_page_range(20M, 24M + 4K - 1): PTE@20M only.  The
    #     orphans of slots 2 and 3 wait for exit in both.
    "I": dict(base=M4, drv=(8 * M1, 16 * M1), nxt=(20 * M1, 20 * M1 + K4),
              before=T([M4, 20 * M1]),
              orphans=[8 * M1, 12 * M1],
              upper={},
              reads={"C": {"pgd": 4, "pte": 2048}, "A": {"pgd": 2, "pte": 2048}, "B": {"pgd": 2, "pte": 2048}},
              after_n={"A": [M4, 8 * M1, 12 * M1], "B": [M4, 8 * M1, 12 * M1], "C": [M4]}),
    # PAE: the same addresses, 2M tables: the driver fills PTE@8M, 10M, 12M, 14M.
    # C*: walk [8M, 16M) frees all four; reads zap {pgd 1, pmd 4, pte 2048} +
    #     walk {pgd 1, pmd 4}.
    # munmap N: A: first = 4M + 4K + 1G - 1 (slot 1), last = 20M + 4K + 1G - 1
    #     (slot 1): nothing -- PTE@20M is left behind too.  B: first = prev.vm_end
    #     4M+4K, last = 20M + 4K + 1G - 1: the four orphans and PTE@20M go.
    "PAE": dict(base=M4, drv=(8 * M1, 16 * M1), nxt=(20 * M1, 20 * M1 + K4),
                before=T([M4, 20 * M1]),
                orphans=[8 * M1, 10 * M1, 12 * M1, 14 * M1],
                upper={},
                reads={"C": {"pgd": 2, "pmd": 8, "pte": 2048}, "A": {"pgd": 1, "pmd": 4, "pte": 2048},
                       "B": {"pgd": 1, "pmd": 4, "pte": 2048}},
                after_n={"A": [M4, 8 * M1, 10 * M1, 12 * M1, 14 * M1, 20 * M1], "B": [M4], "C": [M4]}),
}


@geo_params("X", "X10", "I", "PAE")
def test_case19_driver_failure(era, geo):
    cfg = CASE19[geo]
    base, (d0, d1), nxt = cfg["base"], cfg["drv"], cfg["nxt"]
    p = make(era, geo)
    anon(p, base, base + K4)
    anon(p, *nxt)
    touch(p, base, nxt[0])
    expect(p, era, cfg["before"])
    dev = p.device("drv", fail=errno.EIO)
    p.mm.entries_examined.clear()
    f0 = dict(p.mm.tlb_stats.tables_freed)
    with pytest.raises(OSError) as exc:
        p.mmap(d0, d1 - d0, "rw-", "shared,fixed", file=dev)
    assert exc.value.errno == errno.EIO
    r, f = reads(p), freed_since(p, f0)
    assert p.mm.pt.ptes.totals.get(3, 0) == 0      # no pfn pte survives the undo
    upper = cfg["upper"]
    if CLS[era] == "C":
        # freed at once, bounded by the real neighbours
        expect(p, era, cfg["before"])
        assert f == {"pte": len(cfg["orphans"])}
    else:
        # zap_page_range frees no table: the driver's tables stay until exit
        # (or a munmap gap covering them)
        want = T(sorted(cfg["before"]["pte"] + cfg["orphans"]), **upper)
        expect(p, era, want, {"pte": cfg["orphans"]})
        assert f == {}
    assert r == cfg["reads"][CLS[era]]
    # a later munmap of N
    p.munmap(*(nxt[0], nxt[1] - nxt[0]))
    after = cfg["after_n"][CLS[era]]
    lonely = [a for a in after if a != base]
    expect(p, era, T(after, **upper), {"pte": lonely} if lonely else None)
    bug, _, _ = exit_outcome(p)
    assert bug is None
    expect(p, era, {})


# ===========================================================================
# Case 20: 2.6.11's `last` bound near the top of a 64-bit user space (sparc64)
# ===========================================================================

@pytest.mark.parametrize("era", (A, B, C))
def test_case20_sparc64_last_near_task_size(era):
    # sparc64: 8K pages, PGDIR 2**34, PMD 2**23, TASK_SIZE T = 2**64 - 2**34
    # (PGDIR-aligned).  Lone V=[T - 16K, T): PMD table at T - 2**34, PTE table
    # at T - 8M.  munmap V:
    # A: first = rd(T - 16K, 2**34) = T - 2**34, last = T + 2**34 - 1 = 2**64 - 1
    #    (no wrap: end <= T keeps end + PGDIR - 1 in the word); si = pgd_index
    #    (T - 2**34) = 2046, ei = pgd_index(2**64 - 1) = 2047 -> slot 2046 cleared.
    # B: last = 2**64 - 1 > MM_VM_SIZE = T -> last = T (the `last < end` wrap
    #    guard cannot fire for end <= T here; the MM_VM_SIZE bound does the job):
    #    clear_page_range(T - 2**34, T) covers the whole slot: both tables freed.
    # C: fpr(T - 16K, T, 0, 0): both freed.
    p = Process(era=era, arch="sparc64")
    t = p.geom.task_size
    assert t == (1 << 64) - (1 << 34)
    ps = p.geom.page_size
    anon(p, t - 2 * ps, t)
    touch(p, t - ps)
    assert tree(p) == T([t - (1 << 23)], [t - (1 << 34)])
    p.munmap(t - 2 * ps, 2 * ps)
    assert tree(p) == {} and p.nr_ptes == 0


# ===========================================================================
# Case 21: each free_pgd_range covers one vma group (flush_tlb_pgtables sees
# start <= end); the first posting handed it start > end.
# ===========================================================================

@pytest.fixture
def record_flushes(monkeypatch):
    """Record the (start, end) every freeing walk hands to its arch hook."""
    def install(era_obj):
        seen: list[tuple[int, int]] = []
        orig = type(era_obj).after_free_pgd_range

        def rec(mm, tlb, start, end):
            seen.append((start, end))
            orig(era_obj, mm, tlb, start, end)

        monkeypatch.setattr(era_obj, "after_free_pgd_range", rec)
        return seen
    return install


@pytest.mark.parametrize("era", ALL)
def test_case21_one_range_per_group_i386(era, record_flushes):
    # V1=[0x08000000, +4K), V2=[0x40000000, +4K), both removed by one munmap.
    # C*: two groups (far apart): fpr ranges (0x08000000, 0x08001000) and
    #     (0x40000000, 0x40001000): each inside its own vma, start <= end.
    # A: first = 0x08000000, last = 0x40001000 + 4M - 1 = 0x40400fff: one
    #     clear_page_tables(32, 225) and flush_tlb_pgtables(rd first, rd last) =
    #     (0x08000000, 0x40400000).
    # B: first = 0x08000000, last = 0x40400fff: clear_page_range and
    #     flush_tlb_pgtables(first, last).
    era_obj = get_era(era)
    seen = record_flushes(era_obj)
    p = Process(era=era_obj, arch="i386")
    anon(p, 0x08000000, 0x08001000)
    anon(p, 0x40000000, 0x40001000)
    touch(p, 0x08000000, 0x40000000)
    p.munmap(0x08000000, 0x40001000 - 0x08000000)
    expect(p, era, {})
    want = {"A": [(0x08000000, 0x40400000)], "B": [(0x08000000, 0x40400FFF)],
            "C": [(0x08000000, 0x08001000), (0x40000000, 0x40001000)]}[CLS[era]]
    assert seen == want
    assert all(s <= e for s, e in seen)


@pytest.mark.parametrize("final", [True, False])
def test_case21_first_posting_start_past_end(final, record_flushes):
    # I (4M PMD): P=[0x70000000, 0x70001000) r--, V=[0x70002000, 0x70003000),
    # no next; munmap V: floor 0x70001000.  addr rd 0x70000000 < floor ->
    # 0x70400000.  Final form: addr > end - 1 -> return, no hook call.  First
    # posting (21 March): ceiling 0 & PMD_MASK = 0, addr > 0 - 1 is false, end
    # untrimmed -> walks once at addr and calls flush_tlb_pgtables(0x70400000,
    # 0x70003000): start > end (sparc64's BUG).  PTE@0x70400000 does not exist,
    # so no table is freed either way.
    era_obj = get_era(C1) if final else get_era(C1).with_switches(first_posting_trim=True)
    seen = record_flushes(era_obj)
    p = Process(era=era_obj, arch="i386")
    anon(p, 0x70000000, 0x70001000, "r--")
    anon(p, 0x70002000, 0x70003000)
    touch(p, 0x70000000, 0x70002000)
    p.munmap(0x70002000, K4)
    expect(p, C1, T([0x70000000]))
    assert seen == ([] if final else [(0x70400000, 0x70003000)])


@pytest.mark.parametrize("final", [True, False])
def test_case21_sparc64_first_posting_bug(final):
    # The notes' example on sparc64 (8K pages, 8M PMD): P=[0x70000000,
    # 0x70002000) r--, V=[0x70004000, 0x70006000), no next; munmap V: addr rd
    # 0x70000000 < floor 0x70002000 -> 0x70800000.  Final: return.  First
    # posting: flush_tlb_pgtables(0x70800000, 0x70006000) -> BUG(start > end).
    era_obj = get_era(C1) if final else get_era(C1).with_switches(first_posting_trim=True)
    p = Process(era=era_obj, arch="sparc64")
    anon(p, 0x70000000, 0x70002000, "r--")
    anon(p, 0x70004000, 0x70006000)
    touch(p, 0x70000000, 0x70004000)
    if final:
        p.munmap(0x70004000, 0x2000)
        assert tree(p) == T([0x70000000], [0])
    else:
        with pytest.raises(KernelBug) as exc:
            p.munmap(0x70004000, 0x2000)
        assert "start > end" in str(exc.value)


@pytest.mark.parametrize("era", (C1, C))
def test_case21_sparc64_hole_never_walked(era):
    # One vma below the VA hole, one above it (PAGE_OFFSET side); munmap each:
    # every free_pgd_range covers one vma, never the hole, so
    # flush_tlb_pgtables sees start <= end and no BUG fires; all freed.
    p = Process(era=era, arch="sparc64")
    lo, hi = 0x70000000, 0xFFFFF80000000000
    anon(p, lo, lo + 0x2000)
    anon(p, hi, hi + 0x2000)
    touch(p, lo, hi)
    p.munmap(hi, 0x2000)
    p.munmap(lo, 0x2000)
    assert tree(p) == {} and p.nr_ptes == 0
