"""Invariants of an mm, and a brute-force reference model to compare against.

Two independent ways of checking the model (design.md, "Checking it"):

* :func:`check_mm` asserts what must hold of any mm the model leaves behind
  after a complete operation: the kernel's counters agree with the tree, the
  tree is a tree, every pte and every table sits under some vma (the seed's
  guarantee: with the vma list driving ``free_pgtables`` no table can be left
  that no vma spans), the vma set is well formed and fully merged, and the
  run-length bookkeeping adds up.  ``Process(check=True)`` calls it after
  every operation.

* :class:`Reference` recomputes, page by page and table by table with plain
  Python sets and dicts, which page tables must exist after each operation,
  what VmPTE and rss must read and what the vma list must look like.  It is
  written from the rules in the docs (host-kernel-notes.md §1-§4, §8, §9;
  kernel-notes.md §4), not from the model's code, and shares no code with
  ``freepgt.mm``.
"""

from __future__ import annotations

import errno
from bisect import bisect_right
from dataclasses import dataclass
from typing import Iterable

__all__ = ["check_mm", "merge_intervals", "table_ranges", "Reference", "RefVma"]


# =============================================================================
# check_mm
# =============================================================================

def _fail(invariant: str, detail: str) -> None:
    raise AssertionError(f"check_mm: {invariant}: {detail}")


def _first_uncovered(lo: int, hi: int, starts: list[int], intervals: list[tuple[int, int]]) -> int | None:
    """The first point of [lo, hi) outside the union of ``intervals``, or None.

    ``intervals`` are sorted and disjoint; ``starts`` lists their starts.
    """
    if lo >= hi:
        return None
    pos = lo
    for i in range(max(bisect_right(starts, pos) - 1, 0), len(intervals)):
        a, b = intervals[i]
        if a > pos:
            return pos
        if b > pos:
            pos = b
            if pos >= hi:
                return None
    return pos if pos < hi else None


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open intervals as sorted, disjoint runs: overlapping and touching ones joined."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _check_runmap(name: str, rm, valid_values: set | None = None) -> list[tuple[int, int, object]]:
    """Runs sorted, disjoint, non-empty; per-value totals equal the run lengths."""
    runs = list(rm.runs())
    sums: dict[object, int] = {}
    prev_end = None
    for a, b, v in runs:
        if a >= b:
            _fail("run bookkeeping", f"{name}: empty or reversed run [{a:#x}, {b:#x})")
        if prev_end is not None and a < prev_end:
            _fail("run bookkeeping", f"{name}: run [{a:#x}, {b:#x}) overlaps or precedes the run ending at {prev_end:#x}")
        if valid_values is not None and v not in valid_values:
            _fail("run bookkeeping", f"{name}: run [{a:#x}, {b:#x}) carries unknown value {v!r}")
        prev_end = b
        sums[v] = sums.get(v, 0) + (b - a)
    totals = dict(rm.totals)
    for v, n in totals.items():
        if n < 0:
            _fail("run bookkeeping", f"{name}: totals[{v!r}] is negative ({n})")
    totals = {v: n for v, n in totals.items() if n}
    if totals != sums:
        _fail("run bookkeeping (rss)", f"{name}: totals {totals} but the runs sum to {sums}")
    return runs


def table_ranges(geom, vma) -> list[tuple[int, int]]:
    """The address ranges whose page tables ``vma`` may use.

    Its own range, except for a hugetlb vma in a hugepage-only area: on ia64
    its tables sit at ``htlbpage_to_page`` of its range, on ppc64 outside
    the tree altogether.
    """
    from .vma import VM_HUGETLB

    start, end = vma.vm_start, vma.vm_end
    if vma.vm_flags & VM_HUGETLB and geom.hugepage_only and geom.is_hugepage_only_range(start, end - start):
        if geom.hugetlb_tables == "separate":
            return []
        if geom.hugetlb_tables == "rescaled":
            return [(geom.htlbpage_to_page(start), geom.htlbpage_to_page(end - 1) + 1)]
    return [(start, end)]


