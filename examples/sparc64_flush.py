"""sparc64's flush_tlb_pgtables: which VPTE pages each era flushes, and the first posting's BUG.

Run: ``python examples/sparc64_flush.py``.  See examples/README.md.
"""

from __future__ import annotations

from freepgt import KernelBug, Process
from freepgt.eras import get_era

K, M = 1 << 10, 1 << 20
VARIANTS = (
    ("linux-2.6.11", get_era("linux-2.6.11")),
    ("linux-2.6.12-rc, first posting", get_era("linux-2.6.12-rc").with_switches(first_posting_trim=True)),
    ("linux-2.6.12-rc", get_era("linux-2.6.12-rc")),
    ("linux-2.6.12", get_era("linux-2.6.12")),
)


def run_one(label: str, era) -> dict:
    """Three vmas in 32-bit task space around 0x70000000 (PTE pages span 8 MiB on sparc64).

    A at [0x70000000, 0x70001000), B at [0x70100000, 0x70188000) in the
    same 8 MiB slot, C at [0x71000000, 0x71004000) two slots up, and a
    lone D at 0x80000000.  munmap D, then munmap B: B's PTE page is shared
    with A, so the final code frees nothing and flushes nothing. The first
    posting rounds ``addr`` up to 0x70800000, past ``end``.
    """
    p = Process(era=era, arch="sparc64")
    for start, length in ((0x70000000, 8 * K), (0x70100000, 0x88000), (0x71000000, 16 * K),
                          (0x80000000, 64 * K)):
        p.mmap(start, length, "rw-", "private,anon,fixed")
        p.touch(start, length, "w")
    st = p.mm.tlb_stats
    p.munmap(0x80000000, 64 * K)
    lone = {"flushes": st.pgtable_flushes, "pages": st.pgtable_flush_pages,
            "ranges": [(hex(a), hex(b)) for a, b in st.pgtable_flush_ranges]}
    try:
        p.munmap(0x70100000, 0x88000)
        shared = {"flushes": st.pgtable_flushes - lone["flushes"], "bug": None}
    except KernelBug as e:
        shared = {"flushes": None, "bug": str(e)}
    return {"era": label, "lone": lone, "shared": shared, "warnings": list(p.mm.warnings),
            "tables": p.tables()}


def _count(n: int, one: str, many: str) -> str:
    """``1 flush``, ``0 flushes``: n followed by the singular or the plural noun."""
    return f"{n} {one if n == 1 else many}"


def main() -> list[dict]:
    rows = [run_one(label, era) for label, era in VARIANTS]
    for r in rows:
        lone = r["lone"]
        print(f"{r['era']:<32} munmap D: {_count(lone['flushes'], 'flush', 'flushes')}, "
              f"{_count(lone['pages'], 'VPTE page', 'VPTE pages')} {lone['ranges']}")
        if r["shared"]["bug"]:
            print(f"{'':<32} munmap B: {r['shared']['bug']}")
        else:
            print(f"{'':<32} munmap B: {_count(r['shared']['flushes'], 'flush', 'flushes')}")
        for w in r["warnings"]:
            print(f"{'':<32} {w}")
    return rows


if __name__ == "__main__":
    main()
