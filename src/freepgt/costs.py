"""What page-table work an address space has cost: snapshots and their differences.

A :class:`Costs` is a snapshot of one mm's counters, taken with
:func:`snapshot`:

* ``examined``: the page-table entries the era's unmapping and freeing code
  has read, per level that is not folded (``mm.entries_examined``: the ptes
  ``unmap_vmas`` / ``zap_page_range`` read, and the upper-level entries that
  ``free_pgd_range``, 2.6.11's ``clear_page_range`` or 2.6.10's
  ``clear_page_tables`` read);
* ``freed``: page tables handed to the mmu_gather (``p?d_free_tlb``), per level;
* ``tlb_flushes``, ``fullmm_flushes``, ``flushed_bytes``: what the gathers
  flushed (``tlb_flush_mmu`` / ``tlb_finish_mmu``);
* ``leaked_bytes``: bytes of page tables that exist but that no vma spans,
  so that no later munmap and, from 2.6.12 on, not even ``exit_mmap`` will
  free them, plus the stranded tables (unreachable under a freed table);
* ``bug``: for an mm that has exited, what the era's check after
  ``exit_mmap`` says (the seed's ``BUG_ON(mm->nr_ptes ...)``, 6.x's
  ``check_mm``) as the KernelBug message, or None.

Snapshots subtract (``after - before``) to give the cost of the operations
between them, and add up over several mms (a fork's child, an exec's new
image).  Every count here is work proportional to the tables and runs of
the mm, never to the pages it maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .arch import LEVEL_NAMES
from .checks import merge_intervals, table_ranges
from .errors import KernelBug
from .ops.output import COST_KEYS
from .vma import VM_HUGETLB

if TYPE_CHECKING:
    from .mm.core import MM
    from .ops.script import Op
    from .process import Process

__all__ = ["COST_KEYS", "Costs", "exit_bug", "leaked_bytes", "run_ops_with_costs", "snapshot"]


def _combine(a: dict[str, int], b: dict[str, int], sign: int) -> dict[str, int]:
    """a + sign * b, per level, in the kernel's level order."""
    names = [n for n in LEVEL_NAMES if n in a or n in b]
    return {n: a.get(n, 0) + sign * b.get(n, 0) for n in names}


@dataclass(frozen=True)
class Costs:
    """Page-table work of an mm (a snapshot) or of the operations between two snapshots."""

    #: page-table entries read, per level that is not folded (pgd included)
    examined: dict[str, int] = field(default_factory=dict)
    #: tables freed, per level below the pgd that is not folded or preallocated
    freed: dict[str, int] = field(default_factory=dict)
    tlb_flushes: int = 0
    #: flushes of a full-mm gather (``exit_mmap``)
    fullmm_flushes: int = 0
    #: bytes of address space the flushes covered
    flushed_bytes: int = 0
    #: pages that went through the gather (anonymous and page-cache pages)
    pages_freed: int = 0
    #: bytes of page tables no vma spans (and stranded ones); in a difference, the change
    leaked_bytes: int = 0
    #: after exit: the era's BUG_ON / check_mm message, or None
    bug: str | None = None
    #: points where unmap_vmas may drop the page-table lock (latency.py)
    lock_breaks: int = 0
    #: the most entries read between two such points (a maximum, not a sum)
    longest_run: int = 0

    @property
    def entries_examined(self) -> int:
        """All entries read, every level together."""
        return sum(self.examined.values())

    @property
    def tables_freed(self) -> int:
        """All tables freed, every level together."""
        return sum(self.freed.values())

    def __sub__(self, other: Costs) -> Costs:
        """The cost of what happened between snapshot ``other`` and this one.

        Counters subtract; ``leaked_bytes`` becomes the change in leaked
        bytes (negative when tables that were leaked got freed); ``bug`` is
        this snapshot's.
        """
        return Costs(
            examined=_combine(self.examined, other.examined, -1),
            freed=_combine(self.freed, other.freed, -1),
            tlb_flushes=self.tlb_flushes - other.tlb_flushes,
            fullmm_flushes=self.fullmm_flushes - other.fullmm_flushes,
            flushed_bytes=self.flushed_bytes - other.flushed_bytes,
            pages_freed=self.pages_freed - other.pages_freed,
            leaked_bytes=self.leaked_bytes - other.leaked_bytes,
            bug=self.bug,
            lock_breaks=self.lock_breaks - other.lock_breaks,
            # a maximum does not subtract: it counts if it was set in between
            longest_run=self.longest_run if self.longest_run != other.longest_run else 0,
        )

    def __add__(self, other: Costs) -> Costs:
        """Both costs together (two mms, or two stretches of one); the first bug is kept."""
        return Costs(
            examined=_combine(self.examined, other.examined, 1),
            freed=_combine(self.freed, other.freed, 1),
            tlb_flushes=self.tlb_flushes + other.tlb_flushes,
            fullmm_flushes=self.fullmm_flushes + other.fullmm_flushes,
            flushed_bytes=self.flushed_bytes + other.flushed_bytes,
            pages_freed=self.pages_freed + other.pages_freed,
            leaked_bytes=self.leaked_bytes + other.leaked_bytes,
            bug=self.bug if self.bug is not None else other.bug,
            lock_breaks=self.lock_breaks + other.lock_breaks,
            longest_run=max(self.longest_run, other.longest_run),
        )

    def scaled(self, n: int) -> Costs:
        """These costs divided by n (rounded to the nearest integer): the mean of n equal parts."""
        if n <= 1:
            return self

        def d(x: int) -> int:
            return (2 * x + n) // (2 * n)

        return replace(
            self,
            examined={k: d(v) for k, v in self.examined.items()},
            freed={k: d(v) for k, v in self.freed.items()},
            tlb_flushes=d(self.tlb_flushes),
            fullmm_flushes=d(self.fullmm_flushes),
            flushed_bytes=d(self.flushed_bytes),
            pages_freed=d(self.pages_freed),
            leaked_bytes=d(self.leaked_bytes),
            lock_breaks=d(self.lock_breaks),
        )

    def as_dict(self) -> dict:
        """Plain data (JSON-ready), totals included."""
        return {
            "entries_examined": self.entries_examined,
            "examined_per_level": dict(self.examined),
            "tables_freed": self.tables_freed,
            "tables_freed_per_level": dict(self.freed),
            "tlb_flushes": self.tlb_flushes,
            "fullmm_flushes": self.fullmm_flushes,
            "flushed_bytes": self.flushed_bytes,
            "pages_freed": self.pages_freed,
            "leaked_bytes": self.leaked_bytes,
            "bug": self.bug,
        }


