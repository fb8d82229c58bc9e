"""mmap, munmap, brk and the shared unmap path: the model's ``mm/mmap.c`` and ``mm/vma.c``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import syscall_error
from ..latency import free_under_lock
from ..pagetable import PTE_PFN
from ..vma import (
    VM_ACCOUNT, VM_DONTEXPAND, VM_HUGETLB, VM_IO, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE,
    VM_NORESERVE, VM_PFNMAP, VM_SHARED, VM_WRITE, Device, MappedObject, Shmem, Vma,
    is_mergeable, prot_to_flags,
)
from .memory import populate_range, unmap_vmas

if TYPE_CHECKING:
    from .core import MM

MAP_FLAGS = frozenset({"private", "shared", "anon", "fixed", "fixed_noreplace", "noreserve", "populate",
                       "hugetlb"})


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
    free_under_lock(mm, mm.era.unmap_region_free, mm, tlb, vmas, prev, nxt, start, end)
    tlb.finish()


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
    first = mm.vmas.find_vma(start)
    if first is not None and first.vm_flags & VM_HUGETLB and first.vm_start < start + length:
        # 2.6.12 do_munmap: is_aligned_hugepage_range(start, len) when the
        # first vma it meets is a hugetlb one
        if not prepare_hugepage_range(g, start, length):
            raise syscall_error(errno.EINVAL, f"munmap({start:#x}, {length:#x}): not whole huge pages")
    do_vmi_munmap(mm, start, start + length)


def prepare_hugepage_range(g, addr: int, length: int) -> bool:
    """``prepare_hugepage_range`` / ``is_aligned_hugepage_range``: may huge pages go there?

    Start and length must be multiples of HPAGE_SIZE; where the architecture
    has a hugepage-only area the range must lie inside it (ia64 region 4,
    ppc64 ``within_hugepage_high_range``; ppc64's low segments are not
    modelled).
    """
    hpage = g.HPAGE_SIZE
    if not hpage or addr & (hpage - 1) or length & (hpage - 1):
        return False
    if g.hugepage_only:
        end = addr + length
        return any(base <= addr and end <= top for base, top in g.hugepage_only)
    return True


def _hole_at(holes: tuple[tuple[int, int], ...], addr: int, length: int) -> tuple[int, int] | None:
    """The first of the sorted ``holes`` that [addr, addr+length) reaches into, or None."""
    end = addr + length
    for lo, hi in holes:
        if lo >= end:
            return None
        if addr < hi:
            return lo, hi
    return None


def hugetlb_get_unmapped_area(mm: "MM", addr: int, length: int) -> int:
    """``hugetlb_get_unmapped_area``: a free, HPAGE-aligned place for a hugetlb mapping.

    ia64 searches region 4 from its base (or from an aligned hint inside
    it), ppc64 its 1-1.5 TB area from the bottom (``htlb_get_high_area``,
    hints ignored); elsewhere the generic hugetlbfs search: the hint rounded
    up to HPAGE_SIZE if that range is free, else the first fit from
    TASK_UNMAPPED_BASE.  ENOMEM when nothing fits.
    """
    g = mm.geom
    hpage = g.HPAGE_SIZE
    holes = g.placement_holes(hugetlb=True)

    def align(x: int) -> int:
        return (x + hpage - 1) & ~(hpage - 1)

    if g.hugepage_only:
        start, top = g.hugepage_only[0]
        if g.hugetlb_tables == "rescaled" and addr and not addr & (hpage - 1) \
                and g.is_hugepage_only_range(addr, length):
            start = addr
    else:
        top = g.task_size
        if addr:
            hint = align(addr)
            if hint and g.task_size - length >= hint and mm.vmas.is_free(hint, hint + length) \
                    and _hole_at(holes, hint, length) is None:
                return hint
        start = mm.era.task_unmapped_base(g)
    addr = align(start)
    while addr + length <= top:
        hole = _hole_at(holes, addr, length)
        if hole is not None:
            addr = align(hole[1])
            continue
        vma = mm.vmas.find_vma(addr)
        if vma is None or addr + length <= vma.vm_start:
            return addr
        addr = align(vma.vm_end)
    raise syscall_error(errno.ENOMEM, "mmap: no room for the hugetlb mapping")


def get_unmapped_area(mm: "MM", addr: int, length: int, fixed: bool, hugetlb: bool = False) -> int:
    """``get_unmapped_area``: a fixed address, a usable hint, or the era's own placement.

    A fixed range is checked against TASK_SIZE before its alignment, as the
    kernel does; then (2.6.12) a hugetlb range must suit huge pages
    (``prepare_hugepage_range``) and any other must not be
    ``is_hugepage_only_range``, else EINVAL.  A hint is used if the whole
    range is free and, on architectures with holes or hugepage-only areas,
    clear of them.  Hugetlb placement is ``hugetlb_get_unmapped_area``'s.
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
        if hugetlb:
            if not prepare_hugepage_range(g, addr, length):
                raise syscall_error(errno.EINVAL, f"mmap: [{addr:#x}, +{length:#x}) unfit for huge pages")
        elif g.hugepage_only and g.is_hugepage_only_range(addr, length):
            raise syscall_error(errno.EINVAL, f"mmap: [{addr:#x}, +{length:#x}) is for huge pages only")
        return addr
    if hugetlb:
        return hugetlb_get_unmapped_area(mm, addr, length)
    if addr:
        addr = era.round_hint(g, addr)
        if addr and g.task_size - length >= addr and mm.vmas.is_free(addr, addr + length):
            holes = g.placement_holes()
            if not holes or _hole_at(holes, addr, length) is None:
                return addr
    return era.place_mapping(mm, length)


