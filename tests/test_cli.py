"""The command line: exit statuses, formats and refusals."""

import json
import subprocess
import sys

import pytest

from freepgt.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "freepgt", *args], capture_output=True, text=True)


def test_demo_prints_a_table():
    r = run("demo")
    assert r.returncode == 0
    assert r.stdout.splitlines()[1].split() == ["line", "op", "ret", "pgtables", "rss", "child"]
    assert "0x100000000000-0x100000001000 rw-p" in r.stdout
    # the op column shows the operation as written in the script
    row = [line for line in r.stdout.splitlines() if line.lstrip().startswith("14 ")][0]
    assert row.split() == ["14", "munmap", "0x100000002000", "4K", "0", "12,288", "8,192"]


def test_demo_jsonl_is_only_json(tmp_path):
    r = run("demo", "--format", "jsonl")
    lines = r.stdout.splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["line"] for o in objs][:3] == [6, 7, 8]
    # the fork line of the demo: the written 2 GiB vma's tables are copied
    fork = [o for o in objs if o["op"] == "fork"][0]
    assert fork["child_pgtables"] == fork["pgtables"] == 3 * 4096


def test_bad_script_refused_before_running(tmp_path):
    p = tmp_path / "bad.ops"
    p.write_text("mmap 0x100000000000 4K rw- private,anon,fixed\nmunmap 0x100000000000\n")
    r = run("run", str(p))
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith(f"freepgt: {p}:2: munmap")


def test_missing_script_file(tmp_path):
    r = run("run", str(tmp_path / "nope.ops"))
    assert r.returncode == 2 and "No such file" in r.stderr


def test_era_and_arch_options(tmp_path):
    p = tmp_path / "i386.ops"
    # i386: one 4 MiB PTE table holds both pages; 2.6.12 VmPTE counts PTE tables only
    p.write_text("mmap 0x10000000 8K rw- private,anon,fixed\ntouch 0x10000000 8K w\n")
    r = run("run", str(p), "--era", "linux-2.6.12", "--arch", "i386", "--format", "jsonl", "--check")
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout.splitlines()[-1])
    assert last == {"line": 2, "op": "touch", "ret": "0", "vmas": [["0x10000000", "0x10002000", "rw-p"]],
                    "pgtables": 4096, "rss": 8192}


def test_unknown_era_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "x.ops", "--era", "linux-9.9"])
    assert e.value.code == 2


def test_arch_and_eras_listings():
    r = run("arch")
    assert r.returncode == 0 and "i386-pae" in r.stdout and "preallocated" in r.stdout
    r = run("eras")
    assert "linux-2.6.12" in r.stdout and "linux-6.18 (default)" in r.stdout


def test_bad_era_arch_or_word_is_refused_before_anything_runs(tmp_path, capsys):
    from freepgt.cli import main

    script = tmp_path / "w.ops"
    script.write_text("mmap 0x10000000 4K rw- private,anon,fixed\n"
                      "munmap 0x100000000000 4K\n")
    # line 2's address needs more than i386's 32 bits: nothing runs
    assert main(["run", str(script), "--arch", "i386"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert f"{script}:2: munmap: addr 0x100000000000 does not fit in a 32-bit word (i386)" in out.err
    # 2.6.10's generic code has three levels
    assert main(["run", str(script), "--era", "linux-2.6.10", "--arch", "x86_64-la57"]) == 2
    assert "linux-2.6.10 has three-level page tables; x86_64-la57 needs 5" in capsys.readouterr().err
    # the built-in demo lives in the 64-bit arena
    assert main(["demo", "--arch", "i386"]) == 2
    assert "above TASK_SIZE 0xc0000000 of i386" in capsys.readouterr().err
