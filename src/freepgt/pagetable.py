"""The sparse page-table tree of one mm.

The tree is kept level by level: for every real level below the pgd, the set
of tables present, as runs of table indices (a table's index is its first
address shifted right by its span), and for the bottom level the state of
every present pte, as runs of page numbers.  A table exists only if its
parent exists, as in a real tree; the model allocates top-down on fault
(``__pud_alloc``, ``__pmd_alloc``, ``pte_alloc``) and frees only where Linux
frees (free_pgtables, PT_RECLAIM, mremap's whole-table moves).

Counting is left to the mm: these methods return how many tables they
added or removed, and the mm's era decides which counter that moves.
"""

from __future__ import annotations

from .arch import LEVEL_NAMES, Geometry
from .runs import RunMap

# pte states: what a present pte maps
PTE_ZERO = 0   # the shared zero page (never counted in rss)
PTE_ANON = 1   # a private anonymous page (or a private COW copy of a file page)
PTE_FILE = 2   # a page-cache / shmem page of the vma's file
PTE_PFN = 3    # a raw pfn from a driver's remap_pfn_range (not in rss)

PTE_NAMES = {PTE_ZERO: "zero", PTE_ANON: "anon", PTE_FILE: "file", PTE_PFN: "pfn"}
RSS_STATES = (PTE_ANON, PTE_FILE)