def _fit_below(mm: "MM", low: int, high: int, length: int) -> int | None:
    """The highest free range of ``length`` in [low, high) clear of the placement holes.

    A range the gap search offers that reaches into a hole (sparc64's VA
    hole, an ia64 region tail, ppc64's hugepage area) sends the search on
    below the hole, as ppc64's ``arch_get_unmapped_area_topdown`` does.
    """
    holes = mm.geom.placement_holes()
    while high - low >= length:
        found = mm.vmas.gaps_top_down(low, high, length)
        if found is None or not holes:
            return found
        hole = _hole_at(holes, found, length)
        if hole is None:
            return found
        high = hole[0]
    return None


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
    found = _fit_below(mm, low, high, length)
    if found is not None:
        mm.topdown_cache = (length, found + length)
    if found is None:
        # arch_get_unmapped_area_topdown falls back to a bottom-up search
        found = _fit_below(mm, mm.mmap_base, g.task_size, length)
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
    holes = g.placement_holes()
    while True:
        i = mm.vmas.find_index(addr)
        vmas = mm.vmas.all()
        while True:
            if end - length < addr:
                break
            hole = _hole_at(holes, addr, length) if holes else None
            if hole is not None:
                # sparc64 jumps to PAGE_OFFSET, ppc64 to TASK_HPAGE_END
                addr = hole[1]
                i = mm.vmas.find_index(addr)
                continue
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
    ``populate``, and the model's ``hugetlb``: an anonymous mapping of huge
    pages (MAP_HUGETLB, as a hugetlbfs file is mapped in 2.6.12), whose
    start and length must be multiples of HPAGE_SIZE (EINVAL), which is
    never charged, never merges, and whose pages fault in whole.  The
    checks come in the kernel's order, so the errno is the one Linux gives
    first.
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
    hugetlb = "hugetlb" in flags
    if anon:
        file = None
    elif file is None:
        raise syscall_error(errno.EBADF, "mmap: no file for a file mapping")
    if hugetlb and (not anon or not g.hpage_shift):
        # MAP_HUGETLB on a file that is not hugetlbfs, or no huge pages here
        raise syscall_error(errno.EINVAL, "mmap: hugetlb needs an anonymous mapping and huge pages")
    if len(prot) != 3 or any(c not in ok for c, ok in zip(prot, ("r-", "w-", "x-"))):
        raise syscall_error(errno.EINVAL, f"mmap: bad prot {prot!r}")
    if offset & (g.page_size - 1):
        raise syscall_error(errno.EINVAL, f"mmap: offset {offset:#x} not page aligned")
    if length == 0:
        raise syscall_error(errno.EINVAL, "mmap: zero length")
    length = g.u(page_align(mm, length))
    if length == 0:
        raise syscall_error(errno.ENOMEM, "mmap: length too large")
    if hugetlb and length & (g.HPAGE_SIZE - 1):
        raise syscall_error(errno.EINVAL, f"mmap: length {length:#x} is not whole huge pages")
    pgoff = offset >> g.page_shift
    if g.u(pgoff + (length >> g.page_shift)) < pgoff:
        raise syscall_error(errno.EOVERFLOW, "mmap: offset + length overflows")
    if mm.map_count > mm.max_map_count:
        raise syscall_error(errno.ENOMEM, "mmap: max_map_count reached")
    fixed = "fixed" in flags or "fixed_noreplace" in flags
    addr = get_unmapped_area(mm, addr, length, fixed, hugetlb)
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
    elif not shared and vm_flags & VM_WRITE and not hugetlb:
        # hugetlb pages are reserved from the huge page pool, not charged
        vm_flags |= VM_ACCOUNT
    if hugetlb:
        vm_flags |= VM_HUGETLB | VM_DONTEXPAND
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
        if hugetlb:
            # huge pages fault in whole, in every era
            populate_range(mm, vma, addr, end)
        else:
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
