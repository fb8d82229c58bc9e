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
"""

from __future__ import annotations

from ..pagetable import PTE_FILE
from ..vma import VM_SHARED, Shmem, File
from .base import Era


class Linux2612(Era):
    name = "linux-2.6.12"
    description = "2.6.12: free_pgtables walks the vma list (the seed patch, final form)"
    gather_batch = 506  # FREE_PTE_NR on SMP
    # ZAP_BLOCK_SIZE without CONFIG_PREEMPT (8 pages with it)
    zap_block_pages = 1024

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