class PageTables:
    """The tables of one mm and the ptes in them."""

    __slots__ = ("geom", "levels", "shifts", "tables", "ptes", "prealloc", "walk", "_limits",
                 "huge", "huge_pgdir", "huge_shift")

    def __init__(self, geom: Geometry) -> None:
        self.geom = geom
        #: names of the table levels below the pgd, top first ('pud', 'pmd', 'pte' on x86_64)
        self.levels: tuple[str, ...] = tuple(lv.name for lv in geom.table_levels)
        #: level name -> log2 of one table's span
        self.shifts: dict[str, int] = {name: geom.table_span_shift(name) for name in self.levels}
        self.tables: dict[str, RunMap] = {name: RunMap() for name in self.levels}
        self.ptes = RunMap()
        self.prealloc = frozenset(lv.name for lv in geom.table_levels if lv.preallocated)
        #: per real level: (name, log2 entry span, log2 table span or None for the pgd)
        self.walk = tuple(
            (lv.name, lv.shift, None if lv.name == "pgd" else self.shifts[lv.name])
            for lv in geom.real_levels
        )
        #: down_to name -> the levels alloc() fills, top first
        self._limits = {
            name: tuple(lv for lv in self.levels
                        if LEVEL_NAMES.index(lv) <= LEVEL_NAMES.index(name) and lv not in self.prealloc)
            for name in LEVEL_NAMES
        }
        for name in self.prealloc:
            # i386 PAE: the pmd pages of every user pgd slot come with the pgd
            shift = self.shifts[name]
            self.tables[name].set(0, (geom.task_size - 1 >> shift) + 1)
        #: ppc64 (2.6.12) hugetlb tables, kept apart from the tree: the hugepte
        #: pages by index ``addr >> HUGEPGDIR_SHIFT`` and whether the one-page
        #: ``mm->context.huge_pgdir`` above them exists
        self.huge = RunMap()
        self.huge_pgdir = False
        #: HUGEPGDIR_SHIFT = HPAGE_SHIFT + PAGE_SHIFT - 3: the span of one hugepte page
        self.huge_shift = geom.hpage_shift + geom.page_shift - 3 if geom.hpage_shift else 0

    # --- queries -----------------------------------------------------------
    def index_range(self, name: str, start: int, end: int) -> tuple[int, int]:
        """Half-open range of table indices of ``name`` meeting [start, end); end 0 = top."""
        shift = self.shifts[name]
        last = (end - 1) & self.geom.mask
        return start >> shift, (last >> shift) + 1

    def count(self, name: str) -> int:
        return len(self.tables[name])

    def counts(self) -> dict[str, int]:
        return {name: len(self.tables[name]) for name in self.levels}

    def present(self, name: str, addr: int) -> bool:
        """Is the table of level ``name`` covering addr there?  Folded levels always are."""
        if name not in self.tables:
            return True
        return (addr >> self.shifts[name]) in self.tables[name]

    def rss_pages(self) -> int:
        t = self.ptes.totals
        return t.get(PTE_ANON, 0) + t.get(PTE_FILE, 0)

    # --- allocation ------------------------------------------------------------
    def alloc(self, start: int, end: int, down_to: str = "pte") -> dict[str, int]:
        """Make sure every table down to level ``down_to`` covering [start, end) exists.

        ``down_to`` is a level name ('pud', 'pmd', 'pte'); levels the geometry
        folds are skipped, so asking for 'pmd' on a 2-level geometry allocates
        nothing.

        Models the ``p?d_alloc`` chain of a fault; returns new tables per level.
        """
        new: dict[str, int] = {}
        levels = self._limits[down_to]
        if levels:
            # a tree: if the lowest level asked for is all there, so is the rest
            lowest = levels[-1]
            lo, hi = self.index_range(lowest, start, end)
            if self.tables[lowest].covers(lo, hi):
                return new
        for name in levels:
            lo, hi = self.index_range(name, start, end)
            n = self.tables[name].add(lo, hi)
            if n:
                new[name] = n
        return new

    def huge_pte_alloc(self, start: int, end: int) -> dict[str, int]:
        """``huge_pte_alloc`` for every huge page of [start, end) (HPAGE-aligned).

        Returns the new tables of the tree per level; what the arch keeps
        apart (ppc64's huge pgdir and hugepte pages) goes to ``huge`` and is
        not in the result.

        * x86, arm64 (``"leaf"``): the tables down to the level whose entry
          is the huge pte (pud and pmd on x86_64, none on i386);
        * sparc64 (``"pte"``): ordinary tables down to the PTE page;
        * ia64 (``"rescaled"``): ordinary tables down to the PTE page at
          ``htlbpage_to_page(addr)`` (arch/ia64/mm/hugetlbpage.c);
        * ppc64 (``"separate"``): ``hugepgd_alloc`` then ``hugepte_alloc``
          (arch/ppc64/mm/hugetlbpage.c).
        """
        g = self.geom
        kind = g.hugetlb_tables
        if kind == "rescaled":
            return self.alloc(g.htlbpage_to_page(start), g.htlbpage_to_page(end - 1) + 1, "pte")
        if kind == "separate":
            self.huge_pgdir = True
            last = (end - 1) >> self.huge_shift
            self.huge.add(start >> self.huge_shift, last + 1)
            return {}
        return self.alloc(start, end, g.huge_pte_level)

    def huge_counts(self) -> dict[str, int]:
        """The separately kept huge tables: ``{"huge_pgdir": 0 or 1, "hugepte": n}``."""
        return {"huge_pgdir": int(self.huge_pgdir), "hugepte": len(self.huge)}

    def free_huge_tables(self) -> dict[str, int]:
        """ppc64 ``hugetlb_mm_free_pgd`` (from ``destroy_context``): drop every huge table."""
        gone = self.huge_counts()
        self.huge = RunMap()
        self.huge_pgdir = False
        return gone

    def map_pages(self, first_page: int, end_page: int, state: int) -> list[tuple[int, int, object]]:
        """Set ptes of pages [first_page, end_page) to ``state``; tables must exist."""
        return self.ptes.set(first_page, end_page, state)

    def zap(self, start: int, end: int) -> list[tuple[int, int, object]]:
        """Clear every pte in [start, end); return the runs that were present."""
        ps = self.geom.page_shift
        return self.ptes.remove(start >> ps, end >> ps if end else self.geom.top >> ps)

    # --- freeing -----------------------------------------------------------------
    def remove_tables(self, name: str, lo: int, hi: int) -> int:
        """Drop tables of ``name`` with index in [lo, hi); return how many were present."""
        if name in self.prealloc:
            return 0
        return sum(b - a for a, b, _ in self.tables[name].remove(lo, hi))

    def strand_below(self, name: str, lo: int, hi: int) -> dict[str, int]:
        """Remove what lies under tables [lo, hi) of level ``name`` after they were freed.

        When free_pgd_range frees a higher table whose span holds a lower table
        it did not walk (an orphan outside every vma), the lower table becomes
        unreachable but stays allocated: it is leaked with its counter.
        Returns the stranded tables per level.
        """
        shift = self.shifts[name]
        start, end = lo << shift, hi << shift
        stranded: dict[str, int] = {}
        below = self.levels[self.levels.index(name) + 1:]
        for lower in below:
            a, b = start >> self.shifts[lower], end >> self.shifts[lower]
            n = self.remove_tables(lower, a, b)
            if n:
                stranded[lower] = n
        ps = self.geom.page_shift
        self.ptes.remove(start >> ps, end >> ps)
        return stranded

    def copy_range(self, other: "PageTables", start: int, end: int) -> dict[str, int]:
        """Copy into ``other`` every table meeting [start, end) and the ptes inside it.

        Models ``copy_page_range``: the child gets a table wherever the parent
        has one over the vma, empty or not.  Returns new tables per level.
        """
        new: dict[str, int] = {}
        ps = self.geom.page_shift
        g = self.geom
        t_start, t_end = start, end
        if g.hugepage_only and g.is_hugepage_only_range(start, end - start):
            # copy_hugetlb_page_range: only hugetlb vmas live here, and their
            # tables are where huge_pte_alloc put them
            if g.hugetlb_tables == "separate":
                for a, b, _ in self.huge.runs(start >> self.huge_shift, ((end - 1) >> self.huge_shift) + 1):
                    other.huge.add(a, b)
                    other.huge_pgdir = True
                t_end = t_start
            elif g.hugetlb_tables == "rescaled":
                t_start, t_end = g.htlbpage_to_page(start), g.htlbpage_to_page(end - 1) + 1
        for name in self.levels if t_start != t_end else ():
            if name in self.prealloc:
                continue
            lo, hi = self.index_range(name, t_start, t_end)
            n = 0
            for a, b, _ in self.tables[name].runs(lo, hi):
                n += other.tables[name].add(a, b)
            if n:
                new[name] = n
        for a, b, v in self.ptes.runs(start >> ps, end >> ps):
            other.ptes.set(a, b, v)
        return new

    def move_ptes(self, old_start: int, old_end: int, new_start: int) -> int:
        """Move the ptes of [old_start, old_end) to new_start (tables must exist there).

        Returns how many present ptes moved.
        """
        ps = self.geom.page_shift
        delta = (new_start - old_start) >> ps
        runs = self.ptes.remove(old_start >> ps, old_end >> ps)
        for a, b, v in runs:
            self.ptes.set(a + delta, b + delta, v)
        return sum(b - a for a, b, _ in runs)

    def move_table(self, name: str, old_addr: int, new_addr: int) -> None:
        """Move one table of level ``name`` and everything under it (``move_normal_p?d``).

        The parent entry moves: the table keeps its contents and counters do
        not change.  The destination slot must be empty.
        """
        shift = self.shifts[name]
        span = 1 << shift
        delta = new_addr - old_addr
        below = self.levels[self.levels.index(name):]
        for lvl in below:
            s = self.shifts[lvl]
            d = delta >> s
            runs = self.tables[lvl].remove(old_addr >> s, (old_addr + span) >> s)
            for a, b, v in runs:
                self.tables[lvl].set(a + d, b + d, v)
        self.move_ptes(old_addr, old_addr + span, new_addr)
