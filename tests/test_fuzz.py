"""The random script generator, the comparison, the shrinker and ``freepgt fuzz``.

The differential test at the end runs random scripts on the model and on
this machine's kernel (freepgt.host) and, on a difference, fails with the
shrunk script.  It needs the live host: Linux 6.18 on x86_64 with a usable
runner; elsewhere it is skipped with the reason.  Every other test here
runs the model only.
"""

from __future__ import annotations

import os
import platform
import time
import types

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from freepgt import cli, fuzz
from freepgt.fuzz import (
    ARENA,
    PROFILES,
    Failure,
    check_script,
    compare_observations,
    generate,
    reference_in_scope,
    script_seed,
    shrink,
)
from freepgt.host import HostError, HostUnavailable, check_comparable
from freepgt.ops.run import run_ops
from freepgt.ops.script import parse_script

B, END = ARENA


def text_of(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------- the generator

@pytest.mark.parametrize("profile", PROFILES)
def test_generator_is_deterministic_per_seed(profile):
    for run in range(5):
        seed = script_seed(11, run)
        assert generate(seed, 40, profile) == generate(seed, 40, profile)
    scripts = {tuple(generate(script_seed(11, run), 40, profile)) for run in range(5)}
    assert len(scripts) == 5


@pytest.mark.parametrize("profile", PROFILES)
def test_generated_scripts_parse_and_are_comparable(profile):
    for run in range(40):
        lines = generate(script_seed(5, run), 40, profile)
        assert 1 <= len(lines) <= 40
        ops = parse_script(text_of(lines), f"run{run}")
        check_comparable(ops, f"run{run}")  # the host runner's own test: raises HostError
        if profile == "anon":
            assert reference_in_scope(ops)
        # every address the kernel returns is one the script asked for: in the arena
        for obs in run_ops(ops):
            if obs["ret"].startswith("0x"):
                assert B <= int(obs["ret"], 16) < END, (run, obs)


def test_generator_uses_every_op_and_flag():
    ops = [op for run in range(150) for op in parse_script(text_of(generate(script_seed(2, run))))]
    assert {op.op for op in ops} == {"file", "mmap", "munmap", "mprotect", "madvise", "mremap", "touch", "fork"}
    mmap_flags = set().union(*(op.flags for op in ops if op.op == "mmap"))
    assert mmap_flags == {"private", "shared", "anon", "fixed", "fixed_noreplace", "noreserve", "populate"}
    assert any(op.op == "mmap" and "anon" not in op.flags for op in ops)  # file mappings
    assert any(op.op == "mmap" and not op.flags & {"fixed", "fixed_noreplace"} for op in ops)  # hints
    mremap_flags = {frozenset(op.flags) for op in ops if op.op == "mremap"}
    for want in ({}, {"maymove"}, {"maymove", "fixed"}, {"maymove", "dontunmap"},
                 {"maymove", "fixed", "dontunmap"}):
        assert frozenset(want) in mremap_flags
    assert {op.access for op in ops if op.op == "touch"} == {"r", "w"}
    lengths = {op.length for op in ops if op.op == "mmap"}
    assert {4096, 2 << 20, 1 << 30} <= lengths  # PTE, PMD and PUD-table sizes


# --------------------------------------------------------------- comparing

def test_compare_observations():
    a = [{"line": 1, "op": "mmap", "ret": "0x100000000000", "vmas": [], "pgtables": 0, "rss": 0},
         {"line": 2, "op": "fork", "ret": "0", "vmas": [], "pgtables": 0, "rss": 0, "child_pgtables": 0}]
    assert compare_observations(a, [dict(o) for o in a]) is None
    b = [dict(o) for o in a]
    b[1] = dict(b[1], rss=4096, child_pgtables=4096)
    d = compare_observations(a, b)
    assert (d.index, d.line, d.op, d.keys) == (1, 2, "fork", ("rss", "child_pgtables"))
    d = compare_observations(a, a[:1])
    assert (d.index, d.line, d.keys, d.right) == (1, 2, ("observation",), None)


# --------------------------------------------------------------- shrinking

SCRIPT = """\
file f1 64K
mmap 0x100040000000 1G rw- private,anon,fixed,noreserve
touch 0x100040000000 2M w
mmap 0x100080000000 4K r-- shared,fixed f1 4K
mremap 0x100040000000 1G 2G maymove,fixed 0x100080000000
mprotect 0x100080000000 4K r--
fork
munmap 0x100080000000 2G
""".splitlines()


def fork_after_mremap(lines: list[str]) -> bool:
    ops = [line.split()[0] for line in lines]
    return "mremap" in ops and "fork" in ops[ops.index("mremap"):]


def test_shrink_reduces_a_synthetic_failure_to_its_minimum():
    calls = []

    def fails(lines):
        calls.append(lines)
        return fork_after_mremap(lines)

    assert shrink(SCRIPT, fails) == ["mremap 0x100000000000 4K 4K", "fork"]
    assert all(parse_script(text_of(c)) is not None for c in calls)  # never an unparsable candidate


def test_shrink_keeps_what_the_failure_needs():
    # fails while a 2 MiB-aligned write touch lands in a mapping that is populated
    def fails(lines):
        text = text_of(lines)
        ops = parse_script(text)
        obs = list(run_ops(ops))
        return any(o.op == "touch" and o.access == "w" and o.addr % (2 << 20) == 0 and r["ret"] == "0"
                   for o, r in zip(ops, obs)) and any("populate" in o.flags for o in ops)

    script = ["mmap 0x100000200000 4M rw- private,anon,fixed,populate,noreserve",
              "mmap 0x100040000000 8K r-- private,anon,fixed",
              "touch 0x100000200000 8K r", "touch 0x100000400000 4K w", "fork"]
    assert shrink(script, fails) == ["mmap 0x100000000000 4K rw- private,anon,fixed,populate",
                                     "touch 0x100000000000 4K w"]


def test_shrink_returns_the_script_when_it_does_not_fail():
    assert shrink(["fork", "fork"], lambda lines: False) == ["fork", "fork"]


# --------------------------------------------------------------- check_script and the CLI

def test_check_script_against_the_reference_and_invariants():
    anon = text_of(["mmap 0x100000000000 8K rw- private,anon,fixed", "touch 0x100000000000 8K w", "fork"])
    assert check_script(anon).status == "pass"
    assert check_script(anon).against == "reference"
    files = text_of(["file f 8K", "mmap 0x100000000000 8K r-- shared,fixed f", "touch 0x100000000000 8K r"])
    out = check_script(files)
    assert (out.status, out.against) == ("pass", "invariants")
    assert check_script("bogus\n").status == "invalid"


def test_cli_fuzz_without_host_passes(tmp_path, capsys):
    out = tmp_path / "failures"
    assert cli.main(["fuzz", "--runs", "8", "--seed", "3", "--out", str(out)]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("fuzz: 8 runs (seed 3, profile both")
    assert "8 passed, 0 failed" in summary
    assert "4 of them also compared with the brute-force Reference" in summary
    assert not out.exists()


def test_cli_fuzz_writes_the_shrunk_failure(tmp_path, capsys, monkeypatch):
    # a Reference that disagrees on every fork's rss: each failing run shrinks to one fork
    real = fuzz.run_reference

    def wrong_reference(ops):
        obs = real(ops)
        return obs and [dict(o, rss=o["rss"] + 4096) if o["op"] == "fork" else o for o in obs]

    monkeypatch.setattr(fuzz, "run_reference", wrong_reference)
    out = tmp_path / "failures"
    assert cli.main(["fuzz", "--runs", "3", "--seed", "1", "--profile", "anon", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    files = sorted(os.listdir(out))
    assert files and f"{len(files)} file(s) written to {out}" in printed
    text = (out / files[0]).read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# freepgt fuzz (model only) --seed 1: run ")
    assert lines[-1] == "fork"
    where = next(x for x in lines if x.startswith("# reference: "))
    assert where == f"# reference: model and Reference differ at line {len(lines)} (fork): rss"
    assert parse_script(text)[0].op == "fork"


def fake_host(monkeypatch, run_host) -> None:
    """Make ``freepgt fuzz --host`` use run_host as the live host."""
    fake = types.SimpleNamespace(HostError=HostError, HostUnavailable=HostUnavailable, run_host=run_host,
                                 host_unavailable_reason=lambda: None)
    monkeypatch.setattr(fuzz, "_host_api", lambda: fake)


def test_cli_fuzz_counts_refused_scripts_as_skipped(tmp_path, capsys, monkeypatch):
    def run_host(ops, filename="<script>"):
        raise HostError(f"{filename}:1: mmap: the kernel placed the mapping at 0x7f0000000000, "
                        "outside the arena: not comparable", filename, 1, comparable=False)

    fake_host(monkeypatch, run_host)
    assert cli.main(["fuzz", "--host", "--runs", "2", "--out", str(tmp_path)]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "0 passed, 0 failed, 2 skipped as not comparable" in summary


def test_runner_failure_mentioning_the_arena_is_a_host_error(tmp_path, capsys, monkeypatch):
    # the runner's self-check talks about the arena too, but it is the
    # runner that failed: the script was comparable, the result is unknown
    def run_host(ops, filename="<script>"):
        raise HostError(f"{filename}: self-check: with the arena empty, VmPTE is 8192 bytes, not the "
                        "baseline's 4096: the runner's own page tables changed during the run",
                        filename, observations=[])

    fake_host(monkeypatch, run_host)
    text = text_of([f"mmap {B:#x} 8K rw- private,anon,fixed"])
    out = check_script(text, host=True)
    assert (out.status, out.against) == ("host-error", "host")
    assert out.reason.startswith("<fuzz>: self-check: with the arena empty")
    assert cli.main(["fuzz", "--host", "--runs", "3", "--out", str(tmp_path / "f")]) == 1
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("run 0: host-error: seed0-run0: self-check:")
    assert "0 passed, 0 failed, 0 skipped as not comparable, 3 host errors (counted as failures)" in printed[-1]
    assert not (tmp_path / "f").exists()


def test_cli_fuzz_host_error_alone_fails(tmp_path, capsys, monkeypatch):
    calls = []

    def run_host(ops, filename="<script>"):
        calls.append(filename)
        if len(calls) == 1:
            raise HostUnavailable("the runner could not be started")
        return list(run_ops(ops))  # the model's own observations: a pass

    fake_host(monkeypatch, run_host)
    assert cli.main(["fuzz", "--host", "--runs", "2", "-q", "--out", str(tmp_path)]) == 1
    summary = capsys.readouterr().out.strip()
    assert "1 passed, 0 failed, 0 skipped as not comparable, 1 host error (counted as failures)" in summary


def test_cli_fuzz_invalid_script_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fuzz, "generate", lambda seed, max_ops, profile: ["bogus"])
    assert cli.main(["fuzz", "--runs", "2", "-q", "--out", str(tmp_path)]) == 1
    summary = capsys.readouterr().out.strip()
    assert "0 passed, 0 failed, 2 invalid (counted as failures)" in summary


def test_cli_fuzz_refuses_an_out_that_is_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fuzz, "generate", lambda *a: pytest.fail("a run started"))
    plain = tmp_path / "plain"
    plain.write_text("")
    for out, why in ((plain, "exists and is not a directory"),
                     (plain / "sub", f"{plain} is not a directory")):
        assert cli.main(["fuzz", "--runs", "1", "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"freepgt fuzz: --out {out}: {why}\n"


@pytest.mark.parametrize("option", ["--runs", "--max-ops", "--shrink-tests"])
@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_cli_fuzz_counts_must_be_positive(option, value, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["fuzz", option, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err
    assert ("not a number: 'x'" if value == "x" else "must be at least 1") in err


def test_cli_fuzz_host_unusable(capsys, monkeypatch):
    fake = types.SimpleNamespace(host_unavailable_reason=lambda: "no C compiler")
    monkeypatch.setattr(fuzz, "_host_api", lambda: fake)
    assert cli.main(["fuzz", "--host", "--runs", "1"]) == 2
    assert "no C compiler" in capsys.readouterr().err


# --------------------------------------------------------------- model against the live host

def _host_skip_reason() -> str | None:
    if platform.machine() != "x86_64":
        return f"the host comparison needs x86_64, not {platform.machine()}"
    if not os.uname().release.startswith("6.18"):
        return f"the model's current era is linux-6.18; this kernel is {os.uname().release}"
    from freepgt.host import host_unavailable_reason

    return host_unavailable_reason()


HOST_SKIP = _host_skip_reason()


def _same(target: Failure):
    def fails(lines: list[str]) -> bool:
        out = check_script(text_of(lines), host=True)
        return out.failure is not None and out.failure.signature == target.signature
    return fails


@pytest.mark.skipif(HOST_SKIP is not None, reason=f"no live host: {HOST_SKIP}")
@settings(max_examples=250, derandomize=True, database=None, deadline=None,
          phases=(Phase.explicit, Phase.generate),
          suppress_health_check=(HealthCheck.too_slow, HealthCheck.filter_too_much))
@given(seed=st.integers(0, 2**63 - 1), max_ops=st.sampled_from((8, 20, 40, 80)),
       profile=st.sampled_from(PROFILES))
def test_model_matches_the_host_on_random_scripts(seed, max_ops, profile):
    lines = generate(seed, max_ops, profile)
    out = check_script(text_of(lines), host=True)
    assume(out.status != "skip")  # not comparable: neither a pass nor a failure
    assert out.status in ("pass", "fail"), f"host runner: {out.reason}"
    if out.failure is None:
        return
    origin = [f"generate({seed}, {max_ops}, {profile!r})"]
    if not _same(out.failure)(lines):
        report = fuzz.failure_report(lines, out.failure, origin)
        pytest.fail(f"model and kernel differed once, but not on a second run:\n{report}", pytrace=False)
    minimal = shrink(lines, _same(out.failure), max_tests=600, deadline=time.monotonic() + 60)
    final = check_script(text_of(minimal), host=True).failure or out.failure
    report = fuzz.failure_report(minimal, final, origin)
    pytest.fail(f"model and kernel differ; minimal script:\n{report}", pytrace=False)
