"""exit and exec: the model's ``exit_mmap`` and the mm swap of ``execve``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..latency import free_under_lock
from .memory import unmap_vmas

if TYPE_CHECKING:
    from .core import MM


@dataclass
class ExitReport:
    """What ``exit_mmap`` did and what it left behind."""

    vmas: int
    tables_freed: dict[str, int]
    tables_left: dict[str, int]
    stranded: dict[str, int]
    pages_zapped: int
    tlb_flushes: int
    warnings: list[str] = field(default_factory=list)


def exit_mmap(mm: "MM") -> ExitReport:
    """``exit_mmap``: unmap every vma, free tables through the vma list, run the era's checks.

    The gather is a full-mm one; the freeing goes through the era (the seed's
    ``free_pgtables(&tlb, vma, FIRST_USER_ADDRESS, 0)`` from 2.6.12 on).
    Raises KernelBug when the era's check after teardown fires.
    """
    mm.check_alive()
    vmas = mm.vmas.all()
    before_tables = dict(mm.tlb_stats.tables_freed)
    before_flushes = mm.tlb_stats.flushes
    before_pages = mm.tlb_stats.pages_freed
    tlb = mm.tlb_gather_mmu(fullmm=True)
    nr_accounted = unmap_vmas(mm, tlb, vmas, 0, mm.geom.top)
    mm.committed -= nr_accounted
    free_under_lock(mm, mm.era.exit_free, mm, tlb, vmas)
    tlb.finish()
    for v in vmas:
        mm.vmas.remove(v)
    mm.dead = True
    report = ExitReport(
        vmas=len(vmas),
        tables_freed={k: v - before_tables.get(k, 0) for k, v in mm.tlb_stats.tables_freed.items()
                      if v - before_tables.get(k, 0)},
        tables_left={k: v for k, v in mm.nr_tables.items() if v},
        stranded=dict(mm.stranded),
        pages_zapped=mm.tlb_stats.pages_freed - before_pages,
        tlb_flushes=mm.tlb_stats.flushes - before_flushes,
    )
    try:
        mm.era.exit_check(mm)
    finally:
        report.warnings = list(mm.warnings)
    return report
