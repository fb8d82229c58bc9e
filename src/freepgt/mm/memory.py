"""Faults, zapping and page-table freeing: the model's ``mm/memory.c``.

``free_pgtables`` and ``free_pgd_range`` are the seed patch's code in its
final 2.6.12 form (the same arithmetic survives in 6.x with a p4d level).
The kernel writes one loop per level because C has a type per level; here
the loop is written once and runs over the geometry's real levels, so a
folded level costs nothing and frees nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import BusError, SegmentationFault
from ..latency import account_zap
from ..pagetable import PTE_ANON, PTE_FILE, PTE_ZERO
from ..tlb import MmuGather
from ..vma import (
    VM_ACCOUNT, VM_EXEC, VM_HUGETLB, VM_MAYSHARE, VM_PFNMAP, VM_READ, VM_RWX, VM_SHARED, VM_WRITE, AnonVma,
    Vma,
)

if TYPE_CHECKING:
    from .core import MM


# ---------------------------------------------------------------------------
# Counting what a walk reads
# ---------------------------------------------------------------------------

def count_entries(mm: "MM", start: int, end: int, with_pte: bool = True, with_pgd: bool = True) -> None:
    """Add to ``mm.entries_examined`` the entries a walk of [start, end) reads.

    A walk reads, at each real level, every entry of the range inside the
    tables that are present (the pgd is always present).  ``free_pgd_range``
    reads no pte (``with_pte=False``); a zap reads them all.  A caller that
    counts the pgd slots itself passes ``with_pgd=False``.
    """
    if start == end:
        return
    pt = mm.pt
    last = (end - 1) & mm.geom.mask
    ex = mm.entries_examined
    for name, es, ts in pt.walk:
        if ts is None:
            if not with_pgd:
                continue
            n = (last >> es) - (start >> es) + 1
        elif name == "pte" and not with_pte:
            continue
        else:
            n = 0
            for a, b in pt.tables[name].spans(start >> ts, (last >> ts) + 1):
                lo = a << ts
                if lo < start:
                    lo = start
                hi_last = (b << ts) - 1
                if hi_last > last:
                    hi_last = last
                n += (hi_last >> es) - (lo >> es) + 1
            if not n:
                break  # a tree: no table here, none below
        if n:
            ex[name] = ex.get(name, 0) + n


# ---------------------------------------------------------------------------
# free_pgtables and free_pgd_range (seed patch, final 2.6.12 form)
# ---------------------------------------------------------------------------

def _may_free(g, addr: int, end: int, floor: int, ceiling: int, span: int) -> bool:
    """The floor/ceiling test ending ``free_p?d_range``: may the table above go?

    ``addr``/``end`` are the part of the range walked in this table, ``span``
    the table's span.  Floor and end are never rounded up; addr and ceiling
    are rounded down, and a ceiling that rounds to 0 is the bottom, not the
    top (the kernel's comment: compare with -1 and reject a rounded 0).
    """
    m = g.mask
    start = addr & ~(span - 1)
    if start < floor:
        return False
    if ceiling:
        ceiling &= ~(span - 1)
        if not ceiling:
            return False
    if ((end - 1) & m) > ((ceiling - 1) & m):
        return False
    return True


def _freeable(g, addr: int, end: int, floor: int, ceiling: int, shift: int,
              a: int, b: int, hi: int) -> list[tuple[int, int]]:
    """Which tables [a, b) of one level (span ``1 << shift``) pass ``_may_free``.

    The first and last tables of the walk see a partial range and are tested
    literally; a table in between sees its whole span, and for those the
    test is monotonic (the floor test in the table's start, the ceiling test
    in its end), so the passing ones form one run found by arithmetic.
    """
    m = g.mask
    span = 1 << shift
    out: list[tuple[int, int]] = []

    def literal(idx: int) -> bool:
        t_start = idx << shift
        chunk_addr = max(addr, t_start)
        chunk_end = (t_start + span) & m if idx < hi - 1 else end
        return _may_free(g, chunk_addr, chunk_end, floor, ceiling, span)

    if literal(a):
        out.append((a, a + 1))
    if b - a >= 3:
        first = max(a + 1, -(-floor // span))
        last = b - 1  # exclusive bound for the middle tables
        if ceiling:
            c = ceiling & ~(span - 1)
            last = min(last, c >> shift) if c else first
        if first < last:
            if out and out[-1][1] == first:
                out[-1] = (out[-1][0], last)
            else:
                out.append((first, last))
    if b - a >= 2 and literal(b - 1):
        if out and out[-1][1] == b - 1:
            out[-1] = (out[-1][0], b)
        else:
            out.append((b - 1, b))
    return out


def _free_walk(mm: "MM", tlb: MmuGather, addr: int, end: int, floor: int, ceiling: int) -> None:
    """The walk of ``free_pgd_range`` over the trimmed [addr, end): free and strand."""
    g = mm.geom
    m = g.mask
    pt = mm.pt
    last = (end - 1) & m
    top = pt.levels[0]
    if top not in pt.prealloc:
        shift = pt.shifts[top]
        if not pt.tables[top].spans(addr >> shift, (last >> shift) + 1):
            return  # a tree: nothing at the top, nothing below
    freed_upper: list[tuple[str, int, int]] = []
    # bottom-up, as the recursion returns: PTE tables first, then each level above
    for name in reversed(pt.levels):
        shift = pt.shifts[name]
        lo, hi = addr >> shift, (last >> shift) + 1
        if name == "pte":
            # free_pte_range is unconditional for every present pmd entry walked
            n = pt.remove_tables("pte", lo, hi)
            if n:
                mm.free_tables(tlb, "pte", n, lo << shift, hi << shift)
            continue
        if name in pt.prealloc:
            continue
        for a, b in pt.tables[name].spans(lo, hi):
            a, b = max(a, lo), min(b, hi)
            for f_lo, f_hi in _freeable(g, addr, end, floor, ceiling, shift, a, b, hi):
                pt.remove_tables(name, f_lo, f_hi)
                mm.free_tables(tlb, name, f_hi - f_lo, f_lo << shift, f_hi << shift)
                freed_upper.append((name, f_lo, f_hi))
    for name, lo, hi in freed_upper:
        for lower, n in pt.strand_below(name, lo, hi).items():
            mm.stranded[lower] = mm.stranded.get(lower, 0) + n


def free_pgd_range(mm: "MM", tlb: MmuGather, addr: int, end: int, floor: int, ceiling: int) -> None:
    """``free_pgd_range``: free the tables under [addr, end) that only it uses.

    ``floor`` is the end of the surviving vma below (or FIRST_USER_ADDRESS),
    ``ceiling`` the start of the surviving vma above (0: the top).  Every PTE
    table the PMD-trimmed range meets is freed; a higher table only if its
    whole span lies between floor and ceiling.
    """
    g = mm.geom
    m = g.mask
    pmd_size = g.PMD_SIZE
    mm.stats["free_pgd_range_calls"] += 1

    addr &= ~(pmd_size - 1)
    if addr < floor:
        addr = (addr + pmd_size) & m
        if not addr:
            return
    if mm.era.first_posting_trim:
        _free_pgd_range_first_posting(mm, tlb, addr, end, floor, ceiling)
        return
    if ceiling:
        ceiling &= ~(pmd_size - 1)
        if not ceiling:
            return
    if ((end - 1) & m) > ((ceiling - 1) & m):
        end = (end - pmd_size) & m
    if addr > ((end - 1) & m):
        return

    count_entries(mm, addr, end, with_pte=False)
    _free_walk(mm, tlb, addr, end, floor, ceiling)
    mm.era.after_free_pgd_range(mm, tlb, addr, end)


def _free_pgd_range_first_posting(mm: "MM", tlb: MmuGather, addr: int, end: int,
                                  floor: int, ceiling: int) -> None:
    """The rest of ``free_pgd_range`` as first posted (21 March 2005).

    ``ceiling &= PMD_MASK; if (addr > ceiling - 1) return;`` and no trimming
    of ``end``: a ceiling that rounds to 0 reads as the top, the PTE page
    shared with the vma above is freed, and an ``addr`` raised past ``end``
    still walks once, at ``addr``, freeing the PTE page there, then hands
    ``flush_tlb_pgtables`` a start above its end (sparc64's BUG).
    """
    g = mm.geom
    m = g.mask
    ceiling &= ~(g.PMD_SIZE - 1)
    if addr > ((ceiling - 1) & m):
        return
    shift = mm.pt.shifts["pte"]
    if addr <= ((end - 1) & m):
        # the walk itself is the final one: only the trimming differed
        count_entries(mm, addr, end, with_pte=False)
        _free_walk(mm, tlb, addr, end, floor, ceiling)
        _lost_ptes(mm, addr, ((((end - 1) & m) >> shift) + 1) << shift)
        mm.era.after_free_pgd_range(mm, tlb, addr, end)
        return
    # addr past end: one pass of each level's do/while loop at addr
    idx = addr >> shift
    count_entries(mm, addr, addr + 1, with_pte=False)
    if mm.pt.remove_tables("pte", idx, idx + 1):
        mm.free_tables(tlb, "pte", 1, idx << shift, (idx + 1) << shift)
        mm.warnings.append(f"free_pgd_range: freed the PTE page at {addr:#x}, past end {end:#x}")
        _lost_ptes(mm, idx << shift, (idx + 1) << shift)
    mm.era.after_free_pgd_range(mm, tlb, addr, end)


def _lost_ptes(mm: "MM", start: int, end: int) -> None:
    """ptes of a surviving vma that sat in a PTE page the buggy walk freed: gone."""
    lost = mm.pt.zap(start, end)
    if lost:
        a, b = lost[0][0] << mm.geom.page_shift, lost[-1][1] << mm.geom.page_shift
        mm.warnings.append(f"free_pgd_range: freed a PTE page still mapping [{a:#x}, {b:#x})")


def free_pgtables(mm: "MM", tlb: MmuGather, vmas: list[Vma], floor: int, ceiling: int,
                  hugetlb: bool = True) -> None:
    """``free_pgtables``: free the tables of the removed ``vmas`` (address order).

    Neighbouring vmas no more than PMD_SIZE apart are gathered into one
    ``free_pgd_range`` call; an intermediate group's ceiling is the start of
    the next group (also going away), the floor stays the surviving one.

    A vma whose first huge page is ``is_hugepage_only_range`` (ia64 region
    4, ppc64's 1-1.5 TB area) goes alone to ``hugetlb_free_pgd_range``, and
    gathering never absorbs one (freepgt 3/6).  On other architectures the
    test is the constant 0 and hugetlb vmas are ordinary vmas here.
    ``hugetlb=False`` gives the loop of freepgt 1/6, which did not know
    hugepage-only vmas yet.  Eras with ``gather_skips_hugetlb`` (6.x) take
    every hugetlb vma alone and never gather across one
    (``is_vm_hugetlb_page``); outside ia64 and ppc64 its
    ``hugetlb_free_pgd_range`` is ``free_pgd_range``.
    """
    g = mm.geom
    m = g.mask
    pmd_size = g.PMD_SIZE
    huge_only = g.hugepage_only if hugetlb else ()  # empty but on ia64 and ppc64
    hpage = g.HPAGE_SIZE
    alone = mm.era.gather_skips_hugetlb

    def takes_alone(vma: Vma) -> bool:
        if alone and vma.vm_flags & VM_HUGETLB:
            return True
        return bool(huge_only) and g.is_hugepage_only_range(vma.vm_start, hpage)

    # None where no vma is ever taken alone (the common case: skip the calls)
    single = takes_alone if alone or huge_only else None

    n = len(vmas)
    i = 0
    while i < n:
        addr = vmas[i].vm_start
        if single is not None and single(vmas[i]):
            nxt = vmas[i + 1] if i + 1 < n else None
            ceil = nxt.vm_start if nxt else ceiling
            if huge_only and g.is_hugepage_only_range(addr, hpage):
                hugetlb_free_pgd_range(mm, tlb, addr, vmas[i].vm_end, floor, ceil)
            else:
                free_pgd_range(mm, tlb, addr, vmas[i].vm_end, floor, ceil)
            i += 1
            continue
        j = i
        while j + 1 < n and vmas[j + 1].vm_start <= ((vmas[j].vm_end + pmd_size) & m) \
                and not (single is not None and single(vmas[j + 1])):
            j += 1
        nxt = vmas[j + 1] if j + 1 < n else None
        free_pgd_range(mm, tlb, addr, vmas[j].vm_end, floor, nxt.vm_start if nxt else ceiling)
        i = j + 1


def hugetlb_free_pgd_range(mm: "MM", tlb: MmuGather, addr: int, end: int, floor: int, ceiling: int) -> None:
    """``hugetlb_free_pgd_range`` (2.6.12) for one hugepage-only vma.

    ia64 (arch/ia64/mm/hugetlbpage.c): the tables of region 4 are indexed by
    ``htlbpage_to_page``, so addr and end are scaled down before the ordinary
    ``free_pgd_range``; floor and ceiling are scaled only if they lie in the
    hugepage region themselves (a region-3 floor stays as it is, a ceiling of
    0 stays the top).  ppc64 (include/asm-ppc64/pgtable.h): a no-op, its
    two-level huge tables are freed by ``destroy_context``.
    """
    g = mm.geom
    if g.hugetlb_tables == "separate":
        return
    if g.hugetlb_tables == "rescaled":
        hpage = g.HPAGE_SIZE
        addr = g.htlbpage_to_page(addr)
        end = g.htlbpage_to_page(end)
        if g.is_hugepage_only_range(floor, hpage):
            floor = g.htlbpage_to_page(floor)
        if g.is_hugepage_only_range(ceiling, hpage):
            ceiling = g.htlbpage_to_page(ceiling)
    free_pgd_range(mm, tlb, addr, end, floor, ceiling)


# ---------------------------------------------------------------------------
# Zapping
# ---------------------------------------------------------------------------

def zap_range(mm: "MM", tlb: MmuGather, vma: Vma, start: int, end: int) -> None:
    """``unmap_page_range`` over [start, end) of one vma: clear ptes, free no table."""
    if start >= end:
        return
    count_entries(mm, start, end)
    _zap_piece(mm, tlb, start, end)


def zap_hugetlb(mm: "MM", tlb: MmuGather, vma: Vma, start: int, end: int) -> None:
    """``unmap_hugepage_range`` over [start, end) of a hugetlb vma.

    2.6 drops each huge page at once (``put_page``) and ends with one
    ``flush_tlb_range``: nothing goes through the gather.  6.x hands each
    huge page to the gather (``tlb_remove_page_size``), one entry apiece.
    """
    if start >= end:
        return
    count_entries(mm, start, end)
    removed = mm.pt.zap(start, end)
    if not removed:
        return
    npages = sum(b - a for a, b, _ in removed)
    if mm.era.zap_block_pages:
        tlb.freed += npages
        tlb.flush_tlb_range(start, end)
        return
    per_huge = mm.geom.HPAGE_SIZE >> mm.geom.page_shift
    ps = mm.geom.page_shift
    tlb.remove_pages(npages, removed[0][0] << ps, removed[-1][1] << ps, -(-npages // per_huge))


def unmap_vmas(mm: "MM", tlb: MmuGather, vmas: list[Vma], start: int, end: int) -> int:
    """``unmap_vmas``: zap every vma's part of [start, end); return pages accounted.

    In eras with a ``ZAP_BLOCK_SIZE`` (2.6.12) the gather is finished and
    restarted after every block of address space, as the kernel does to drop
    the page-table lock; blocks with nothing mapped cost no flush.
    """
    nr_accounted = 0
    block = mm.era.zap_block_bytes(mm.geom)
    done = 0  # bytes zapped so far, across vmas: blocks carry over
    pending = None  # the block whose zapped pages wait in the gather
    for vma in vmas:
        s = max(vma.vm_start, start)
        e = min(vma.vm_end, end)
        if s >= e:
            continue
        if vma.vm_flags & VM_ACCOUNT:
            nr_accounted += (e - s) >> mm.geom.page_shift
        if not block:
            # no ZAP_BLOCK_SIZE: the lock is the PTE table's own, taken
            # per table, with a reschedule point per pmd entry
            pmd = mm.geom.PMD_SIZE
            account_zap(mm, s, e, s & (pmd - 1), pmd)
            if vma.vm_flags & VM_HUGETLB:
                zap_hugetlb(mm, tlb, vma, s, e)
            else:
                zap_range(mm, tlb, vma, s, e)
            continue
        if vma.vm_flags & VM_HUGETLB:
            # unmap_hugepage_range takes the rest of the vma as one block;
            # if that uses up zap_bytes, the gather is finished and a new
            # block starts after the vma
            left = block - done % block
            zap_hugetlb(mm, tlb, vma, s, e)
            if e - s >= left:
                tlb.finish()
                mm.latency.lock_break()
                done, pending = 0, None
            else:
                pending = done // block
                done += e - s
            continue
        account_zap(mm, s, e, done, block)
        pending = _zap_in_blocks(mm, tlb, s, e, done, block, pending)
        done += e - s
    return nr_accounted


def _zap_in_blocks(mm: "MM", tlb: MmuGather, s: int, e: int, done: int, block: int,
                   pending: int | None = None) -> int | None:
    """Zap [s, e) block by block, finishing the gather at each block's end.

    ``done`` is how far into the current run of blocks ``s`` lies, and
    ``pending`` the block (of that run) whose zapped pages still wait in
    the gather, from an earlier vma.  The kernel finishes the gather each
    time ``zap_bytes`` reaches 0, wherever that falls, so a block end in an
    empty stretch flushes what is pending too.  Only blocks that hold
    present ptes are visited, so the cost follows what is mapped, not the
    size of the range.  Returns the block still pending at ``e``.
    """
    ps = mm.geom.page_shift
    count_entries(mm, s, e)
    base = s - done  # the address where block 0 would start
    last_block = pending
    for a, b, _ in list(mm.pt.ptes.runs(s >> ps, e >> ps)):
        lo, hi = a << ps, b << ps
        while lo < hi:
            idx = (lo - base) // block
            block_start = base + idx * block
            block_end = block_start + block
            if last_block is not None and idx != last_block:
                tlb.finish()
                last_block = None
            if lo == block_start and last_block is None and hi - lo >= 2 * block:
                # whole blocks of one pte state behave alike: run one through
                # the gather and repeat its effect for the others
                n = (hi - lo) // block
                _zap_repeated_blocks(mm, tlb, lo, block, n)
                lo += n * block
                continue
            piece_end = min(hi, block_end)
            _zap_piece(mm, tlb, lo, piece_end)
            last_block = idx
            if piece_end == block_end:
                tlb.finish()
                last_block = None
            lo = piece_end
    if last_block is not None and e - base >= (last_block + 1) * block:
        # zap_bytes ran out after the last present pte of the block
        tlb.finish()
        last_block = None
    return last_block


def _zap_repeated_blocks(mm: "MM", tlb: MmuGather, start: int, block: int, n: int) -> None:
    """Zap n whole, fully mapped blocks of one pte state from start, gather restarts included."""
    st = tlb.stats
    before = (st.flushes, st.flushed_bytes, st.fullmm_flushes, st.pages_freed)
    _zap_piece(mm, tlb, start, start + block)
    tlb.finish()
    d_flushes = st.flushes - before[0]
    d_bytes = st.flushed_bytes - before[1]
    d_full = st.fullmm_flushes - before[2]
    d_pages = st.pages_freed - before[3]
    rest = n - 1
    if rest:
        removed = mm.pt.zap(start + block, start + n * block)
        tlb.freed += sum(b - a for a, b, _ in removed)
        st.flushes += d_flushes * rest
        st.flushed_bytes += d_bytes * rest
        st.fullmm_flushes += d_full * rest
        st.pages_freed += d_pages * rest


def _zap_piece(mm: "MM", tlb: MmuGather, start: int, end: int) -> None:
    removed = mm.pt.zap(start, end)
    if not removed:
        return
    npages = sum(b - a for a, b, _ in removed)
    queued = sum(b - a for a, b, st in removed if st == PTE_ANON or st == PTE_FILE)
    ps = mm.geom.page_shift
    tlb.remove_pages(npages, removed[0][0] << ps, removed[-1][1] << ps, queued)


def reclaim_pt(mm: "MM", tlb: MmuGather, start: int, end: int) -> None:
    """``CONFIG_PT_RECLAIM``: free PTE tables whose whole span was zapped.

    Called per vma by ``madvise(MADV_DONTNEED)`` in eras that have it; PMD and
    PUD tables are never reclaimed this way.
    """
    g = mm.geom
    pmd = g.PMD_SIZE
    lo = (start + pmd - 1) & ~(pmd - 1)
    hi = end & ~(pmd - 1)
    if hi <= lo:
        return
    shift = mm.pt.shifts["pte"]
    n = mm.pt.remove_tables("pte", lo >> shift, hi >> shift)
    if n:
        mm.free_tables(tlb, "pte", n, lo, hi)


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------

def access_permitted(mm: "MM", vma: Vma, write: bool) -> bool:
    """Does the vma allow this access (``access_error`` inverted)?"""
    f = vma.vm_flags
    if write:
        return bool(f & VM_WRITE)
    era_rule = mm.era.read_permitted(vma, False)
    if era_rule is not None:
        return era_rule
    if f & VM_READ:
        return True
    g = mm.geom
    if g.write_implies_read and f & VM_WRITE:
        return True
    if g.exec_implies_read and f & VM_EXEC:
        return True
    return False


def anon_vma_prepare(mm: "MM", vma: Vma) -> None:
    """``anon_vma_prepare``: give the vma an anon_vma, reusing a neighbour's if allowed.

    ``find_mergeable_anon_vma`` looks at the next vma first, then the
    previous one: same object, flags differing only in r/w/x, contiguous
    pgoff, and an anon_vma of its own.
    """
    if vma.anon_vma is not None:
        return
    ps = mm.geom.page_shift
    try:
        nxt = mm.vmas.next(vma)
        prv = mm.vmas.prev(vma)
    except KeyError:  # not linked (yet): nothing to reuse
        nxt = prv = None

    def compatible(a: Vma, b: Vma) -> bool:
        return (
            a.vm_end == b.vm_start
            and a.vm_file is b.vm_file
            and (a.vm_flags & ~VM_RWX) == (b.vm_flags & ~VM_RWX)
            and a.vm_pgoff + ((a.vm_end - a.vm_start) >> ps) == b.vm_pgoff
        )

    if nxt is not None and nxt.anon_vma is not None and compatible(vma, nxt):
        vma.anon_vma = nxt.anon_vma
    elif prv is not None and prv.anon_vma is not None and compatible(prv, vma):
        vma.anon_vma = prv.anon_vma
    else:
        vma.anon_vma = AnonVma()


def _fault_tables(mm: "MM", start: int, end: int) -> None:
    mm.alloc_tables(start, end, "pte")


def handle_range_fault(mm: "MM", vma: Vma, start: int, end: int, write: bool) -> None:
    """Access every page of [start, end) inside ``vma`` in order, faulting as Linux would.

    Raises BusError at the first page past the object's end.  Permissions
    must have been checked by the caller.
    """
    if vma.vm_flags & VM_HUGETLB:
        hugetlb_fault(mm, vma, start, end)
        return
    if vma.vm_flags & VM_PFNMAP:
        _pfn_fault(mm, vma, start, end)
        return
    if vma.vm_file is None:
        _anon_fault(mm, vma, start, end, write)
        return
    _file_fault(mm, vma, start, end, write)


def hugetlb_fault(mm: "MM", vma: Vma, start: int, end: int) -> None:
    """``hugetlb_fault`` for every huge page of [start, end) that is not mapped yet.

    Each huge page gets its huge pte through ``huge_pte_alloc`` (which builds
    the tables the architecture keeps huge ptes in) and is mapped whole; the
    model keeps its base pages in the pte map, as page-cache pages of the
    hugetlbfs file, so rss and zapping see them.  Reads and writes alike map
    the page: hugetlb has no zero page.  (2.6.12's hugetlbfs prefaulted the
    whole vma at mmap time, ``hugetlb_prefault``; touching the range gives
    the same tables.)
    """
    g = mm.geom
    hpage = g.HPAGE_SIZE
    ps = g.page_shift
    lo = start & ~(hpage - 1)
    hi = (end + hpage - 1) & ~(hpage - 1)
    pt = mm.pt
    # huge pages are mapped whole, so every gap is made of whole huge pages
    for a, b in list(pt.ptes.gaps(lo >> ps, hi >> ps)):
        mm.huge_pte_alloc(a << ps, b << ps)
        pt.map_pages(a, b, PTE_FILE)


def _pfn_fault(mm: "MM", vma: Vma, start: int, end: int) -> None:
    ps = mm.geom.page_shift
    for a, b in mm.pt.ptes.gaps(start >> ps, end >> ps):
        # a pfn mapping has no fault handler: a missing pte is SIGBUS
        raise BusError(a << ps, "no page in a pfn mapping")


def _anon_fault(mm: "MM", vma: Vma, start: int, end: int, write: bool) -> None:
    """``do_anonymous_page`` / ``do_wp_page`` for a private anonymous range."""
    ps = mm.geom.page_shift
    pt = mm.pt
    p0, p1 = start >> ps, end >> ps
    if not write:
        holes = list(pt.ptes.gaps(p0, p1))
        for a, b in holes:
            _fault_tables(mm, a << ps, b << ps)
            pt.map_pages(a, b, PTE_ZERO)
        return
    todo = list(pt.ptes.gaps(p0, p1)) + [
        (a, b) for a, b, v in pt.ptes.runs(p0, p1) if v == PTE_ZERO
    ]
    if not todo:
        return
    anon_vma_prepare(mm, vma)
    for a, b in todo:
        _fault_tables(mm, a << ps, b << ps)
        pt.map_pages(a, b, PTE_ANON)


def _file_fault(mm: "MM", vma: Vma, start: int, end: int, write: bool) -> None:
    """``do_read_fault`` / ``do_cow_fault`` / ``do_shared_fault`` over a range."""
    g = mm.geom
    ps = g.page_shift
    pt = mm.pt
    obj = vma.vm_file
    shared = bool(vma.vm_flags & VM_SHARED) or bool(vma.vm_flags & VM_MAYSHARE)
    vstart = vma.vm_start >> ps
    # first page (absolute page number) at or past EOF within this vma
    eof_page = vstart + (obj.npages - vma.vm_pgoff)
    p0, p1 = start >> ps, end >> ps

    def file_index(page: int) -> int:
        return vma.vm_pgoff + (page - vstart)

    if write:
        stop = min(p1, max(eof_page, p0))
        if shared:
            todo = list(pt.ptes.gaps(p0, stop))
            state = PTE_FILE
        else:
            todo = list(pt.ptes.gaps(p0, stop)) + [
                (a, b) for a, b, v in pt.ptes.runs(p0, stop) if v != PTE_ANON
            ]
            state = PTE_ANON
            if todo or (stop < p1 and mm.era.cow_prepares_anon_vma_first):
                # do_cow_fault prepares the anon_vma before asking the file
                anon_vma_prepare(mm, vma)
        for a, b in todo:
            _fault_tables(mm, a << ps, b << ps)
            pt.map_pages(a, b, state)
            obj.cache.set(file_index(a), file_index(b))
        if stop < p1:
            if stop in pt.ptes:
                # a page past EOF that is mapped (the file shrank): nothing to model
                return
            mm.alloc_tables(stop << ps, (stop + 1) << ps, _sigbus_level(mm))
            raise BusError(stop << ps, "write past the end of the file")
        return

    # read: every absent page faults, in order, with fault-around
    fa = mm.era.fault_around_pages(g) if mm.era.fault_around else 0
    ptrs = g.level("pte").ptrs
    vend = vma.vm_end >> ps

    def cached_unmapped(lo: int, hi: int) -> list[int]:
        """Pages in [lo, hi) of the vma, below EOF, cached and not mapped."""
        lo = max(lo, vstart)
        hi = min(hi, vend, eof_page)
        out = []
        if lo >= hi:
            return out
        for a, b, _ in obj.cache.runs(file_index(lo), file_index(hi)):
            pa, pb = a - vma.vm_pgoff + vstart, b - vma.vm_pgoff + vstart
            for q0, q1 in pt.ptes.gaps(pa, pb):
                out.extend(range(q0, q1))
        return out

    def fault_one(page: int) -> None:
        if fa > 1:
            i = page & (ptrs - 1)
            v = page - vstart
            frm = max(i & ~(fa - 1), i - min(i, v))
            to = min(frm + fa, ptrs, i + (vend - page))
            base = page - i
            for q in cached_unmapped(base + frm, base + to):
                _fault_tables(mm, q << ps, (q + 1) << ps)
                pt.map_pages(q, q + 1, PTE_FILE)
        if page >= eof_page:
            mm.alloc_tables(page << ps, (page + 1) << ps, _sigbus_level(mm))
            raise BusError(page << ps, "read past the end of the file")
        if page not in pt.ptes:
            _fault_tables(mm, page << ps, (page + 1) << ps)
            pt.map_pages(page, page + 1, PTE_FILE)
            obj.cache.set(file_index(page), file_index(page) + 1)

    pending = cached_unmapped(p0 - fa, p1 + fa) if fa > 1 else []
    k = 0
    cur = p0
    while cur < p1:
        while k < len(pending) and pending[k] in pt.ptes:
            k += 1
        nextc = pending[k] if k < len(pending) else None
        # pages whose window cannot reach a cached-unmapped page fault alone
        bulk_end = p1 if nextc is None else min(p1, max(cur, nextc - fa))
        bulk_end_ok = min(bulk_end, max(eof_page, cur))
        if bulk_end_ok > cur:
            for a, b in list(pt.ptes.gaps(cur, bulk_end_ok)):
                _fault_tables(mm, a << ps, b << ps)
                pt.map_pages(a, b, PTE_FILE)
                obj.cache.set(file_index(a), file_index(b))
            cur = bulk_end_ok
            continue
        # near a cached page (or at EOF): one page at a time
        stop = p1 if nextc is None else min(p1, nextc + fa + 1)
        while cur < stop:
            if cur not in pt.ptes:
                fault_one(cur)
            cur += 1
        if nextc is not None and cur >= nextc:
            k += 1


def _sigbus_level(mm: "MM") -> str:
    """How far down a fault refused with SIGBUS has allocated tables."""
    return "pte" if mm.era.sigbus_allocates_pte else "pmd"


def populate_range(mm: "MM", vma: Vma, start: int, end: int) -> None:
    """``populate_vma_page_range``: fault in [start, end) as MAP_POPULATE does.

    Private writable mappings are written (FOLL_WRITE); everything else is
    read.  A fault that fails (past EOF) ends the populate without error.
    """
    f = vma.vm_flags
    if not f & (VM_READ | VM_WRITE | VM_EXEC):
        return
    write = (f & (VM_WRITE | VM_SHARED)) == VM_WRITE
    if not access_permitted(mm, vma, write):
        # e.g. an execute-only vma under a protection key: GUP is refused
        return
    try:
        handle_range_fault(mm, vma, start, end, write)
    except BusError:
        pass


def touch(mm: "MM", addr: int, length: int, write: bool) -> None:
    """Access ``addr`` and the start of every following page of [addr, addr+length).

    Raises SegmentationFault or BusError at the first page that fails;
    the pages before it were accessed.
    """
    if length <= 0:
        return
    g = mm.geom
    ps = g.page_shift
    page = addr >> ps
    last = (addr + length - 1) >> ps
    while page <= last:
        a = page << ps
        vma = mm.vmas.find_vma(a)
        if vma is None or vma.vm_start > a:
            raise SegmentationFault(a, "no vma")
        seg_end = min((last + 1) << ps, vma.vm_end)
        if not access_permitted(mm, vma, write):
            if not write and mm.era.read_permitted(vma, True):
                # only a page with no pte faults; present ones read fine
                hole = next(iter(mm.pt.ptes.gaps(page, seg_end >> ps)), None)
                if hole is None:
                    page = seg_end >> ps
                    continue
                a = hole[0] << ps
            raise SegmentationFault(a, f"{'write' if write else 'read'} not allowed by {vma.perms}")
        handle_range_fault(mm, vma, a, seg_end, write)
        page = seg_end >> ps
