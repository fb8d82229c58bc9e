"""mmap, munmap, brk and the shared unmap path: the model's ``mm/mmap.c`` and ``mm/vma.c``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import syscall_error
from ..pagetable import PTE_PFN
from ..vma import (
    VM_ACCOUNT, VM_DONTEXPAND, VM_IO, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE,
    VM_NORESERVE, VM_PFNMAP, VM_SHARED, VM_WRITE, Device, MappedObject, Shmem, Vma,
    is_mergeable, prot_to_flags,
)
from .memory import unmap_vmas

if TYPE_CHECKING:
    from .core import MM

MAP_FLAGS = frozenset({"private", "shared", "anon", "fixed", "fixed_noreplace", "noreserve", "populate"})


def page_align(mm: "MM", x: int) -> int:
    ps = mm.geom.page_size
    return (x + ps - 1) & ~(ps - 1)


def unmap_region(mm: "MM", vmas: list[Vma], prev: Vma | None, nxt: Vma | None,
                 start: int, end: int) -> None:
    """``unmap_region``: zap the ptes of ``vmas`` in [start, end), then free their tables.

    ``prev``/``nxt`` are the surviving neighbours: they give the floor and
    ceiling beyond which no table may be freed.
    """
    tlb = mm.tlb_gather_mmu(fullmm=False)
    nr_accounted = unmap_vmas(mm, tlb, vmas, start, end)
    mm.committed -= nr_accounted
    read = sum(mm.entries_examined.values())
    mm.era.unmap_region_free(mm, tlb, vmas, prev, nxt, start, end)
    tlb.finish()
    # free_pgtables runs on under the lock: its reads end the last run
    mm.latency.add(sum(mm.entries_examined.values()) - read)
    mm.latency.end_run()


def split_for_range(mm: "MM", start: int, end: int) -> list[Vma]:
    """Split vmas so that [start, end) is covered by whole vmas; return them.

    Checks ``max_map_count`` first, so a refused split changes nothing.
    """
    vmas = mm.vmas.overlapping(start, end)
    if not vmas:
        return []
    head = vmas[0].vm_start < start
    tail = vmas[-1].vm_end > end
    every = mm.era.every_split_checks_map_count

    def refuse() -> None:
        raise syscall_error(errno.ENOMEM, "munmap: splitting would pass max_map_count")

    # 6.x checks once, for a hole punched in one vma (the count may go just
    # above the limit otherwise); 2.6's split_vma checks every split, and a
    # first split that succeeded stays
    if not every and head and tail and len(vmas) == 1 and mm.map_count >= mm.max_map_count:
        refuse()
    if head:
        if every and mm.map_count >= mm.max_map_count:
            refuse()
        vmas[0] = mm.split_vma(vmas[0], start)
    if tail:
        if every and mm.map_count >= mm.max_map_count:
            refuse()
        mm.split_vma(vmas[-1], end)
    return vmas


def do_vmi_munmap(mm: "MM", start: int, end: int) -> None:
    """Remove every vma piece in [start, end) and free what only they used."""
    vmas = split_for_range(mm, start, end)
    if not vmas:
        return
    mm.topdown_cache = None
    prev = mm.vmas.prev(vmas[0])
    nxt = mm.vmas.next(vmas[-1])
    for v in vmas:
        mm.vmas.remove(v)
        mm.era.unmap_area(mm, v)
    unmap_region(mm, vmas, prev, nxt, start, end)


def do_munmap(mm: "MM", start: int, length: int) -> None:
    """``munmap(2)``: EINVAL for an unaligned start or empty length, 0 over nothing."""
    g = mm.geom
    if start & (g.page_size - 1) or start > g.task_size or length > g.task_size - start:
        raise syscall_error(errno.EINVAL, f"munmap({start:#x}, {length:#x})")
    length = page_align(mm, length)
    if length == 0:
        raise syscall_error(errno.EINVAL, f"munmap({start:#x}, 0)")
    do_vmi_munmap(mm, start, start + length)


def get_unmapped_area(mm: "MM", addr: int, length: int, fixed: bool) -> int:
    """``get_unmapped_area``: a fixed address, a usable hint, or the era's own placement.

    A fixed range is checked against TASK_SIZE before its alignment, as the
    kernel does.  A hint is used if the whole range is free.
    """
    g = mm.geom
    era = mm.era
    ps = g.page_size
    if length > g.task_size:
        raise syscall_error(errno.ENOMEM, "mmap: length above TASK_SIZE")
    if fixed:
        if addr > g.task_size - length:
            raise syscall_error(errno.ENOMEM, f"mmap: fixed range {addr:#x}+{length:#x} above TASK_SIZE")
        if addr & (ps - 1):
            raise syscall_error(errno.EINVAL, f"mmap: fixed address {addr:#x} not page aligned")
        return addr
    if addr:
        addr = era.round_hint(g, addr)
        if addr and g.task_size - length >= addr and mm.vmas.is_free(addr, addr + length):
            return addr
    return era.place_mapping(mm, length)


def place_top_down(mm: "MM", length: int) -> int:
    """``unmapped_area_topdown``: the highest free gap below ``mmap_base``."""
    g = mm.geom
    low = max(mm.era.mmap_min_addr, g.first_user_address, g.page_size)
    high = mm.mmap_base
    cache = mm.topdown_cache
    if cache is not None and length >= cache[0]:
        # nothing above cache[1] had room for cache[0] bytes, and no space
        # has been freed since: start there (same answer, found sooner)
        high = min(high, cache[1])
    found = mm.vmas.gaps_top_down(low, high, length)
    if found is not None:
        mm.topdown_cache = (length, found + length)
    if found is None:
        # arch_get_unmapped_area_topdown falls back to a bottom-up search
        found = mm.vmas.gaps_top_down(mm.mmap_base, g.task_size, length)
    if found is None:
        raise syscall_error(errno.ENOMEM, "mmap: no room for the mapping")
    return found


def place_bottom_up(mm: "MM", length: int) -> int:
    """Legacy ``arch_get_unmapped_area``: first fit upwards from ``free_area_cache``.

    The search starts where the last one ended (``free_area_cache``, first
    TASK_UNMAPPED_BASE) and starts over from TASK_UNMAPPED_BASE once if
    nothing fits above.
    """
    g = mm.geom
    begin = mm.era.task_unmapped_base(g)
    end = g.task_size
    addr = mm.free_area_cache if mm.free_area_cache is not None else begin
    start_addr = addr
    while True:
        i = mm.vmas.find_index(addr)
        vmas = mm.vmas.all()
        while True:
            if end - length < addr:
                break
            vma = vmas[i] if i < len(vmas) else None
            if vma is None or addr + length <= vma.vm_start:
                mm.free_area_cache = addr + length
                return addr
            addr = vma.vm_end
            i += 1
        if start_addr == begin:
            raise syscall_error(errno.ENOMEM, "mmap: no room for the mapping")
        start_addr = addr = begin


def do_mmap(mm: "MM", addr: int, length: int, prot: str, flags: frozenset[str] | set[str],
            file: MappedObject | None = None, offset: int = 0) -> int:
    """``mmap(2)``: map and return the address, or raise OSError with Linux's errno.

    ``flags`` holds the ops-format names: ``private`` and/or ``shared``
    (both is MAP_SHARED_VALIDATE, a shared file mapping in eras that know
    it), any of ``anon``, ``fixed``, ``fixed_noreplace``, ``noreserve``,
    ``populate``.  The checks come in the kernel's order, so the errno is
    the one Linux gives first.
    """
    mm.check_alive()
    g = mm.geom
    era = mm.era
    flags = frozenset(flags)
    unknown = flags - MAP_FLAGS
    if unknown:
        raise syscall_error(errno.EINVAL, f"mmap: unknown flags {sorted(unknown)}")
    if "fixed_noreplace" in flags and not era.map_fixed_noreplace:
        flags = flags - {"fixed_noreplace"}
    anon = "anon" in flags
    if anon:
        file = None
    elif file is None:
        raise syscall_error(errno.EBADF, "mmap: no file for a file mapping")
    if len(prot) != 3 or any(c not in ok for c, ok in zip(prot, ("r-", "w-", "x-"))):
        raise syscall_error(errno.EINVAL, f"mmap: bad prot {prot!r}")
    if offset & (g.page_size - 1):
        raise syscall_error(errno.EINVAL, f"mmap: offset {offset:#x} not page aligned")
    if length == 0:
        raise syscall_error(errno.EINVAL, "mmap: zero length")
    length = g.u(page_align(mm, length))
    if length == 0:
        raise syscall_error(errno.ENOMEM, "mmap: length too large")
    pgoff = offset >> g.page_shift
    if g.u(pgoff + (length >> g.page_shift)) < pgoff:
        raise syscall_error(errno.EOVERFLOW, "mmap: offset + length overflows")
    if mm.map_count > mm.max_map_count:
        raise syscall_error(errno.ENOMEM, "mmap: max_map_count reached")
    fixed = "fixed" in flags or "fixed_noreplace" in flags
    addr = get_unmapped_area(mm, addr, length, fixed)
    end = addr + length
    if "fixed_noreplace" in flags and not mm.vmas.is_free(addr, end):
        raise syscall_error(errno.EEXIST, f"mmap: [{addr:#x}, {end:#x}) is already mapped")
    if file is not None and not isinstance(file, Device):
        # file_mmap_ok: the mapping must end below MAX_LFS_FILESIZE
        maxsize = (1 << 63) - 1
        if length > maxsize or pgoff > (maxsize - length) >> g.page_shift:
            raise syscall_error(errno.EOVERFLOW, "mmap: offset + length past the largest file")
    private, shared = "private" in flags, "shared" in flags
    if private and shared and not anon and era.map_shared_validate:
        private = False  # MAP_SHARED_VALIDATE: a shared mapping
    if private == shared:
        raise syscall_error(errno.EINVAL, "mmap: exactly one of private and shared")

    vm_flags = prot_to_flags(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if shared:
        vm_flags |= VM_SHARED | VM_MAYSHARE
    if "noreserve" in flags:
        if era.vm_noreserve:
            vm_flags |= VM_NORESERVE
    elif not shared and vm_flags & VM_WRITE:
        vm_flags |= VM_ACCOUNT
    if isinstance(file, Device):
        vm_flags |= VM_IO | VM_PFNMAP | VM_DONTEXPAND
    if anon and shared:
        file = Shmem(length, g.page_size)
        pgoff = 0
    elif anon:
        pgoff = addr >> g.page_shift

    # a fixed mapping first unmaps what it replaces (MAP_FIXED semantics)
    if not mm.vmas.is_free(addr, end):
        do_vmi_munmap(mm, addr, end)

    vma = Vma(addr, end, vm_flags, file, pgoff)
    if vm_flags & VM_ACCOUNT:
        mm.committed += length >> g.page_shift
    if isinstance(file, Device):
        mmap_device(mm, vma, file)
        mm.vmas.insert(vma)
    else:
        vma = mm.insert_vma(vma)
    if "populate" in flags:
        era.populate(mm, vma, addr, end)
    return addr


def mmap_device(mm: "MM", vma: Vma, dev: Device) -> None:
    """Call the device's mmap handler: fill ptes with pfns, then maybe fail.

    On failure the handler's partial work is undone by ``unmap_region`` on
    the unlinked vma, bounded by the real neighbours, exactly as the seed
    changed ``do_mmap_pgoff``: the tables it allocated can be freed only
    while this vma still spans them.
    """
    g = mm.geom
    if dev.fill:
        mm.alloc_tables(vma.vm_start, vma.vm_end)
        mm.pt.map_pages(vma.vm_start >> g.page_shift, vma.vm_end >> g.page_shift, PTE_PFN)
    if dev.fail is not None:
        prev, nxt = mm.vmas.neighbours(vma.vm_start, vma.vm_end)
        # the charge goes back through unmap_region's unmap_vmas
        mm.era.mmap_driver_failed(mm, vma, prev, nxt)
        raise syscall_error(dev.fail, f"mmap: driver {dev.name} failed")


def do_brk(mm: "MM", brk: int) -> int:
    """``brk(2)``: move the program break; return the new break (the old one on failure)."""
    mm.check_alive()
    g = mm.geom
    if brk < mm.start_brk:
        return mm.brk
    newbrk = page_align(mm, brk)
    oldbrk = page_align(mm, mm.brk)
    if oldbrk == newbrk:
        mm.brk = brk
        return brk
    if brk <= mm.brk:
        if not mm.era.brk_legacy and not mm.vmas.overlapping(newbrk, oldbrk):
            # 6.x: nothing of the heap there to give back, so the call is refused
            return mm.brk
        do_vmi_munmap(mm, newbrk, oldbrk)
        mm.brk = brk
        return brk
    if newbrk > g.task_size:
        return mm.brk
    nxt = mm.vmas.find_vma(oldbrk)
    if nxt is not None and newbrk + g.page_size > nxt.vm_start:
        return mm.brk
    if mm.map_count > mm.max_map_count:
        return mm.brk
    vm_flags = prot_to_flags("rw-") | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT
    vma = Vma(oldbrk, newbrk, vm_flags, None, oldbrk >> g.page_shift)
    mm.committed += (newbrk - oldbrk) >> g.page_shift
    if mm.era.brk_legacy:
        # 2.6's do_brk: vma_merge with whatever ends at the old break
        mm.insert_vma(vma)
    else:
        # do_brk_flags extends only the heap's own vma (one at or above
        # start_brk); anything else below, bss included, stays apart
        prev = mm.vmas.below(oldbrk)
        if (prev is not None and prev.vm_end == oldbrk and prev.vm_start >= mm.start_brk
                and is_mergeable(prev, vma, g.page_shift)):
            prev.vm_end = newbrk
        else:
            mm.vmas.insert(vma)
    mm.brk = brk
    return brk
