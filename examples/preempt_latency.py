"""unmap_vmas with and without CONFIG_PREEMPT: latency against throughput.

Run: ``python examples/preempt_latency.py``.  See examples/README.md.
"""

from __future__ import annotations

from freepgt.latency import measure_unmap

CASES = (("linux-2.6.10", "i386"), ("linux-2.6.11", "x86_64"), ("linux-2.6.12", "x86_64"),
         ("linux-6.18", "x86_64"))


def main(size: int = 64 << 20) -> list[dict]:
    rows = [measure_unmap(era, arch, size, preempt) for era, arch in CASES for preempt in (False, True)
            if not (preempt and era == "linux-6.18")]
    print(f"exit of a process with {size >> 20} MiB written; work = page-table entries read under the lock")
    print(f"{'era':<28} {'arch':<7} {'lock-drop points':>16} {'longest run':>12} {'total work':>11} {'TLB flushes':>12}")
    for r in rows:
        print(f"{r['era']:<28} {r['arch']:<7} {r['lock_breaks']:>16} {r['longest_run']:>12} "
              f"{r['total']:>11} {r['tlb_flushes']:>12}")
    return rows


if __name__ == "__main__":
    main()
