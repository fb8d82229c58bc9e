"""Work done under the page-table lock, and the points where it may be dropped.

2.6's ``unmap_vmas`` zaps in ``ZAP_BLOCK_SIZE`` blocks: after each block it
finishes the mmu_gather and, if a reschedule is due, drops
``page_table_lock`` (``cond_resched``) before going on.  With
``CONFIG_PREEMPT`` the block is 8 pages instead of 1024: the wait for the
lock gets short, but every block costs a TLB flush and a fresh gather,
which is the seed's remark that preempt's latency fixes spoil
``unmap_vmas`` throughput.  ``free_pgtables`` and the older
``clear_page_range`` never drop the lock.

The unit of work is a page-table entry read: the ptes a zap reads inside
present PTE tables, and every entry the table-freeing code reads.  Each
mm keeps a :class:`LockRuns`; a report compares ``longest_run`` (the
worst wait for the lock) with ``total`` and the TLB flush count.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LockRuns:
    """Runs of work between lock-drop points, summed over the life of an mm."""

    #: points where unmap_vmas may drop the lock (one per ZAP_BLOCK_SIZE zapped)
    lock_breaks: int = 0
    #: the most work done between two lock-drop points (or lock and unlock)
    longest_run: int = 0
    #: all work done under the lock
    total: int = 0
    #: work since the last lock-drop point (0 when the lock is not held)
    current: int = 0

    def add(self, work: int) -> None:
        """Work done under the lock, in the current run."""
        self.current += work
        self.total += work

    def full_blocks(self, count: int, work_each: int) -> None:
        """``count`` whole blocks of ``work_each`` each, after the current run ends."""
        if count <= 0:
            return
        self.end_run()
        self.total += count * work_each
        if work_each > self.longest_run:
            self.longest_run = work_each
        self.lock_breaks += count

    def end_run(self) -> None:
        """The lock may be dropped (or is released) here: close the current run."""
        if self.current > self.longest_run:
            self.longest_run = self.current
        self.current = 0

    def lock_break(self) -> None:
        """A block ended: a point where the lock may be dropped."""
        self.end_run()
        self.lock_breaks += 1

    def as_dict(self) -> dict[str, int]:
        return {"lock_breaks": self.lock_breaks, "longest_run": self.longest_run, "total": self.total}


def free_under_lock(mm, free, *args) -> None:
    """Call ``free(*args)``, the era's table freeing, as the end of the locked run.

    ``free_pgtables`` (and 2.6.10/2.6.11's clearing) runs after
    ``unmap_vmas`` with the lock still held and never drops it: every entry
    it reads lengthens the last run, which ends when the lock is released.
    """
    read = sum(mm.entries_examined.values())
    free(*args)
    runs = mm.latency
    runs.add(sum(mm.entries_examined.values()) - read)
    runs.end_run()


def account_zap(mm, s: int, e: int, done: int, block: int) -> None:
    """The lock runs of zapping [s, e), ``done`` bytes into a run of ``block``-byte blocks.

    A block's work is the ptes it reads inside present PTE tables; a block
    ends at each multiple of ``block`` bytes of zapped address space,
    whatever is mapped there (``zap_bytes`` counts address space).  Work is
    proportional to the runs of present PTE tables, not to the blocks.
    """
    runs = mm.latency
    pt = mm.pt
    shift = pt.shifts["pte"]
    base = s - done  # address of offset 0 of this block grid
    cur = done // block  # the block the current run is in
    spans = pt.tables["pte"].spans(s >> shift, ((e - 1) >> shift) + 1)
    if spans:
        ps = mm.geom.page_shift
        for a, b in spans:
            lo = max(a << shift, s)
            hi = min(b << shift, e)
            ka = (lo - base) // block
            kb = (hi - 1 - base) // block
            if ka > cur:
                # the block ends up to ka: each a lock-drop point
                runs.end_run()
                runs.lock_breaks += ka - cur
                cur = ka
            if ka == kb:
                runs.add((hi - lo) >> ps)
                continue
            runs.add((base + (ka + 1) * block - lo) >> ps)
            runs.lock_break()
            # the blocks wholly inside the run: each a lock break of its own
            runs.full_blocks(kb - ka - 1, block >> ps)
            cur = kb
            runs.add((hi - (base + kb * block)) >> ps)
    last = (e - base) // block
    if last > cur:
        runs.end_run()
        runs.lock_breaks += last - cur


def measure_unmap(era, arch: str = "x86_64", size: int = 64 << 20, preempt: bool = False) -> dict:
    """Map and write ``size`` bytes, then exit: the lock runs and flushes of the teardown.

    ``preempt`` selects CONFIG_PREEMPT's 8-page ZAP_BLOCK_SIZE in eras that
    zap in blocks (2.6); an era without blocks ignores it.
    """
    from .eras import get_era
    from .process import Process

    era = get_era(era)
    if preempt and era.zap_block_pages:
        era = era.with_switches(preempt=True)
    p = Process(era=era, arch=arch)
    base = p.geom.task_size // 4 & ~(p.geom.PGDIR_SIZE - 1)
    p.mmap(base, size, "rw-", "private,anon,fixed,noreserve")
    p.touch(base, size, "w")
    flushes = p.mm.tlb_stats.flushes
    p.mm.latency = LockRuns()
    p.exit()
    runs = p.mm.latency
    return {
        "era": era.name, "arch": p.geom.name, "bytes": size, "preempt": preempt and bool(era.zap_block_pages),
        **runs.as_dict(), "tlb_flushes": p.mm.tlb_stats.flushes - flushes,
    }
