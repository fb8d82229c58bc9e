"""Small helpers for the page-table tests (test_free_pgtables.py).

Nothing here computes an expected value from the model: the helpers only
build processes, read what the model holds, and turn hand-written table
counts into the bytes the era's VmPTE rule gives (kernel-notes 1.3, 6.1).
"""

from __future__ import annotations

import errno

from freepgt import Process
from freepgt.mm.memory import free_pgd_range

K4 = 0x1000
M1 = 0x100000
M2 = 0x200000          # x86_64 / PAE PMD_SIZE: span of one PTE table
M4 = 0x400000          # i386 PMD_SIZE (= PGDIR_SIZE): span of one PTE table
G1 = 0x40000000        # x86_64 PUD_SIZE: span of one PMD table
G512 = 0x8000000000    # x86_64 PGDIR_SIZE: span of one PUD table
TASK_SIZE_X86_64 = 0x7FFFFFFFF000
TASK_SIZE_I386 = 0xC0000000

ERAS = ("linux-2.6.12", "linux-6.18")
C = "linux-2.6.12"
D = "linux-6.18"
TABLE_BYTES = 4096     # every table is one 4 KiB page in these geometries


def proc(era: str, arch: str = "x86_64") -> Process:
    return Process(era=era, arch=arch)


def anon(p: Process, start: int, end: int, prot: str = "rw-", touch: bool = True) -> None:
    """mmap(fixed) an anonymous private range and fault in every page of it."""
    assert p.mmap(start, end - start, prot, "private,anon,fixed") == start
    if touch:
        p.touch(start, end - start, "w" if "w" in prot else "r")


def addrs(p: Process, level: str) -> list[int]:
    """Start addresses of the tables of ``level`` present in the tree, sorted."""
    pt = p.mm.pt
    shift = pt.shifts[level]
    out: list[int] = []
    for a, b, _ in pt.tables[level].runs():
        out.extend(i << shift for i in range(a, b))
    return out


def vmpte(era: str, arch: str, pud: int = 0, pmd: int = 0, pte: int = 0) -> int:
    """VmPTE bytes for hand-counted tables: 2.6.12 counts PTE tables only
    (kernel-notes 1.3); 6.x counts PUD+PMD+PTE tables of unfolded levels
    (6.1).  i386 folds pud and pmd; i386-pae's pmd pages are preallocated and
    left out (api.md)."""
    if era == C or arch in ("i386", "i386-pae"):
        return pte * TABLE_BYTES
    return (pud + pmd + pte) * TABLE_BYTES


def expect_x86(p: Process, era: str, pud: list[int], pmd: list[int], pte: list[int]) -> None:
    """Assert the exact x86_64 tree (addresses per level) and the counters."""
    assert p.tables() == {"pud": len(pud), "pmd": len(pmd), "pte": len(pte)}
    assert addrs(p, "pud") == pud
    assert addrs(p, "pmd") == pmd
    assert addrs(p, "pte") == pte
    assert p.nr_ptes == len(pte)
    assert p.pgtables_bytes == vmpte(era, "x86_64", len(pud), len(pmd), len(pte))


def expect_pte_only(p: Process, era: str, arch: str, pte: list[int]) -> None:
    """Assert the exact PTE tables of a geometry whose upper levels are folded
    (i386) or preallocated (i386-pae)."""
    assert p.tables() == {"pte": len(pte)}
    assert addrs(p, "pte") == pte
    assert p.nr_ptes == len(pte)
    assert p.pgtables_bytes == vmpte(era, arch, pte=len(pte))


def calls(p: Process) -> int:
    return p.mm.stats["free_pgd_range_calls"]


def fpr(mm, addr: int, end: int, floor: int, ceiling: int) -> None:
    """One free_pgd_range call inside its own (non-fullmm) gather."""
    tlb = mm.tlb_gather_mmu(False)
    free_pgd_range(mm, tlb, addr, end, floor, ceiling)
    tlb.finish()


EIO = errno.EIO
