"""Host-kernel rules (docs/host-kernel-notes.md) as ops scripts with hand-worked expectations.

Every ``tests/host_rules/NAME.ops`` comes with ``NAME.expected.jsonl``: one
observation per operation line, worked out by hand from the notes (never by
running the model).  ``test_host_rule`` runs the script on the ``linux-6.18``
era and compares line by line.

Each script also carries its expectations as ``#=>`` comments under each
operation, in a short notation (offsets from the arena base B, tables
instead of bytes, pages instead of bytes) so that a reader sees the reasoning
next to the numbers; ``test_annotations_match_expected`` checks that those
comments and the jsonl file say the same thing.

Annotation notation (one or more ``#=>`` lines after an operation):

- ``ret=VALUE``: ``-EINVAL``..., ``SIGSEGV@+OFF``, ``+OFF`` (B+OFF in hex) or
  a literal; default ``"0"``, for ``mmap`` the ADDR argument in hex;
  required for ``mremap``.
- ``T=N``: ``pgtables`` = N tables x 4096 (required).
- ``rss=Np`` (pages) or ``rss=BYTES`` (required).
- ``child=N``: ``child_pgtables`` = N x 4096 (``fork`` only, required there).
- ``V: START-END perms, ...`` (offsets from B) or ``V: none``; when absent the
  vmas of the previous observation carry over.
- ``file`` lines need no annotation (ret "0", everything carries over).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from freepgt.ops.run import run_ops
from freepgt.ops.script import load_script, parse_number

HERE = Path(__file__).parent / "host_rules"
SCRIPTS = sorted(HERE.glob("*.ops"))
B = 0x100000000000
PAGE = 4096


# ---------------------------------------------------------------- notation

_TERM_RE = re.compile(r"([+-]?)([^+-]+)")


def offset(expr: str) -> int:
    """Value of ``4M+64K``, ``512G-4K``, ``0``: a sum of script numbers."""
    expr = expr.strip()
    total = 0
    pos = 0
    for m in _TERM_RE.finditer(expr):
        if m.start() != pos:
            raise ValueError(f"bad offset expression {expr!r}")
        pos = m.end()
        value = parse_number(m.group(2).strip())
        total += -value if m.group(1) == "-" else value
    if pos != len(expr) or not expr:
        raise ValueError(f"bad offset expression {expr!r}")
    return total


def _ret(token: str) -> str:
    if token.startswith("+"):
        return hex(B + offset(token[1:]))
    m = re.fullmatch(r"(SIG[A-Z]+)@\+(.+)", token)
    if m:
        return f"{m.group(1)}@{B + offset(m.group(2)):#x}"
    return token


def _vmas(text: str) -> list[list[str]]:
    text = text.strip()
    if text == "none":
        return []
    out = []
    for item in text.split(","):
        rng, perms = item.split()
        # split START-END on the '-' that separates them: the one not
        # followed by a digit run belonging to an offset like 512G-4K is
        # ambiguous, so ranges are written START..END when they need '-'.
        if ".." in rng:
            lo, hi = rng.split("..")
        else:
            lo, hi = rng.split("-")
        out.append([hex(B + offset(lo)), hex(B + offset(hi)), perms])
    return out


def annotations_to_expected(text: str) -> list[dict]:
    """The observations that the ``#=>`` comments of a script describe."""
    lines = text.split("\n")
    ops: list[tuple[int, list[str], list[str]]] = []  # (line, tokens, annotations)
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if stripped.startswith("#=>"):
            if not ops:
                raise ValueError(f"line {number}: annotation before any operation")
            ops[-1][2].append(stripped[3:].strip())
            continue
        tokens = raw.split("#", 1)[0].split()
        if tokens:
            ops.append((number, tokens, []))
    expected: list[dict] = []
    vmas: list[list[str]] = []
    pgtables = rss = 0
    for number, tokens, notes in ops:
        op = tokens[0]
        if op == "file" and not notes:
            expected.append({"line": number, "op": op, "ret": "0", "vmas": vmas,
                             "pgtables": pgtables, "rss": rss})
            continue
        if not notes:
            raise ValueError(f"line {number}: {op} has no '#=>' annotation")
        fields: dict[str, str] = {}
        for note in notes:
            if "V:" in note:
                note, vtext = note.split("V:", 1)
                fields["V"] = vtext
            for tok in note.split():
                key, _, value = tok.partition("=")
                if not value:
                    raise ValueError(f"line {number}: bad annotation token {tok!r}")
                fields[key] = value
        unknown = set(fields) - {"ret", "T", "rss", "child", "V"}
        if unknown:
            raise ValueError(f"line {number}: unknown annotation keys {sorted(unknown)}")
        if "ret" in fields:
            ret = _ret(fields["ret"])
        elif op == "mmap":
            ret = hex(parse_number(tokens[1]))
        elif op == "mremap":
            raise ValueError(f"line {number}: mremap needs ret=")
        else:
            ret = "0"
        if "V" in fields:
            vmas = _vmas(fields["V"])
        if "T" not in fields or "rss" not in fields:
            raise ValueError(f"line {number}: T= and rss= are required")
        pgtables = int(fields["T"]) * PAGE
        r = fields["rss"]
        rss = int(r[:-1]) * PAGE if r.endswith("p") else parse_number(r)
        obs = {"line": number, "op": op, "ret": ret, "vmas": vmas,
               "pgtables": pgtables, "rss": rss}
        if op == "fork":
            if "child" not in fields:
                raise ValueError(f"line {number}: fork needs child=")
            obs["child_pgtables"] = int(fields["child"]) * PAGE
        elif "child" in fields:
            raise ValueError(f"line {number}: child= only on fork")
        expected.append(obs)
    return expected


def load_expected(script: Path) -> list[dict]:
    path = script.with_name(script.name[: -len(".ops")] + ".expected.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _short(obs: dict | None) -> str:
    return "(none)" if obs is None else json.dumps(obs, separators=(",", ":"))


# ------------------------------------------------------------------- tests

def test_there_are_enough_scripts():
    assert len(SCRIPTS) >= 40


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_annotations_match_expected(script: Path):
    """The #=> comments and the jsonl file tell the same story."""
    assert annotations_to_expected(script.read_text()) == load_expected(script)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_host_rule(script: Path):
    ops = load_script(script)
    expected = load_expected(script)
    assert [e["line"] for e in expected] == [op.line for op in ops], "expected.jsonl is out of step with the script"
    actual = list(run_ops(ops, era="linux-6.18", arch="x86_64", check=False, filename=str(script)))
    for want, got, op in zip(expected, actual, ops):
        if want != got:
            diff = [k for k in want.keys() | got.keys() if want.get(k) != got.get(k)]
            pytest.fail(
                f"{script.name}:{op.line}: {op.op} differs in {', '.join(sorted(diff))}\n"
                f"  expected: {_short(want)}\n"
                f"  actual:   {_short(got)}",
                pytrace=False,
            )
    assert len(actual) == len(expected)
