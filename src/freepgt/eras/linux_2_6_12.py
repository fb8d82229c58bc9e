"""Linux 2.6.12: the seed patch in its final form (freepgt + freepgt2).

* ``nr_ptes`` counts PTE tables only, and so does VmPTE.
* ``unmap_region`` and ``exit_mmap`` free through ``free_pgtables`` on the
  vma list with floor/ceiling; ``exit_mmap`` ends with
  ``BUG_ON(nr_ptes > (FIRST_USER_ADDRESS + PMD_SIZE - 1) >> PMD_SHIFT)``.
* fork copies page tables for every vma (the anon_vma skip came in 2.6.14).
* mremap moves ptes one by one, no MREMAP_DONTUNMAP, no fault-around, no
  PT_RECLAIM, no MAP_FIXED_NOREPLACE (the bit is ignored: a hint).
* MAP_POPULATE is ``sys_remap_file_pages`` on the new range: only a shared
  file or shmem mapping lying wholly below the object's end is populated
  (``filemap_populate`` / ``shmem_populate``); private mappings are not.
* No VM_NORESERVE (MAP_NORESERVE only skips the charge), no mmap_min_addr,
  hints rounded up (PAGE_ALIGN), and on 64-bit the legacy bottom-up
  placement from TASK_UNMAPPED_BASE with ``free_area_cache``.
* A read fault needs VM_READ or VM_EXEC (a write-only vma is readable only
  where a pte is already present); ``handle_mm_fault`` allocates the PTE
  table before ``->nopage`` says SIGBUS; ``anon_vma_prepare`` comes only
  after the page was found.
* ``split_vma`` refuses at ``max_map_count`` on every split; MADV_DONTNEED
  refuses only VM_LOCKED and hugetlb vmas; fork links the child to the
  parent's anon_vma (``anon_vma_link``).
"""

from __future__ import annotations

from ..pagetable import PTE_FILE
from ..mm.mmap import place_bottom_up, place_top_down
from ..vma import VM_EXEC, VM_READ, VM_SHARED, VM_WRITE, File, Shmem
from .base import Era


class Linux2612(Era):
    name = "linux-2.6.12"
    description = "2.6.12: free_pgtables walks the vma list (the seed patch, final form)"
    gather_batch = 506  # FREE_PTE_NR on SMP
    # ZAP_BLOCK_SIZE without CONFIG_PREEMPT (8 pages with it)
    zap_block_pages = 1024
    preempt = False
    first_posting_trim = False
    madvise_dontneed_hugetlb = False
    leaves_gap_tables = False
    gather_skips_hugetlb = False
    has_flush_tlb_pgtables = True
    flush_tlb_pgtables_signed = False

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

    def round_hint(self, geom, addr: int) -> int:
        # arch_get_unmapped_area: addr = PAGE_ALIGN(addr)
        ps = geom.page_size
        return geom.u(addr + ps - 1) & ~(ps - 1)

    def place_mapping(self, mm, length: int) -> int:
        if mm.geom.word_bits == 64:
            return place_bottom_up(mm, length)
        return place_top_down(mm, length)

    def unmap_area(self, mm, vma) -> None:
        # arch_unmap_area: let the next search start at the hole
        base = self.task_unmapped_base(mm.geom)
        cache = mm.free_area_cache if mm.free_area_cache is not None else base
        if base <= vma.vm_start < cache:
            mm.free_area_cache = vma.vm_start

    def read_permitted(self, vma, present: bool) -> bool:
        # do_page_fault: a read needs VM_READ or VM_EXEC; a present pte
        # (written before) is readable by the hardware whatever the vma says
        f = vma.vm_flags
        return bool(f & (VM_READ | VM_EXEC)) or (present and bool(f & VM_WRITE))

    def populate(self, mm, vma, start, end) -> None:
        # sys_remap_file_pages: a shared vma whose vm_ops has ->populate
        if not vma.vm_flags & VM_SHARED or not isinstance(vma.vm_file, (File, Shmem)):
            return
        g = mm.geom
        ps = g.page_shift
        obj = vma.vm_file
        pgoff = vma.vm_pgoff + ((start - vma.vm_start) >> ps)
        npages = (end - start) >> ps
        if pgoff + npages > obj.npages:
            return  # filemap_populate / shmem_populate: -EINVAL past the end
        mm.alloc_tables(start, end)
        mm.pt.map_pages(start >> ps, end >> ps, PTE_FILE)
        obj.cache.set(pgoff, pgoff + npages)
    vmpte_levels = ("pte",)


ERA = Linux2612()
