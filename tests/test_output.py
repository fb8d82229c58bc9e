"""Tests for freepgt.ops.output: JSON lines and the terminal table."""

import json

import pytest

from freepgt.ops.output import OBS_KEYS, render_table, to_json_line

MMAP = {
    "line": 3,
    "op": "mmap",
    "ret": "0x100000000000",
    "vmas": [["0x100000000000", "0x100000200000", "rw-p"]],
    "pgtables": 0,
    "rss": 0,
}
TOUCH = {
    "line": 4,
    "op": "touch",
    "ret": "SIGSEGV@0x100000200000",
    "vmas": [
        ["0x100000000000", "0x100000200000", "rw-p"],
        ["0x100000400000", "0x100000401000", "r--s"],
    ],
    "pgtables": 12288,
    "rss": 2097152,
}
FORK = {
    "line": 12,
    "op": "fork",
    "ret": "0",
    "vmas": [],
    "pgtables": 12288,
    "rss": 2097152,
    "child_pgtables": 8192,
}


def test_obs_keys():
    assert OBS_KEYS == ("line", "op", "ret", "vmas", "pgtables", "rss", "child_pgtables")


def test_json_line_exact():
    assert to_json_line(MMAP) == (
        '{"line":3,"op":"mmap","ret":"0x100000000000",'
        '"vmas":[["0x100000000000","0x100000200000","rw-p"]],"pgtables":0,"rss":0}'
    )


def test_json_line_fork_has_child_last():
    assert to_json_line(FORK) == (
        '{"line":12,"op":"fork","ret":"0","vmas":[],'
        '"pgtables":12288,"rss":2097152,"child_pgtables":8192}'
    )


def test_json_line_orders_keys_whatever_the_dict_order():
    shuffled = {
        "child_pgtables": 0, "rss": 4096, "vmas": [("0x1000", "0x2000", "r--p")],
        "pgtables": 4096, "ret": "-ENOMEM", "op": "fork", "line": 1,
    }
    assert to_json_line(shuffled) == (
        '{"line":1,"op":"fork","ret":"-ENOMEM","vmas":[["0x1000","0x2000","r--p"]],'
        '"pgtables":4096,"rss":4096,"child_pgtables":0}'
    )


def test_json_line_round_trips_and_has_no_newline():
    text = to_json_line(TOUCH)
    assert "\n" not in text and " " not in text
    assert json.loads(text) == TOUCH


def test_json_line_refuses_missing_key():
    obs = dict(MMAP)
    del obs["rss"]
    with pytest.raises(ValueError, match="observation lacks rss"):
        to_json_line(obs)


def test_json_line_refuses_unknown_key():
    with pytest.raises(ValueError, match="unknown keys extra"):
        to_json_line(dict(MMAP, extra=1))


TABLE = """\
demo.ops (model)
line  op     ret                     pgtables        rss  child
----  -----  ----------------------  --------  ---------  -----
   3  mmap   0x100000000000                 0          0
        0x100000000000-0x100000200000 rw-p
   4  touch  SIGSEGV@0x100000200000    12,288  2,097,152
        0x100000000000-0x100000200000 rw-p
        0x100000400000-0x100000401000 r--s
  12  fork   0                         12,288  2,097,152  8,192
        (no vmas)"""


def test_render_table_exact():
    assert render_table([MMAP, TOUCH, FORK], title="demo.ops (model)") == TABLE


def test_render_table_rows():
    text = render_table([MMAP, TOUCH, FORK])
    lines = text.split("\n")
    assert lines[0] == "line  op     ret                     pgtables        rss  child"
    assert "   4  touch  SIGSEGV@0x100000200000    12,288  2,097,152" in lines
    assert "  12  fork   0                         12,288  2,097,152  8,192" in lines
    assert "        (no vmas)" in lines
    assert all(line == line.rstrip() for line in lines)


def test_render_table_widens_for_big_numbers():
    obs = {"line": 1, "op": "fork", "ret": "0", "vmas": [],
           "pgtables": 1234567890, "rss": 5, "child_pgtables": 1234567890123}
    assert render_table([obs]) == (
        "line  op    ret       pgtables  rss              child\n"
        "----  ----  ---  -------------  ---  -----------------\n"
        "   1  fork  0    1,234,567,890    5  1,234,567,890,123\n"
        "        (no vmas)"
    )


def test_render_table_empty():
    assert render_table([], title="nothing") == (
        "nothing\n"
        "line  op  ret  pgtables  rss  child\n"
        "----  --  ---  --------  ---  -----\n"
        "(no observations)"
    )
