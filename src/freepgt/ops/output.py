"""Format observations (docs/ops-format.md): JSON lines and terminal tables.

An observation is a dict ``{"line", "op", "ret", "vmas", "pgtables", "rss"}``
plus ``"child_pgtables"`` for ``fork``; ``vmas`` is a list of
``[start_hex, end_hex, perms]``.
"""

from __future__ import annotations

import json

__all__ = ["OBS_KEYS", "to_json_line", "render_table"]

OBS_KEYS = ("line", "op", "ret", "vmas", "pgtables", "rss", "child_pgtables")
_REQUIRED = OBS_KEYS[:-1]


def _check_keys(obs: dict) -> None:
    missing = [k for k in _REQUIRED if k not in obs]
    if missing:
        raise ValueError(f"observation lacks {', '.join(missing)}: {obs!r}")
    # Unknown keys are refused rather than dropped: the model and host runs
    # are compared line by line, and a silently lost field would hide a bug.
    extra = sorted(set(obs) - set(OBS_KEYS))
    if extra:
        raise ValueError(f"observation has unknown keys {', '.join(extra)}: {obs!r}")


def to_json_line(obs: dict) -> str:
    """Return one observation as one compact JSON line without a newline.

    Keys come in OBS_KEYS order, ``child_pgtables`` only when present, with
    ``(',', ':')`` separators, so the same observation always gives the same
    bytes and two runs can be compared with diff.  Raises ValueError when a
    required key is missing or an unknown key is present.
    """
    _check_keys(obs)
    ordered = {k: obs[k] for k in OBS_KEYS if k in obs}
    return json.dumps(ordered, separators=(",", ":"))


# (header, key, right-aligned); numbers are right-aligned so digits line up.
_COLUMNS = (
    ("line", "line", True),
    ("op", "op", False),
    ("ret", "ret", False),
    ("pgtables", "pgtables", True),
    ("rss", "rss", True),
    ("child", "child_pgtables", True),
)
_GAP = "  "


def _cell(obs: dict, key: str) -> str:
    if key not in obs or obs[key] is None:
        return ""
    value = obs[key]
    if key in ("pgtables", "rss", "child_pgtables"):
        return f"{value:,}"
    return str(value)


def _vma_lines(obs: dict) -> list[str]:
    vmas = obs.get("vmas") or []
    if not vmas:
        return ["(no vmas)"]
    return [f"{start}-{end} {perms}" for start, end, perms in vmas]


def render_table(observations: list[dict], title: str | None = None,
                 sources: dict[int, str] | None = None) -> str:
    """Return observations as a fixed-width text table for a terminal.

    One row per observation with columns line, op, ret, pgtables and rss
    (bytes, with thousands separators) and child (``child_pgtables``, blank
    unless the op is ``fork``); under each row its VMAs, one per line as
    ``start-end perms``, indented past the op column, or ``(no vmas)``.  The
    title, when given, comes first.  Lines carry no trailing blanks and the
    text has no final newline, so it suits print().

    ``sources`` maps a line number to the script text of that line; when
    given, the op column shows the whole operation (``munmap 0x… 8K``).
    """
    rows = [[_cell(obs, key) for _, key, _ in _COLUMNS] for obs in observations]
    if sources:
        op_col = [key for _, key, _ in _COLUMNS].index("op")
        for obs, row in zip(observations, rows):
            text = sources.get(obs.get("line"))
            if text:
                row[op_col] = text
    widths = [
        max([len(header)] + [len(row[i]) for row in rows])
        for i, (header, _, _) in enumerate(_COLUMNS)
    ]

    def fmt(cells: list[str]) -> str:
        parts = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, (_, _, right) in zip(cells, widths, _COLUMNS)
        ]
        return _GAP.join(parts).rstrip()

    # Two columns deeper than the op, so VMA lines never read as rows.
    indent = " " * (widths[0] + len(_GAP) + 2)
    lines: list[str] = []
    if title:
        lines.append(title)
    lines.append(fmt([header for header, _, _ in _COLUMNS]))
    lines.append(fmt(["-" * w for w in widths]))
    if not observations:
        lines.append("(no observations)")
    for obs, row in zip(observations, rows):
        lines.append(fmt(row))
        lines.extend(indent + text for text in _vma_lines(obs))
    return "\n".join(lines)
