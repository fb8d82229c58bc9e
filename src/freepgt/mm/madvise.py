"""madvise(MADV_DONTNEED): the model's ``mm/madvise.c``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import syscall_error
from ..vma import VM_HUGETLB, VM_PFNMAP
from .memory import reclaim_pt, unmap_vmas

if TYPE_CHECKING:
    from .core import MM

ADVICE = ("dontneed",)


def do_madvise(mm: "MM", start: int, length: int, advice: str) -> None:
    """``madvise(2)`` with MADV_DONTNEED.

    Zaps every mapped part of the range; a hole anywhere makes the call
    fail with -ENOMEM after the zapping, as Linux does.  Eras with
    PT_RECLAIM free the PTE tables whose whole span was zapped in one vma.
    """
    mm.check_alive()
    g = mm.geom
    if advice not in ADVICE:
        raise syscall_error(errno.EINVAL, f"madvise: unknown advice {advice!r}")
    if start & (g.page_size - 1):
        raise syscall_error(errno.EINVAL, f"madvise: {start:#x} not page aligned")
    aligned = g.u(length + g.page_size - 1) & ~(g.page_size - 1)
    if length and not aligned:
        raise syscall_error(errno.EINVAL, "madvise: length overflows")
    end = g.u(start + aligned)
    if end < start:
        raise syscall_error(errno.EINVAL, "madvise: range wraps")
    if end == start:
        return
    hole = False
    pos = start
    reclaim = mm.era.reclaims_pt(g)
    for vma in mm.vmas.overlapping(start, end):
        if vma.vm_flags & VM_PFNMAP and not mm.era.madvise_dontneed_pfnmap:
            raise syscall_error(errno.EINVAL, "madvise: dontneed on a pfn mapping")
        if vma.vm_start > pos:
            hole = True
        s = max(start, vma.vm_start)
        e = min(end, vma.vm_end)
        if vma.vm_flags & VM_HUGETLB:
            # 2.6 refuses hugetlb vmas; 6.x wants a huge-page-aligned start
            # and zaps whole huge pages only (madvise_dontneed_free_valid_vma)
            hpage = g.HPAGE_SIZE
            if not mm.era.madvise_dontneed_hugetlb or s & (hpage - 1):
                raise syscall_error(errno.EINVAL, "madvise: dontneed on a hugetlb mapping")
            e &= ~(hpage - 1)
            if e <= s:
                pos = min(end, vma.vm_end)
                continue
        # zap_page_range: a gather of its own for each vma
        tlb = mm.tlb_gather_mmu(fullmm=False)
        unmap_vmas(mm, tlb, [vma], s, e)
        if reclaim:
            reclaim_pt(mm, tlb, s, e)
        tlb.finish()
        mm.latency.end_run()
        pos = min(end, vma.vm_end)
    if pos < end:
        hole = True
    if hole:
        raise syscall_error(errno.ENOMEM, "madvise: range has unmapped parts")
