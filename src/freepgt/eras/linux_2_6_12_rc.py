"""Linux 2.6.12-rc: the seed patch as first merged ("freepgt: free_pgtables use vma list").

* ``unmap_region`` passes floor = end of the vma below or **0**, ceiling =
  start of the vma above or 0; ``exit_mmap`` calls ``free_pgtables(&tlb,
  vma, 0, 0)``.  With FIRST_USER_ADDRESS not yet the default floor, ARM's
  first PTE page (the one holding the vectors) is freed by any walk that
  reaches it: the bug freepgt2 fixed.
* ``exit_mmap`` ends with the exact ``BUG_ON(mm->nr_ptes)``.
* No hugepage-only handling yet (``hugetlb_free_pgd_range`` came with
  patch 3/6): a hugepage-only vma goes through ``free_pgd_range`` as is.
* The switch ``first_posting_trim`` gives the trimming of the first posting
  (21 March 2005): ``ceiling &= PMD_MASK; if (addr > ceiling - 1) return``,
  with ``end`` never trimmed, so ``addr`` can be rounded past ``end`` and
  sparc64's ``flush_tlb_pgtables`` sees start > end.
* Everything else as in 2.6.12.
"""

from __future__ import annotations

from ..errors import KernelBug
from ..mm.memory import free_pgtables
from .linux_2_6_12 import Linux2612


class Linux2612rc(Linux2612):
    name = "linux-2.6.12-rc"
    description = "2.6.12-rc: the seed patch as first merged (floor/ceiling default 0, exact BUG_ON(nr_ptes))"
    gather_batch = 506
    zap_block_pages = 1024
    has_flush_tlb_pgtables = True
    flush_tlb_pgtables_signed = False
    first_posting_trim = False
    madvise_dontneed_hugetlb = False
    leaves_gap_tables = False
    gather_skips_hugetlb = False
    preempt = False

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
        floor = prev.vm_end if prev is not None else 0
        ceiling = nxt.vm_start if nxt is not None else 0
        free_pgtables(mm, tlb, vmas, floor, ceiling, hugetlb=False)

    def exit_free(self, mm, tlb, vmas) -> None:
        free_pgtables(mm, tlb, vmas, 0, 0, hugetlb=False)

    def exit_check(self, mm) -> None:
        if mm.nr_ptes:
            raise KernelBug("BUG_ON(mm->nr_ptes)", f"nr_ptes is {mm.nr_ptes} after exit_mmap")


ERA = Linux2612rc()
