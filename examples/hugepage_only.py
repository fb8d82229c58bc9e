"""Hugepage-only address ranges next to normal vmas: ia64 region 4 and ppc64's huge area.

Run: ``python examples/hugepage_only.py``.  See examples/README.md.
"""

from __future__ import annotations

from freepgt import KernelBug, Process

K, M, T = 1 << 10, 1 << 20, 1 << 40
REGION3, REGION4 = 0x6000000000000000, 0x8000000000000000
ERAS = ("linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12")


def _exit(p: Process) -> str:
    try:
        p.exit()
    except KernelBug as e:
        return str(e)
    return "exit clean"


def ia64(era: str) -> dict:
    """A normal vma in region 3 and a 256 MiB huge page at 1 TiB into region 4; munmap the huge one.

    ia64 keeps region 4's huge ptes in ordinary tables at the scaled-down
    address ``htlbpage_to_page``: the page at REGION4 + 1 TiB has its PTE at
    REGION4 + 64 MiB, far from the vma's own range.
    """
    p = Process(era=era, arch="ia64")
    p.mmap(REGION3, 64 * K, "rw-", "private,anon,fixed")
    p.touch(REGION3, 64 * K, "w")
    p.mmap(REGION4 + T, 256 * M, "rw-", "private,anon,fixed,hugetlb")
    p.touch(REGION4 + T, 256 * M, "w")
    before = p.tables()
    p.munmap(REGION4 + T, 256 * M)
    after = p.tables()
    return {"arch": "ia64", "era": era, "before": before, "after_munmap": after, "exit": _exit(p)}


def ppc64(era: str) -> dict:
    """A normal vma at 256 MiB and two huge pages in the 1-1.5 TB area; munmap both together.

    ppc64 keeps huge ptes in two-level tables of their own, which
    ``free_pgtables`` never frees (``hugetlb_free_pgd_range`` is empty
    there): they go with the mm in ``destroy_context``.
    """
    p = Process(era=era, arch="ppc64")
    p.mmap(0x10000000, 4 * K, "rw-", "private,anon,fixed")
    p.touch(0x10000000, 4 * K, "w")
    huge = p.mmap(0, 32 * M, "rw-", "private,anon,hugetlb")
    p.touch(huge, 32 * M, "w")
    before = {**p.tables(), **p.mm.huge_tables}
    p.munmap(0x10000000, huge + 32 * M - 0x10000000)
    after = {**p.tables(), **p.mm.huge_tables}
    verdict = _exit(p)
    return {"arch": "ppc64", "era": era, "huge_at": huge, "before": before, "after_munmap": after,
            "exit": verdict, "freed_by_destroy_context": p.mm.stats.get("huge_tables_freed", 0)}


def main() -> list[dict]:
    rows = [ia64(era) for era in ERAS] + [ppc64(era) for era in ERAS]
    for r in rows:
        print(f"{r['arch']:<6} {r['era']:<16} tables {r['before']} -> after munmap {r['after_munmap']}; "
              f"{r['exit']}")
    return rows


if __name__ == "__main__":
    main()
