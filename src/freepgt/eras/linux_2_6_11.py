"""Linux 2.6.11: four-level ``clear_page_range``, the regression the seed fixed.

* munmap's ``free_pgtables(tlb, prev, start, end)`` (mm/mmap.c) clears the
  vma-free gap from the end of the vma below (not rounded) to the start of
  the vma above or ``end + PGDIR_SIZE - 1`` (bounded by MM_VM_SIZE):
  ``clear_page_range`` frees a table only when the gap covers its whole
  span, so PTE pages go with PMD granularity.
* ``exit_mmap`` calls ``clear_page_range(FIRST_USER_PGD_NR * PGDIR_SIZE,
  MM_VM_SIZE(mm))``: it frees everything, but reads every entry of every
  present table of the whole user address space, at every level (on x86_64
  256 pgd slots, and 512 entries of each PUD and PMD table met).
* A failed driver mmap is undone by ``zap_page_range`` (no table freed).
* Everything else as in 2.6.12.
"""

from __future__ import annotations

from ..mm.legacy import clear_page_range, first_user_pgd_nr, free_pgtables_2611, mm_vm_size, zap_page_range
from .linux_2_6_12 import Linux2612


class Linux2611(Linux2612):
    name = "linux-2.6.11"
    description = "2.6.11: 4-level clear_page_range; exit walks the whole user address space"
    gather_batch = 506
    zap_block_pages = 1024
    preempt = False
    first_posting_trim = False
    madvise_dontneed_hugetlb = False
    leaves_gap_tables = True
    gather_skips_hugetlb = False
    has_flush_tlb_pgtables = True
    flush_tlb_pgtables_signed = True

    mmap_min_addr = 0
    map_shared_validate = False
    vm_noreserve = False
    madvise_dontneed_pfnmap = True
    sigbus_allocates_pte = True
    cow_prepares_anon_vma_first = False
    every_split_checks_map_count = True
    fork_shares_anon_vma = True
    legacy_mremap = True
    brk_legacy = True
    pt_reclaim = False
    fault_around = False
    mremap_moves_tables = False
    mremap_realign = False
    mremap_dontunmap = False
    mremap_multi_vma = False
    mremap_expand_merges = False
    map_fixed_noreplace = False
    mprotect_unaccounts = False
    vmpte_levels = ("pte",)

    def unmap_region_free(self, mm, tlb, vmas, prev, nxt, start, end) -> None:
        free_pgtables_2611(mm, tlb, prev, nxt, start, end)

    def exit_free(self, mm, tlb, vmas) -> None:
        g = mm.geom
        clear_page_range(mm, tlb, first_user_pgd_nr(g) * g.PGDIR_SIZE, mm_vm_size(g))

    def mmap_driver_failed(self, mm, vma, prev, nxt) -> None:
        zap_page_range(mm, vma)

    def exit_check(self, mm) -> None:
        # BUG_ON(mm->map_count) only: the whole-space walk leaves no user table
        pass


ERA = Linux2611()
