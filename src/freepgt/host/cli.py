"""The ``freepgt host`` and ``freepgt diff`` commands (registered in freepgt.cli).

``host`` prints the observations of the real kernel for a script, as
``freepgt run`` prints the model's; ``diff`` runs both and shows the first
operation where they differ.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..ops.output import OBS_KEYS, render_table, to_json_line
from ..eras import get_era
from ..ops.run import ScriptRunError, check_words, run_ops
from ..ops.script import ScriptError, load_script
from .runner import HostError, HostUnavailable, run_host

#: exit statuses of ``freepgt diff`` (``host`` uses 0 and 2)
EXIT_MATCH, EXIT_DIFFER, EXIT_UNUSABLE, EXIT_MODEL_BUG = 0, 1, 2, 3


def _load(path: str):
    """(ops, source lines by number) of the script, or None after printing why not."""
    try:
        ops = load_script(path)
    except ScriptError as e:
        print(f"freepgt: {e}", file=sys.stderr)
        return None
    except OSError as e:
        print(f"freepgt: {path}: {e.strerror}", file=sys.stderr)
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    sources = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        code = " ".join(raw.split("#", 1)[0].split())
        if code:
            sources[number] = code
    return ops, sources


def _kernel() -> str:
    """This machine's kernel as the output names it: ``Linux RELEASE MACHINE``."""
    u = os.uname()
    return f"Linux {u.release} {u.machine}"


def cmd_host(args: argparse.Namespace) -> int:
    """``freepgt host SCRIPT``: the kernel's observations, as a table or JSON lines."""
    loaded = _load(args.script)
    if loaded is None:
        return EXIT_UNUSABLE
    ops, sources = loaded
    try:
        observations = run_host(ops, args.script)
        failure = None
    except HostUnavailable as e:
        print(f"freepgt: host runner unavailable: {e}", file=sys.stderr)
        return EXIT_UNUSABLE
    except HostError as e:
        observations, failure = e.observations, e
    if args.format == "jsonl":
        for obs in observations:
            sys.stdout.write(to_json_line(obs) + "\n")
    elif observations or failure is None:
        print(render_table(observations, f"{args.script} on the host kernel ({_kernel()})", sources))
    if failure is not None:
        print(f"freepgt: host: {failure}", file=sys.stderr)
        return EXIT_UNUSABLE
    return 0


_ABSENT = object()


def _cell(key: str, value) -> list[str]:
    """A value of an observation as the lines of one table cell."""
    if value is _ABSENT:
        return ["(absent)"]
    if key == "vmas":
        return [f"{start}-{end} {perms}" for start, end, perms in value] or ["(no vmas)"]
    return [str(value)]


def render_difference(model: dict, host: dict) -> str:
    """Both observations side by side (key, model, host); differing keys marked ``*``."""
    keys = [k for k in OBS_KEYS if k in model or k in host]
    rows: list[tuple[str, str, list[str], list[str]]] = []
    for key in keys:
        a, b = model.get(key, _ABSENT), host.get(key, _ABSENT)
        rows.append(("*" if a != b else " ", key, _cell(key, a), _cell(key, b)))
    key_w = max(len("key"), *(len(k) for _, k, _, _ in rows))
    model_w = max(len("model"), *(len(x) for _, _, a, _ in rows for x in a))
    lines = [f"  {'key'.ljust(key_w)}  {'model'.ljust(model_w)}  host"]
    for mark, key, a, b in rows:
        for i in range(max(len(a), len(b))):
            left = a[i] if i < len(a) else ""
            right = b[i] if i < len(b) else ""
            label = key if i == 0 else ""
            lines.append(f"{mark if i == 0 else ' '} {label.ljust(key_w)}  {left.ljust(model_w)}  {right}".rstrip())
    lines.append("(* marks the keys that differ)")
    return "\n".join(lines)


def cmd_diff(args: argparse.Namespace) -> int:
    """``freepgt diff SCRIPT``: compare the model with the kernel, operation by operation.

    Exit 0 when every observation matches, 1 at the first difference, 2
    for a bad script or a host that cannot run it, 3 when the model hits a
    kernel BUG.
    """
    loaded = _load(args.script)
    if loaded is None:
        return EXIT_UNUSABLE
    ops, sources = loaded
    try:
        geom = get_era(args.era).geometry(args.arch)
        check_words(ops, geom, args.script)
    except (ValueError, ScriptError) as e:
        print(f"freepgt: {e}", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        model = list(run_ops(ops, era=args.era, arch=args.arch, filename=args.script))
    except ScriptRunError as e:
        print(f"freepgt: model: {e}", file=sys.stderr)
        return EXIT_MODEL_BUG
    failure = None
    try:
        host = run_host(ops, args.script)
    except HostUnavailable as e:
        print(f"freepgt: host runner unavailable: {e}", file=sys.stderr)
        return EXIT_UNUSABLE
    except HostError as e:
        host, failure = e.observations, e
    who = f"model {args.era}/{args.arch} vs host {_kernel()}"
    for index, (m, h) in enumerate(zip(model, host)):
        if m != h:
            line = m["line"]
            print(f"{args.script}:{line}: first difference, at operation {index + 1} of {len(model)} "
                  f"({who}):")
            print(f"  {sources.get(line, m['op'])}")
            print(render_difference(m, h))
            return EXIT_DIFFER
    if failure is not None:
        print(f"freepgt: host: {failure}", file=sys.stderr)
        if host:
            print("freepgt: model and host agree on every operation before it", file=sys.stderr)
        return EXIT_UNUSABLE
    print(f"{args.script}: all {len(model)} observations match ({who})")
    return EXIT_MATCH