def check_mm(mm, *, orphans: bool = False) -> None:
    """Assert the invariants of ``mm``; raise AssertionError naming the broken one.

    (g) run bookkeeping: every RunMap's runs are sorted, disjoint, non-empty and
        its per-value ``totals`` (what rss is computed from) equal the runs;
    (e) vmas sorted, disjoint, page aligned, non-empty, below TASK_SIZE, and
        findable through the vma set's index;
    (f) no two adjacent vmas that Linux would have merged (not checked in
        eras whose in-place mremap growth does not merge, e.g. 2.6.12);
    (a) per level, ``nr_tables`` == tables in the tree (preallocated levels
        excluded) + stranded tables;
    (b) the tree is a tree: every table's parent table is present, every pte
        lies under a present PTE table (but for the pages of hugetlb vmas on
        architectures whose huge ptes live elsewhere);
    (c) every present pte lies inside a vma;
    (d) every present table intersects at least one vma (the tables of an
        ia64 hugetlb vma at ``htlbpage_to_page`` of its range), or is one of
        the geometry's reserved tables (ARM's vector PTE page) or above one.
        This is the seed's guarantee: tables are only allocated under vmas,
        and whenever vmas go away free_pgtables frees every table that no
        remaining vma spans (a failed driver mmap goes through
        ``unmap_region`` at once).  Eras or hand-made states that create
        orphans on purpose can pass ``orphans=True`` to skip it.
    """
    from .arch import LEVEL_NAMES
    from .vma import VM_HUGETLB, is_mergeable  # the kernel's merge test (check (f) only)

    geom = mm.geom
    pt = mm.pt
    ps = geom.page_shift
    page = 1 << ps

    # (g) run bookkeeping ---------------------------------------------------
    pte_runs = _check_runmap("ptes", pt.ptes, {0, 1, 2, 3})
    table_runs = {name: _check_runmap(f"tables[{name}]", pt.tables[name]) for name in pt.levels}

    # (e) vmas well formed ------------------------------------------------------
    vmas = mm.vmas.all()
    prev = None
    for v in vmas:
        desc = f"[{v.vm_start:#x}, {v.vm_end:#x})"
        if v.vm_start & (page - 1) or v.vm_end & (page - 1):
            _fail("vmas page aligned", f"vma {desc} is not page aligned")
        if v.vm_end <= v.vm_start:
            _fail("vmas non-empty", f"vma {desc} is empty or reversed")
        if v.vm_start < geom.first_user_address or v.vm_end > geom.task_size:
            _fail("vmas inside user space", f"vma {desc} outside [{geom.first_user_address:#x}, {geom.task_size:#x})")
        if prev is not None:
            if v.vm_start < prev.vm_start:
                _fail("vmas sorted", f"vma {desc} comes after [{prev.vm_start:#x}, {prev.vm_end:#x})")
            if v.vm_start < prev.vm_end:
                _fail("vmas disjoint", f"vma {desc} overlaps [{prev.vm_start:#x}, {prev.vm_end:#x})")
        prev = v
    for v in vmas:
        found = mm.vmas.find_vma(v.vm_start)
        if found is not v:
            _fail("vma index", f"find_vma({v.vm_start:#x}) does not return the vma starting there")

    # (f) fully merged ----------------------------------------------------------
    # Every path that creates or changes a vma merges it with its neighbours
    # when allowed -- except mremap growing a vma in place in eras before the
    # expand-merge (2.6.12's do_mremap just vma_adjust()s the vma up to its
    # next neighbour and leaves the two apart).  Such eras say so with
    # ``mremap_expand_merges = False``, and there adjacent mergeable vmas are
    # legitimate.
    merges_always = getattr(mm.era, "mremap_expand_merges", True)
    for a, b in zip(vmas, vmas[1:]) if merges_always else ():
        if a.vm_end == b.vm_start and is_mergeable(a, b, ps):
            _fail("vmas merged", f"adjacent vmas {a!r} and {b!r} are mergeable but were left apart")

    # (a) counters ----------------------------------------------------------------
    for name in pt.levels:
        present = 0 if name in pt.prealloc else sum(b - a for a, b, _ in table_runs[name])
        stranded = mm.stranded.get(name, 0)
        counted = mm.nr_tables.get(name)
        if counted is None:
            _fail("counters", f"no nr_tables entry for level {name}")
        if counted != present + stranded:
            _fail("counters", f"nr_tables[{name}] is {counted} but the tree holds {present} "
                              f"(+ {stranded} stranded)")
    for name, n in mm.stranded.items():
        if n < 0:
            _fail("counters", f"stranded[{name}] is negative ({n})")

    # (b) tree ----------------------------------------------------------------------
    level_ivs: dict[str, tuple[list[int], list[tuple[int, int]]]] = {}
    for name in pt.levels:
        s = pt.shifts[name]
        ivs = [(a << s, b << s) for a, b, _ in table_runs[name]]
        level_ivs[name] = ([a for a, _ in ivs], ivs)

    for k, name in enumerate(pt.levels):
        if k == 0 or name in pt.prealloc:
            continue  # the pgd above the first level is always there
        parent = pt.levels[k - 1]
        s = pt.shifts[name]
        for a, b, _ in table_runs[name]:
            hole = _first_uncovered(a << s, b << s, *level_ivs[parent])
            if hole is not None:
                _fail("tree", f"{name} table {hole >> s:#x} (at {hole:#x}) has no {parent} table above it")
    bottom = pt.levels[-1]
    bottom_ivs = level_ivs[bottom]
    if geom.hpage_shift and geom.hugetlb_tables != "pte":
        # a hugetlb vma's pages are kept in the pte map, but its huge ptes
        # live at a higher level, at rescaled addresses or apart (ppc64)
        huge = [(v.vm_start, v.vm_end) for v in mm.vmas.all() if v.vm_flags & VM_HUGETLB]
        if huge:
            merged = merge_intervals(bottom_ivs[1] + huge)
            bottom_ivs = ([a for a, _ in merged], merged)
    for a, b, _ in pte_runs:
        hole = _first_uncovered(a << ps, b << ps, *bottom_ivs)
        if hole is not None:
            _fail("tree", f"pte of page {hole:#x} has no {bottom} table above it")

    # (c) ptes inside vmas -----------------------------------------------------------
    vivs = [(v.vm_start, v.vm_end) for v in vmas]
    vstarts = [a for a, _ in vivs]
    for a, b, val in pte_runs:
        hole = _first_uncovered(a << ps, b << ps, vstarts, vivs)
        if hole is not None:
            _fail("pte outside vmas", f"present pte (state {val}) at {hole:#x} lies in no vma")

    # (d) no orphan tables -----------------------------------------------------------
    if orphans:
        return
    spans = [r for v in vmas for r in table_ranges(geom, v)]
    for name in pt.levels:
        if name in pt.prealloc:
            continue
        s = pt.shifts[name]
        # tables that come with the pgd (ARM's vector PTE page) need no vma,
        # and neither do the tables above them
        allowed = spans + [(lo, hi) for level, lo, hi in geom.reserved_tables
                           if LEVEL_NAMES.index(name) <= LEVEL_NAMES.index(level)]
        idx = merge_intervals((lo >> s, ((hi - 1) >> s) + 1) for lo, hi in allowed)
        istarts = [a for a, _ in idx]
        for a, b, _ in table_runs[name]:
            hole = _first_uncovered(a, b, istarts, idx)
            if hole is not None:
                _fail("orphan table", f"{name} table {hole:#x} (span [{hole << s:#x}, {(hole + 1) << s:#x})) "
                                      f"intersects no vma")


