"""``freepgt compare``: the lat_proc workloads under every era, side by side.

Runs :func:`freepgt.workloads.run_workload` for every (workload, arch,
era) asked for and reports, per iteration, the page-table entries the
era's unmapping and freeing code read (in total and per level), the tables
freed, the TLB flushes, the bytes of page tables leaked, what the era's
check after ``exit_mmap`` said, and the model's seconds per iteration.
Output: a table for people (eras in kernel order, one block per workload
and architecture, with entries examined relative to the oldest era shown),
one JSON array, or CSV; ``--plot`` also draws a bar chart (matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import os
import re
import sys
from collections.abc import Iterable
from functools import partial

from .arch import LEVEL_NAMES, PRESETS
from .argtypes import positive_int
from .eras import era_names, get_era
from .workloads import WORKLOADS, WorkloadResult, run_workload

__all__ = [
    "add_compare_parser",
    "add_costs_option",
    "cmd_compare",
    "compare",
    "kernel_order",
    "plot_path_problem",
    "plot_rows",
    "render_compare_table",
    "render_csv",
    "render_json",
    "result_row",
]

DEFAULT_ITERATIONS = 20

#: the keys every row has, in order (csv columns between them hold the per-level counts)
ROW_KEYS = (
    "workload", "arch", "geometry", "era", "iterations", "entries_examined", "relative",
    "tables_freed", "tlb_flushes", "flushed_bytes", "leaked_bytes", "bug",
    "seconds_per_iteration", "parent_vmas", "parent_pages", "error", "lock_breaks", "longest_run",
)


def _era_key(name: str) -> tuple:
    """Sort key: kernel version order; an ``-rcN`` comes before its release; unknown names last."""
    m = re.fullmatch(r"linux-(\d+(?:\.\d+)*)(?:-rc(\d*))?(.*)", name)
    if m is None:
        return (1, (), 0, 0, name)
    version = tuple(int(x) for x in m.group(1).split("."))
    if m.group(2) is not None:
        return (0, version, 0, int(m.group(2) or 0), m.group(3))
    return (0, version, 1, 0, m.group(3))


def kernel_order(names: Iterable[str]) -> list[str]:
    """Era names oldest first (``linux-2.6.12-rc`` between 2.6.11 and 2.6.12)."""
    return sorted(names, key=_era_key)


def compare(workloads: Iterable[str], archs: Iterable[str], eras: Iterable[str],
            iterations: int = DEFAULT_ITERATIONS, preempt: bool = False) -> list[WorkloadResult]:
    """Run every workload on every arch under every era (kernel order).

    ``preempt`` runs the eras that zap in ``ZAP_BLOCK_SIZE`` blocks as
    built with CONFIG_PREEMPT (8-page blocks); the others as they are.
    """
    chosen = []
    for name in kernel_order(eras):
        era = get_era(name)
        chosen.append(era.with_switches(preempt=True) if preempt and era.zap_block_pages else era)
    return [run_workload(w, e, a, iterations) for w in workloads for a in archs for e in chosen]


def _relative(results: list[WorkloadResult]) -> dict[int, tuple[float, str]]:
    """For each result with numbers: entries examined / those of the oldest era in its group."""
    out: dict[int, tuple[float, str]] = {}
    bases: dict[tuple[str, str], WorkloadResult] = {}
    for r in results:
        if r.costs is None:
            continue
        key = (r.workload, r.arch)
        base = bases.get(key)
        if base is None or _era_key(r.era) < _era_key(base.era):
            bases[key] = r
    for i, r in enumerate(results):
        if r.costs is None:
            continue
        base = bases[(r.workload, r.arch)]
        b = base.costs.entries_examined
        out[i] = (r.costs.entries_examined / b if b else float("nan"), base.era)
    return out


def result_row(r: WorkloadResult, relative: float | None = None) -> dict:
    """One result as plain data: ROW_KEYS plus the per-level dicts."""
    c = r.costs
    row = {
        "workload": r.workload, "arch": r.arch, "geometry": r.geometry, "era": r.era,
        "iterations": r.iterations,
        "entries_examined": c.entries_examined if c else None,
        "relative": round(relative, 4) if relative is not None else None,
        "tables_freed": c.tables_freed if c else None,
        "tlb_flushes": c.tlb_flushes if c else None,
        "flushed_bytes": c.flushed_bytes if c else None,
        "leaked_bytes": c.leaked_bytes if c else None,
        "bug": c.bug if c else None,
        "seconds_per_iteration": r.seconds_per_iteration,
        "parent_vmas": r.parent_vmas if c else None,
        "parent_pages": r.parent_pages if c else None,
        "error": r.error,
        "lock_breaks": c.lock_breaks if c else None,
        "longest_run": c.longest_run if c else None,
        "examined_per_level": dict(c.examined) if c else {},
        "tables_freed_per_level": dict(c.freed) if c else {},
    }
    return row


def rows_of(results: list[WorkloadResult]) -> list[dict]:
    rel = _relative(results)
    return [result_row(r, rel.get(i, (None, ""))[0]) for i, r in enumerate(results)]


def render_json(results: list[WorkloadResult]) -> str:
    """One JSON array, one object per (workload, arch, era)."""
    return json.dumps(rows_of(results), indent=2)


def render_csv(results: list[WorkloadResult]) -> str:
    """CSV with ROW_KEYS as columns and ``examined_<level>`` / ``freed_<level>`` per level."""
    rows = rows_of(results)
    levels_ex = [n for n in LEVEL_NAMES if any(n in r["examined_per_level"] for r in rows)]
    levels_fr = [n for n in LEVEL_NAMES if any(n in r["tables_freed_per_level"] for r in rows)]
    cols = list(ROW_KEYS)
    at = cols.index("entries_examined") + 1
    cols[at:at] = [f"examined_{n}" for n in levels_ex]
    at = cols.index("tables_freed") + 1
    cols[at:at] = [f"freed_{n}" for n in levels_fr]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        flat = dict(r)
        for n in levels_ex:
            flat[f"examined_{n}"] = r["examined_per_level"].get(n)
        for n in levels_fr:
            flat[f"freed_{n}"] = r["tables_freed_per_level"].get(n)
        w.writerow(["" if flat[c] is None else flat[c] for c in cols])
    return buf.getvalue().rstrip("\n")


_WHAT = {
    "lat_proc-fork": "fork, the child exits",
    "lat_proc-exec": "fork, the child execs hello-s, which exits",
    "lat_proc-sh": "fork, the child execs sh, sh execs hello-s, which exits",
}


def _span(xs: list[int]) -> str:
    """'24' or '24-25'."""
    return f"{xs[0]}" if len(xs) == 1 else f"{xs[0]}-{xs[-1]}"


def _fmt_row(cells: list[str], widths: list[int], right: list[bool]) -> str:
    return "  ".join(cell.rjust(w) if rt else cell.ljust(w)
                     for cell, w, rt in zip(cells, widths, right)).rstrip()


def render_compare_table(results: list[WorkloadResult], latency: bool = False) -> str:
    """Fixed-width tables, one block per (workload, arch), eras in kernel order.

    Columns: era, the geometry it used, entries examined (total, then per
    level; ``-`` for a level the geometry folds), ``rel`` (entries examined
    relative to the oldest era of the block), tables freed, TLB flushes,
    leaked bytes, model milliseconds per iteration, and the check after
    ``exit_mmap`` (``-`` when it is quiet).  All per iteration.  With
    ``latency``, two more columns: the points where unmap_vmas may drop the
    page-table lock, and the longest run of entries read between two of them.
    """
    rel = _relative(results)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(results):
        groups.setdefault((r.workload, r.arch), []).append(i)
    blocks = []
    for (workload, arch), idx in groups.items():
        rs = [results[i] for i in idx]
        ok = [r for r in rs if r.costs is not None]
        levels = [n for n in LEVEL_NAMES if any(n in r.costs.examined for r in ok)]
        lat = ["lock drops", "longest run"] if latency else []
        header = ["era", "geometry", "examined", *levels, "rel", "freed", "flushes", *lat, "leaked",
                  "ms/iter", "BUG_ON at exit"]
        right = [False, False, True, *([True] * len(levels)), True, True, True, *([True] * len(lat)),
                 True, True, False]
        body = []
        notes = []
        base_era = None
        for i, r in zip(idx, rs):
            c = r.costs
            if c is None:
                body.append([r.era, r.geometry or "", "n/a", *([""] * (len(levels) + len(lat))),
                             "", "", "", "", "", ""])
                notes.append(f"n/a: {r.era}: {r.error}")
                continue
            ratio, base_era = rel[i]
            body.append([
                r.era, r.geometry or "", f"{c.entries_examined:,}",
                *[f"{c.examined[n]:,}" if n in c.examined else "-" for n in levels],
                f"{ratio:.2f}x", f"{c.tables_freed:,}", f"{c.tlb_flushes:,}",
                *([f"{c.lock_breaks:,}", f"{c.longest_run:,}"] if latency else []), f"{c.leaked_bytes:,}",
                f"{r.seconds_per_iteration * 1e3:.2f}", c.bug or "-",
            ])
        widths = [max(len(row[k]) for row in [header, *body]) for k in range(len(header))]
        fmt = partial(_fmt_row, widths=widths, right=right)
        vm = sorted({r.parent_vmas for r in ok})
        pg = sorted({r.parent_pages for r in ok})
        parent = f"; parent shell {_span(vm)} vmas, {_span(pg)} resident pages" if ok else ""
        title = (f"{workload} on {arch}: {_WHAT.get(workload, workload)} "
                 f"(per iteration, {rs[0].iterations} iterations{parent})")
        lines = [title, fmt(header), fmt(["-" * w for w in widths])]
        lines += [fmt(row) for row in body]
        if base_era is not None:
            lines.append(f"rel: entries examined relative to {base_era}")
        lines += notes
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def plot_rows(results: list[WorkloadResult], path: str) -> None:
    """Write a bar chart of entries examined per iteration (stacked by level), one panel per block.

    Needs matplotlib (the ``plot`` extra); raises ImportError otherwise.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[WorkloadResult]] = {}
    for r in results:
        groups.setdefault((r.workload, r.arch), []).append(r)
    n = len(groups)
    cols = min(3, n)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.8 * cols, 3.6 * nrows), squeeze=False)
    colours = {"pgd": "#4c72b0", "p4d": "#8172b2", "pud": "#55a868", "pmd": "#c44e52", "pte": "#ccb974"}
    for ax, ((workload, arch), rs) in zip(axes.flat, groups.items()):
        eras = [r.era.replace("linux-", "") for r in rs]
        bottom = [0] * len(rs)
        for level in LEVEL_NAMES:
            vals = [(r.costs.examined.get(level, 0) if r.costs else 0) for r in rs]
            if not any(vals):
                continue
            ax.bar(eras, vals, bottom=bottom, label=level, color=colours[level])
            bottom = [b + v for b, v in zip(bottom, vals)]
        for x, r in enumerate(rs):
            if r.costs is None:
                ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{workload} on {arch}", fontsize=10)
        ax.set_ylabel("entries examined / iteration", fontsize=8)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def add_costs_option(p: argparse.ArgumentParser) -> None:
    """``--costs`` for ``run`` and ``demo``: per-operation cost columns / keys."""
    p.add_argument("--costs", action="store_true",
                   help="add per-operation costs after the usual columns/keys: page-table entries "
                        "examined and tables freed (per level in jsonl), TLB flushes, leaked bytes")



