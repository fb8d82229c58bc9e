"""Linux 2.6.12: the seed patch in its final form (freepgt + freepgt2).

* ``nr_ptes`` counts PTE tables only, and so does VmPTE.
* ``unmap_region`` and ``exit_mmap`` free through ``free_pgtables`` on the
  vma list with floor/ceiling; ``exit_mmap`` ends with
  ``BUG_ON(nr_ptes > (FIRST_USER_ADDRESS + PMD_SIZE - 1) >> PMD_SHIFT)``.
* fork copies page tables for every vma (the anon_vma skip came in 2.6.14).
* mremap moves ptes one by one, no MREMAP_DONTUNMAP, no fault-around, no
  PT_RECLAIM.
"""

from __future__ import annotations

from .base import Era


class Linux2612(Era):
    name = "linux-2.6.12"
    description = "2.6.12: free_pgtables walks the vma list (the seed patch, final form)"
    gather_batch = 506  # FREE_PTE_NR on SMP
    # ZAP_BLOCK_SIZE without CONFIG_PREEMPT (8 pages with it)
    zap_block_pages = 1024
    vmpte_levels = ("pte",)


ERA = Linux2612()
