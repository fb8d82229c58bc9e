"""Page-table freeing before the seed patch: 2.6.10 and 2.6.11.

Before freepgt, nothing that frees page tables looked at the vma list.
``exit_mmap`` cleared the whole user part of the pgd, and munmap's
``free_pgtables`` (then in ``mm/mmap.c``) worked out a vma-free gap around
the hole from its two neighbours and cleared whatever the gap covered:

* 2.6.10 ``clear_page_tables(tlb, first, nr)`` clears whole pgd slots, with
  everything below them, and never looks at alignment;
* 2.6.11 ``clear_page_range(tlb, start, end)`` walks every level of
  [start, end) and frees a table only when the range covers its whole span.

Both walks read every entry of every present table they visit, which is
what made 2.6.11's exit (the whole user address space, four levels on
x86_64) the regression the seed fixed.  What each walk reads is added to
``mm.entries_examined``; what it frees goes through the gather as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..tlb import MmuGather
from ..vma import VM_ACCOUNT, Vma
from .memory import count_entries, unmap_vmas

if TYPE_CHECKING:
    from ..arch import Geometry
    from .core import MM


# ---------------------------------------------------------------------------
# The constants of the era, derived from the geometry
# ---------------------------------------------------------------------------

def first_user_pgd_nr(g: "Geometry") -> int:
    """``FIRST_USER_PGD_NR``: the first pgd slot user tables may use (ARM: 1)."""
    return (g.first_user_address + g.PGDIR_SIZE - 1) >> g.PGDIR_SHIFT


def _slots_per_region(g: "Geometry") -> int:
    return g.levels[0].ptrs >> (g.word_bits - g.region_shift)


def user_ptrs_per_pgd(g: "Geometry") -> int:
    """``USER_PTRS_PER_PGD``: the user pgd slots from FIRST_USER_PGD_NR up to TASK_SIZE.

    ia64 gives each user region its share of the pgd (5 regions of 256
    slots with 16 KiB pages); sparc64's TASK_SIZE reaches past the hole, so
    every slot of its pgd is a user slot.
    """
    if g.region_shift:
        regions = -(-g.task_size >> g.region_shift)
        return regions * _slots_per_region(g) - first_user_pgd_nr(g)
    slots = min((g.task_size + g.PGDIR_SIZE - 1) >> g.PGDIR_SHIFT, g.levels[0].ptrs)
    return slots - first_user_pgd_nr(g)


def mm_vm_size(g: "Geometry") -> int:
    """``MM_VM_SIZE(mm)``: TASK_SIZE rounded up to PGDIR_SIZE (ia64: DEFAULT_TASK_SIZE)."""
    size = (g.task_size + g.PGDIR_SIZE - 1) & ~(g.PGDIR_SIZE - 1)
    return size & g.mask or g.task_size


def pgd_index(g: "Geometry", addr: int) -> int:
    """``pgd_index(addr)``: the slot of addr in the pgd (ia64: by region)."""
    return g.pgd_index(addr)


def slot_ranges(g: "Geometry", first: int, nr: int) -> list[tuple[int, int]]:
    """The address ranges that pgd slots [first, first+nr) map, as the model keys them.

    On a flat address space one range.  ia64 numbers its pgd region by
    region (``region << 8 | slot``); sparc64's pgd covers the two halves of
    its sign-extended address space around the hole (slot numbers from
    the middle up are the top half).
    """
    if nr <= 0:
        return []
    s = g.PGDIR_SHIFT
    last = first + nr  # exclusive
    if g.region_shift:
        per = _slots_per_region(g)
        out = []
        idx = first
        while idx < last:
            region, slot = divmod(idx, per)
            n = min(per - slot, last - idx)
            base = (region << g.region_shift) | (slot << s)
            out.append((base, base + (n << s)))
            idx += n
        return out
    if g.va_hole is not None:
        ptrs = g.levels[0].ptrs
        half = ptrs // 2
        out = []
        if first < half:
            out.append((first << s, min(last, half) << s))
        if last > half:
            lo = max(first, half)
            wrap = g.top - (ptrs << s)  # sign extension of the slot number
            out.append((wrap + (lo << s), (wrap + (last << s)) & g.mask or g.top))
        return out
    return [(first << s, last << s)]


# ---------------------------------------------------------------------------
# 2.6.10: clear_page_tables
# ---------------------------------------------------------------------------

def _free_within(mm: "MM", tlb: MmuGather, start: int, end: int) -> None:
    """Free every table whose whole span lies in [start, end), and the ptes in them."""
    pt = mm.pt
    for name in reversed(pt.levels):
        shift = pt.shifts[name]
        lo = (start + (1 << shift) - 1) >> shift
        hi = end >> shift
        if lo < hi:
            n = pt.remove_tables(name, lo, hi)
            if n:
                mm.free_tables(tlb, name, n, lo << shift, hi << shift)
            if name == "pte":
                pt.zap(lo << shift, hi << shift)


def clear_page_tables(mm: "MM", tlb: MmuGather, first: int, nr: int) -> None:
    """2.6.10 ``clear_page_tables``: free every table under pgd slots [first, first+nr).

    ``free_one_pgd`` reads the whole pmd table under each present slot and
    ``free_one_pmd`` frees each PTE page without reading it; nothing is
    aligned or bounded, so every table under the slots goes.  Preallocated
    levels (i386 PAE pmd pages) are read but never freed.
    """
    if nr <= 0:
        return
    g = mm.geom
    pt = mm.pt
    ex = mm.entries_examined
    ex["pgd"] = ex.get("pgd", 0) + nr
    for start, end in slot_ranges(g, first, nr):
        # every present table above the PTE level is read in full
        for name in pt.levels[:-1]:
            shift = pt.shifts[name]
            present = pt.tables[name].count(start >> shift, end >> shift)
            if present:
                ex[name] = ex.get(name, 0) + present * g.level(name).ptrs
        _free_within(mm, tlb, start, end)


# ---------------------------------------------------------------------------
# 2.6.11: clear_page_range
# ---------------------------------------------------------------------------

def clear_page_range(mm: "MM", tlb: MmuGather, start: int, end: int) -> None:
    """2.6.11 ``clear_page_range``: free the tables whose whole span lies in [start, end).

    The walk goes over pgd slots ``pgd_index(start)`` to ``pgd_index(end -
    1)``, descends into every present entry of the range at every level
    (``clear_pgd_range`` → ``clear_pud_range`` → ``clear_pmd_range``) and
    frees a table only when the piece of the range handed to it is aligned
    at both ends, i.e. covers the table's span.  ptes are not read.  A table
    freed this way has had everything below it walked and freed, so nothing
    is stranded.  ``end`` 0 is outside the function's contract (the
    pre-``p?d_addr_end`` idiom clamps everything to it), so nothing happens.
    """
    if not end or end <= start:
        return
    g = mm.geom
    if not g.region_shift and g.va_hole is None:
        count_entries(mm, start, end, with_pte=False)
        _free_within(mm, tlb, start, end)
        return
    # ia64 and sparc64: the loop counts pgd slots, which are not linear in
    # the address across regions or around the hole
    first, last = pgd_index(g, start), pgd_index(g, end - 1)
    if last < first:
        return
    ex = mm.entries_examined
    ex["pgd"] = ex.get("pgd", 0) + last - first + 1
    for a, b in slot_ranges(g, first, last - first + 1):
        s, e = max(a, start), min(b, end)
        if s < e:
            count_entries(mm, s, e, with_pte=False, with_pgd=False)
            _free_within(mm, tlb, s, e)


# ---------------------------------------------------------------------------
# The old free_pgtables(tlb, prev, start, end) of mm/mmap.c
# ---------------------------------------------------------------------------

def free_pgtables_2610(mm: "MM", tlb: MmuGather, prev: Vma | None, nxt: Vma | None,
                       start: int, end: int) -> None:
    """2.6.10 ``free_pgtables``: clear the whole pgd slots inside the vma-free gap.

    ``first`` starts at the hole's slot and is pushed past the slot of the
    vma below (rounded up), ``last`` is the slot after the hole, capped by
    the vma above; only slots wholly between them are cleared, so a slot
    still shared with a survivor keeps every PTE page in it until exit.
    """
    g = mm.geom
    size = g.PGDIR_SIZE
    first = start & ~(size - 1)
    last = g.u(end + size - 1)  # no overflow guard in 2.6.10
    if nxt is not None:
        last = min(last, nxt.vm_start)
    if prev is not None and prev.vm_end > first:
        first = g.u(prev.vm_end + size - 1)
    if last < first:
        return
    si = max(pgd_index(g, first), first_user_pgd_nr(g))
    ei = pgd_index(g, last)
    if ei > si:
        clear_page_tables(mm, tlb, si, ei - si)
        mm.era.after_free_pgd_range(mm, tlb, first & ~(size - 1), last & ~(size - 1))


def free_pgtables_2611(mm: "MM", tlb: MmuGather, prev: Vma | None, nxt: Vma | None,
                       start: int, end: int) -> None:
    """2.6.11 ``free_pgtables``: ``clear_page_range`` over the vma-free gap around the hole.

    Unlike 2.6.10, ``first`` is the end of the vma below, not rounded up, and
    ``last`` is bounded by MM_VM_SIZE (and guarded against wrapping), so
    PTE pages are freed with PMD granularity; a PMD or PUD table only when
    a whole slot of it lies in the gap.
    """
    g = mm.geom
    size = g.PGDIR_SIZE
    vm_size = mm_vm_size(g)
    first = start & ~(size - 1)
    last = g.u(end + size - 1)
    if last > vm_size or last < end:
        last = vm_size
    if nxt is not None:
        last = min(last, nxt.vm_start)
    if prev is not None and prev.vm_end > first:
        first = prev.vm_end
    if last < first:
        return
    first = max(first, first_user_pgd_nr(g) * size)
    pmd_mask = ~(g.PMD_SIZE - 1)
    if first & pmd_mask < last & pmd_mask:
        clear_page_range(mm, tlb, first, last)
        mm.era.after_free_pgd_range(mm, tlb, first, last)


def zap_page_range(mm: "MM", vma: Vma) -> None:
    """``zap_page_range`` over a whole vma: clear its ptes, free no page table.

    The 2.6.10/2.6.11 undo of a failed driver mmap: the tables the driver
    filled stay behind, to be found by a later gap or by exit's full walk.
    """
    tlb = mm.tlb_gather_mmu(fullmm=False)
    unmap_vmas(mm, tlb, [vma], vma.vm_start, vma.vm_end)
    tlb.finish()
    mm.latency.end_run()
    if vma.vm_flags & VM_ACCOUNT:
        # do_mmap_pgoff's unacct_error: vm_unacct_memory(charged)
        mm.committed -= (vma.vm_end - vma.vm_start) >> mm.geom.page_shift