def add_compare_parser(sub) -> argparse.ArgumentParser:
    """The ``compare`` subcommand."""
    p = sub.add_parser(
        "compare", help="run lmbench lat_proc workloads under every era and compare page-table work",
        description="Run lmbench's lat_proc (fork, exec, sh) on a shell-like process under each era "
                    "and report per iteration: page-table entries examined by the unmapping and "
                    "freeing code (total and per level), tables freed, TLB flushes, leaked bytes, "
                    "the check after exit_mmap, and the model's time.")
    p.add_argument("workload", choices=(*WORKLOADS, "all"), help="which lat_proc variant, or all")
    p.add_argument("--arch", action="append", choices=sorted(PRESETS), metavar="ARCH",
                   help="architecture (repeatable; default x86_64): " + ", ".join(sorted(PRESETS)))
    p.add_argument("--era", action="append", choices=era_names(), metavar="ERA",
                   help="kernel era (repeatable; default every era): " + ", ".join(era_names()))
    p.add_argument("--iterations", type=positive_int, default=DEFAULT_ITERATIONS,
                   help=f"measured iterations per run, after one warm-up (default {DEFAULT_ITERATIONS})")
    p.add_argument("--format", default="table", choices=("table", "json", "csv"),
                   help="table for people; json (one array) or csv for machines")
    p.add_argument("--plot", metavar="FILE", help="also write a bar chart (needs matplotlib)")
    p.add_argument("--preempt", action="store_true",
                   help="build the 2.6 eras with CONFIG_PREEMPT (ZAP_BLOCK_SIZE 8 pages, not 1024)")
    p.add_argument("--latency", action="store_true",
                   help="add the lock-drop points of unmap_vmas and the longest run between them")
    p.set_defaults(func=cmd_compare)
    return p


