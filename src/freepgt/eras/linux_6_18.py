"""Linux 6.18: what this machine runs (x86_64, 4-level at runtime).

* ``pgtables_bytes`` (VmPTE) counts PUD, PMD and PTE tables; P4D and the pgd
  are not counted.
* ``CONFIG_PT_RECLAIM``: ``MADV_DONTNEED`` frees a PTE table whose whole
  span it zapped within one vma (6.14, "mm: pgtable: reclaim empty PTE page
  in madvise(MADV_DONTNEED)").
* fork copies page tables only for vmas with an anon_vma (or pfn maps):
  ``vma_needs_copy``.
* mremap moves whole PMD and PUD tables when both ends are aligned
  (HAVE_MOVE_PMD / HAVE_MOVE_PUD), realigns unaligned moves
  (``try_realign_addr``), supports MREMAP_DONTUNMAP and multi-vma moves.
* fault-around maps cached pages in a 64 KiB window on read faults.
* Leftover page tables at exit are reported by ``check_mm`` ("non-zero
  pgtables_bytes on freeing mm"), a warning, not a BUG.
"""

from __future__ import annotations

from ..errors import KernelBug
from ..vma import VM_PFNMAP
from .base import Era


class Linux618(Era):
    name = "linux-6.18"
    description = "6.18: this machine's kernel (PT_RECLAIM, anon_vma fork rule, PMD/PUD mremap moves)"
    # MAX_GATHER_BATCH (510 on 4 KiB pages) x MAX_GATHER_BATCH_COUNT (19)
    gather_batch = 510 * 19
    pt_reclaim = True
    fault_around = True
    mremap_moves_tables = True
    mremap_realign = True
    mremap_dontunmap = True
    map_fixed_noreplace = True
    mprotect_unaccounts = True
    mremap_multi_vma = True
    mremap_expand_merges = True
    vmpte_levels = ("pud", "pmd", "pte")
    zap_block_pages = None
    preempt = False
    first_posting_trim = False
    madvise_dontneed_hugetlb = True
    leaves_gap_tables = False
    gather_skips_hugetlb = True
    # flush_tlb_pgtables was removed tree-wide in 2.6.24
    has_flush_tlb_pgtables = False
    flush_tlb_pgtables_signed = False
    mmap_min_addr = 65536
    map_shared_validate = True
    vm_noreserve = True
    madvise_dontneed_pfnmap = False
    sigbus_allocates_pte = False
    cow_prepares_anon_vma_first = True
    every_split_checks_map_count = False
    fork_shares_anon_vma = False
    legacy_mremap = False
    brk_legacy = False

    def reclaims_pt(self, geom) -> bool:
        # only x86_64 selects ARCH_SUPPORTS_PT_RECLAIM ("x86: select
        # ARCH_SUPPORTS_PT_RECLAIM if X86_64")
        return geom.name.startswith("x86_64")

    def fork_copies(self, vma) -> bool:
        return vma.anon_vma is not None or bool(vma.vm_flags & VM_PFNMAP)

    def exit_check(self, mm) -> None:
        # __mmdrop frees the pgd (and with it ARM's vectors PTE table,
        # uncounted by pgd_free) before check_mm looks
        left = self.vmpte_bytes(mm)
        g = mm.geom
        for level, start, end in g.reserved_tables:
            if level in self.vmpte_levels:
                lo, hi = mm.pt.index_range(level, start, end)
                left -= mm.pt.tables[level].count(lo, hi) * g.level(level).table_bytes
        if left:
            mm.warnings.append(f"BUG: non-zero pgtables_bytes on freeing mm: {left}")
            raise KernelBug("check_mm: non-zero pgtables_bytes on freeing mm", f"{left} bytes left")


ERA = Linux618()
