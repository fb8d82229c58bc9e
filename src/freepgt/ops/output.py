"""Format observations (docs/ops-format.md): JSON lines and terminal tables.

An observation is a dict ``{"line", "op", "ret", "vmas", "pgtables", "rss"}``
plus ``"child_pgtables"`` for ``fork``; ``vmas`` is a list of
``[start_hex, end_hex, perms]``.
"""

from __future__ import annotations

import json

__all__ = ["OBS_KEYS", "COST_KEYS", "to_json_line", "render_table"]

OBS_KEYS = ("line", "op", "ret", "vmas", "pgtables", "rss", "child_pgtables")
_REQUIRED = OBS_KEYS[:-1]
#: optional cost keys (``--costs``, freepgt.costs), always after the contract's keys
COST_KEYS = ("examined", "freed", "flushes", "leaked")


def _check_keys(obs: dict) -> None:
    missing = [k for k in _REQUIRED if k not in obs]
    if missing:
        raise ValueError(f"observation lacks {', '.join(missing)}: {obs!r}")
    # Unknown keys are refused rather than dropped: the model and host runs
    # are compared line by line, and a silently lost field would hide a bug.
    extra = sorted(set(obs) - set(OBS_KEYS) - set(COST_KEYS))
    if extra:
        raise ValueError(f"observation has unknown keys {', '.join(extra)}: {obs!r}")


def to_json_line(obs: dict) -> str:
    """Return one observation as one compact JSON line without a newline.

    Keys come in OBS_KEYS order, ``child_pgtables`` only when present, then
    the COST_KEYS that are present (``--costs``), with
    ``(',', ':')`` separators, so the same observation always gives the same
    bytes and two runs can be compared with diff.  Raises ValueError when a
    required key is missing or an unknown key is present.
    """
    _check_keys(obs)
    ordered = {k: obs[k] for k in OBS_KEYS + COST_KEYS if k in obs}
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
# with --costs: entries examined and tables freed (all levels), TLB flushes, leaked bytes
_COST_COLUMNS = (
    ("examined", "examined", True),
    ("freed", "freed", True),
    ("flushes", "flushes", True),
    ("leaked", "leaked", True),
)
_GAP = "  "


def _cell(obs: dict, key: str) -> str:
    if key not in obs or obs[key] is None:
        return ""
    value = obs[key]
    if isinstance(value, dict):
        value = sum(value.values())
    if key in ("pgtables", "rss", "child_pgtables", "examined", "leaked"):
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
    Observations with cost keys (``--costs``) add the columns examined and
    freed (totals over the levels), flushes and leaked (bytes), and a last
    row with the script's totals.
    """
    columns = _COLUMNS
    costs = any(k in obs for obs in observations for k in COST_KEYS)
    if costs:
        columns = _COLUMNS + _COST_COLUMNS
    rows = [[_cell(obs, key) for _, key, _ in columns] for obs in observations]
    total_row = None
    if costs and observations:
        total = _cost_total(observations)
        total_row = [_cell(total, key) if key in COST_KEYS else "" for _, key, _ in columns]
        total_row[[key for _, key, _ in columns].index("op")] = "total"
    if sources:
        op_col = [key for _, key, _ in columns].index("op")
        for obs, row in zip(observations, rows):
            text = sources.get(obs.get("line"))
            if text:
                row[op_col] = text
    widths = [
        max([len(header)] + [len(row[i]) for row in rows + ([total_row] if total_row else [])])
        for i, (header, _, _) in enumerate(columns)
    ]

    def fmt(cells: list[str]) -> str:
        parts = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, (_, _, right) in zip(cells, widths, columns)
        ]
        return _GAP.join(parts).rstrip()

    # Two columns deeper than the op, so VMA lines never read as rows.
    indent = " " * (widths[0] + len(_GAP) + 2)
    lines: list[str] = []
    if title:
        lines.append(title)
    lines.append(fmt([header for header, _, _ in columns]))
    lines.append(fmt(["-" * w for w in widths]))
    if not observations:
        lines.append("(no observations)")
    for obs, row in zip(observations, rows):
        lines.append(fmt(row))
        lines.extend(indent + text for text in _vma_lines(obs))
    if total_row:
        lines.append(fmt(["-" * w for w in widths]))
        lines.append(fmt(total_row))
    return "\n".join(lines)


def _cost_total(observations: list[dict]) -> dict:
    """The cost keys summed over a script: entries and tables per level, flushes, leaked bytes.

    ``leaked`` is a change per operation, so its sum is what the script
    leaves leaked at its end.
    """
    total: dict = {"examined": {}, "freed": {}, "flushes": 0, "leaked": 0}
    for obs in observations:
        for key in ("examined", "freed"):
            for level, n in obs.get(key, {}).items():
                total[key][level] = total[key].get(level, 0) + n
        total["flushes"] += obs.get("flushes", 0)
        total["leaked"] += obs.get("leaked", 0)
    return total
