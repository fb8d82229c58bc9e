#!/usr/bin/env python3
"""Benchmarks of the freepgt model: faults, many vmas, fork + exit.

Standard library only.  Every workload runs on
``freepgt.Process(era=..., arch="x86_64")``.  Each workload is timed
``--repeat`` times with ``time.perf_counter`` (the fastest run is reported)
and then run once more under ``tracemalloc`` for its peak memory, so the
tracing overhead never leaks into the timings.

Absolute seconds depend on the machine, so the same run also measures two
references and prints ratios against them:

* ``x_loop``: the workload's time divided by the time of an empty Python
  ``for`` loop over the same number of operations (one model operation costs
  as much as ``x_loop`` empty-loop iterations);
* ``vs_dict`` (fault workloads only): the model's pages/s divided by the
  pages/s of a naive dict-per-page fault loop (map, fault every page into a
  dict with a per-2-MiB table count, unmap), measured on a small size.

Nothing here asserts on time.  Sanity checks on the model's state (rss after
the touch, page tables left after munmap, vma count, exit report) are
recorded per workload and reported, never turned into timed assertions.

    python benchmarks/bench_model.py                 # linux-6.18, full sizes
    python benchmarks/bench_model.py --era all       # every era, oldest first
    python benchmarks/bench_model.py --quick --json benchmarks/results/quick.json
    python benchmarks/bench_model.py --profile --workloads vma-fixed,fork-exit
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
import tracemalloc
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

try:
    import freepgt
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import freepgt
from freepgt.eras import era_names
from freepgt.vma import VM_GROWSDOWN

ARCH = "x86_64"
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
PAGE = 4096
#: where the fault workloads map (fixed): well away from brk, mmap_base and the stack
FAULT_BASE = 0x100000000000
#: where the fixed-address vma workload lays its mappings out
VMA_BASE = 0x200000000000
#: where the fork-exit parent's executable starts (its heap follows it)
EXE_BASE = 0x555555554000


# ---------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    """How much work each workload does (full and --quick presets)."""

    fault_1g_reps: int        # map/touch/unmap cycles of 1 GiB
    fault_1t_reps: int        # map/touch/unmap cycles of 1 TiB
    perpage_bytes: int        # size faulted one page per touch() call
    vma_count: int            # mappings in vma-fixed
    vma_topdown_count: int    # mappings in vma-topdown (its cost grows as count**2)
    forks: int                # fork + child exit iterations
    loop_iters: int           # empty-loop reference iterations
    dict_ref_bytes: int       # size of the naive dict fault reference


FULL = Sizes(fault_1g_reps=200, fault_1t_reps=20, perpage_bytes=256 * MiB, vma_count=10_000,
             vma_topdown_count=2_000, forks=1_000, loop_iters=10_000_000, dict_ref_bytes=1 * GiB)
QUICK = Sizes(fault_1g_reps=20, fault_1t_reps=2, perpage_bytes=16 * MiB, vma_count=1_000,
              vma_topdown_count=500, forks=100, loop_iters=1_000_000, dict_ref_bytes=64 * MiB)


# ---------------------------------------------------------------------------
# Workloads: setup (untimed) -> state; run(state) -> Counts (timed)
# ---------------------------------------------------------------------------

@dataclass
class Counts:
    """What one run of a workload did."""

    ops: int
    pages: int = 0
    checks: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Workload:
    name: str
    unit: str
    description: str
    setup: Callable[[str, Sizes], Any]
    run: Callable[[Any, Sizes], Counts]
    faults: bool = False      # report pages/s and compare with the dict reference
    #: the end of the highest mapping the workload places at a fixed address (0: none)
    fixed_end: Callable[[Sizes], int] = lambda s: 0


def _new_process(era: str) -> "freepgt.Process":
    return freepgt.Process(era=era, arch=ARCH)


# --- 1. fault-heavy ------------------------------------------------------------

def _fault_cycles(p: "freepgt.Process", length: int, reps: int) -> Counts:
    """``reps`` times: mmap(length, noreserve, fixed), touch all of it with writes, munmap."""
    c = Counts(ops=0)
    npages = length // PAGE
    for r in range(reps):
        p.mmap(FAULT_BASE, length, "rw-", "private,anon,fixed,noreserve")
        p.touch(FAULT_BASE, length, "w")
        if r == 0:
            c.checks["rss_after_touch"] = p.rss
            c.checks["pgtables_after_touch"] = p.pgtables_bytes
            if p.rss != length:
                c.problems.append(f"rss after touch is {p.rss}, expected {length}")
        p.munmap(FAULT_BASE, length)
        c.ops += 3
        c.pages += npages
    c.checks["pgtables_after_munmap"] = p.pgtables_bytes
    c.checks["map_count_after"] = p.map_count
    if p.pgtables_bytes or p.map_count:
        c.problems.append(f"left {p.pgtables_bytes} B of page tables, {p.map_count} vmas")
    return c


def run_fault_1g(p, s: Sizes) -> Counts:
    return _fault_cycles(p, GiB, s.fault_1g_reps)


def run_fault_1t(p, s: Sizes) -> Counts:
    return _fault_cycles(p, TiB, s.fault_1t_reps)


def run_fault_perpage(p, s: Sizes) -> Counts:
    """Map, then one touch() per page (the model's worst case: no run to batch), unmap."""
    length = s.perpage_bytes
    p.mmap(FAULT_BASE, length, "rw-", "private,anon,fixed,noreserve")
    touch = p.touch
    for a in range(FAULT_BASE, FAULT_BASE + length, PAGE):
        touch(a, PAGE, "w")
    c = Counts(ops=length // PAGE + 2, pages=length // PAGE)
    c.checks["rss_after_touch"] = p.rss
    c.checks["pgtables_after_touch"] = p.pgtables_bytes
    if p.rss != length:
        c.problems.append(f"rss after touch is {p.rss}, expected {length}")
    p.munmap(FAULT_BASE, length)
    c.checks["pgtables_after_munmap"] = p.pgtables_bytes
    if p.pgtables_bytes:
        c.problems.append(f"left {p.pgtables_bytes} B of page tables")
    return c


# --- 2. vma-heavy ----------------------------------------------------------------

VMA_LEN = 16 * KiB
VMA_GAP = 4 * KiB


def run_vma_fixed(p, s: Sizes) -> Counts:
    """N fixed 16 KiB mappings 4 KiB apart (no merging); touch each; munmap each in order."""
    n = s.vma_count
    stride = VMA_LEN + VMA_GAP
    addrs = [VMA_BASE + i * stride for i in range(n)]
    for a in addrs:
        p.mmap(a, VMA_LEN, "rw-", "private,anon,fixed")
    c = Counts(ops=3 * n, pages=n * VMA_LEN // PAGE)
    c.checks["map_count_peak"] = p.map_count
    if p.map_count != n:
        c.problems.append(f"{p.map_count} vmas after {n} mmaps (merged?)")
    for a in addrs:
        p.touch(a, VMA_LEN, "w")
    c.checks["rss_after_touch"] = p.rss
    c.checks["pgtables_after_touch"] = p.pgtables_bytes
    for a in addrs:
        p.munmap(a, VMA_LEN)
    c.checks["pgtables_after_munmap"] = p.pgtables_bytes
    if p.pgtables_bytes or p.map_count:
        c.problems.append(f"left {p.pgtables_bytes} B of page tables, {p.map_count} vmas")
    return c


def run_vma_topdown(p, s: Sizes) -> Counts:
    """N 16 KiB mappings placed by the kernel (addr 0), prot alternating rw-/r-- so that
    neighbours cannot merge; touch each (write or read); munmap each in order.

    Every mmap goes through get_unmapped_area's top-down search, which the
    model does by walking the vma list from mmap_base down: O(n) per call.
    """
    n = s.vma_topdown_count
    addrs = []
    for i in range(n):
        addrs.append(p.mmap(0, VMA_LEN, "rw-" if i % 2 == 0 else "r--", "private,anon"))
    c = Counts(ops=3 * n, pages=n * VMA_LEN // PAGE)
    c.checks["map_count_peak"] = p.map_count
    if p.map_count != n:
        c.problems.append(f"{p.map_count} vmas after {n} mmaps (merged?)")
    for i, a in enumerate(addrs):
        p.touch(a, VMA_LEN, "w" if i % 2 == 0 else "r")
    c.checks["rss_after_touch"] = p.rss
    c.checks["pgtables_after_touch"] = p.pgtables_bytes
    for a in addrs:
        p.munmap(a, VMA_LEN)
    c.checks["pgtables_after_munmap"] = p.pgtables_bytes
    if p.pgtables_bytes or p.map_count:
        c.problems.append(f"left {p.pgtables_bytes} B of page tables, {p.map_count} vmas")
    return c


# --- 3. fork/exit-heavy -------------------------------------------------------------

#: shared libraries of the parent: name, (r--, r-x, r--, rw-) segment sizes in pages,
#: pages read in text, pages written in data, bss pages (anon, after data)
LIBS = (
    ("ld-linux-x86-64.so.2", (1, 37, 10, 2), 20, 2, 1),
    ("libc.so.6", (40, 374, 86, 4), 80, 4, 4),
    ("libm.so.6", (14, 255, 250, 2), 12, 1, 0),
    ("libpthread.so.0", (4, 14, 4, 2), 4, 1, 1),
    ("libstdc++.so.6", (150, 268, 140, 14), 40, 10, 3),
    ("libgcc_s.so.1", (3, 24, 4, 2), 4, 1, 0),
    ("libz.so.1", (2, 19, 6, 2), 3, 1, 0),
)


def _build_parent(era: str) -> "freepgt.Process":
    """A process laid out like a small dynamically linked C++ program.

    text r-x / rodata r-- / data rw- (private file, COW-touched) / bss anon,
    a brk heap, shared libraries with their r--, r-x, r--, rw- parts and bss,
    a malloc arena, two thread stacks with guard pages, a few anon regions
    and the main stack: about 50 vmas, a few hundred touched pages.
    """
    p = _new_process(era)
    ps = PAGE
    # the executable: headers r--, text r-x, rodata r--, data rw-, then bss
    exe = p.file("app", 600 * ps)
    base = EXE_BASE
    layout = ((0, 8, "r--", 8, 0), (8, 400, "r-x", 60, 0), (408, 160, "r--", 20, 0), (568, 24, "rw-", 0, 24))
    for off, n, prot, rd, wr in layout:
        a = p.mmap(base + off * ps, n * ps, prot, "private,fixed", exe, off * ps)
        if rd:
            p.touch(a, rd * ps, "r")
        if wr:
            p.touch(a, wr * ps, "w")
    bss = base + 592 * ps
    p.mmap(bss, 16 * ps, "rw-", "private,anon,fixed")
    p.touch(bss, 8 * ps, "w")
    # heap through brk, just above the image (its end is PARENT_FIXED_END)
    p.mm.start_brk = p.mm.brk = bss + 16 * ps + 0x1000000
    heap = p.mm.brk
    p.brk(heap + 132 * KiB)
    p.touch(heap, 132 * KiB, "w")
    p.brk(heap + 1 * MiB)
    p.touch(heap + 132 * KiB, 200 * KiB, "w")
    # shared libraries, top-down below mmap_base, as ld.so maps them
    top = p.mm.mmap_base
    for name, segs, text_rd, data_wr, bss_pages in LIBS:
        total = sum(segs) + bss_pages
        f = p.file(name, sum(segs) * ps)
        start = top - (total + 16) * ps     # leave a gap between libraries
        top = start
        off = 0
        for i, (n, prot) in enumerate(zip(segs, ("r--", "r-x", "r--", "rw-"))):
            a = p.mmap(start + off * ps, n * ps, prot, "private,fixed", f, off * ps)
            if i == 0:
                p.touch(a, ps, "r")
            elif i == 1:
                p.touch(a, text_rd * ps, "r")
            elif i == 2:
                p.touch(a, min(n, 4) * ps, "r")
            else:
                p.touch(a, n * ps, "r")
                p.touch(a, data_wr * ps, "w")
            off += n
        if bss_pages:
            a = p.mmap(start + off * ps, bss_pages * ps, "rw-", "private,anon,fixed")
            p.touch(a, bss_pages * ps, "w")
    # anonymous regions placed by the kernel: a malloc arena (reserved ---, head rw-),
    # two thread stacks with a guard page, and a few small scratch buffers
    arena = p.mmap(0, 64 * MiB, "---", "private,anon,noreserve")
    p.mprotect(arena, 132 * KiB, "rw-")
    p.touch(arena, 64 * KiB, "w")
    for _ in range(2):
        st = p.mmap(0, 8 * MiB + ps, "rw-", "private,anon")
        p.mprotect(st, ps, "---")
        p.touch(st + 8 * MiB + ps - 16 * ps, 16 * ps, "w")
    for i in range(6):
        a = p.mmap(0, (i + 1) * 64 * KiB, "rw-" if i % 2 == 0 else "r--", "private,anon")
        p.touch(a, 4 * ps, "w" if i % 2 == 0 else "r")
    # one shared anonymous region (shmem) and one shared file mapping
    shm = p.mmap(0, 256 * KiB, "rw-", "shared,anon")
    p.touch(shm, 16 * ps, "w")
    cfg = p.file("config.db", 128 * KiB)
    a = p.mmap(0, 128 * KiB, "rw-", "shared", cfg)
    p.touch(a, 8 * ps, "w")
    # the main stack, growing down from just below TASK_SIZE
    stack_top = p.geom.task_size - 0x1000000
    stack = p.mmap(stack_top - 132 * KiB, 132 * KiB, "rw-", "private,anon,fixed")
    p.mm.vmas.vma_lookup(stack).vm_flags |= VM_GROWSDOWN
    p.touch(stack_top - 12 * ps, 12 * ps, "w")
    return p


#: the end of the parent's heap, its highest fixed mapping: the image (608
#: pages with bss), a 16 MiB gap, 1 MiB of brk heap
PARENT_FIXED_END = EXE_BASE + 608 * PAGE + 0x1000000 + 1 * MiB


def setup_fork(era: str, s: Sizes):
    return _build_parent(era)


def run_fork_exit(p, s: Sizes) -> Counts:
    """N times: fork the parent, exit the child (exit_mmap plus the era's checks)."""
    c = Counts(ops=s.forks)
    c.checks["parent_vmas"] = p.map_count
    c.checks["parent_rss_pages"] = p.rss // PAGE
    c.checks["parent_pgtables"] = p.pgtables_bytes
    fork = p.fork
    report = None
    for _ in range(s.forks):
        child = fork()
        report = child.exit()
    if report is not None:
        c.checks["child_vmas"] = report.vmas
        c.checks["child_tables_freed"] = report.tables_freed
        c.checks["child_pages_zapped"] = report.pages_zapped
        if report.tables_left or report.stranded or report.warnings:
            c.problems.append(f"child left {report.tables_left}, stranded {report.stranded}")
    return c


WORKLOADS: tuple[Workload, ...] = (
    Workload("fault-1GiB", "calls",
             "mmap 1 GiB private anon noreserve (fixed), touch all with writes, munmap; x reps",
             lambda era, s: _new_process(era), run_fault_1g, faults=True,
             fixed_end=lambda s: FAULT_BASE + GiB),
    Workload("fault-1TiB", "calls",
             "mmap 1 TiB private anon noreserve (fixed), touch all with writes, munmap; x reps",
             lambda era, s: _new_process(era), run_fault_1t, faults=True,
             fixed_end=lambda s: FAULT_BASE + TiB),
    Workload("fault-perpage", "calls",
             "mmap, one write touch() per page, munmap (no run batching)",
             lambda era, s: _new_process(era), run_fault_perpage, faults=True,
             fixed_end=lambda s: FAULT_BASE + s.perpage_bytes),
    Workload("vma-fixed", "calls",
             "N x mmap(16 KiB, fixed, 4 KiB gaps) + touch each + munmap each (3 calls/vma)",
             lambda era, s: _new_process(era), run_vma_fixed,
             fixed_end=lambda s: VMA_BASE + s.vma_count * (VMA_LEN + VMA_GAP)),
    Workload("vma-topdown", "calls",
             "N x mmap(16 KiB, addr 0, rw-/r-- alternating) + touch + munmap (3 calls/vma)",
             lambda era, s: _new_process(era), run_vma_topdown),
    Workload("fork-exit", "forks",
             "realistic ~50-vma parent; N x (fork + child.exit())",
             setup_fork, run_fork_exit, fixed_end=lambda s: PARENT_FIXED_END),
)
WORKLOAD_NAMES = tuple(w.name for w in WORKLOADS)


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------

def ref_empty_loop(n: int) -> float:
    """Seconds per iteration of an empty ``for _ in range(n): pass`` loop."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            pass
        best = min(best, time.perf_counter() - t0)
    return best / n


def _dict_fault_cycle(length: int) -> int:
    """A naive per-page model: fault every page into a dict, count 2 MiB tables, unmap."""
    ptes: dict[int, int] = {}
    tables: dict[int, int] = {}
    p0 = FAULT_BASE // PAGE
    p1 = p0 + length // PAGE
    for pg in range(p0, p1):
        if pg not in ptes:
            t = pg >> 9
            tables[t] = tables.get(t, 0) + 1
            ptes[pg] = 1
    faulted = len(ptes)
    for pg in range(p0, p1):
        if ptes.pop(pg, None) is not None:
            t = pg >> 9
            left = tables[t] - 1
            if left:
                tables[t] = left
            else:
                del tables[t]
    return faulted


def ref_dict_faults(length: int) -> dict[str, float]:
    """Pages/s and peak memory of the naive dict-per-page fault loop over ``length`` bytes."""
    best = float("inf")
    for _ in range(3):
        gc.collect()
        t0 = time.perf_counter()
        _dict_fault_cycle(length)
        best = min(best, time.perf_counter() - t0)
    gc.collect()
    tracemalloc.start()
    _dict_fault_cycle(length)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    pages = length // PAGE
    return {"bytes": length, "pages": pages, "seconds": best, "pages_per_s": pages / best,
            "peak_mib": peak / MiB}


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

def does_not_fit(w: Workload, era: str, s: Sizes) -> str | None:
    """Why ``w`` cannot run under ``era`` (a fixed mapping above its TASK_SIZE), or None.

    linux-2.6.10 maps x86_64 to its own layout, x86_64-2.6.10, with 511 GiB
    of user space: the fixed addresses of most workloads lie above it.
    """
    geom = _new_process(era).geom
    end = w.fixed_end(s)
    if end > geom.task_size:
        return (f"its fixed mappings end at {end:#x}, above TASK_SIZE {geom.task_size:#x} "
                f"of {geom.name}")
    return None


def measure(w: Workload, era: str, s: Sizes, repeat: int) -> dict[str, Any]:
    """Time ``w`` ``repeat`` times (best kept), then once under tracemalloc."""
    res: dict[str, Any] = {"workload": w.name, "era": era, "arch": ARCH, "unit": w.unit,
                           "description": w.description}
    try:
        best = float("inf")
        counts = None
        for _ in range(repeat):
            state = w.setup(era, s)
            gc.collect()
            t0 = time.perf_counter()
            counts = w.run(state, s)
            dt = time.perf_counter() - t0
            best = min(best, dt)
            del state
        gc.collect()
        tracemalloc.start()
        try:
            state = w.setup(era, s)
            w.run(state, s)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        del state
    except Exception as exc:  # a model error is a result, not a crash of the whole run
        res["error"] = f"{type(exc).__name__}: {exc}"
        return res
    assert counts is not None
    res.update(ops=counts.ops, seconds=best, ops_per_s=counts.ops / best, peak_mib=peak / MiB,
               checks=counts.checks, problems=counts.problems)
    if w.faults:
        res["pages"] = counts.pages
        res["pages_per_s"] = counts.pages / best
    return res


def add_ratios(res: dict[str, Any], loop_s: float, dict_ref: dict[str, float]) -> None:
    if "error" in res or "skipped" in res:
        return
    # the model's time over an empty loop's time for the same number of operations
    res["x_loop"] = res["seconds"] / (loop_s * res["ops"])
    if "pages_per_s" in res:
        res["vs_dict"] = res["pages_per_s"] / dict_ref["pages_per_s"]
        res["dict_seconds_extrapolated"] = res["pages"] / dict_ref["pages_per_s"]


def profile(w: Workload, era: str, s: Sizes, top: int, sort: str = "cumulative") -> str:
    """cProfile of one run of ``w`` (setup excluded): the ``top`` functions by ``sort``."""
    state = w.setup(era, s)
    prof = cProfile.Profile()
    prof.enable()
    w.run(state, s)
    prof.disable()
    out = io.StringIO()
    st = pstats.Stats(prof, stream=out)
    st.strip_dirs().sort_stats(sort).print_stats(top)
    return out.getvalue()


def _fmt(x: float) -> str:
    return f"{x:.3g}" if x < 1e5 else f"{x:.3e}"


HEADER = (f"{'workload':<14} {'era':<15} {'ops':>9} {'unit':<6} {'seconds':>9} {'ops/s':>10} "
          f"{'pages/s':>10} {'peak_MiB':>9} {'x_loop':>8} {'vs_dict':>8}")


def format_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['workload']:<14} {r['era']:<15} ERROR {r['error']}"
    if "skipped" in r:
        return f"{r['workload']:<14} {r['era']:<15} skipped: {r['skipped']}"
    pps = _fmt(r["pages_per_s"]) if "pages_per_s" in r else "-"
    vsd = _fmt(r["vs_dict"]) if "vs_dict" in r else "-"
    return (f"{r['workload']:<14} {r['era']:<15} {r['ops']:>9} {r['unit']:<6} {r['seconds']:>9.4f} "
            f"{_fmt(r['ops_per_s']):>10} {pps:>10} {r['peak_mib']:>9.3f} {_fmt(r['x_loop']):>8} {vsd:>8}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--era", default="linux-6.18", choices=(*era_names(), "all"),
                    help="kernel era to model (default linux-6.18; 'all' runs every era, oldest first, "
                         "skipping a workload whose fixed addresses lie above the era's TASK_SIZE)")
    ap.add_argument("--quick", action="store_true", help="small sizes, one timed run")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per workload, fastest kept (default 3, 1 with --quick)")
    ap.add_argument("--workloads", default=",".join(WORKLOAD_NAMES),
                    help=f"comma-separated subset of {','.join(WORKLOAD_NAMES)}")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--profile", action="store_true",
                    help="after the table, cProfile one run of each selected workload (setup excluded)")
    ap.add_argument("--profile-top", type=int, default=10, help="functions shown per profile (default 10)")
    ap.add_argument("--profile-sort", default="cumulative", choices=("cumulative", "tottime", "ncalls"),
                    help="profile order (default cumulative; tottime shows the hot leaves)")
    args = ap.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    eras = era_names() if args.era == "all" else [args.era]
    wanted = [x.strip() for x in args.workloads.split(",") if x.strip()]
    unknown = [x for x in wanted if x not in WORKLOAD_NAMES]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOAD_NAMES)}")
    selected = [w for w in WORKLOADS if w.name in wanted]
    if repeat < 1:
        ap.error("--repeat must be at least 1")

    print(f"freepgt {getattr(freepgt, '__version__', '?')} bench: python {platform.python_version()} "
          f"({platform.python_implementation()}), {platform.machine()}, arch model {ARCH}, "
          f"{'quick' if args.quick else 'full'}, best of {repeat}")
    loop_s = ref_empty_loop(sizes.loop_iters)
    dict_ref = ref_dict_faults(sizes.dict_ref_bytes)
    print(f"reference: empty loop {loop_s * 1e9:.1f} ns/iter; naive dict per-page faults "
          f"{dict_ref['bytes'] // MiB} MiB: {dict_ref['seconds']:.4f} s, "
          f"{_fmt(dict_ref['pages_per_s'])} pages/s, peak {dict_ref['peak_mib']:.1f} MiB")
    print(HEADER)
    results = []
    for era in eras:
        for w in selected:
            why = does_not_fit(w, era, sizes)
            if why is not None:
                r = {"workload": w.name, "era": era, "arch": ARCH, "unit": w.unit,
                     "description": w.description, "skipped": why}
                results.append(r)
                print(format_row(r), flush=True)
                continue
            r = measure(w, era, sizes, repeat)
            add_ratios(r, loop_s, dict_ref)
            results.append(r)
            print(format_row(r), flush=True)
    problems = [(r["workload"], r["era"], p) for r in results for p in r.get("problems", ())]
    for name, era, p in problems:
        print(f"CHECK {name} {era}: {p}")
    print("x_loop: model time / empty-loop time for the same number of ops; "
          "vs_dict: model pages/s / naive dict pages/s (>1: the model is faster)")
    big = [r for r in results if r["workload"] == "fault-1TiB" and "seconds" in r]
    for r in big:
        per = r["seconds"] / (r["ops"] // 3)
        print(f"fault-1TiB {r['era']}: {per * 1e3:.2f} ms per 1 TiB map+touch+unmap "
              f"({2 ** 28} pages); the dict loop would need ~{r['dict_seconds_extrapolated'] / (r['ops'] // 3):.0f} s")

    profiles: dict[str, str] = {}
    if args.profile:
        for era in eras:
            for w in selected:
                if does_not_fit(w, era, sizes) is not None:
                    continue
                text = profile(w, era, sizes, args.profile_top, args.profile_sort)
                profiles[f"{w.name}/{era}"] = text
                print(f"\n=== cProfile {w.name} {era}: top {args.profile_top} by {args.profile_sort} ===")
                print(text.strip())

    if args.json:
        doc = {
            "benchmark": "freepgt bench_model",
            "freepgt_version": getattr(freepgt, "__version__", None),
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "mode": "quick" if args.quick else "full",
            "repeat": repeat,
            "sizes": asdict(sizes),
            "reference": {"empty_loop_s_per_iter": loop_s, "dict_faults": dict_ref},
            "results": results,
        }
        if profiles:
            doc["profiles"] = profiles
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2, sort_keys=False)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
