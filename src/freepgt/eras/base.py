"""What every era shares, and the hooks an era module overrides.

An era bundles what differs between kernels: how page tables are freed on
munmap and at exit, what is counted as VmPTE, whether empty PTE tables are
reclaimed on ``MADV_DONTNEED``, which vmas fork copies page tables for, and
what mremap can move whole.  The syscall layer asks the era; adding an era
is adding one module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import KernelBug
from ..mm.memory import free_pgtables

if TYPE_CHECKING:
    from ..arch import Geometry
    from ..mm.core import MM
    from ..tlb import MmuGather
    from ..vma import Vma


class Era:
    """Base era: the seed's vma-list freeing, shared by 2.6.12 and later.

    The class attributes are the switches; each era module sets every one
    of them, so a new era reads as a complete list, not as a difference
    from whatever the base happens to say.
    """

    name = "base"
    description = ""
    #: ``FREE_PTE_NR`` / the gather's batch: entries queued before a forced flush
    gather_batch = 506
    #: CONFIG_PT_RECLAIM: MADV_DONTNEED frees fully zapped PTE tables
    pt_reclaim = False
    #: MADV_DONTNEED zaps pfn mappings too (only VM_LOCKED and hugetlb
    #: were refused before VM_PFNMAP joined the list)
    madvise_dontneed_pfnmap = False
    #: mprotect to read-only uncharges an unfaulted anonymous vma (6.7)
    mprotect_unaccounts = False
    #: MAP_FIXED_NOREPLACE is known (4.17); older kernels ignore the bit,
    #: which makes the address a plain hint
    map_fixed_noreplace = False
    #: read faults on file/shmem map cached neighbours (``do_fault_around``)
    fault_around = False
    #: mremap moves whole PMD/PUD-level tables when aligned (HAVE_MOVE_PMD/PUD)
    mremap_moves_tables = False
    #: mremap realigns an unaligned move to move the first PTE table whole
    mremap_realign = False
    #: MREMAP_DONTUNMAP exists
    mremap_dontunmap = False
    #: a vma grown in place by mremap merges with the next one it now touches
    mremap_expand_merges = False
    #: mremap(fixed) with OLDLEN == NEWLEN may span several vmas
    mremap_multi_vma = False
    #: the levels whose tables VmPTE counts
    vmpte_levels: tuple[str, ...] = ("pte",)

    #: ``ZAP_BLOCK_SIZE`` in pages for eras whose unmap_vmas works in blocks
    #: (None: no block-wise gather restarts)
    zap_block_pages: int | None = None

    #: free_pgd_range trims as the seed's first posting did (21 March 2005):
    #: the ceiling rounded without the "rounded to 0" check and ``end`` never
    #: trimmed, so the walk may start past its end
    first_posting_trim = False
    #: free_pgd_range ends with the arch hook ``flush_tlb_pgtables`` (2.6.x
    #: until 2.6.24 removed it; only sparc64's does anything)
    has_flush_tlb_pgtables = False
    #: sparc64's flush_tlb_pgtables compares start and end as longs, so a
    #: range straddling the VA hole hits its BUG (before DaveM's 2.6.12 fix)
    flush_tlb_pgtables_signed = False
    #: tables that no vma spans may stay until exit by design (2.6.10 and
    #: 2.6.11 free only whole slots or spans of the gap around a hole, and
    #: a failed driver mmap frees no table): the no-orphan check is off
    leaves_gap_tables = False
    #: MADV_DONTNEED zaps whole huge pages of a hugetlb vma (2.6: EINVAL)
    madvise_dontneed_hugetlb = False
    #: free_pgtables takes every hugetlb vma alone (``is_vm_hugetlb_page``);
    #: 2.6.12 singles out only ia64's and ppc64's hugepage-only ranges
    gather_skips_hugetlb = False
    #: CONFIG_PREEMPT: ZAP_BLOCK_SIZE is 8 pages instead of zap_block_pages,
    #: so unmap_vmas offers to drop the lock (and flushes the TLB) every 8 pages
    preempt = False

    def zap_block_bytes(self, geom: "Geometry") -> int:
        """``ZAP_BLOCK_SIZE`` in bytes, or 0 when the era has none."""
        if not self.zap_block_pages:
            return 0
        return (8 if self.preempt else self.zap_block_pages) << geom.page_shift

    #: mmap_min_addr: hints below it are raised to it (round_hint_to_min)
    mmap_min_addr = 65536
    #: MAP_SHARED_VALIDATE (private|shared on a file) is a shared mapping (4.15)
    map_shared_validate = True
    #: MAP_NORESERVE sets VM_NORESERVE (2.6.15); before, it only skipped the charge
    vm_noreserve = True

    #: a fault past EOF has allocated the PTE table before it is refused
    sigbus_allocates_pte = False
    #: a private write fault attaches the anon_vma before asking the file
    #: (do_cow_fault), so a write past EOF leaves one behind
    cow_prepares_anon_vma_first = True
    #: split_vma refuses at max_map_count for every split (munmap included)
    every_split_checks_map_count = False
    #: the child's vmas join the parent's anon_vma instead of a new one
    fork_shares_anon_vma = False
    #: 2.6's brk: do_brk merges with any vma ending at the break, and a
    #: shrink over nothing still moves the break
    brk_legacy = False
    #: do_mremap of the 2.6 era: resize before looking at the vma
    legacy_mremap = False

    def geometry(self, arch: "str | Geometry") -> "Geometry":
        """The page-table geometry this era gives the architecture ``arch``.

        Most eras use the preset as it is; an era older than a layout (2.6.10
        on x86_64, before 4-level tables) maps it to the layout it had.
        """
        from ..arch import get_arch

        return get_arch(arch)

    def with_switches(self, **switches) -> "Era":
        """A copy of this era with some switches changed (``preempt=True`` ...).

        Only existing switches may be set; the copy keeps the era's name with
        the changes appended, so reports say which variant ran.
        """
        import copy

        variant = copy.copy(self)
        for key, value in switches.items():
            if not hasattr(type(self), key) or callable(getattr(type(self), key)):
                raise ValueError(f"{self.name}: no switch called {key!r}")
            setattr(variant, key, value)
        variant.name = self.name + "".join(f" {k}={v}" for k, v in switches.items())
        return variant

    def read_permitted(self, vma: "Vma", present: bool) -> "bool | None":
        """An era's own read-access rule, or None to use the architecture's."""
        return None

    def round_hint(self, geom: "Geometry", addr: int) -> int:
        """The hint as the placement code sees it: rounded down, raised to mmap_min_addr."""
        addr &= ~(geom.page_size - 1)
        if addr and addr < self.mmap_min_addr:
            addr = self.mmap_min_addr
        return addr

    def place_mapping(self, mm: "MM", length: int) -> int:
        """Where an mmap without a usable hint goes: top-down below mmap_base."""
        from ..mm.mmap import place_top_down

        return place_top_down(mm, length)

    def task_unmapped_base(self, geom: "Geometry") -> int:
        """TASK_UNMAPPED_BASE: PAGE_ALIGN(TASK_SIZE / 3), unless the architecture has its own."""
        if geom.task_unmapped_base:
            # ia64 region 1, sparc64 PAGE_OFFSET, ppc64 TASK_SIZE / 4
            return geom.task_unmapped_base
        ps = geom.page_size
        return (geom.task_size // 3 + ps - 1) & ~(ps - 1)

    def unmap_area(self, mm: "MM", vma: "Vma") -> None:
        """``mm->unmap_area`` for each vma munmap removes (legacy placement's cache)."""

    def reclaims_pt(self, geom: "Geometry") -> bool:
        """Does MADV_DONTNEED free empty PTE tables on this architecture?"""
        return self.pt_reclaim

    # --- counting ------------------------------------------------------------
    def vmpte_bytes(self, mm: "MM") -> int:
        """VmPTE in bytes: the counted levels' tables (stranded ones included)."""
        g = mm.geom
        total = 0
        for name in self.vmpte_levels:
            lv = g.level(name)
            if lv.folded or lv.preallocated:
                continue
            total += mm.nr_tables.get(name, 0) * lv.table_bytes
        return total

    def fault_around_pages(self, geom: "Geometry") -> int:
        """``fault_around_bytes`` (64 KiB) in pages."""
        return max(1, 65536 >> geom.page_shift)

    # --- freeing ---------------------------------------------------------------
    def unmap_region_free(self, mm: "MM", tlb: "MmuGather", vmas: list["Vma"],
                          prev: "Vma | None", nxt: "Vma | None", start: int, end: int) -> None:
        """Free the tables of removed ``vmas`` after their ptes were zapped.

        The seed's ``unmap_region``: ``free_pgtables`` with floor = end of the
        vma below (or FIRST_USER_ADDRESS) and ceiling = start of the vma above
        (or USER_PGTABLES_CEILING).
        """
        g = mm.geom
        floor = prev.vm_end if prev is not None else g.first_user_address
        ceiling = nxt.vm_start if nxt is not None else g.user_pgtables_ceiling
        free_pgtables(mm, tlb, vmas, floor, ceiling)

    def exit_free(self, mm: "MM", tlb: "MmuGather", vmas: list["Vma"]) -> None:
        """``exit_mmap``'s table teardown: free_pgtables over the whole vma list."""
        g = mm.geom
        free_pgtables(mm, tlb, vmas, g.first_user_address, g.user_pgtables_ceiling)

    def mmap_driver_failed(self, mm: "MM", vma: "Vma", prev: "Vma | None", nxt: "Vma | None") -> None:
        """Undo a failed driver mmap: the seed sends it through ``unmap_region``."""
        from ..mm.mmap import unmap_region

        unmap_region(mm, [vma], prev, nxt, vma.vm_start, vma.vm_end)

    def after_free_pgd_range(self, mm: "MM", tlb: "MmuGather", start: int, end: int) -> None:
        """Arch hook at the end of free_pgd_range (``flush_tlb_pgtables`` in 2.6.12).

        ``if (!tlb->fullmm) flush_tlb_pgtables(mm, start, end)`` with the
        trimmed bounds, in eras that have the hook; the architecture decides
        what it does (``freepgt.archhooks``: sparc64 flushes its VPTE area).
        """
        if self.has_flush_tlb_pgtables and not tlb.fullmm:
            from ..archhooks import flush_tlb_pgtables

            flush_tlb_pgtables(mm, start, end, signed_check=self.flush_tlb_pgtables_signed)

    # --- populate -------------------------------------------------------------------
    def populate(self, mm: "MM", vma: "Vma", start: int, end: int) -> None:
        """MAP_POPULATE after mmap: ``mm_populate`` faults the range in."""
        from ..mm.memory import populate_range

        populate_range(mm, vma, start, end)

    # --- fork ---------------------------------------------------------------------
    def fork_copies(self, vma: "Vma") -> bool:
        """Does ``dup_mmap`` call ``copy_page_range`` for this vma?"""
        return True

    # --- exit ---------------------------------------------------------------------
    def exit_check(self, mm: "MM") -> None:
        """The checks that follow exit_mmap; raise KernelBug when one fires."""
        allowed = (mm.geom.first_user_address + mm.geom.PMD_SIZE - 1) >> mm.geom.PMD_SHIFT
        if mm.nr_ptes > allowed:
            raise KernelBug(
                "BUG_ON(mm->nr_ptes > (FIRST_USER_ADDRESS+PMD_SIZE-1)>>PMD_SHIFT)",
                f"nr_ptes is {mm.nr_ptes} after exit_mmap, at most {allowed} allowed",
            )