# ---------------------------------------------------------------------------
# Taking a snapshot
# ---------------------------------------------------------------------------

def _mm_of(target: Process | MM) -> MM:
    return getattr(target, "mm", target)


def _merged_spans(vmas: list, shift: int, geom=None) -> list[tuple[int, int]]:
    """The table indices (of tables spanning ``1 << shift``) that vmas overlap, as sorted runs.

    With ``geom``, a hugetlb vma of a hugepage-only range counts where its
    tables are (ia64: at ``htlbpage_to_page`` of its range; ppc64: outside
    the tree).
    """
    ranges = []
    for v in vmas:
        if geom is not None and v.vm_flags & VM_HUGETLB and geom.hugepage_only:
            ranges.extend(table_ranges(geom, v))
        else:
            ranges.append((v.vm_start, v.vm_end))
    return merge_intervals((start >> shift, ((end - 1) >> shift) + 1) for start, end in ranges)


def _uncovered(runs: Iterable[tuple[int, int]], covered: list[tuple[int, int]]) -> int:
    """How many integers of the sorted disjoint ``runs`` no interval of ``covered`` holds.

    A two-pointer sweep: O(len(runs) + len(covered)).
    """
    n = 0
    j = 0
    for a, b in runs:
        n += b - a
        while j < len(covered) and covered[j][1] <= a:
            j += 1
        k = j
        while k < len(covered) and covered[k][0] < b:
            n -= min(b, covered[k][1]) - max(a, covered[k][0])
            k += 1
    return n


