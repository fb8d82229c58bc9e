"""A driver's mmap that fills page tables and then fails.

Run: ``python examples/driver_failure.py``.  See examples/README.md.
"""

from __future__ import annotations

import errno

from freepgt import Process

ERAS = ("linux-2.6.10", "linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12", "linux-6.18")
M = 1 << 20


def run_one(era: str, arch: str = "i386") -> dict:
    """Two vmas 16 MiB apart, a failing 4 MiB device mapping between them, then exit."""
    p = Process(era=era, arch=arch)
    p.mmap(0x10000000, 4096, "rw-", "private,anon,fixed")
    p.touch(0x10000000, 4096, "w")
    p.mmap(0x11000000, 4096, "rw-", "private,anon,fixed")
    p.touch(0x11000000, 4096, "w")
    before = p.nr_ptes
    dev = p.device("fb", fail=errno.ENODEV)
    try:
        p.mmap(0x10800000, 4 * M, "rw-", "shared,fixed", dev)
    except OSError as e:
        failed = errno.errorcode[e.errno]
    after_failure = p.nr_ptes
    report = p.exit()
    return {"era": era, "arch": arch, "nr_ptes_before": before, "mmap": failed,
            "nr_ptes_after_failure": after_failure, "exit_freed": report.tables_freed}


def main() -> list[dict]:
    rows = [run_one(era) for era in ERAS]
    for r in rows:
        print(f"{r['era']:<16} mmap -> -{r['mmap']}; nr_ptes {r['nr_ptes_before']} before, "
              f"{r['nr_ptes_after_failure']} after the failure; exit frees {r['exit_freed']}")
    return rows


if __name__ == "__main__":
    main()