def plot_path_problem(path: str) -> str | None:
    """Why a chart cannot be written to path (a directory, or in a missing directory), or None."""
    if os.path.isdir(path):
        return "is a directory"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        return f"the directory {parent} does not exist"
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    return None


def cmd_compare(args: argparse.Namespace) -> int:
    """Run the comparison and print it; 2 when --plot cannot be honoured."""
    if args.plot:
        # checked before the runs, which take a while: a bad path fails at once
        problem = plot_path_problem(args.plot)
        if problem is not None:
            print(f"freepgt: --plot {args.plot}: {problem}", file=sys.stderr)
            return 2
        if importlib.util.find_spec("matplotlib") is None:
            print("freepgt: --plot needs matplotlib: pip install 'freepgt[plot]'", file=sys.stderr)
            return 2
    workloads = WORKLOADS if args.workload == "all" else (args.workload,)
    archs = list(dict.fromkeys(args.arch or ["x86_64"]))
    eras = list(dict.fromkeys(args.era or era_names()))
    results = compare(workloads, archs, eras, args.iterations, preempt=args.preempt)
    if args.format == "json":
        print(render_json(results))
    elif args.format == "csv":
        print(render_csv(results))
    else:
        print(render_compare_table(results, latency=args.latency or args.preempt))
    if args.plot:
        try:
            plot_rows(results, args.plot)
        except OSError as e:
            print(f"freepgt: --plot {args.plot}: {e.strerror or e}", file=sys.stderr)
            return 2
        except ValueError as e:  # matplotlib: an extension it cannot write
            print(f"freepgt: --plot {args.plot}: {e}", file=sys.stderr)
            return 2
    return 0
