"""mprotect: the model's ``mm/mprotect.c``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import syscall_error
from ..vma import VM_ACCOUNT, VM_NORESERVE, VM_RWX, VM_SHARED, VM_WRITE, Vma, is_mergeable, prot_to_flags
from .mmap import page_align

if TYPE_CHECKING:
    from .core import MM


def mprotect_fixup(mm: "MM", vma: Vma, start: int, end: int, newflags: int) -> Vma:
    """``mprotect_fixup``: give [start, end) of ``vma`` new flags, merging or splitting.

    As ``vma_modify_flags`` (and 2.6.12's ``vma_merge`` before
    ``split_vma``): a range at either end of the vma first tries to join the
    neighbour there; only if that fails is the vma split, and each split
    refuses at ``max_map_count`` (a first split that succeeded stays).
    A private vma made writable is charged (VM_ACCOUNT) unless it is
    VM_NORESERVE.  Made read-only, it keeps the charge, except in eras with
    "mm/mprotect: allow unfaulted VMAs to be unaccounted on mprotect()"
    (6.7), where an anonymous vma without anon_vma gives it back.
    """
    old = vma.vm_flags
    if newflags == old:
        return vma
    ps = mm.geom.page_shift
    charge = 0
    if newflags & VM_WRITE:
        if not old & (VM_ACCOUNT | VM_WRITE | VM_NORESERVE | VM_SHARED):
            newflags |= VM_ACCOUNT
            charge = (end - start) >> ps
    elif (mm.era.mprotect_unaccounts and old & VM_ACCOUNT and vma.is_anonymous
          and vma.anon_vma is None):
        newflags &= ~VM_ACCOUNT
        charge = -((end - start) >> ps)
    piece = vma.clone()
    piece.vm_start, piece.vm_end, piece.vm_flags = start, end, newflags
    piece.vm_pgoff = vma.vm_pgoff + ((start - vma.vm_start) >> ps)
    prev = mm.vmas.prev(vma)
    nxt = mm.vmas.next(vma)
    if start == vma.vm_start and end < vma.vm_end and prev is not None and is_mergeable(prev, piece, ps):
        # the head joins prev: prev grows, the vma shrinks, no split
        mm.committed += charge
        prev.vm_end = end
        if prev.anon_vma is None:
            prev.anon_vma = vma.anon_vma
        old_start = vma.vm_start
        vma.vm_pgoff += (end - old_start) >> ps
        vma.vm_start = end
        mm.vmas.reindex(vma, old_start)
        return prev
    if end == vma.vm_end and start > vma.vm_start and nxt is not None and is_mergeable(piece, nxt, ps):
        # the tail joins next
        mm.committed += charge
        old_start = nxt.vm_start
        nxt.vm_start = start
        nxt.vm_pgoff = piece.vm_pgoff
        if nxt.anon_vma is None:
            nxt.anon_vma = vma.anon_vma
        mm.vmas.reindex(nxt, old_start)
        vma.vm_end = start
        return nxt
    if vma.vm_start < start:
        _check_split(mm)
        vma = mm.split_vma(vma, start)
    if vma.vm_end > end:
        _check_split(mm)
        mm.split_vma(vma, end)
    mm.committed += charge
    vma.vm_flags = newflags
    return mm.merge_with_neighbours(vma)


def _check_split(mm: "MM") -> None:
    """``split_vma`` refuses to add a vma at the limit."""
    if mm.map_count >= mm.max_map_count:
        raise syscall_error(errno.ENOMEM, "mprotect: splitting would pass max_map_count")


def do_mprotect(mm: "MM", start: int, length: int, prot: str) -> None:
    """``mprotect(2)``: vmas before a hole are changed, then -ENOMEM, as on Linux."""
    mm.check_alive()
    g = mm.geom
    if start & (g.page_size - 1):
        raise syscall_error(errno.EINVAL, f"mprotect: {start:#x} not page aligned")
    if length == 0:
        return
    length = g.u(page_align(mm, length))
    end = g.u(start + length)
    if end <= start:
        raise syscall_error(errno.ENOMEM, "mprotect: range wraps")
    if len(prot) != 3 or any(c not in ok for c, ok in zip(prot, ("r-", "w-", "x-"))):
        raise syscall_error(errno.EINVAL, f"mprotect: bad prot {prot!r}")
    want = prot_to_flags(prot)
    vma = mm.vmas.find_vma(start)
    if vma is None or vma.vm_start > start:
        raise syscall_error(errno.ENOMEM, f"mprotect: {start:#x} is not mapped")
    pos = start
    while True:
        s = max(pos, vma.vm_start)
        e = min(end, vma.vm_end)
        newflags = (vma.vm_flags & ~VM_RWX) | want
        vma = mprotect_fixup(mm, vma, s, e, newflags)
        pos = e
        if pos >= end:
            return
        # the piece just changed may have merged with the vma above it
        nxt = mm.vmas.find_vma(pos)
        if nxt is None or nxt.vm_start > pos:
            raise syscall_error(errno.ENOMEM, f"mprotect: hole at {pos:#x}")
        vma = nxt
