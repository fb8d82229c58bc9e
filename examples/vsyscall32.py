"""The x86_64 32-bit vsyscall page: tables outside every vma.

Run: ``python examples/vsyscall32.py``.  See examples/README.md.
"""

from __future__ import annotations

from freepgt import KernelBug, Process

ERAS = ("linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12", "linux-6.18")


def run_one(era: str, gate_vma: bool) -> dict:
    """A 32-bit task (ADDR_LIMIT_3GB) that touches its vsyscall page, then exits."""
    p = Process(era=era, arch="x86_64")
    p.mmap(0x08048000, 0x1000, "r-x", "private,anon,fixed")   # text
    p.touch(0x08048000, 0x1000, "r")
    p.mmap(0xBFFDF000, 0x21000, "rw-", "private,anon,fixed")  # stack, ending at 3 GiB
    p.touch(0xBFFFE000, 0x2000, "w")
    if gate_vma:
        p.syscall32_setup_pages()   # Andi Kleen's fix: a real vma at 0xffffe000
    else:
        p.map_syscall32()           # __map_syscall32: tables, no vma
    tables = p.tables()
    try:
        report = p.exit()
        bug = None
        left, stranded = report.tables_left, report.stranded
    except KernelBug as e:
        bug = str(e)
        left = {k: v for k, v in p.mm.nr_tables.items() if v}
        stranded = dict(p.mm.stranded)
    return {"era": era, "gate_vma": gate_vma, "tables_before_exit": tables,
            "tables_left": left, "stranded": stranded, "bug": bug}


def main() -> list[dict]:
    rows = [run_one(era, gate) for era in ERAS for gate in (False, True)]
    for r in rows:
        how = ("gate vma" if r["gate_vma"] else "no vma").ljust(10)
        verdict = r["bug"] or "exit clean"
        print(f"{r['era']:<16} {how} left {r['tables_left'] or '{}'} stranded {r['stranded'] or '{}'}: {verdict}")
    return rows


if __name__ == "__main__":
    main()