def leaked_bytes(target: Process | MM) -> int:
    """Bytes of page tables that exist but that no vma spans, plus stranded tables.

    A table of level L with index i spans ``[i << s, (i + 1) << s)`` where
    ``s`` is the span shift of L's tables; it is leaked when no vma overlaps
    that span, since every era's freeing code is driven by a vma (munmap's
    neighbours, 2.6.12's ``free_pgtables``) or, before 2.6.12, by the exit
    walk only.  Stranded tables (``mm.stranded``: left under a higher table
    that was freed) are always leaked.  Preallocated levels (i386 PAE's pmd
    pages, which live and die with the pgd) are not leaked, nor are the
    tables an architecture keeps for itself: with ``vectors_pte`` (ARM's low
    vectors) the tables spanning address 0, which ``get_pgd_slow`` allocates
    and ``pgd_free`` frees, and which FIRST_USER_ADDRESS keeps free_pgtables
    away from.  Cost: O(vmas + table runs) per level.
    """
    mm = _mm_of(target)
    pt = mm.pt
    g = mm.geom
    vmas = mm.vmas.all()
    reserved_first = bool(getattr(g, "vectors_pte", False))
    total = 0
    for name in pt.levels:
        if name in pt.prealloc:
            continue
        shift = pt.shifts[name]
        runs = [(a, b) for a, b, _ in pt.tables[name].runs()]
        covered = _merged_spans(vmas, shift, g)
        if reserved_first:
            # the arch's own table at index 0 counts as spanned
            if covered and covered[0][0] <= 1:
                covered[0] = (0, max(1, covered[0][1]))
            else:
                covered.insert(0, (0, 1))
        n = _uncovered(runs, covered)
        total += n * g.level(name).table_bytes
    for name, n in mm.stranded.items():
        if n and name in pt.levels and name not in pt.prealloc:
            total += n * g.level(name).table_bytes
    return total


def exit_bug(target: Process | MM) -> str | None:
    """For an mm that has exited: the message of the era's check after ``exit_mmap``, or None.

    Runs the era's ``exit_check`` (2.6.12's ``BUG_ON(mm->nr_ptes > ...)``,
    2.6.12-rc's ``BUG_ON(mm->nr_ptes)``, 6.x's ``check_mm``) again on the
    dead mm, leaving its warnings as they were.  A live mm has no such
    verdict yet: None.
    """
    mm = _mm_of(target)
    if not mm.dead:
        return None
    saved = list(mm.warnings)
    try:
        mm.era.exit_check(mm)
    except KernelBug as e:
        return str(e)
    finally:
        mm.warnings[:] = saved
    return None


def snapshot(target: Process | MM) -> Costs:
    """The counters of a process's (or an mm's) address space now, as a :class:`Costs`."""
    mm = _mm_of(target)
    g = mm.geom
    pt = mm.pt
    ex = mm.entries_examined
    st = mm.tlb_stats
    examined = {lv.name: ex.get(lv.name, 0) for lv in g.real_levels}
    freed = {name: st.tables_freed.get(name, 0) for name in pt.levels if name not in pt.prealloc}
    return Costs(
        examined=examined,
        freed=freed,
        tlb_flushes=st.flushes,
        fullmm_flushes=st.fullmm_flushes,
        flushed_bytes=st.flushed_bytes,
        pages_freed=st.pages_freed,
        leaked_bytes=leaked_bytes(mm),
        bug=exit_bug(mm),
        lock_breaks=mm.latency.lock_breaks,
        longest_run=mm.latency.longest_run,
    )


# ---------------------------------------------------------------------------
# Per-operation costs of an ops script
# ---------------------------------------------------------------------------

def _tracking_process(era: str, arch: str, check: bool) -> Process:
    """A Process that remembers the children its ``fork`` creates (for their exit's costs)."""
    from .process import Process

    class TrackingProcess(Process):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.children: list[Process] = []

        def fork(self) -> Process:
            child = super().fork()
            self.children.append(child)
            return child

    return TrackingProcess(era=era, arch=arch, check=check)


def cost_keys(c: Costs) -> dict:
    """The observation keys for one operation's costs (see COST_KEYS)."""
    return {
        "examined": dict(c.examined),
        "freed": dict(c.freed),
        "flushes": c.tlb_flushes,
        "leaked": c.leaked_bytes,
    }


def run_ops_with_costs(ops: Iterable[Op], era: str = "linux-6.18", arch: str = "x86_64",
                       check: bool = False, filename: str = "<script>") -> Iterator[dict]:
    """``run_ops`` with each observation's costs added under COST_KEYS (after the contract's keys).

    The cost of an operation is the difference of the process's snapshots
    around it; a ``fork`` line also counts its child, which the ops format
    has exit at once (the child's whole life: its ``exit_mmap``).
    """
    from .ops.run import run_ops

    process = _tracking_process(era, arch, check)
    before = snapshot(process)
    for obs in run_ops(ops, era=era, arch=arch, check=check, filename=filename, process=process):
        after = snapshot(process)
        cost = after - before
        for child in process.children:
            cost = cost + snapshot(child)
        process.children.clear()
        before = after
        obs.update(cost_keys(cost))
        yield obs
