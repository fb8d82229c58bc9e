"""The README's examples work as written."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def test_python_example_runs():
    (code,) = _blocks("python")
    exec(compile(code, "README.md", "exec"), {})


def test_ops_example_observations(tmp_path):
    script = re.search(r"```\n(# two vmas.*?)```", README.read_text(), re.S).group(1)
    path = tmp_path / "floor.ops"
    path.write_text(script)
    out = subprocess.run(
        [sys.executable, "-m", "freepgt", "run", str(path), "--format", "jsonl"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    # worked by hand: both vmas share one PTE table (and its PMD and PUD
    # tables): 3 tables once touched; unmapping the upper one frees nothing
    # (the floor, the lower vma's end, lies in the same 2 MiB), unmapping the
    # lower one too frees all three.
    assert [o.split('"pgtables":')[1].split(",")[0] for o in out] == [
        "0", "0", "12288", "12288", "12288", "0"]
    assert out[4] == ('{"line":6,"op":"munmap","ret":"0","vmas":[["0x100000000000",'
                      '"0x100000001000","rw-p"]],"pgtables":12288,"rss":4096}')
