"""One address space: the model's ``struct mm_struct`` and its vma plumbing.

The mm owns the vma set, the page-table tree, the kernel's counters of
page tables (kept separately from the tree, as the kernel keeps them, so
that a leak or a stranded table shows as a difference), the TLB statistics
and the per-level count of entries that walks read.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..arch import Geometry
from ..errors import syscall_error
from ..latency import LockRuns
from ..pagetable import PageTables
from ..tlb import MmuGather, TlbStats
from ..vma import VM_HUGETLB, Vma, VmaSet, is_mergeable

if TYPE_CHECKING:
    from ..eras import Era

DEFAULT_MAX_MAP_COUNT = 65530


class MM:
    """``struct mm_struct`` for one process."""

    def __init__(self, era: "Era", geom: Geometry) -> None:
        self.era = era
        self.geom = geom
        self.pt = PageTables(geom)
        self.vmas = VmaSet()
        #: the kernel's page-table counters: tables allocated minus tables freed,
        #: per level (``nr_ptes``, ``nr_pmds``, ``nr_puds``); stranded tables stay in
        self.nr_tables: dict[str, int] = {name: 0 for name in self.pt.levels}
        #: tables left unreachable under a freed higher table (still counted)
        self.stranded: dict[str, int] = {}
        self.tlb_stats = TlbStats()
        self.entries_examined: dict[str, int] = {}
        #: work under the page-table lock between lock-drop points (latency.py)
        self.latency = LockRuns()
        self.stats: dict[str, int] = {"free_pgd_range_calls": 0, "tables_allocated": 0}
        self.max_map_count = DEFAULT_MAX_MAP_COUNT
        self.start_brk = geom.start_brk
        self.brk = geom.start_brk
        self.mmap_base = geom.mmap_base
        #: (length, top): no free gap of ``length`` bytes lies between top and
        #: mmap_base; dropped whenever address space is freed
        self.topdown_cache: tuple[int, int] | None = None
        #: legacy bottom-up placement: where the next search starts
        self.free_area_cache: int | None = None
        #: pages charged by VM_ACCOUNT (``vm_committed_as`` for this mm)
        self.committed = 0
        self.warnings: list[str] = []
        self.dead = False
        if geom.vectors_pte:
            # ARM get_pgd_slow (arch/arm/mm/mm-armv.c): with low vectors the
            # first page holds the machine vectors, so the pgd comes with the
            # PTE page of [0, PMD_SIZE), allocated by pte_alloc_map (nr_ptes
            # is 1 from the start); free_pgd_slow frees it with the pgd
            self.alloc_tables(0, geom.page_size)

    # --- counters -----------------------------------------------------------
    @property
    def map_count(self) -> int:
        return len(self.vmas)

    def alloc_tables(self, start: int, end: int, down_to: str = "pte") -> None:
        """Allocate the tables a fault over [start, end) needs, counting them."""
        for name, n in self.pt.alloc(start, end, down_to).items():
            self.nr_tables[name] += n
            self.stats["tables_allocated"] += n

    def free_tables(self, tlb: MmuGather, name: str, n: int, start: int, end: int) -> None:
        """Hand n freed tables of ``name`` to the gather and uncount them."""
        self.nr_tables[name] -= n
        tlb.free_tables(name, n, start, end)

    def huge_pte_alloc(self, start: int, end: int) -> None:
        """``huge_pte_alloc`` for the huge pages of [start, end), counting the tree's new tables.

        The tables ppc64 keeps apart are counted in ``huge_tables``, not here:
        nothing but ``destroy_context`` frees them.
        """
        for name, n in self.pt.huge_pte_alloc(start, end).items():
            self.nr_tables[name] += n
            self.stats["tables_allocated"] += n

    @property
    def huge_tables(self) -> dict[str, int]:
        """ppc64's separately kept hugetlb tables: ``{"huge_pgdir": 0|1, "hugepte": n}``."""
        return self.pt.huge_counts()

    def destroy_context(self) -> dict[str, int]:
        """``destroy_context`` when the mm is dropped: ppc64 frees its huge tables here.

        Returns what was freed (nothing on other architectures).
        """
        gone = self.pt.free_huge_tables()
        self.stats["huge_tables_freed"] = self.stats.get("huge_tables_freed", 0) + sum(gone.values())
        return gone

    def table_count(self, name: str) -> int:
        return self.nr_tables.get(name, 0)

    @property
    def pgtables_bytes(self) -> int:
        """What the era shows as VmPTE, in bytes."""
        return self.era.vmpte_bytes(self)

    @property
    def nr_ptes(self) -> int:
        return self.nr_tables.get("pte", 0)

    @property
    def rss(self) -> int:
        """Resident bytes: present ptes mapping real pages (not the zero page)."""
        return self.pt.rss_pages() << self.geom.page_shift

    def tlb_gather_mmu(self, fullmm: bool = False) -> MmuGather:
        """``tlb_gather_mmu``: a gather for this mm."""
        return MmuGather(self.tlb_stats, fullmm, self.era.gather_batch)

    # --- vma plumbing -----------------------------------------------------------
    def check_alive(self) -> None:
        if self.dead:
            raise syscall_error(errno.ESRCH, "the process has exited")

    def split_vma(self, vma: Vma, addr: int) -> Vma:
        """``__split_vma``: cut vma at addr; return the upper piece (the lower keeps ``vma``).

        A hugetlb vma can only be cut on a huge page boundary (EINVAL).
        """
        ps = self.geom.page_shift
        if vma.vm_flags & VM_HUGETLB and addr & (self.geom.HPAGE_SIZE - 1):
            raise syscall_error(errno.EINVAL, f"split of a hugetlb vma at {addr:#x}")
        upper = vma.clone()
        upper.vm_start = addr
        upper.vm_pgoff = vma.vm_pgoff + ((addr - vma.vm_start) >> ps)
        vma.vm_end = addr
        self.vmas.insert(upper)
        return upper

    def merge_with_neighbours(self, vma: Vma) -> Vma:
        """Merge a linked vma with its prev and/or next where Linux's rules allow.

        When prev and next could each merge but their anon_vmas differ, the
        vma joins the lower one (``vma_merge``'s prev-first preference).
        """
        ps = self.geom.page_shift
        prev = self.vmas.prev(vma)
        nxt = self.vmas.next(vma)
        can_prev = prev is not None and is_mergeable(prev, vma, ps)
        can_next = nxt is not None and is_mergeable(vma, nxt, ps)
        if can_prev and can_next:
            av = [a for a in (prev.anon_vma, vma.anon_vma, nxt.anon_vma) if a is not None]
            if all(a is av[0] for a in av):
                self._absorb(prev, vma)
                self._absorb(prev, nxt)
                return prev
            can_next = False
        if can_prev:
            self._absorb(prev, vma)
            return prev
        if can_next:
            self._absorb(vma, nxt)
            return vma
        return vma

    def _absorb(self, lower: Vma, upper: Vma) -> None:
        """Extend ``lower`` over ``upper`` and drop ``upper`` (lower keeps its start and pgoff)."""
        self.vmas.remove(upper)
        lower.vm_end = upper.vm_end
        if lower.anon_vma is None:
            lower.anon_vma = upper.anon_vma

    def insert_vma(self, vma: Vma) -> Vma:
        """Link a new vma and merge it with its neighbours when allowed."""
        self.vmas.insert(vma)
        return self.merge_with_neighbours(vma)
