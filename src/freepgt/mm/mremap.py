"""mremap: the model's ``mm/mremap.c``.

Shrinking unmaps the tail; growing extends in place when the space above is
free; otherwise (``maymove``) or with ``fixed`` / ``dontunmap`` the mapping
moves: ``copy_vma`` places the new vma (merging it where it can), then
``move_page_tables`` carries the ptes, and in eras with HAVE_MOVE_PMD /
HAVE_MOVE_PUD whole tables, to the new place; finally the old range is
unmapped (unless ``dontunmap``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import syscall_error
from ..vma import VM_ACCOUNT, VM_DONTEXPAND, VM_HUGETLB, VM_MAYSHARE, VM_PFNMAP, VM_SHARED, Vma
from .mmap import do_munmap, do_vmi_munmap, get_unmapped_area, page_align

if TYPE_CHECKING:
    from .core import MM

MREMAP_FLAGS = frozenset({"maymove", "fixed", "dontunmap"})


def do_mremap(mm: "MM", addr: int, old_len: int, new_len: int,
              flags: frozenset[str] | set[str] = frozenset(), new_addr: int | None = None) -> int:
    """``mremap(2)``: return the (possibly new) address or raise OSError."""
    mm.check_alive()
    g = mm.geom
    era = mm.era
    flags = frozenset(flags)
    if era.legacy_mremap:
        return _do_mremap_legacy(mm, addr, old_len, new_len, flags, new_addr)
    if flags - MREMAP_FLAGS or ("dontunmap" in flags and not era.mremap_dontunmap):
        raise syscall_error(errno.EINVAL, f"mremap: bad flags {sorted(flags)}")
    fixed = "fixed" in flags
    dontunmap = "dontunmap" in flags
    maymove = "maymove" in flags
    if (fixed or dontunmap) and not maymove:
        raise syscall_error(errno.EINVAL, "mremap: fixed/dontunmap need maymove")
    if dontunmap and old_len != new_len:
        raise syscall_error(errno.EINVAL, "mremap: dontunmap cannot resize")
    old_len, new_len = _lengths(mm, addr, old_len, new_len)
    if new_len > g.task_size:
        raise syscall_error(errno.EINVAL, "mremap: new length above TASK_SIZE")
    target = None
    if fixed or dontunmap:
        target = new_addr or 0
        if target & (g.page_size - 1):
            raise syscall_error(errno.EINVAL, f"mremap: new address {target:#x} not page aligned")
        # a dontunmap hint is checked like a fixed address (vrm_implies_new_addr)
        if target > g.task_size - new_len:
            raise syscall_error(errno.EINVAL, "mremap: new range above TASK_SIZE")
        if target < addr + old_len and addr < target + new_len:
            raise syscall_error(errno.EINVAL, "mremap: old and new ranges overlap")
    if mm.map_count + 2 >= mm.max_map_count - 3 and (fixed or dontunmap):
        raise syscall_error(errno.ENOMEM, "mremap: too close to max_map_count")

    if fixed and old_len == new_len and era.mremap_multi_vma:
        return _remap_move_multi(mm, addr, old_len, target, dontunmap)

    vma = mm.vmas.vma_lookup(addr)
    if vma is None:
        raise syscall_error(errno.EFAULT, f"mremap: {addr:#x} is not mapped")
    if vma.vm_flags & VM_HUGETLB:
        # 6.x moves aligned hugetlb mappings; the model keeps hugetlb to faults and unmapping
        raise syscall_error(errno.EINVAL, "mremap: hugetlb mappings are not remapped in the model")

    if fixed or dontunmap:
        # a move shrinks the source first, so only what moves must lie in the vma
        _check_prep(mm, vma, addr, old_len, new_len, dontunmap, span=min(old_len, new_len))
        return _mremap_to(mm, addr, old_len, new_len, target, fixed, dontunmap)
    if old_len == new_len:
        return addr
    if new_len < old_len:
        # the tail goes through munmap's own checks (TASK_SIZE, wrap)
        do_munmap(mm, addr + new_len, old_len - new_len)
        return addr
    _check_prep(mm, vma, addr, old_len, new_len, dontunmap)
    # grow
    end = addr + old_len
    if vma.vm_end == end and end + (new_len - old_len) <= g.task_size and \
            mm.vmas.is_free(end, addr + new_len):
        grow = new_len - old_len
        vma.vm_end = addr + new_len
        if vma.vm_flags & VM_ACCOUNT:
            mm.committed += grow >> g.page_shift
        if era.mremap_expand_merges:
            nxt = mm.vmas.next(vma)
            if nxt is not None and nxt.vm_start == vma.vm_end:
                mm.merge_with_neighbours(vma)
        return addr
    if not maymove:
        raise syscall_error(errno.ENOMEM, "mremap: cannot grow in place")
    dest = get_unmapped_area(mm, 0, new_len, False)
    return _move_vma(mm, vma, addr, old_len, new_len, dest, dontunmap=False)


def _lengths(mm: "MM", addr: int, old_len: int, new_len: int) -> tuple[int, int]:
    """The checks every era makes first: an aligned address, page-rounded lengths, new_len > 0."""
    g = mm.geom
    if addr & (g.page_size - 1):
        raise syscall_error(errno.EINVAL, f"mremap: {addr:#x} not page aligned")
    old_len = g.u(page_align(mm, old_len))
    new_len = g.u(page_align(mm, new_len))
    if new_len == 0:
        raise syscall_error(errno.EINVAL, "mremap: new length 0")
    return old_len, new_len


def _do_mremap_legacy(mm: "MM", addr: int, old_len: int, new_len: int,
                      flags: frozenset[str], new_addr: int | None) -> int:
    """2.6-era ``do_mremap``: a fixed target is unmapped and a shrink done before the vma is looked at.

    Same-size and shrinking calls return ``addr`` without a vma; growth in
    place does not merge; ``old_len`` 0 is allowed on any mapping; a move
    without ``fixed`` asks ``get_unmapped_area`` for room.
    """
    g = mm.geom
    if flags - {"maymove", "fixed"}:
        raise syscall_error(errno.EINVAL, f"mremap: bad flags {sorted(flags)}")
    fixed = "fixed" in flags
    maymove = "maymove" in flags
    old_len, new_len = _lengths(mm, addr, old_len, new_len)
    target = new_addr or 0
    if fixed:
        if target & (g.page_size - 1):
            raise syscall_error(errno.EINVAL, f"mremap: new address {target:#x} not page aligned")
        if not maymove:
            raise syscall_error(errno.EINVAL, "mremap: fixed needs maymove")
        if new_len > g.task_size or target > g.task_size - new_len:
            raise syscall_error(errno.EINVAL, "mremap: new range above TASK_SIZE")
        if (target <= addr < target + new_len) or (addr <= target < addr + old_len):
            raise syscall_error(errno.EINVAL, "mremap: old and new ranges overlap")
        do_munmap(mm, target, new_len)
    if old_len >= new_len:
        try:
            do_munmap(mm, addr + new_len, old_len - new_len)
        except OSError:
            if old_len != new_len:
                raise
        if not fixed or target == addr:
            return addr
        old_len = new_len
    vma = mm.vmas.vma_lookup(addr)
    if vma is None:
        raise syscall_error(errno.EFAULT, f"mremap: {addr:#x} is not mapped")
    if vma.vm_flags & VM_HUGETLB:
        raise syscall_error(errno.EINVAL, "mremap: a hugetlb mapping")
    if old_len > vma.vm_end - addr:
        raise syscall_error(errno.EFAULT, "mremap: old range passes the end of the vma")
    if vma.vm_flags & VM_DONTEXPAND and new_len > old_len:
        raise syscall_error(errno.EFAULT, "mremap: cannot grow a pfn mapping")
    if (old_len == vma.vm_end - addr and not (fixed and addr != target)
            and (old_len != new_len or not maymove)):
        nxt = mm.vmas.next(vma)
        max_addr = nxt.vm_start if nxt is not None else g.task_size
        if max_addr - addr >= new_len:
            # vma_adjust: grow in place, no merge with the next vma
            if vma.vm_flags & VM_ACCOUNT:
                mm.committed += (new_len - old_len) >> g.page_shift
            vma.vm_end = addr + new_len
            return addr
    if not maymove:
        raise syscall_error(errno.ENOMEM, "mremap: cannot grow in place")
    if not fixed:
        target = get_unmapped_area(mm, 0, new_len, False)
    return _move_vma(mm, vma, addr, old_len, new_len, target, dontunmap=False)


def _check_prep(mm: "MM", vma: Vma, addr: int, old_len: int, new_len: int, dontunmap: bool,
                span: int | None = None) -> None:
    """``check_prep_vma`` / ``vma_to_resize``: what the source vma must allow.

    ``span`` is how much of the source must lie inside the vma (old_len by default).
    """
    if old_len == 0 and not vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        raise syscall_error(errno.EINVAL, "mremap: old length 0 on a private mapping")
    if dontunmap and vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise syscall_error(errno.EINVAL, "mremap: dontunmap on a pfn mapping")
    if (old_len if span is None else span) > vma.vm_end - addr:
        raise syscall_error(errno.EFAULT, "mremap: old range passes the end of the vma")
    if new_len != old_len and vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise syscall_error(errno.EFAULT, "mremap: cannot resize a pfn mapping")


def _mremap_to(mm: "MM", addr: int, old_len: int, new_len: int, target: int,
               fixed: bool, dontunmap: bool) -> int:
    """``mremap_to``: move to a fixed address (or a dontunmap hint)."""
    g = mm.geom
    if fixed:
        do_vmi_munmap(mm, target, target + new_len)
    if old_len > new_len:
        do_vmi_munmap(mm, addr + new_len, addr + old_len)
        old_len = new_len
    vma = mm.vmas.vma_lookup(addr)
    if vma is None:
        raise syscall_error(errno.EFAULT, f"mremap: {addr:#x} went away")
    if not fixed:
        target = get_unmapped_area(mm, target, new_len, False)
    if old_len and old_len > vma.vm_end - addr:
        raise syscall_error(errno.EFAULT, "mremap: old range passes the end of the vma")
    del g
    return _move_vma(mm, vma, addr, old_len, new_len, target, dontunmap)


def _remap_move_multi(mm: "MM", addr: int, length: int, target: int, dontunmap: bool) -> int:
    """``remap_move`` (6.17+): move every vma piece of [addr, addr+len) to its offset at target.

    Holes are preserved and only the pieces' destinations are unmapped.
    """
    end = addr + length
    first = mm.vmas.vma_lookup(addr)
    if first is None:
        raise syscall_error(errno.EFAULT, f"mremap: {addr:#x} is not mapped")
    pieces = [(max(v.vm_start, addr), min(v.vm_end, end)) for v in mm.vmas.overlapping(addr, end)]
    if len(pieces) > 1:
        for v in mm.vmas.overlapping(addr, end):
            if v.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
                raise syscall_error(errno.EFAULT, "mremap: cannot move a pfn mapping")
    for s, e in pieces:
        dest = target + (s - addr)
        do_vmi_munmap(mm, dest, dest + (e - s))
        vma = mm.vmas.vma_lookup(s)
        if vma is None:
            raise syscall_error(errno.EFAULT, f"mremap: {s:#x} went away")
        if len(pieces) == 1:
            _check_prep(mm, vma, s, e - s, e - s, dontunmap)
        _move_vma(mm, vma, s, e - s, e - s, dest, dontunmap)
    return target


def _move_vma(mm: "MM", vma: Vma, old_addr: int, old_len: int, new_len: int, new_addr: int,
              dontunmap: bool) -> int:
    """``move_vma``: copy_vma at new_addr, move the page tables, unmap the old range."""
    g = mm.geom
    ps = g.page_shift
    if mm.map_count >= mm.max_map_count - 3:
        # prep_move_vma: the final munmap may split one vma into three
        raise syscall_error(errno.ENOMEM, "mremap: too close to max_map_count to move")
    # the source is not split here: the final munmap of the old range does
    # that, and with dontunmap the source vma stays whole
    new_pgoff = vma.vm_pgoff + ((old_addr - vma.vm_start) >> ps)
    new = vma.clone()
    new.vm_start = new_addr
    new.vm_end = new_addr + new_len
    if vma.is_anonymous and vma.anon_vma is None:
        new_pgoff = new_addr >> ps
    new.vm_pgoff = new_pgoff
    moved_whole = old_len > 0 and vma.vm_start == old_addr and vma.vm_end == old_addr + old_len
    mm.vmas.insert(new)
    new = mm.merge_with_neighbours(new)
    if old_len and new.vm_start <= old_addr < new.vm_end:
        # copy_vma merged with the source itself: only possible for an
        # untouched anonymous vma whose pgoff was reset to the destination
        vma = new
        moved_whole = False
    if old_len:
        move_page_tables(mm, vma, old_addr, new, new_addr, min(old_len, new_len))
    if new_len > old_len and vma.vm_flags & VM_ACCOUNT:
        mm.committed += (new_len - old_len) >> ps
    if not old_len:
        return new_addr
    if dontunmap:
        if moved_whole:
            # dontunmap_complete: the anon_vma goes, the vma stays as it is
            # (a later mapping beside it may merge with it)
            vma.anon_vma = None
        return new_addr
    # VM_ACCOUNT is hidden from this munmap: the reservation moved with the vma
    committed = mm.committed
    do_vmi_munmap(mm, old_addr, old_addr + old_len)
    mm.committed = committed
    return new_addr


def move_page_tables(mm: "MM", vma: Vma, old_addr: int, new_vma: Vma, new_addr: int, length: int) -> None:
    """``move_page_tables``: carry ptes (and, where the era can, whole tables) to new_addr."""
    era = mm.era
    if not era.mremap_moves_tables:
        _move_ptes_one_by_one(mm, old_addr, new_addr, length)
        return
    g = mm.geom
    pt = mm.pt
    pmd_size = g.PMD_SIZE
    pud_size = g.PUD_SIZE
    if era.mremap_realign:
        old_addr, new_addr, length = _try_realign(mm, vma, old_addr, new_vma, new_addr, length)
    old_end = old_addr + length
    while old_addr < old_end:
        # PUD level: a whole PMD table moves if both ends are PUD aligned
        extent = _extent(old_addr, old_end, new_addr, pud_size)
        if not pt.present("pmd", old_addr):
            old_addr += extent
            new_addr += extent
            continue
        mm.alloc_tables(new_addr, new_addr + 1, "pud")
        if extent == pud_size and not pt.present("pmd", new_addr):
            pt.move_table("pmd", old_addr, new_addr)
            old_addr += extent
            new_addr += extent
            continue
        # PMD level: a whole PTE table moves if both ends are PMD aligned
        extent = _extent(old_addr, old_end, new_addr, pmd_size)
        if not pt.present("pte", old_addr):
            old_addr += extent
            new_addr += extent
            continue
        mm.alloc_tables(new_addr, new_addr + 1, "pmd")
        if extent == pmd_size and not pt.present("pte", new_addr):
            pt.move_table("pte", old_addr, new_addr)
        else:
            mm.alloc_tables(new_addr, new_addr + 1, "pte")
            pt.move_ptes(old_addr, old_addr + extent, new_addr)
        old_addr += extent
        new_addr += extent


def _extent(old_addr: int, old_end: int, new_addr: int, size: int) -> int:
    """``get_extent``: up to the next boundary of either address, within the range."""
    mask = ~(size - 1)
    extent = ((old_addr + size) & mask) - old_addr
    extent = min(extent, old_end - old_addr)
    return min(extent, ((new_addr + size) & mask) - new_addr)


def _try_realign(mm: "MM", vma: Vma, old_addr: int, new_vma: Vma, new_addr: int,
                 length: int) -> tuple[int, int, int]:
    """``try_realign_addr``: move the first, partial PTE table whole when both sides allow."""
    pmd_size = mm.geom.PMD_SIZE
    off = old_addr & (pmd_size - 1)
    if not off or off != (new_addr & (pmd_size - 1)):
        return old_addr, new_addr, length
    if length < pmd_size - off:
        return old_addr, new_addr, length
    if vma.vm_start != old_addr or new_vma.vm_start != new_addr:
        return old_addr, new_addr, length
    for start in (old_addr, new_addr):
        below = mm.vmas.below(start)
        if below is not None and below.vm_end > start - off:
            return old_addr, new_addr, length
    return old_addr - off, new_addr - off, length + off


def _move_ptes_one_by_one(mm: "MM", old_addr: int, new_addr: int, length: int) -> None:
    """2.6.12 ``move_page_tables``: each present pte moves, allocating tables at its destination."""
    pt = mm.pt
    ps = mm.geom.page_shift
    delta = new_addr - old_addr
    runs = list(pt.ptes.runs(old_addr >> ps, (old_addr + length) >> ps))
    for a, b, _ in runs:
        mm.alloc_tables((a << ps) + delta, (b << ps) + delta, "pte")
    pt.move_ptes(old_addr, old_addr + length, new_addr)
