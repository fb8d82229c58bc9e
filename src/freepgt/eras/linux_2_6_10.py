"""Linux 2.6.10: three-level ``clear_page_tables``, before 4-level page tables.

* munmap's ``free_pgtables(tlb, prev, start, end)`` (mm/mmap.c) frees only
  whole pgd slots lying in the vma-free gap around the hole; every PTE page
  in a slot still shared with a survivor stays until exit.
* ``exit_mmap`` clears every user pgd slot, ``clear_page_tables(tlb,
  FIRST_USER_PGD_NR, USER_PTRS_PER_PGD)``, whatever the vmas: the walk reads
  each slot and the whole pmd table under each present one.
* A failed driver mmap is undone by ``zap_page_range``, which frees no
  table: what the driver allocated waits for a gap or for exit.
* The generic code has three levels (pgd, pmd, pte): on x86_64 the era
  uses its own layout (``x86_64-2.6.10``: the generic pgd under an
  arch-private PML4, 1 GiB slots, 511 GiB of user space); a geometry with
  more real levels has no 2.6.10 form.
* Everything else is as in 2.6.12 (``nr_ptes`` counts PTE pages only, fork
  copies every vma, ``ZAP_BLOCK_SIZE`` blocks, legacy mremap and brk).
"""

from __future__ import annotations

from ..arch import PRESETS, get_arch
from ..mm.legacy import clear_page_tables, first_user_pgd_nr, free_pgtables_2610, user_ptrs_per_pgd, zap_page_range
from .linux_2_6_12 import Linux2612

#: architectures whose 2.6.10 layout differs from the preset of the same name
OLD_LAYOUTS = {"x86_64": "x86_64-2.6.10"}


class Linux2610(Linux2612):
    name = "linux-2.6.10"
    description = "2.6.10: exit clears every user pgd slot; munmap frees whole pgd slots of the gap"
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

    def geometry(self, arch):
        if isinstance(arch, str) and arch in OLD_LAYOUTS and OLD_LAYOUTS[arch] in PRESETS:
            arch = OLD_LAYOUTS[arch]
        g = get_arch(arch)
        if len(g.real_levels) > 3:
            raise ValueError(f"{self.name} has three-level page tables; {g.name} needs "
                             f"{len(g.real_levels)}")
        return g

    def unmap_region_free(self, mm, tlb, vmas, prev, nxt, start, end) -> None:
        free_pgtables_2610(mm, tlb, prev, nxt, start, end)

    def exit_free(self, mm, tlb, vmas) -> None:
        g = mm.geom
        clear_page_tables(mm, tlb, first_user_pgd_nr(g), user_ptrs_per_pgd(g))

    def mmap_driver_failed(self, mm, vma, prev, nxt) -> None:
        zap_page_range(mm, vma)

    def exit_check(self, mm) -> None:
        # BUG_ON(mm->map_count) only: the exhaustive walk leaves no user table
        pass


ERA = Linux2610()
