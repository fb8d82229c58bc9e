"""The host corpus: ops scripts with the real kernel's observations recorded.

Every ``tests/host_rules/NAME.ops`` and ``tests/host_corpus/NAME.ops`` has
``NAME.host.jsonl``: the observations of the machine the model is checked
against (Linux 6.18, x86_64, 4-level tables, protection keys), recorded with

    freepgt host NAME.ops --format jsonl > NAME.host.jsonl

- ``test_model_matches_recording`` runs the ``linux-6.18`` model on every
  script and compares it with the recording; it needs no host.
- ``test_live_host_matches`` runs the script on the live kernel too, and
  wants the recording and the model; it is skipped where the host runner
  cannot be used or the kernel is not 6.18 on x86_64, so another kernel
  never fails for being another kernel.
- The rest check the host module's refusals and the ``host`` and ``diff``
  commands.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from freepgt.cli import main
from freepgt.host import (
    HostError,
    HostUnavailable,
    check_arena,
    check_comparable,
    host_unavailable_reason,
    run_host,
    runner_path,
    time_host,
)
from freepgt.host.runner import _invoke
from freepgt.ops.run import run_ops
from freepgt.ops.script import load_script, parse_script

TESTS = Path(__file__).parent
SCRIPTS = sorted([*TESTS.glob("host_rules/*.ops"), *TESTS.glob("host_corpus/*.ops")])
B = 0x100000000000


def recording(script: Path) -> list[dict]:
    path = script.with_name(script.name[: -len(".ops")] + ".host.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def model(script: Path) -> list[dict]:
    return list(run_ops(load_script(script), era="linux-6.18", arch="x86_64", filename=str(script)))


def first_difference(want: list[dict], got: list[dict]) -> str | None:
    """A short account of the first differing observation, or None if all agree."""
    for w, g in zip(want, got):
        if w != g:
            keys = sorted(k for k in w.keys() | g.keys() if w.get(k) != g.get(k))
            return f"line {w.get('line')} differs in {', '.join(keys)}:\n  want {w}\n  got  {g}"
    if len(want) != len(got):
        return f"{len(want)} observations wanted, {len(got)} got"
    return None


def _live_skip_reason() -> str | None:
    reason = host_unavailable_reason()
    if reason is not None:
        return f"host runner unavailable: {reason}"
    u = os.uname()
    if not (u.release.startswith("6.18") and u.machine == "x86_64"):
        return f"the recordings are of Linux 6.18 x86_64; this kernel is {u.release} {u.machine}"
    return None


@pytest.fixture(scope="module")
def live_host() -> None:
    reason = _live_skip_reason()
    if reason is not None:
        pytest.skip(reason)


# ----------------------------------------------------------------- the corpus

def test_corpus_size_and_recordings():
    assert len(SCRIPTS) >= 100
    for script in SCRIPTS:
        obs = recording(script)
        assert [o["line"] for o in obs] == [op.line for op in load_script(script)], script.name


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_model_matches_recording(script: Path):
    problem = first_difference(recording(script), model(script))
    if problem:
        pytest.fail(f"{script.name}: model vs recorded host: {problem}", pytrace=False)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_live_host_matches(script: Path, live_host):
    live = run_host(load_script(script), str(script))
    problem = first_difference(recording(script), live)
    if problem:
        pytest.fail(f"{script.name}: live host vs recording: {problem}", pytrace=False)
    problem = first_difference(model(script), live)
    if problem:
        pytest.fail(f"{script.name}: model vs live host: {problem}", pytrace=False)


# ----------------------------------------------------------- the arena refusal

@pytest.mark.parametrize("line, why", [
    ("mmap 0 4K rw- private,anon", r"ADDR 0x0 is outside the arena .*the kernel would choose"),
    ("mmap 0xfffff000 4K rw- private,anon,fixed", r"ADDR 0xfffff000 is outside the arena"),
    ("munmap 0x1ffffffff000 8K", r"runs past the end of the arena"),
    ("mprotect 0x1ffffffff000 1 r--", None),  # one page, rounded: fits exactly
    ("madvise 0x200000000000 0 dontneed", r"ADDR 0x200000000000 is outside"),
    ("touch 0xffffffff000 4K r", r"outside the arena"),
    ("touch 0x1fffffffffff 1 w", None),
    ("mremap 0x100000000000 4K 4K maymove,fixed 0x7f0000000000", r"NEWADDR 0x7f0000000000"),
    ("mremap 0x100000000000 4K 4K maymove,dontunmap 0x3000", r"NEWADDR 0x3000"),
    ("mremap 0x1ffffffff000 4K 8K maymove", r"OLD 0x1ffffffff000 \+ 0x2000 runs past"),
    ("mremap 0x100000000000 4K 4K - 0x3000", None),  # NEWADDR ignored without fixed/dontunmap
])
def test_script_outside_the_arena_is_refused(line, why, monkeypatch):
    ops = parse_script(f"# first line\n{line}\n", "x.ops")
    # refused before anything runs: no runner is started (or even built)
    monkeypatch.setattr("freepgt.host.runner._require_host",
                        lambda: pytest.fail("the runner was asked for"))
    if why is None:
        check_arena(ops, "x.ops")
        return
    op = line.split()[0]
    with pytest.raises(HostError, match=rf"^x\.ops:2: {op}: .*{why}") as info:
        run_host(ops, "x.ops")
    assert info.value.line == 2 and info.value.observations == []
    assert info.value.comparable is False
    with pytest.raises(HostError, match=r"^<script>:2: "):
        time_host(ops)


# --------------------------------------------- model-only flags and the size guard

@pytest.mark.parametrize("line, why", [
    ("mmap 0x100000000000 2M rw- private,anon,fixed,hugetlb", "the hugetlb flag is a model extension"),
    ("touch 0x100000000000 0x100001000 w",
     "LEN 0x100001000 is over 4 GiB, the most one touch may fault in on the host"),
    ("touch 0x100000000000 0x100000000 r", None),  # exactly 4 GiB
    ("mmap 0x100000000000 5G rw- private,anon,fixed,noreserve,populate",
     "LEN 0x140000000 is over 4 GiB, the most a populate may fault in on the host"),
    ("mmap 0x100000000000 4G rw- private,anon,fixed,noreserve,populate", None),
    ("mmap 0x100000000000 5G rw- private,anon,fixed,noreserve", None),  # mapped, not faulted in
])
def test_script_the_host_cannot_mirror_is_refused(line, why, monkeypatch):
    ops = parse_script(f"# first line\n{line}\n", "x.ops")
    monkeypatch.setattr("freepgt.host.runner._require_host",
                        lambda: pytest.fail("the runner was asked for"))
    if why is None:
        check_comparable(ops, "x.ops")
        return
    op = line.split()[0]
    message = f"x.ops:2: {op}: {why}: not comparable on the host"
    for call in (lambda: check_comparable(ops, "x.ops"), lambda: run_host(ops, "x.ops")):
        with pytest.raises(HostError) as info:
            call()
        assert str(info.value) == message
        assert (info.value.line, info.value.comparable, info.value.observations) == (2, False, [])
    with pytest.raises(HostError, match=f"^<script>:2: {op}: "):
        time_host(ops)
    check_arena(ops, "x.ops")  # every range lies in the arena


def test_diff_and_host_refuse_a_hugetlb_mapping(tmp_path, capsys, monkeypatch):
    script = tmp_path / "huge.ops"
    script.write_text("mmap 0x100000000000 2M rw- private,anon,fixed,hugetlb\ntouch 0x100000000000 4K w\n")
    monkeypatch.setattr("freepgt.host.runner._require_host", lambda: pytest.fail("the runner was asked for"))
    message = f"{script}:1: mmap: the hugetlb flag is a model extension: not comparable on the host"
    for command in ("diff", "host"):
        assert main([command, str(script)]) == 2
        assert capsys.readouterr().err == f"freepgt: host: {message}\n"


def test_time_host_needs_a_repeat():
    with pytest.raises(ValueError):
        time_host([], repeat=0)


def test_missing_compiler_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if os.uname().sysname != "Linux" or os.uname().machine != "x86_64":
        pytest.skip("the compiler is only looked for on Linux x86_64")
    with pytest.raises(HostUnavailable, match=r"\$CC="):
        runner_path()


def _fake_runner(tmp_path: Path, body: str) -> Path:
    """A stand-in for the compiled runner: a shell script printing what a runner might."""
    path = tmp_path / "fake-runner"
    path.write_text("#!/bin/sh\ncat > /dev/null\n" + body)
    path.chmod(0o755)
    return path


OBS_LINE_1 = '{"line":1,"op":"mmap","ret":"-12","vmas":[],"pgtables":0,"rss":0}'


@pytest.mark.skipif(os.name != "posix", reason="needs /bin/sh")
@pytest.mark.parametrize("body, error, message, comparable", [
    # the runner died: the observations so far are kept
    (f"echo '{OBS_LINE_1}'\nkill -SEGV $$\n", HostError, r"^x\.ops: the host runner was killed by signal 11$",
     True),
    (f"echo '{OBS_LINE_1}'\nexit 0\n", HostError,
     r"^x\.ops: the host runner exited with status 0 without a result", True),
    # the runner's stop at a line it cannot compare, a failure at a line, and
    # its end self-check (line 0), which names the arena but is no refusal
    ((f"echo '{OBS_LINE_1}'\n"
      'echo \'{"status":"error","line":2,"comparable":false,'
      '"message":"the kernel placed the mapping at 0x7f0000000000"}\'\n'),
     HostError, r"^x\.ops:2: touch: the kernel placed the mapping at 0x7f0000000000$", False),
    ((f"echo '{OBS_LINE_1}'\n"
      'echo \'{"status":"error","line":2,"message":"cannot read VmPTE from /proc/self/status"}\'\n'),
     HostError, r"^x\.ops:2: touch: cannot read VmPTE from /proc/self/status$", True),
    ((f"echo '{OBS_LINE_1}'\n"
      'echo \'{"status":"error","line":0,"message":"self-check: the arena is not empty after munmap of all of it"}\'\n'),
     HostError, r"^x\.ops: self-check: the arena is not empty after munmap of all of it$", True),
    ('echo \'{"status":"unavailable","message":"this kernel uses 5-level page tables"}\'\n',
     HostUnavailable, r"^this kernel uses 5-level page tables$", None),
])
def test_runner_results_are_decoded(tmp_path, body, error, message, comparable):
    ops = parse_script(f"mmap {B:#x} 0 rw- private,anon,fixed\ntouch {B:#x} 4K w\n", "x.ops")
    with pytest.raises(error, match=message) as info:
        _invoke(_fake_runner(tmp_path, body), "observe", 1, ops, "x.ops")
    if error is HostError:
        assert info.value.observations == [
            {"line": 1, "op": "mmap", "ret": "-ENOMEM", "vmas": [], "pgtables": 0, "rss": 0}]
        assert info.value.comparable is comparable


# ------------------------------------------------------------- the live runner

def test_runner_is_cached_under_a_source_hash(live_host, tmp_path, monkeypatch):
    first = runner_path()
    assert re.fullmatch(r"runner-[0-9a-f]{16}", first.name) and first.parent.name == "freepgt"
    assert runner_path() == first
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = runner_path()
    assert built == tmp_path / "freepgt" / first.name and os.access(built, os.X_OK)
    assert [p.name for p in (tmp_path / "freepgt").iterdir()] == [first.name]  # no partial files left


def test_kernel_placement_outside_the_arena_stops_the_run(live_host):
    # the hint is taken, so the kernel picks an address far above the arena
    ops = parse_script("mmap 0x100000000000 64K rw- private,anon,fixed\n"
                       "mmap 0x100000000000 64K rw- private,anon\n"
                       "touch 0x100000000000 4K w\n", "x.ops")
    with pytest.raises(HostError, match=r"^x\.ops:2: mmap: the kernel placed the mapping at 0x[0-9a-f]+, "
                                        r"outside the arena") as info:
        run_host(ops, "x.ops")
    assert info.value.line == 2 and info.value.comparable is False
    assert [o["line"] for o in info.value.observations] == [1]


def test_runner_refuses_outside_the_arena_itself(live_host):
    # the C runner's own check, for input that did not come through check_arena
    ops = parse_script("mmap 0x100000000000 4K rw- private,anon,fixed\ntouch 0x7ffe00000000 4K w\n", "x.ops")
    with pytest.raises(HostError, match=r"^x\.ops:2: touch: an address range of this line lies outside") as info:
        _invoke(runner_path(), "observe", 1, ops, "x.ops")
    assert info.value.comparable is False


def test_observations_have_the_models_shape(live_host):
    ops = parse_script(
        "file f 8K\n"
        f"mmap {B:#x} 64K rw- private,anon,fixed\n"
        f"munmap {B + 4096:#x} 0\n"
        f"touch {B:#x} 4K w\n"
        "fork\n"
        f"mmap {B + (1 << 30):#x} 16K r-- shared,fixed f\n"
        f"touch {B + (1 << 30) + 8192:#x} 4K r\n", "x.ops")
    host = run_host(ops, "x.ops")
    assert [list(o) for o in host] == [list(o) for o in run_ops(ops)]
    assert [o["ret"] for o in host] == ["0", hex(B), "-EINVAL", "0", "0", hex(B + (1 << 30)),
                                        f"SIGBUS@{B + (1 << 30) + 8192:#x}"]
    assert host[4]["child_pgtables"] == 3 * 4096


def test_time_host(live_host):
    # the script leaves memory and page cache behind: every repeat starts afresh
    ops = parse_script("file f 64K\n"
                       f"mmap {B:#x} 64K rw- shared,fixed f\n"
                       f"touch {B:#x} 64K w\n"
                       f"mmap {B + (2 << 20):#x} 1M rw- private,anon,fixed\n"
                       f"touch {B + (2 << 20):#x} 1M w\n"
                       "fork\n")
    once = time_host(ops)
    many = time_host(ops, repeat=20)
    assert 0 < once < 1 and 0 < many < 5


# ------------------------------------------------------------------ the CLI

def test_host_command_jsonl_is_the_recording(live_host, capsys):
    script = TESTS / "host_rules" / "fork_private_file.ops"
    assert main(["host", str(script), "--format", "jsonl"]) == 0
    out = capsys.readouterr().out
    assert [json.loads(line) for line in out.splitlines()] == recording(script)


def test_host_command_table(live_host, capsys):
    script = TESTS / "host_rules" / "fork_private_file.ops"
    assert main(["host", str(script)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{script} on the host kernel (Linux ")
    assert "touch 0x100000001000 4K w" in out


def test_diff_all_match(live_host, capsys):
    script = TESTS / "host_rules" / "fork_private_file.ops"
    assert main(["diff", str(script)]) == 0
    assert re.match(rf"{re.escape(str(script))}: all 6 observations match \(model linux-6\.18/x86_64 vs host Linux ",
                    capsys.readouterr().out)


def test_diff_marks_the_first_difference(live_host, capsys):
    # 2.6.12 counts PTE tables only: the read of line 12 gives 1 table, the host 3
    script = TESTS / "host_rules" / "fork_private_file.ops"
    assert main(["diff", str(script), "--era", "linux-2.6.12"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{script}:12: first difference, at operation 3 of 6 (model linux-2.6.12/x86_64")
    assert out[1] == "  touch 0x100000000000 64K r"
    rows = {line[2:].split()[0]: line for line in out[2:] if line[2:].split()}
    assert rows["pgtables"].split() == ["*", "pgtables", "4096", "12288"]
    assert rows["rss"].split() == ["rss", "65536", "65536"]
    assert rows["vmas"].startswith("  vmas")
    assert out[-1] == "(* marks the keys that differ)"


def test_diff_and_host_refuse_a_bad_script(tmp_path, capsys):
    bad = tmp_path / "bad.ops"
    bad.write_text("mmap 0x100000000000 4K rw- private,anon,fixed\nmunmap 0x100000000000\n")
    for command in ("host", "diff"):
        assert main([command, str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"freepgt: {bad}:2: munmap")


def test_diff_refuses_a_script_outside_the_arena(tmp_path, capsys, monkeypatch):
    script = tmp_path / "low.ops"
    script.write_text("mmap 0x10000000 4K rw- private,anon,fixed\n")
    monkeypatch.setattr("freepgt.host.runner._require_host", lambda: pytest.fail("the runner was asked for"))
    assert main(["diff", str(script)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"freepgt: host: {script}:1: mmap: ADDR 0x10000000 is outside the arena")
    assert main(["host", str(script)]) == 2
    assert f"{script}:1: mmap: ADDR 0x10000000" in capsys.readouterr().err


def test_host_unavailable_is_exit_2(tmp_path, capsys, monkeypatch):
    script = TESTS / "host_rules" / "fork_private_file.ops"

    def unavailable():
        raise HostUnavailable("no C compiler (set $CC, or install cc or gcc)")

    monkeypatch.setattr("freepgt.host.runner._require_host", unavailable)
    for command in ("host", "diff"):
        assert main([command, str(script)]) == 2
        assert capsys.readouterr().err == ("freepgt: host runner unavailable: "
                                           "no C compiler (set $CC, or install cc or gcc)\n")
