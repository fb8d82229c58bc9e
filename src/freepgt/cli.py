"""The ``freepgt`` command line.

Exit status: 0 success, 2 a bad script or bad arguments, 3 the model hit a
kernel BUG (or a failed invariant under ``--check``).

``freepgt host`` (the real kernel's observations): 0 success, 2 a bad
script, a host runner that cannot be used here, or a script the host cannot
run comparably (an address outside the arena, a runner failure).
``freepgt diff`` (model against kernel): 0 every observation matches, 1 they
differ (the first difference is shown), 2 as for ``host``, 3 the model hit
a kernel BUG.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from .arch import PRESETS, get_arch
from .compare import add_compare_parser, add_costs_option
from .costs import run_ops_with_costs
from .eras import DEFAULT_ERA, era_names, get_era
from .host.cli import cmd_diff, cmd_host
from .ops.output import render_table, to_json_line
from .ops.run import ARENA, ScriptRunError, check_words, run_ops
from .ops.script import ScriptError, load_script, parse_script

DEMO_SCRIPT = "seed-demo.ops"


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--era", default=DEFAULT_ERA, choices=era_names(),
                   help=f"kernel era to model (default {DEFAULT_ERA})")
    p.add_argument("--arch", default="x86_64", choices=sorted(PRESETS),
                   help="page-table geometry (default x86_64)")
    p.add_argument("--format", default="table", choices=("table", "jsonl"),
                   help="table for people, jsonl for machines (one JSON object per line)")
    p.add_argument("--check", action="store_true",
                   help="verify the model's invariants after every operation")


def _sources(text: str) -> dict[int, str]:
    """Line number -> the operation as written (comments and extra blanks dropped)."""
    return {i: " ".join(line.split("#", 1)[0].split())
            for i, line in enumerate(text.splitlines(), 1) if line.split("#", 1)[0].strip()}


def _geometry(args: argparse.Namespace):
    """The geometry the chosen era gives the chosen arch, or None after saying why not."""
    try:
        return get_era(args.era).geometry(args.arch)
    except ValueError as e:
        print(f"freepgt: {e}", file=sys.stderr)
        return None


def _run_script(ops, filename: str, args: argparse.Namespace, title: str | None,
                sources: dict[int, str] | None = None) -> int:
    out = sys.stdout
    geom = _geometry(args)
    if geom is None:
        return 2
    try:
        check_words(ops, geom, filename)
    except ScriptError as e:
        print(f"freepgt: {e}", file=sys.stderr)
        return 2
    observations = []
    try:
        runner = run_ops_with_costs if getattr(args, "costs", False) else run_ops
        for obs in runner(ops, era=args.era, arch=args.arch, check=args.check, filename=filename):
            if args.format == "jsonl":
                out.write(to_json_line(obs) + "\n")
            else:
                observations.append(obs)
    except ScriptRunError as e:
        if observations:
            print(render_table(observations, title, sources), file=out)
        print(f"freepgt: {e}", file=sys.stderr)
        return 3
    if args.format == "table":
        print(render_table(observations, title, sources), file=out)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        ops = load_script(args.script)
    except ScriptError as e:
        print(f"freepgt: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"freepgt: {args.script}: {e.strerror}", file=sys.stderr)
        return 2
    title = None if args.format == "jsonl" else f"{args.script} on {args.era}, {args.arch}"
    try:
        with open(args.script, encoding="utf-8", errors="replace") as f:
            sources = _sources(f.read())
    except OSError:
        sources = None
    return _run_script(ops, str(args.script), args, title, sources)


def cmd_demo(args: argparse.Namespace) -> int:
    text = resources.files("freepgt").joinpath("data", DEMO_SCRIPT).read_text()
    if args.show_script:
        print(text)
        return 0
    ops = parse_script(text, DEMO_SCRIPT)
    geom = _geometry(args)
    if geom is None:
        return 2
    if geom.task_size < ARENA[1]:
        print(f"freepgt: demo: the built-in script works in the arena [{ARENA[0]:#x}, {ARENA[1]:#x}), "
              f"above TASK_SIZE {geom.task_size:#x} of {geom.name}; write a script for this "
              "geometry and use `freepgt run`", file=sys.stderr)
        return 2
    title = None if args.format == "jsonl" else (
        f"{DEMO_SCRIPT} (built-in) on {args.era}, {args.arch}: "
        "pgtables (VmPTE) and rss in bytes; `freepgt demo --show-script` prints the commented script")
    return _run_script(ops, DEMO_SCRIPT, args, title, _sources(text))


def cmd_arch(args: argparse.Namespace) -> int:
    for name in sorted(PRESETS):
        g = get_arch(name)
        print(f"{name}: {g.description}")
        print(f"  {g.word_bits}-bit, {len(g.real_levels)} levels, page {g.page_size} B, "
              f"TASK_SIZE {g.task_size:#x}, FIRST_USER_ADDRESS {g.first_user_address:#x}")
        print(g.describe())
        spans = ", ".join(f"{lv.name} {_size(g.table_span(lv.name))}" for lv in g.table_levels)
        print(f"  one table spans: {spans}")
        print(f"  quirks: {'; '.join(g.quirks()) or 'none'}")
    return 0


def _size(n: int) -> str:
    """A power-of-two byte count with the largest binary unit that divides it."""
    for unit, shift in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def cmd_eras(args: argparse.Namespace) -> int:
    for name in era_names():
        mark = " (default)" if name == DEFAULT_ERA else ""
        print(f"{name}{mark}: {get_era(name).description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freepgt",
        description="An executable model of Linux page-table lifetime (free_pgtables, floor and ceiling).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run an ops script on the model")
    p.add_argument("script", help="the ops script (docs/ops-format.md)")
    _add_model_options(p)
    add_costs_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the built-in example script and show its observations")
    _add_model_options(p)
    p.add_argument("--show-script", action="store_true", help="print the built-in script instead")
    add_costs_option(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("arch", help="list the architecture presets and their geometry")
    p.set_defaults(func=cmd_arch)

    p = sub.add_parser("eras", help="list the kernel eras")
    p.set_defaults(func=cmd_eras)

    add_compare_parser(sub)

    p = sub.add_parser("host", help="run an ops script on this machine's kernel")
    p.add_argument("script", help="the ops script; every address in the arena [0x100000000000, 0x200000000000)")
    p.add_argument("--format", default="table", choices=("table", "jsonl"),
                   help="table for people, jsonl for machines (one JSON object per line)")
    p.set_defaults(func=cmd_host)

    p = sub.add_parser("diff", help="compare the model with this machine's kernel on an ops script")
    p.add_argument("script", help="the ops script; every address in the arena [0x100000000000, 0x200000000000)")
    p.add_argument("--era", default=DEFAULT_ERA, choices=era_names(),
                   help=f"kernel era to model (default {DEFAULT_ERA})")
    p.add_argument("--arch", default="x86_64", choices=sorted(PRESETS),
                   help="page-table geometry (default x86_64)")
    p.set_defaults(func=cmd_diff)

    from .fuzz import register as register_fuzz
    register_fuzz(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (``freepgt arch | head``): stop quietly
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
