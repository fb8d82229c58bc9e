#!/usr/bin/env python3
"""The model against this machine's kernel: the same ops scripts, timed on both.

Five will-it-scale-style workloads are written as ops scripts in the arena
(docs/ops-format.md) and each runs through the model and through the live
kernel (``freepgt.host.time_host``):

* model seconds: the ops run through ``freepgt.ops.run.apply_op`` on a fresh
  ``Process`` with no observations taken (parsing and building the process
  are not timed), the fastest of ``--repeat`` runs;
* host seconds: ``time_host(ops)``, the kernel's time inside the operations
  only (no observations, no process start), the fastest of ``--repeat``
  calls, each in a fresh runner process.

The goal is model <= host on every workload.  Nothing asserts on time; the
exit status is 1 only if a workload failed (the model refused one of its
operations, or the host runner failed), 2 if the host cannot be used here.

    python benchmarks/bench_host.py
    python benchmarks/bench_host.py --quick
    python benchmarks/bench_host.py --json benchmarks/results/host.json
    python benchmarks/bench_host.py --workloads mmap1,fork-heavy --profile
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone

try:
    import freepgt
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import freepgt
from freepgt.ops.run import apply_op
from freepgt.ops.script import parse_script

B = 0x100000000000  # the arena base
K, M = 1 << 10, 1 << 20


# ---------------------------------------------------------------------------
# Workloads: each is one ops script
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    fault_reps: int     # page_fault1: map + write every page + unmap, of 128 MiB
    mmap_reps: int      # mmap1: map + unmap of 128 MiB
    tlb_reps: int       # tlb_flush1: write every page + dontneed, of 32 MiB
    vmas: int           # vma-heavy: separate 16 KiB mappings
    forks: int          # fork-heavy: forks of a 40-vma parent


FULL = Sizes(fault_reps=10, mmap_reps=2000, tlb_reps=20, vmas=4000, forks=500)
QUICK = Sizes(fault_reps=2, mmap_reps=200, tlb_reps=3, vmas=500, forks=50)


def page_fault1(s: Sizes) -> list[str]:
    """will-it-scale page_fault1: mmap 128 MiB anonymous, write every page, munmap."""
    lines = []
    for _ in range(s.fault_reps):
        lines += [f"mmap {B:#x} 128M rw- private,anon,fixed,noreserve",
                  f"touch {B:#x} 128M w",
                  f"munmap {B:#x} 128M"]
    return lines


def mmap1(s: Sizes) -> list[str]:
    """will-it-scale mmap1: mmap 128 MiB anonymous (a free hint, no fixed), munmap."""
    lines = []
    for _ in range(s.mmap_reps):
        lines += [f"mmap {B:#x} 128M rw- private,anon", f"munmap {B:#x} 128M"]
    return lines


def tlb_flush1(s: Sizes) -> list[str]:
    """will-it-scale tlb_flush1: one 32 MiB mapping; write every page, madvise dontneed; repeat."""
    lines = [f"mmap {B:#x} 32M rw- private,anon,fixed"]
    for _ in range(s.tlb_reps):
        lines += [f"touch {B:#x} 32M w", f"madvise {B:#x} 32M dontneed"]
    return lines + [f"munmap {B:#x} 32M"]


def vma_heavy(s: Sizes) -> list[str]:
    """N fixed 16 KiB mappings 4 KiB apart (none merge), each written, then each unmapped."""
    addrs = [B + i * 20 * K for i in range(s.vmas)]
    return ([f"mmap {a:#x} 16K rw- private,anon,fixed" for a in addrs]
            + [f"touch {a:#x} 16K w" for a in addrs]
            + [f"munmap {a:#x} 16K" for a in addrs])


def fork_heavy(s: Sizes) -> list[str]:
    """A parent with 40 written vmas (anon, shmem, file; 4 MiB apart), forked N times."""
    lines = ["file lib 1M"]
    for i in range(40):
        a = B + i * 4 * M
        kind = i % 4
        if kind == 0:
            lines.append(f"mmap {a:#x} 64K r-x private,fixed lib {(i % 8) * 64}K")
            lines.append(f"touch {a:#x} 64K r")
        elif kind == 1:
            lines.append(f"mmap {a:#x} 64K rw- shared,anon,fixed")
            lines.append(f"touch {a:#x} 64K w")
        else:
            lines.append(f"mmap {a:#x} 64K rw- private,anon,fixed")
            lines.append(f"touch {a:#x} 64K w")
    return lines + ["fork"] * s.forks


WORKLOADS = {
    "page_fault1": page_fault1,
    "mmap1": mmap1,
    "tlb_flush1": tlb_flush1,
    "vma-heavy": vma_heavy,
    "fork-heavy": fork_heavy,
}


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

def check_model(ops) -> list[str]:
    """Run ops once on the model (untimed); the operations it refused."""
    p = freepgt.Process()
    bad = []
    for op in ops:
        ret, _ = apply_op(p, op)
        if ret.startswith(("-", "SIG")):
            bad.append(f"line {op.line} {op.op}: {ret}")
    p.exit()
    return bad


def time_model(ops, repeat: int) -> float:
    """Fastest of ``repeat`` runs of ops through the model, no observations."""
    best = float("inf")
    for _ in range(repeat):
        p = freepgt.Process()
        gc.collect()
        t0 = time.perf_counter()
        for op in ops:
            apply_op(p, op)
        best = min(best, time.perf_counter() - t0)
        p.exit()
    return best


def profile_model(ops, top: int, sort: str) -> str:
    p = freepgt.Process()
    prof = cProfile.Profile()
    prof.enable()
    for op in ops:
        apply_op(p, op)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, best of 2")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per side, fastest kept (default 5; 2 with --quick)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--profile", action="store_true", help="cProfile one model run of each selected workload")
    ap.add_argument("--profile-top", type=int, default=15, help="functions per profile (default 15)")
    ap.add_argument("--profile-sort", default="tottime", choices=("tottime", "cumulative", "ncalls"))
    args = ap.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    repeat = args.repeat if args.repeat is not None else (2 if args.quick else 5)
    if repeat < 1:
        ap.error("--repeat must be at least 1")
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")

    from freepgt.host import host_unavailable_reason, time_host

    reason = host_unavailable_reason()
    if reason is not None:
        print(f"bench_host: the host runner cannot be used here: {reason}", file=sys.stderr)
        return 2

    print(f"freepgt {freepgt.__version__} vs Linux {platform.release()} ({platform.machine()}, "
          f"{os.cpu_count()} cpus), python {platform.python_version()}; "
          f"{'quick' if args.quick else 'full'}, best of {repeat}")
    header = f"{'workload':<12} {'ops':>6} {'model s':>10} {'host s':>10} {'model/host':>10}  goal <= 1.0"
    print(header)
    print("-" * len(header))
    rows = []
    for name in wanted:
        lines = WORKLOADS[name](sizes)
        ops = parse_script("\n".join(lines) + "\n", name)
        row: dict = {"workload": name, "ops": len(ops), "description": WORKLOADS[name].__doc__}
        try:
            refused = check_model(ops)
            if refused:
                raise RuntimeError("the model refused " + "; ".join(refused[:3]))
            row["model_s"] = time_model(ops, repeat)
            row["host_s"] = min(time_host(ops) for _ in range(repeat))
        except Exception as exc:  # one broken workload is a result, not the end of the run
            row["error"] = f"{type(exc).__name__}: {exc}"
            print(f"{name:<12} {len(ops):>6} ERROR {row['error']}", flush=True)
            rows.append(row)
            continue
        row["ratio"] = row["model_s"] / row["host_s"]
        row["goal_met"] = row["ratio"] <= 1.0
        rows.append(row)
        print(f"{name:<12} {len(ops):>6} {row['model_s']:>10.4f} {row['host_s']:>10.4f} "
              f"{row['ratio']:>10.3f}  {'yes' if row['goal_met'] else 'NO'}", flush=True)

    profiles = {}
    if args.profile:
        for name in wanted:
            ops = parse_script("\n".join(WORKLOADS[name](sizes)) + "\n", name)
            profiles[name] = text = profile_model(ops, args.profile_top, args.profile_sort)
            print(f"\n=== cProfile of the model on {name}: top {args.profile_top} by {args.profile_sort} ===")
            print(text.strip())

    if args.json:
        doc = {
            "benchmark": "freepgt bench_host",
            "freepgt_version": freepgt.__version__,
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "kernel": platform.release(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "mode": "quick" if args.quick else "full",
            "repeat": repeat,
            "results": rows,
        }
        if profiles:
            doc["profiles"] = profiles
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
