"""mprotect: the model's ``mm/mprotect.c``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import syscall_error
from ..vma import VM_ACCOUNT, VM_NORESERVE, VM_RWX, VM_SHARED, VM_WRITE, Vma, prot_to_flags
from .mmap import page_align

if TYPE_CHECKING:
    from .core import MM


def mprotect_fixup(mm: "MM", vma: Vma, start: int, end: int, newflags: int) -> Vma:
    """``mprotect_fixup``: give [start, end) of ``vma`` new flags, splitting and merging.

    A private vma made writable is charged (VM_ACCOUNT) unless it is
    VM_NORESERVE.  Made read-only, it keeps the charge, except in eras with
    "mm/mprotect: allow unfaulted VMAs to be unaccounted on mprotect()"
    (6.7), where an anonymous vma without anon_vma gives it back.
    """
    old = vma.vm_flags
    if newflags == old:
        return vma
    charge = 0
    if newflags & VM_WRITE:
        if not old & (VM_ACCOUNT | VM_WRITE | VM_NORESERVE | VM_SHARED):
            newflags |= VM_ACCOUNT
            charge = (end - start) >> mm.geom.page_shift
    elif (mm.era.mprotect_unaccounts and old & VM_ACCOUNT and vma.is_anonymous
          and vma.anon_vma is None):
        newflags &= ~VM_ACCOUNT
        charge = -((end - start) >> mm.geom.page_shift)
    if (vma.vm_start < start or vma.vm_end > end) and mm.map_count >= mm.max_map_count:
        # split_vma refuses to add a vma at the limit
        raise syscall_error(errno.ENOMEM, "mprotect: splitting would pass max_map_count")
    mm.committed += charge
    if vma.vm_start < start:
        vma = mm.split_vma(vma, start)
    if vma.vm_end > end:
        mm.split_vma(vma, end)
    vma.vm_flags = newflags
    return mm.merge_with_neighbours(vma)


def do_mprotect(mm: "MM", start: int, length: int, prot: str) -> None:
    """``mprotect(2)``: vmas before a hole are changed, then -ENOMEM, as on Linux."""
    mm.check_alive()
    g = mm.geom
    if start & (g.page_size - 1):
        raise syscall_error(errno.EINVAL, f"mprotect: {start:#x} not page aligned")
    if length == 0:
        return
    length = page_align(mm, length)
    end = start + length
    if end <= start or length == 0:
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
