"""madvise(MADV_DONTNEED): the model's ``mm/madvise.c``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import syscall_error
from ..vma import VM_PFNMAP
from .memory import reclaim_pt, zap_range

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
    aligned = (length + g.page_size - 1) & ~(g.page_size - 1)
    if length and not aligned:
        raise syscall_error(errno.EINVAL, "madvise: length overflows")
    end = start + aligned
    if end < start or end > g.top:
        raise syscall_error(errno.EINVAL, "madvise: range wraps")
    if end == start:
        return
    vmas = mm.vmas.overlapping(start, end)
    for vma in vmas:
        if vma.vm_flags & VM_PFNMAP:
            raise syscall_error(errno.EINVAL, "madvise: dontneed on a pfn mapping")
    hole = False
    pos = start
    reclaim = mm.era.reclaims_pt(g)
    tlb = mm.tlb_gather_mmu(fullmm=False)
    for vma in vmas:
        if vma.vm_start > pos:
            hole = True
        s = max(start, vma.vm_start)
        e = min(end, vma.vm_end)
        zap_range(mm, tlb, vma, s, e)
        if reclaim:
            reclaim_pt(mm, tlb, s, e)
        pos = e
    if pos < end:
        hole = True
    tlb.finish()
    if hole:
        raise syscall_error(errno.ENOMEM, "madvise: range has unmapped parts")
