"""``freepgt compare`` and the lat_proc workloads."""

import csv
import importlib.util
import io
import json
import subprocess
import sys

import pytest

from freepgt import Process
from freepgt.compare import kernel_order
from freepgt.eras import era_names
from freepgt.workloads import BASH, WORKLOADS, build_shell, placement, run_workload


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "freepgt", *args], capture_output=True, text=True, check=False)


def _json(*args):
    r = _cli("compare", *args, "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_kernel_order():
    assert kernel_order(["linux-6.18", "linux-2.6.12", "linux-2.6.12-rc", "linux-2.6.10", "linux-2.6.11"]) == [
        "linux-2.6.10", "linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12", "linux-6.18"]


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_shell_layout_is_realistic(arch):
    p = Process(era="linux-2.6.12", arch=arch)
    build_shell(p, BASH)
    assert p.map_count >= 12
    assert 300 <= p.rss // p.geom.page_size <= 600
    place = placement(p.geom)
    vmas = p.vmas()
    assert vmas[0][0] == place.text and vmas[-1][1] == place.stack_top
    assert place.text == (0x400000 if arch == "x86_64" else 0x08048000)


#: lat_proc-fork per iteration, (entries examined, tables freed, TLB flushes):
#: the numbers of the README's table
FORK = {
    ("x86_64", "linux-2.6.10"): (5185, 12, 4),
    ("x86_64", "linux-2.6.11"): (6149, 14, 4),
    ("x86_64", "linux-2.6.12-rc"): (2864, 14, 4),
    ("x86_64", "linux-2.6.12"): (2864, 14, 4),
    ("x86_64", "linux-6.18"): (2313, 10, 1),
    ("i386", "linux-2.6.10"): (2673, 4, 2),
    ("i386", "linux-2.6.11"): (2673, 4, 2),
    ("i386", "linux-2.6.12-rc"): (1922, 4, 2),
    ("i386", "linux-2.6.12"): (1922, 4, 2),
    ("i386", "linux-6.18"): (1402, 3, 1),
}


def test_json_has_one_row_per_arch_and_era():
    rows = _json("lat_proc-fork", "--arch", "x86_64", "--arch", "i386", "--iterations", "2")
    assert [(r["arch"], r["era"]) for r in rows] == [
        (a, e) for a in ("x86_64", "i386") for e in kernel_order(era_names())]
    for r in rows:
        assert {"workload", "arch", "era", "entries_examined", "tables_freed", "tlb_flushes",
                "leaked_bytes", "seconds_per_iteration", "examined_per_level"} <= set(r)
        assert r["workload"] == "lat_proc-fork" and r["error"] is None
        assert (r["entries_examined"], r["tables_freed"], r["tlb_flushes"]) == FORK[r["arch"], r["era"]]
        assert r["entries_examined"] == sum(r["examined_per_level"].values())
        assert r["leaked_bytes"] == 0 and r["seconds_per_iteration"] > 0


def test_csv_parses_with_the_same_columns():
    r = _cli("compare", "all", "--era", "linux-2.6.12", "--era", "linux-6.18", "--iterations", "1",
             "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == len(WORKLOADS) * 2
    assert {"workload", "arch", "era", "entries_examined", "tables_freed", "tlb_flushes",
            "leaked_bytes", "seconds_per_iteration", "examined_pte", "freed_pte"} <= set(rows[0])
    assert [(r["workload"], r["era"]) for r in rows[:2]] == [
        ("lat_proc-fork", "linux-2.6.12"), ("lat_proc-fork", "linux-6.18")]
    assert [int(r["entries_examined"]) for r in rows[:2]] == [
        FORK["x86_64", "linux-2.6.12"][0], FORK["x86_64", "linux-6.18"][0]]
    assert all(int(r["entries_examined"]) > 0 for r in rows[2:])


def test_costs_are_deterministic():
    a = run_workload("lat_proc-sh", "linux-2.6.12", "x86_64", iterations=2)
    b = run_workload("lat_proc-sh", "linux-2.6.12", "x86_64", iterations=5)
    assert a.costs == b.costs  # every iteration costs the same, run after run
    assert a.costs.bug is None and a.costs.leaked_bytes == 0


def test_iterations_are_one_to_three_exits():
    fork, exec_, sh = (run_workload(w, "linux-6.18", "x86_64", 1).costs for w in WORKLOADS)
    assert fork.tlb_flushes < exec_.tlb_flushes < sh.tlb_flushes
    assert fork.entries_examined < exec_.entries_examined < sh.entries_examined


def test_era_that_cannot_run_an_arch_is_na():
    # an era refusing a geometry (2.6.10 has three-level tables: none has five)
    r = run_workload("lat_proc-fork", "linux-2.6.10", "x86_64-la57", 1)
    assert r.costs is None and "three-level" in r.error
    out = _cli("compare", "lat_proc-fork", "--arch", "x86_64-la57", "--era", "linux-2.6.10",
               "--era", "linux-2.6.12", "--iterations", "1")
    assert out.returncode == 0, out.stderr
    assert "n/a" in out.stdout


def test_table_is_in_kernel_order_with_a_relative_column():
    r = _cli("compare", "lat_proc-exec", "--arch", "i386", "--iterations", "1",
             "--era", "linux-6.18", "--era", "linux-2.6.12")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("lat_proc-exec on i386")
    assert lines[1].split()[:4] == ["era", "geometry", "examined", "pgd"] and "rel" in lines[1]
    assert [ln.split()[0] for ln in lines[3:5]] == ["linux-2.6.12", "linux-6.18"]
    assert "1.00x" in lines[3]
    assert lines[5] == "rel: entries examined relative to linux-2.6.12"


def test_x86_64_2_6_11_reads_more_than_2_6_10_and_2_6_12_least():
    for workload in WORKLOADS:
        rows = _json(workload, "--arch", "x86_64", "--iterations", "1",
                     "--era", "linux-2.6.10", "--era", "linux-2.6.11", "--era", "linux-2.6.12")
        ex = {r["era"]: r["entries_examined"] for r in rows}
        assert ex["linux-2.6.11"] > ex["linux-2.6.10"] > ex["linux-2.6.12"], (workload, ex)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "cmp.png"
    r = _cli("compare", "lat_proc-fork", "--arch", "i386", "--iterations", "1", "--plot", str(out))
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000


@pytest.mark.parametrize("where, why", [
    ("missing/cmp.png", "the directory {tmp}/missing does not exist"),
    (".", "is a directory"),
    ("file.txt/cmp.png", "{tmp}/file.txt is not a directory"),
])
def test_plot_path_is_checked_before_anything_runs(tmp_path, where, why):
    (tmp_path / "file.txt").write_text("")
    path = tmp_path / where
    r = _cli("compare", "lat_proc-fork", "--iterations", "1", "--plot", str(path))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"freepgt: --plot {path}: {why.format(tmp=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # no chart beside it


def test_plot_that_cannot_be_saved_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    from freepgt import cli, compare

    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("--plot needs matplotlib")

    def full_disk(results, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(compare, "plot_rows", full_disk)
    path = tmp_path / "cmp.png"
    args = ["compare", "lat_proc-fork", "--era", "linux-6.18", "--iterations", "1", "--plot", str(path)]
    assert cli.main(args) == 2
    out = capsys.readouterr()
    assert out.out.startswith("lat_proc-fork on x86_64")  # the table came first
    assert out.err == f"freepgt: --plot {path}: No space left on device\n"


def test_bad_iterations_is_a_usage_error():
    r = _cli("compare", "lat_proc-fork", "--iterations", "0")
    assert r.returncode == 2 and "at least 1" in r.stderr


def test_readme_table_is_the_models_output():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    m = re.search(r"This is `freepgt (compare [^`]*)`:\n\n```text\n(.*?)```", readme, re.DOTALL)
    assert m, "the README's lat_proc table"
    r = _cli(*m.group(1).split())
    assert r.returncode == 0, r.stderr

    def without_time(text):
        out = []
        for line in text.strip().splitlines():
            cells = re.split(r"\s{2,}", line.strip())
            if "ms/iter" in cells:
                col = cells.index("ms/iter")
            elif len(cells) > 5 and cells[0].startswith("linux-"):
                cells = cells[:col] + cells[col + 1:]
            out.append(cells)
        return out

    assert without_time(m.group(2)) == without_time(r.stdout)


def test_preempt_changes_latency_not_work():
    # CONFIG_PREEMPT shrinks ZAP_BLOCK_SIZE from 1024 to 8 pages: the same
    # entries are read and the same tables freed, but unmap_vmas offers to
    # drop the lock 128 times as often and finishes the gather at each block
    from freepgt.compare import compare, rows_of

    off, on = rows_of(compare(["lat_proc-fork"], ["x86_64"], ["linux-2.6.12"], 1)
                      + compare(["lat_proc-fork"], ["x86_64"], ["linux-2.6.12"], 1, preempt=True))
    assert on["era"] == "linux-2.6.12 preempt=True"
    assert on["entries_examined"] == off["entries_examined"]
    assert on["tables_freed"] == off["tables_freed"]
    assert on["lock_breaks"] > 100 * off["lock_breaks"] > 0
    assert on["tlb_flushes"] > off["tlb_flushes"]
    # the longest run: a full 1024-page block without preempt; with it, an
    # 8-page block or the free_pgtables walk at the end, whichever is longer
    assert off["longest_run"] == 1024
    assert on["longest_run"] < 100
    # an era without zap blocks is left as it is
    (modern,) = rows_of(compare(["lat_proc-fork"], ["x86_64"], ["linux-6.18"], 1, preempt=True))
    assert modern["era"] == "linux-6.18"