# =============================================================================
# Reference
# =============================================================================

#: The geometries the reference knows, written down from kernel-notes.md §5
#: (not read from freepgt.arch): for each table level below the pgd, top
#: first, the log2 of the span one table of it covers.  The pgd itself:
#: ``pgdir_shift`` (span of one pgd entry, PGDIR_SIZE) and ``ptrs_per_pgd``
#: (``pgd_index`` masks with it); ``word_bits`` for the unsigned arithmetic of
#: the 2.6.10/2.6.11 gap computation.
REF_GEOMETRIES: dict[str, dict] = {
    "x86_64": {
        "levels": (("pud", 39), ("pmd", 30), ("pte", 21)),
        "prealloc": (),
        "ptrs_per_pte": 512,
        "task_size": 0x800000000000 - 4096,
        "table_bytes": {"pud": 4096, "pmd": 4096, "pte": 4096},
        "word_bits": 64,
        "pgdir_shift": 39,
        "ptrs_per_pgd": 512,
        "first_user_address": 0,
    },
    "i386": {
        "levels": (("pte", 22),),
        "prealloc": (),
        "ptrs_per_pte": 1024,
        "task_size": 0xC0000000,
        "table_bytes": {"pte": 4096},
        "word_bits": 32,
        "pgdir_shift": 22,
        "ptrs_per_pgd": 1024,
        "first_user_address": 0,
    },
    "i386-pae": {
        # the pmd pages come with the pgd and are never freed or counted
        "levels": (("pmd", 30), ("pte", 21)),
        "prealloc": ("pmd",),
        "ptrs_per_pte": 512,
        "task_size": 0xC0000000,
        "table_bytes": {"pmd": 4096, "pte": 4096},
        "word_bits": 32,
        "pgdir_shift": 30,
        "ptrs_per_pgd": 4,
        "first_user_address": 0,
    },
    "x86_64-2.6.10": {
        # kernel-notes §5: before 4-level tables the generic code saw a pgd of
        # 512 x 1 GiB under the arch's private PML4, PMD 2 MiB, 511 GiB of
        # user space.  Used for linux-2.6.10 on "x86_64".
        "levels": (("pmd", 30), ("pte", 21)),
        "prealloc": (),
        "ptrs_per_pte": 512,
        "task_size": 0x7FC0000000,
        "table_bytes": {"pmd": 4096, "pte": 4096},
        "word_bits": 64,
        "pgdir_shift": 30,
        "ptrs_per_pgd": 512,
        "first_user_address": 0,
    },
}

#: the eras the reference knows, oldest first
REF_ERAS = ("linux-2.6.10", "linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12", "linux-6.18")
#: architectures whose 2.6.10 layout is another geometry (kernel-notes §5)
REF_OLD_LAYOUTS = {"x86_64": "x86_64-2.6.10"}

PAGE_SHIFT = 12
PAGE = 1 << PAGE_SHIFT
FAULT_AROUND_PAGES = 16  # 64 KiB


@dataclass
class RefVma:
    """The reference's vma: only what matters to tables, rss and merging."""

    start: int
    end: int
    prot: str           # 'rw-' etc.
    shared: bool
    obj: int | None     # shmem object id for shared anon, None for private anon
    pgoff: int          # page offset into obj (private anon: address >> 12)
    account: bool       # VM_ACCOUNT
    anon: int | None    # anon_vma identity

    @property
    def pages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT

    @property
    def perms(self) -> str:
        return self.prot + ("s" if self.shared else "p")

    def readable(self, modern: bool, pkeys: bool, present: bool) -> bool:
        """May a read at a page of this vma go through?

        Current x86: write-only is readable (host-kernel-notes §11); exec-only
        too, unless the CPU has protection keys (this machine does: PROT_EXEC
        alone gets the execute-only key).  2.6.12's do_page_fault wants
        VM_READ or VM_EXEC for a read fault; a present pte of a writable vma
        is readable by the hardware anyway.
        """
        r, w, x = (c != "-" for c in self.prot)
        if modern:
            return r or w or (x and not pkeys)
        return r or x or (w and present)

    def writable(self) -> bool:
        return self.prot[1] == "w"


