"""The mmu_gather: batching of freed pages and page tables, and TLB flushes.

Models ``include/asm-generic/tlb.h``: pages and page tables handed to the
gather are released only after a TLB flush; a flush happens when the batch
fills (``tlb_flush_mmu``) and once more at ``tlb_finish_mmu`` if anything is
pending.  The model does not keep the pages themselves, only how many went
through the gather and which address range the pending flush covers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TlbStats:
    """What mmu_gathers of one mm did, summed over its life."""

    flushes: int = 0
    #: Sum of the lengths of the flushed ranges (a full-mm flush counts as the
    #: range that was unmapped under it).
    flushed_bytes: int = 0
    fullmm_flushes: int = 0
    #: Normal pages (anonymous or page cache) handed to the gather; the zero
    #: page and raw pfns never go through it.
    pages_freed: int = 0
    tables_freed: dict[str, int] = field(default_factory=dict)
    #: The last few flushed ranges, newest last, for reports.
    recent_ranges: list[tuple[int, int]] = field(default_factory=list)
    #: sparc64 ``flush_tlb_pgtables``: calls that flushed, VPTE pages flushed,
    #: and the last few VPTE ranges (see ``freepgt.archhooks``).
    pgtable_flushes: int = 0
    pgtable_flush_pages: int = 0
    pgtable_flush_ranges: list[tuple[int, int]] = field(default_factory=list)


RECENT_RANGES = 16


class MmuGather:
    """One ``struct mmu_gather``: ``tlb_gather_mmu(mm, fullmm)`` creates it."""

    __slots__ = ("stats", "fullmm", "batch_limit", "nr", "need_flush", "start", "end", "freed")

    def __init__(self, stats: TlbStats, fullmm: bool, batch_limit: int) -> None:
        self.stats = stats
        self.fullmm = fullmm
        self.batch_limit = batch_limit
        self.nr = 0
        self.need_flush = False
        self.start: int | None = None
        self.end = 0
        #: pages unmapped through this gather (``tlb->freed`` in 2.6.12)
        self.freed = 0

    def _track(self, start: int, end: int) -> None:
        if self.start is None or start < self.start:
            self.start = start
        if end > self.end:
            self.end = end

    def _queue(self, n: int, start: int, end: int) -> None:
        """Add n entries for [start, end) to the batch, flushing each time it fills.

        Every entry sets ``need_flush`` and every flush clears it, so a batch
        filled by the very last entry leaves nothing for ``tlb_finish_mmu``.
        """
        self._track(start, end)
        total = self.nr + n
        fills, total = divmod(total, self.batch_limit)
        flushed = fills > 0
        if fills:
            # the batch filled (fills times): tlb_flush_mmu each time; the
            # first flush takes the pending range, the later ones none
            self.need_flush = True
            self.flush_mmu()
            st = self.stats
            st.flushes += fills - 1
            if self.fullmm:
                st.fullmm_flushes += fills - 1
        self.nr = total
        if total or not flushed:
            self.need_flush = True
            self._track(start, end)

    def remove_pages(self, npages: int, start: int, end: int, queued: int) -> None:
        """``tlb_remove_page`` for the ptes cleared in [start, end).

        ``npages`` ptes were cleared there; ``queued`` of them mapped normal
        pages (anonymous or page cache), which ride in the batch; the zero
        page and raw pfns do not.
        """
        if npages <= 0:
            return
        self.freed += npages
        self.stats.pages_freed += queued
        if queued:
            self._queue(queued, start, end)
        else:
            self._track(start, end)
            self.need_flush = True

    def free_tables(self, level: str, n: int, start: int, end: int) -> None:
        """``p?d_free_tlb`` for n tables of ``level`` spanning [start, end)."""
        if n <= 0:
            return
        self.stats.tables_freed[level] = self.stats.tables_freed.get(level, 0) + n
        self._queue(n, start, end)

    def flush_mmu(self) -> None:
        """``tlb_flush_mmu``: flush the TLB for the pending range, release the batch."""
        if not self.need_flush:
            return
        self.need_flush = False
        self.nr = 0
        st = self.stats
        st.flushes += 1
        if self.fullmm:
            st.fullmm_flushes += 1
        if self.start is not None:
            st.flushed_bytes += self.end - self.start
            st.recent_ranges.append((self.start, self.end))
            if len(st.recent_ranges) > RECENT_RANGES:
                del st.recent_ranges[0]
        self.start = None
        self.end = 0

    def finish(self) -> None:
        """``tlb_finish_mmu``: the final flush."""
        self.flush_mmu()

    def flush_tlb_range(self, start: int, end: int) -> None:
        """``flush_tlb_range``: a flush of [start, end) outside the batch (2.6's hugetlb unmap)."""
        st = self.stats
        st.flushes += 1
        st.flushed_bytes += end - start
        st.recent_ranges.append((start, end))
        if len(st.recent_ranges) > RECENT_RANGES:
            del st.recent_ranges[0]
