"""Architecture hooks of the seed's time: what a preset's quirks make the kernel do.

The geometry (``arch.py``) says what an architecture is; the functions here
are the arch code that acts on it:

* :func:`flush_tlb_pgtables` -- sparc64's ``flush_tlb_pgtables``
  (arch/sparc64/mm/tlb.c), called at the end of ``free_pgd_range`` in the
  eras that still have the hook (removed tree-wide in 2.6.24);
* :func:`arch_mmap_check`, :func:`arch_munmap_check` and
  :func:`arch_mremap` -- the checks the arch syscall wrappers make before the
  generic code runs: ia64's ``sys_mmap``/``do_mmap2`` (RGN_MAP_LIMIT) and
  sparc64's ``sys_mmap``/``sys64_munmap``/``sys64_mremap`` (the VA hole).

Every function is a no-op on a geometry without the quirk, so the plain
presets pay one attribute test.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .errors import KernelBug, syscall_error

if TYPE_CHECKING:
    from .arch import Geometry
    from .mm.core import MM

#: how many flushed VPTE ranges ``TlbStats.pgtable_flush_ranges`` keeps (newest last)
RECENT_PGTABLE_FLUSHES = 16


def _signed(g: "Geometry", x: int) -> int:
    """``x`` read as a C ``long``."""
    return x - g.top if x >> (g.word_bits - 1) else x


def vpte_range(g: "Geometry", start: int, end: int) -> tuple[int, int]:
    """The VPTE addresses whose TLB entries map the PTE pages of [start, end).

    sparc64 maps its user PTE pages linearly at ``vpte_base``: the pte of
    ``addr`` sits at ``vpte_base + (addr >> (PAGE_SHIFT - 3))`` with an
    *arithmetic* shift (``long s``), so addresses above the hole (sign bit
    set) land below ``vpte_base``.  start is rounded down and end up to
    PMD_SIZE, as the 2.6.12 code does, and the pair is swapped when the
    range straddles the hole.
    """
    pmd = g.PMD_SIZE
    m = g.mask
    s = start & ~(pmd - 1)
    e = (end + pmd - 1) & ~(pmd - 1) & m
    shift = g.page_shift - 3
    vs = (g.vpte_base + (_signed(g, s) >> shift)) & m
    ve = (g.vpte_base + (_signed(g, e) >> shift)) & m
    if ve < vs:
        vs, ve = ve, vs
    return vs, ve


def flush_tlb_pgtables(mm: "MM", start: int, end: int, signed_check: bool = False) -> None:
    """sparc64 ``flush_tlb_pgtables(mm, start, end)``: flush the VPTE pages of freed PTE pages.

    The 2.6.12 form: ``BUG_ON(start > end)`` compared unsigned, then one
    ``PAGE_SIZE`` step of the VPTE area per PMD_SIZE of user space is queued
    and flushed (``flush_tlb_pending``).  ``signed_check`` gives the 2.6.11
    form, which compared ``long``s and so hit the BUG on a range that
    straddles the VA hole (DaveM's fix came out of the freepgt review).

    Records into ``mm.tlb_stats``: ``pgtable_flushes`` (calls that flushed),
    ``pgtable_flush_pages`` (VPTE pages flushed) and the last few ranges in
    ``pgtable_flush_ranges``.  A geometry without a VPTE area does nothing
    (``flush_tlb_pgtables`` is an empty inline there).  The caller skips it
    for a full-mm gather, as ``free_pgd_range`` and sparc64's frozen gather do.
    """
    g = mm.geom
    if g.vpte_base is None:
        return
    if signed_check:
        if _signed(g, start) > _signed(g, end):
            raise KernelBug("BUG: flush_tlb_pgtables start > end (signed, 2.6.11)",
                            f"start {start:#x} is above end {end:#x} as a long: "
                            "the range straddles the VA hole")
    elif start > end:
        raise KernelBug("BUG: flush_tlb_pgtables start > end",
                        f"free_pgd_range passed start {start:#x} above end {end:#x}")
    vs, ve = vpte_range(g, start, end)
    pages = -(-(ve - vs) // g.page_size)
    st = mm.tlb_stats
    st.pgtable_flushes += 1
    st.pgtable_flush_pages += pages
    st.pgtable_flush_ranges.append((vs, ve))
    if len(st.pgtable_flush_ranges) > RECENT_PGTABLE_FLUSHES:
        del st.pgtable_flush_ranges[0]


# ---------------------------------------------------------------------------
# The arch syscall wrappers' checks
# ---------------------------------------------------------------------------

def _largest_mappable(g: "Geometry") -> int:
    """The longest run of user space free of unmappable parts.

    sparc64: -PAGE_OFFSET = 2^43 (the lower half); ia64: RGN_MAP_LIMIT.
    """
    best = 0
    pos = 0
    for lo, hi in g.unmappable():
        if lo >= g.task_size:
            break
        best = max(best, lo - pos)
        pos = hi
    return max(best, g.task_size - pos) if pos < g.task_size else best


def _touches_unmappable(g: "Geometry", addr: int, length: int) -> bool:
    end = addr + length
    return any(lo < end and addr < hi for lo, hi in g.unmappable())


def arch_mmap_check(g: "Geometry", addr: int, length: int) -> int:
    """The arch ``sys_mmap`` checks before ``do_mmap``: an errno, or 0 to go on.

    ``length`` is as passed (the check page-aligns it).  ia64 ``do_mmap2``:
    EINVAL when the aligned length is 0 or above TASK_SIZE, when ``len >
    RGN_MAP_LIMIT`` or ``REGION_OFFSET(addr) > RGN_MAP_LIMIT - len`` (a hint
    too: the check reads ``addr`` whatever the flags).  sparc64
    ``sys_mmap``: EINVAL when ``len > -PAGE_OFFSET`` or a MAP_FIXED range
    reaches into the hole.  The model refuses a hint that reaches into the
    hole as well (as ``sparc_mmap_check`` does in later kernels): 2.6.12's
    ``arch_get_unmapped_area`` would have returned such a hint, leaving a
    vma the MMU cannot translate.  (ia64's zero-length mmap, which succeeds
    without looking at anything, is the caller's.)
    """
    if g.va_hole is None and not g.region_shift:
        return 0
    length = g.u(length + g.page_size - 1) & ~(g.page_size - 1)
    if g.region_shift and (not length or length > g.task_size):
        return errno.EINVAL
    if length > _largest_mappable(g):
        return errno.EINVAL
    if addr and _touches_unmappable(g, addr, length):
        return errno.EINVAL
    return 0


def arch_munmap_check(g: "Geometry", addr: int, length: int) -> int:
    """sparc64 ``sys64_munmap``: EINVAL for a range that reaches into the hole."""
    if g.va_hole is None:
        return 0
    lo, hi = g.va_hole
    if length > lo or (addr < hi and addr + length > lo):
        return errno.EINVAL
    return 0


def arch_mremap(mm: "MM", addr: int, old_len: int, new_len: int, flags: frozenset[str],
                new_addr: int | None) -> tuple[frozenset[str], int | None]:
    """sparc64 ``sys64_mremap``: refuse the hole, move a growth that would reach it.

    EINVAL when a length exceeds -PAGE_OFFSET, the old range or a MREMAP_FIXED
    new range reaches into the hole; a growth in place that would reach it
    becomes a move to ``get_unmapped_area`` (ENOMEM without MREMAP_MAYMOVE).
    Returns the flags and new address to hand to ``do_mremap``.
    """
    g = mm.geom
    if g.va_hole is None:
        return flags, new_addr
    lo, hi = g.va_hole
    if old_len > lo or new_len > lo:
        raise syscall_error(errno.EINVAL, "mremap: length reaches the VA hole")
    if addr < hi and addr + old_len > lo:
        raise syscall_error(errno.EINVAL, "mremap: old range reaches the VA hole")
    if "fixed" in flags:
        target = new_addr or 0
        if target < hi and target + new_len > lo:
            raise syscall_error(errno.EINVAL, "mremap: new range reaches the VA hole")
    elif addr < hi and addr + new_len > lo:
        if "maymove" not in flags:
            raise syscall_error(errno.ENOMEM, "mremap: growing into the VA hole")
        from .mm.mmap import get_unmapped_area

        new_addr = get_unmapped_area(mm, addr, g.u(new_len + g.page_size - 1) & ~(g.page_size - 1), False)
        flags = flags | {"fixed"}
    return flags, new_addr