class Reference:
    """A brute-force model of the page tables of one process.

    Operations: ``mmap`` (private or shared anonymous; ``fixed``,
    ``fixed_noreplace`` or a free hint), ``munmap``, ``mprotect``,
    ``madvise_dontneed``, ``touch``, ``fork``.  Every operation returns
    ``("ok", value)``, ``("errno", code)`` or ``("segv", page_address)``.

    State: a sorted list of :class:`RefVma`, a dict page number -> what the
    pte maps (``"zero"``, ``"anon"``, ``"file"``), per shmem object the set of
    its cached page indices, and per table level the set of present table
    indices (index = table start address >> span shift).

    The rules, derived from the docs:

    * a successful fault allocates the tables of every level over the page
      (host-kernel-notes §1);
    * removing vmas (munmap, MAP_FIXED replacement) frees exactly the tables
      that intersected a removed vma and intersect no remaining vma (§2).
      For 2.6.12 this is what ``free_pgtables(floor=prev->vm_end,
      ceiling=next->vm_start)`` computes as long as every table intersects
      some vma (kernel-notes §4.3-4.4): a trimmed PMD-granular first/last
      slot is exactly a slot a survivor shares, ``may_free``'s slot-in-
      [floor, ceiling) test is exactly "no survivor intersects the slot", the
      ceiling of an intermediate group leaves shared tables to the next
      group, whose floor is the global one, and gathering only adds walks
      over gaps of at most PMD_SIZE, which hold no table of their own when
      there are no orphans.  No operation here creates an orphan;
    * 6.18 ``MADV_DONTNEED`` frees a PTE table iff the range, clipped to one
      vma, covers the table's whole span; never PMD/PUD tables (§3).  Only
      on x86_64: CONFIG_PT_RECLAIM depends on ARCH_SUPPORTS_PT_RECLAIM,
      which only X86_64 selects (kernel-notes §6.4);
    * fork: the child gets every table intersecting a vma (2.6.12,
      kernel-notes §4.13) or every table intersecting a vma with an anon_vma
      (6.18, host-kernel-notes §8);
    * VmPTE: 2.6.12 PTE tables only; 6.18 PUD + PMD + PTE tables
      (preallocated i386 PAE pmd pages never counted);
    * rss: present ptes mapping anon or shmem pages; the zero page never.
    * anon_vma: first private write fault (reusing an adjacent compatible
      vma's, next first, §9); kept by split and merge.
    * 6.18 reads of shared anon memory map every cached page of the 16-page
      fault-around window (§5); 2.6.12 has no fault-around.
    * mprotect: VM_ACCOUNT is added when a private vma becomes writable and,
      in 6.18 only (a 2023 change: "mm/mprotect: allow unfaulted VMAs to be
      unaccounted on mprotect()"), dropped when a private anonymous vma
      without anon_vma becomes read-only (§9).
    * vmas: after every operation adjacent vmas are merged left to right when
      perms, sharing, object, pgoff, VM_ACCOUNT and anon_vmas agree; with two
      incompatible anon_vmas around a new piece it joins the lower one.

    Which tables each era frees when vmas go (munmap, MAP_FIXED replacement,
    a failed driver mmap, exit) -- written from kernel-notes §2-§4 on plain
    sets, with the vma-free gap of the two old eras computed literally:

    * linux-2.6.12, linux-6.18: the rule above (tables meeting a removed
      range and no remaining vma), except that a table whose span starts
      below FIRST_USER_ADDRESS is never freed (floor; 0 on the geometries
      here, so it never applies).  linux-2.6.12-rc: the same with floor 0.
      A failed driver mmap is ``unmap_region`` on the unlinked vma: the
      same rule over the driver's range (§4.8).  Exit frees every table
      meeting a vma (the no-orphan equivalent of ``free_pgtables(floor,
      0)``); the check after it: 2.6.12-rc ``BUG_ON(nr_ptes)``, 2.6.12
      ``nr_ptes > (FIRST_USER_ADDRESS + PMD_SIZE - 1) >> PMD_SHIFT``, 6.18
      any counted table left.
    * linux-2.6.11 (§3.3): ``first = rd(start, PGDIR)`` raised to
      ``prev.vm_end``, ``last = end + PGDIR - 1`` bounded by MM_VM_SIZE (and
      by its own wrap) and by ``next.vm_start``; if ``last >= first`` and the
      PMD-rounded bounds differ, every table whose whole span lies in
      [first, last) goes (``clear_page_range``), whoever it belonged to.  A
      failed driver mmap only zaps (its tables stay); exit is
      ``clear_page_range(FIRST_USER_PGD_NR * PGDIR, MM_VM_SIZE)``: everything.
    * linux-2.6.10 (§2.2): ``first = rd(start, PGDIR)`` or, if ``prev.vm_end``
      is above it, ``prev.vm_end + PGDIR - 1``; ``last = end + PGDIR - 1``
      (no guard) bounded by ``next.vm_start``; every table under the pgd
      slots ``[max(pgd_index(first), FIRST_USER_PGD_NR), pgd_index(last))``
      goes (``clear_page_tables``).  Driver failure: zap only; exit clears
      every user pgd slot.

    :meth:`left_behind` reports the tables no vma spans; :meth:`allowed_left_behind`
    those of them the era's rule lets it keep (see there).
    """

    def __init__(self, era: str, arch: str) -> None:
        if era not in REF_ERAS:
            raise ValueError(f"Reference: unknown era {era!r}")
        if era == "linux-2.6.10" and arch in REF_OLD_LAYOUTS:
            arch = REF_OLD_LAYOUTS[arch]
        if arch not in REF_GEOMETRIES:
            raise ValueError(f"Reference: unknown arch {arch!r}")
        g = REF_GEOMETRIES[arch]
        self.era = era
        self.arch = arch
        self.modern = era == "linux-6.18"
        #: CONFIG_PT_RECLAIM (6.14+): only x86_64 selects ARCH_SUPPORTS_PT_RECLAIM
        #: (kernel-notes §6.4), so 6.18 on an i386 geometry reclaims nothing
        self.pt_reclaim = self.modern and arch.startswith("x86_64")
        #: the x86_64 presets model this machine's CPU, which has protection keys
        self.pkeys = arch.startswith("x86_64")
        self.task_size: int = g["task_size"]
        self.ptrs_per_pte: int = g["ptrs_per_pte"]
        self.table_bytes: dict[str, int] = g["table_bytes"]
        #: tracked levels (preallocated ones left out) -> span shift
        self.shift: dict[str, int] = {name: s for name, s in g["levels"] if name not in g["prealloc"]}
        self.pte_shift: int = dict(g["levels"])["pte"]
        self.vmas: list[RefVma] = []
        self.ptes: dict[int, str] = {}
        self.tables: dict[str, set[int]] = {name: set() for name in self.shift}
        self.cache: dict[int, set[int]] = {}
        self.obj_pages: dict[int, int] = {}
        self._next_id = 1
        # --- what the era-specific freeing needs
        self.word_mask: int = (1 << g["word_bits"]) - 1
        self.pgdir_shift: int = g["pgdir_shift"]
        self.ptrs_per_pgd: int = g["ptrs_per_pgd"]
        self.first_user_address: int = g["first_user_address"]
        #: the floor free_pgtables uses with no vma below: FIRST_USER_ADDRESS,
        #: but 0 in the seed as first merged (freepgt2 1/6 changed it)
        self.floor_default: int = 0 if era == "linux-2.6.12-rc" else self.first_user_address
        #: tables a failed driver mmap left behind in 2.6.10/2.6.11 (zap only),
        #: per level, as long as they have not been freed since
        self.driver_left: dict[str, set[int]] = {name: set() for name in self.shift}
        self.dead = False

    # --- observables -------------------------------------------------------------
    def table_sets(self) -> dict[str, set[int]]:
        return {name: set(s) for name, s in self.tables.items()}

    def pgtables_bytes(self) -> int:
        counted = ("pud", "pmd", "pte") if self.modern else ("pte",)
        return sum(len(self.tables[n]) * self.table_bytes[n] for n in self.tables if n in counted)

    def rss(self) -> int:
        return sum(1 for s in self.ptes.values() if s != "zero") * PAGE

    def vma_list(self) -> list[tuple[int, int, str]]:
        return [(v.start, v.end, v.perms) for v in self.vmas]

    def is_free(self, start: int, end: int) -> bool:
        return not any(v.start < end and start < v.end for v in self.vmas)

    # --- helpers ---------------------------------------------------------------------
    def _new_id(self) -> int:
        n = self._next_id
        self._next_id += 1
        return n

    def _vma_at(self, addr: int) -> RefVma | None:
        for v in self.vmas:
            if v.start <= addr < v.end:
                return v
        return None

    def _table_span(self, level: str, idx: int) -> tuple[int, int]:
        s = self.shift[level]
        return idx << s, (idx + 1) << s

    def _alloc_for_page(self, addr: int) -> None:
        for level, s in self.shift.items():
            self.tables[level].add(addr >> s)

    def _zap(self, start: int, end: int) -> None:
        lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        for p in [p for p in self.ptes if lo <= p < hi]:
            del self.ptes[p]

    @staticmethod
    def _meets(a0: int, a1: int, b0: int, b1: int) -> bool:
        return a0 < b1 and b0 < a1

    def _split(self, v: RefVma, at: int) -> RefVma:
        """Cut v at ``at``; v keeps the lower part, the upper part is returned (not linked)."""
        upper = RefVma(at, v.end, v.prot, v.shared, v.obj, v.pgoff + ((at - v.start) >> PAGE_SHIFT),
                       v.account, v.anon)
        v.end = at
        return upper

    def _link(self, v: RefVma) -> None:
        self.vmas.append(v)
        self.vmas.sort(key=lambda x: x.start)

    @staticmethod
    def _mergeable(a: RefVma, b: RefVma) -> bool:
        return (a.end == b.start and a.prot == b.prot and a.shared == b.shared and a.obj == b.obj
                and a.pgoff + a.pages == b.pgoff and a.account == b.account
                and (a.anon is None or b.anon is None or a.anon == b.anon))

    def _normalize(self) -> None:
        """Merge adjacent mergeable vmas, lowest first."""
        out: list[RefVma] = []
        for v in sorted(self.vmas, key=lambda x: x.start):
            if out and self._mergeable(out[-1], v):
                low = out[-1]
                low.end = v.end
                if low.anon is None:
                    low.anon = v.anon
            else:
                out.append(v)
        self.vmas = out

    def _remove_range(self, start: int, end: int) -> bool:
        """munmap's work on [start, end): split, drop, zap, free tables (§2). True if anything went."""
        keep: list[RefVma] = []
        removed: list[tuple[int, int]] = []
        for v in self.vmas:
            if not self._meets(v.start, v.end, start, end):
                keep.append(v)
                continue
            upper = None
            if v.end > end:
                upper = self._split(v, end)
            if v.start < start:
                middle = self._split(v, start)
                keep.append(v)
            else:
                middle = v
            removed.append((middle.start, middle.end))
            if upper is not None:
                keep.append(upper)
        if not removed:
            return False
        self.vmas = sorted(keep, key=lambda x: x.start)
        self._zap(start, end)
        if self.era == "linux-2.6.10":
            self._free_gap_2610(start, end)
        elif self.era == "linux-2.6.11":
            self._free_gap_2611(start, end)
        else:
            self._free_unshared(removed)
        return True

    # --- era-specific freeing (kernel-notes §2-§4) -------------------------------
    def _drop(self, level: str, gone: set[int]) -> None:
        self.tables[level] -= gone
        self.driver_left[level] -= gone

    def _free_unshared(self, removed: list[tuple[int, int]]) -> None:
        """2.6.12-rc / 2.6.12 / 6.18: free the tables meeting a removed range and no vma.

        A table whose span starts below the floor default (FIRST_USER_ADDRESS,
        or 0 in 2.6.12-rc) is kept: free_pgd_range never frees below the floor.
        """
        for level in self.tables:
            gone = set()
            for idx in self.tables[level]:
                t0, t1 = self._table_span(level, idx)
                if not any(self._meets(t0, t1, a, b) for a, b in removed):
                    continue
                if any(self._meets(t0, t1, v.start, v.end) for v in self.vmas):
                    continue
                if t0 < self.floor_default:
                    continue
                gone.add(idx)
            self._drop(level, gone)

    def _neighbours(self, start: int, end: int) -> tuple[RefVma | None, RefVma | None]:
        """The surviving vmas below ``start`` and above ``end`` (vmas already removed)."""
        prev = None
        nxt = None
        for v in self.vmas:
            if v.end <= start:
                prev = v
            elif v.start >= end and nxt is None:
                nxt = v
        return prev, nxt

    def _pgd_index(self, addr: int) -> int:
        return (addr >> self.pgdir_shift) & (self.ptrs_per_pgd - 1)

    @property
    def _first_user_pgd_nr(self) -> int:
        size = 1 << self.pgdir_shift
        return (self.first_user_address + size - 1) >> self.pgdir_shift

    @property
    def _mm_vm_size(self) -> int:
        """MM_VM_SIZE(mm): TASK_SIZE rounded up to PGDIR_SIZE, in an unsigned long."""
        size = 1 << self.pgdir_shift
        return ((self.task_size + size - 1) & ~(size - 1)) & self.word_mask

    def _clear_pgd_slots(self, si: int, ei: int) -> None:
        """2.6.10 ``clear_page_tables``: every table under pgd slots [si, ei) goes."""
        for level in self.tables:
            s = self.shift[level]
            self._drop(level, {i for i in self.tables[level] if si <= self._pgd_index(i << s) < ei})

    def _clear_range(self, start: int, end: int) -> None:
        """2.6.11 ``clear_page_range``: every table whose whole span lies in [start, end) goes."""
        if not end or end <= start:
            return  # end 0 is outside the function's contract (kernel-notes 1.2)
        for level in self.tables:
            gone = set()
            for idx in self.tables[level]:
                t0, t1 = self._table_span(level, idx)
                if start <= t0 and t1 <= end:
                    gone.add(idx)
            self._drop(level, gone)

    def _free_gap_2610(self, start: int, end: int) -> None:
        """2.6.10's ``free_pgtables(prev, start, end)``: whole pgd slots of the gap."""
        m = self.word_mask
        size = 1 << self.pgdir_shift
        prev, nxt = self._neighbours(start, end)
        first = start & ~(size - 1)
        last = (end + size - 1) & m                 # no overflow guard in 2.6.10
        if nxt is not None:
            last = min(last, nxt.start)
        if prev is not None and prev.end > first:
            first = (prev.end + size - 1) & m
        if last < first:
            return
        si = max(self._pgd_index(first), self._first_user_pgd_nr)
        ei = self._pgd_index(last)
        if ei > si:
            self._clear_pgd_slots(si, ei)

    def _free_gap_2611(self, start: int, end: int) -> None:
        """2.6.11's ``free_pgtables(prev, start, end)``: clear_page_range over the gap."""
        m = self.word_mask
        size = 1 << self.pgdir_shift
        pmd_mask = ~((1 << self.pte_shift) - 1)
        vm_size = self._mm_vm_size
        prev, nxt = self._neighbours(start, end)
        first = start & ~(size - 1)
        last = (end + size - 1) & m
        if last > vm_size or last < end:
            last = vm_size
        if nxt is not None:
            last = min(last, nxt.start)
        if prev is not None and prev.end > first:
            first = prev.end
        if last < first:
            return
        first = max(first, self._first_user_pgd_nr * size)
        if first & pmd_mask < last & pmd_mask:
            self._clear_range(first, last)

    # --- left behind --------------------------------------------------------------
    def left_behind(self) -> dict[str, set[int]]:
        """Tables present (per level, as indices) whose span meets no vma."""
        out: dict[str, set[int]] = {}
        for level, idxs in self.tables.items():
            out[level] = {i for i in idxs
                          if not any(self._meets(*self._table_span(level, i), v.start, v.end) for v in self.vmas)}
        return out

    def allowed_left_behind(self) -> dict[str, set[int]]:
        """Of :meth:`left_behind`, the tables the era's freeing is allowed to leave.

        Declarative rules (no simulation), for the operations of this class:

        * 2.6.10: a table whose pgd slot still meets a vma (munmap clears only
          pgd slots lying wholly in the vma-free gap; a slot emptied by a
          munmap always does), or one a failed driver mmap left;
        * 2.6.11: only what a failed driver mmap left (munmap frees, PMD-
          granular, every table once no vma meets it: the gap around the hole
          always covers its span);
        * 2.6.12-rc, 2.6.12, 6.18: only a table whose span starts below the
          floor default (FIRST_USER_ADDRESS; ARM's first PMD) -- none here.

        After exit nothing may be left in any era (no orphans can arise in
        the three newer eras here, and the old ones clear all user slots).
        """
        left = self.left_behind()
        out: dict[str, set[int]] = {}
        for level, idxs in left.items():
            s = self.shift[level]
            if self.dead:
                ok: set[int] = set()
            elif self.era == "linux-2.6.10":
                size = 1 << self.pgdir_shift
                ok = set()
                for i in idxs:
                    slot0 = (i << s) & ~(size - 1)
                    if i in self.driver_left[level] or any(
                            self._meets(slot0, slot0 + size, v.start, v.end) for v in self.vmas):
                        ok.add(i)
            elif self.era == "linux-2.6.11":
                ok = idxs & self.driver_left[level]
            else:
                ok = {i for i in idxs if (i << s) < self.floor_default}
            out[level] = ok
        return out

    # --- driver failure and exit ----------------------------------------------------
    def driver_fail(self, addr: int, length: int, code: int = errno.EIO) -> tuple:
        """mmap(MAP_FIXED) of a device whose handler fills [addr, addr+len) with pfns and fails.

        What was mapped there is unmapped first (MAP_FIXED).  2.6.10/2.6.11:
        ``zap_page_range`` -- the driver's tables stay.  2.6.12-rc and later:
        ``unmap_region`` on the unlinked vma, bounded by the real neighbours.
        """
        bad = self._fixed_range_error(addr, length)
        if bad:
            return bad
        end = addr + ((length + PAGE - 1) & ~(PAGE - 1))
        self._remove_range(addr, end)
        new: dict[str, set[int]] = {}
        for level, s in self.shift.items():
            idxs = set(range(addr >> s, ((end - 1) >> s) + 1))
            new[level] = idxs
            self.tables[level] |= idxs
        if self.era in ("linux-2.6.10", "linux-2.6.11"):
            for level, idxs in new.items():
                self.driver_left[level] |= idxs
        else:
            self._free_unshared([(addr, end)])
        return ("errno", code)

    def exit(self) -> tuple:
        """exit_mmap: ``("ok", None)``, or ``("bug", what)`` when the era's check fires."""
        if self.era == "linux-2.6.10":
            first = self._first_user_pgd_nr
            size = 1 << self.pgdir_shift
            self._clear_pgd_slots(first, (self.task_size + size - 1) >> self.pgdir_shift)
        elif self.era == "linux-2.6.11":
            self._clear_range(self._first_user_pgd_nr << self.pgdir_shift, self._mm_vm_size)
        else:
            for level in self.tables:
                gone = {i for i in self.tables[level]
                        if (i << self.shift[level]) >= self.floor_default
                        and any(self._meets(*self._table_span(level, i), v.start, v.end) for v in self.vmas)}
                self._drop(level, gone)
        self.vmas = []
        self.ptes = {}
        self.dead = True
        nr_ptes = len(self.tables["pte"])
        pmd_size = 1 << self.pte_shift
        if self.era == "linux-2.6.12-rc" and nr_ptes:
            return ("bug", "BUG_ON(mm->nr_ptes)")
        if self.era == "linux-2.6.12" and nr_ptes > (self.first_user_address + pmd_size - 1) // pmd_size:
            return ("bug", "BUG_ON(nr_ptes > (FIRST_USER_ADDRESS+PMD_SIZE-1)>>PMD_SHIFT)")
        if self.modern and self.pgtables_bytes():
            return ("bug", "check_mm: non-zero pgtables_bytes")
        return ("ok", None)

    def _anon_prepare(self, v: RefVma) -> None:
        """Give v an anon_vma: reuse an adjacent compatible one (next first, then prev)."""
        if v.anon is not None:
            return

        def compatible(a: RefVma, b: RefVma) -> bool:  # a below b
            return (a.end == b.start and a.obj == b.obj and a.shared == b.shared
                    and a.account == b.account and a.pgoff + a.pages == b.pgoff)

        i = self.vmas.index(v)
        nxt = self.vmas[i + 1] if i + 1 < len(self.vmas) else None
        prv = self.vmas[i - 1] if i > 0 else None
        if nxt is not None and nxt.anon is not None and compatible(v, nxt):
            v.anon = nxt.anon
        elif prv is not None and prv.anon is not None and compatible(prv, v):
            v.anon = prv.anon
        else:
            v.anon = self._new_id()

    # --- operations --------------------------------------------------------------------
    def _fixed_range_error(self, addr: int, length: int) -> tuple | None:
        """The errno an mmap at a fixed ``addr`` of ``length`` bytes gets before any change, or None.

        get_unmapped_area checks a fixed range against TASK_SIZE before its
        alignment (measured on the host: unaligned and too high is ENOMEM).
        """
        if length <= 0:
            return ("errno", errno.EINVAL)
        if addr + ((length + PAGE - 1) & ~(PAGE - 1)) > self.task_size:
            return ("errno", errno.ENOMEM)
        if addr & (PAGE - 1):
            return ("errno", errno.EINVAL)
        return None

    def mmap(self, addr: int, length: int, prot: str, shared: bool, mode: str = "fixed") -> tuple:
        """mmap of anonymous memory at ``addr``; mode 'fixed', 'fixed_noreplace' or 'hint'."""
        bad = self._fixed_range_error(addr, length)
        if bad:
            return bad
        end = addr + ((length + PAGE - 1) & ~(PAGE - 1))
        if mode == "hint" and not self.is_free(addr, end):
            raise ValueError("Reference.mmap: a hint is only modelled when the range is free")
        if mode == "fixed_noreplace" and not self.is_free(addr, end):
            return ("errno", errno.EEXIST)
        self._remove_range(addr, end)
        if shared:
            obj = self._new_id()
            self.obj_pages[obj] = (end - addr) >> PAGE_SHIFT
            self.cache[obj] = set()
            v = RefVma(addr, end, prot, True, obj, 0, False, None)
        else:
            v = RefVma(addr, end, prot, False, None, addr >> PAGE_SHIFT, prot[1] == "w", None)
        self._link(v)
        self._normalize()
        return ("ok", addr)

    def munmap(self, addr: int, length: int) -> tuple:
        if addr & (PAGE - 1) or addr > self.task_size or length > self.task_size - addr:
            return ("errno", errno.EINVAL)
        length = (length + PAGE - 1) & ~(PAGE - 1)
        if length == 0:
            return ("errno", errno.EINVAL)
        self._remove_range(addr, addr + length)
        return ("ok", None)

    def mprotect(self, addr: int, length: int, prot: str) -> tuple:
        if addr & (PAGE - 1):
            return ("errno", errno.EINVAL)
        length = (length + PAGE - 1) & ~(PAGE - 1)
        if length == 0:
            return ("ok", None)
        end = addr + length
        first = next((v for v in self.vmas if v.end > addr), None)
        if first is None or first.start > addr:
            return ("errno", errno.ENOMEM)
        result = ("ok", None)
        tmp = addr
        for v in [v for v in self.vmas if v.end > addr and v.start < end]:
            if v.start > tmp:
                result = ("errno", errno.ENOMEM)
                break
            v_end = v.end
            lo, hi = max(addr, v.start), min(end, v_end)
            if prot != v.prot:  # mprotect_fixup: newflags == oldflags -> nothing at all
                target = v
                if v.start < lo:
                    target = self._split(v, lo)
                    self._link(target)
                if target.end > hi:
                    self._link(self._split(target, hi))
                old = target.prot
                target.prot = prot
                if not target.shared:
                    if prot[1] == "w":
                        if not target.account and old[1] != "w":
                            target.account = True
                    elif self.modern and target.account and target.anon is None:
                        target.account = False
            tmp = min(v_end, end)
            if tmp >= end:
                break
        if result[0] == "ok" and tmp < end:
            result = ("errno", errno.ENOMEM)
        self._normalize()
        return result

    def madvise_dontneed(self, addr: int, length: int) -> tuple:
        if addr & (PAGE - 1):
            return ("errno", errno.EINVAL)
        length = (length + PAGE - 1) & ~(PAGE - 1)
        if length == 0:
            return ("ok", None)
        end = addr + length
        covered = 0
        for v in list(self.vmas):
            lo, hi = max(addr, v.start), min(end, v.end)
            if lo >= hi:
                continue
            covered += hi - lo
            self._zap(lo, hi)
            if self.pt_reclaim:  # whole PTE tables inside [lo, hi)
                gone = set()
                for idx in self.tables["pte"]:
                    t0, t1 = self._table_span("pte", idx)
                    if lo <= t0 and t1 <= hi:
                        gone.add(idx)
                self.tables["pte"] -= gone
        if covered != length:
            return ("errno", errno.ENOMEM)
        return ("ok", None)

    def touch(self, addr: int, length: int, access: str) -> tuple:
        """Access the page of ``addr`` and every following page up to addr + length."""
        write = access == "w"
        first = addr >> PAGE_SHIFT
        last = (addr + max(length, 1) - 1) >> PAGE_SHIFT
        for p in range(first, last + 1):
            a = p << PAGE_SHIFT
            v = self._vma_at(a)
            if v is None or not (v.writable() if write else
                                 v.readable(self.modern, self.pkeys, p in self.ptes)):
                return ("segv", a)
            state = self.ptes.get(p)
            if v.obj is None:
                if write:
                    if state != "anon":
                        self._anon_prepare(v)
                        self.ptes[p] = "anon"
                        self._alloc_for_page(a)
                elif state is None:
                    self.ptes[p] = "zero"
                    self._alloc_for_page(a)
            elif state is None:
                if not write and self.modern:
                    self._fault_around(v, a)
                self.cache[v.obj].add(v.pgoff + ((a - v.start) >> PAGE_SHIFT))
                self.ptes[p] = "file"
                self._alloc_for_page(a)
        return ("ok", None)

    def _fault_around(self, v: RefVma, a: int) -> None:
        """do_fault_around: map the cached pages of the window around page ``a``."""
        i = (a >> PAGE_SHIFT) % self.ptrs_per_pte
        off = (a - v.start) >> PAGE_SHIFT
        lo = max(i - i % FAULT_AROUND_PAGES, i - min(i, off))
        hi = min(lo + FAULT_AROUND_PAGES, self.ptrs_per_pte, i + (v.pages - off))
        cached = self.cache[v.obj]
        for j in range(lo, hi):
            b = a + ((j - i) << PAGE_SHIFT)
            idx = v.pgoff + ((b - v.start) >> PAGE_SHIFT)
            if idx < self.obj_pages[v.obj] and idx in cached and (b >> PAGE_SHIFT) not in self.ptes:
                self.ptes[b >> PAGE_SHIFT] = "file"
                self._alloc_for_page(b)

    def fork(self) -> dict:
        """What the child must hold: tables per level, VmPTE, rss and vmas."""
        copied = [v for v in self.vmas if (v.anon is not None or not self.modern)]
        tables: dict[str, set[int]] = {}
        for level, idxs in self.tables.items():
            tables[level] = {i for i in idxs
                             if any(self._meets(*self._table_span(level, i), v.start, v.end) for v in copied)}
        rss_pages = 0
        for p, state in self.ptes.items():
            a = p << PAGE_SHIFT
            if state != "zero" and any(v.start <= a < v.end for v in copied):
                rss_pages += 1
        counted = ("pud", "pmd", "pte") if self.modern else ("pte",)
        return {
            "tables": tables,
            "pgtables_bytes": sum(len(tables[n]) * self.table_bytes[n] for n in tables if n in counted),
            "rss": rss_pages * PAGE,
            "vmas": self.vma_list(),
        }
