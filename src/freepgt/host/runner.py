"""Run ops scripts on this machine's kernel through a small C runner.

The runner (``runner.c``, shipped with the package) is compiled on first use
into a per-user cache.  It executes an ops script in a process of its own
and prints, after each operation, the same observation that the model's
``freepgt.ops.run.observe`` gives (docs/ops-format.md), so that the two can
be compared key for key.

Only scripts that stay in the arena are comparable: every address a script
names must lie in ``[0x100000000000, 0x200000000000)``, where the script
owns every page table, and the runner stops as soon as the kernel places a
mapping anywhere else.  Scripts that use a flag only the model knows, or
that would make the host fault in more than 4 GiB at once, are refused
too.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from importlib import resources

from ..errors import errno_name
from ..ops.run import ARENA
from ..ops.script import Op

__all__ = [
    "HostError",
    "HostUnavailable",
    "check_arena",
    "check_comparable",
    "host_unavailable_reason",
    "run_host",
    "runner_path",
    "time_host",
]

_SOURCE = "runner.c"
# -U_FORTIFY_SOURCE: fortified longjmp checks the signal stack with a system
# call of its own.  -z now: every library symbol is bound at start, so the
# first call of a function after the baseline does not run the dynamic
# linker (and perhaps fault in its code and page tables).
_CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-U_FORTIFY_SOURCE", "-Wl,-z,now")

PAGE = 4096
_PROT = {"r": 0x1, "w": 0x2, "x": 0x4}
_MAP = {
    "shared": 0x01,
    "private": 0x02,
    "fixed": 0x10,
    "anon": 0x20,
    "noreserve": 0x4000,
    "populate": 0x8000,
    "fixed_noreplace": 0x100000,
}
_MREMAP = {"maymove": 1, "fixed": 2, "dontunmap": 4}
_MADV = {"dontneed": 4}
#: the most one ``touch`` or ``mmap ... populate`` may fault in on the host:
#: the runner really writes or reads every page, and a larger one could run
#: the machine out of memory
MAX_FAULT_IN = 4 << 30


class HostUnavailable(Exception):
    """The host runner cannot be used here; the message says what is missing."""


class HostError(Exception):
    """A script that cannot be run comparably on the host, or a runner that failed.

    ``filename`` and ``line`` locate the operation when there is one (line
    0 otherwise); ``observations`` holds what the host observed before it
    stopped.  ``comparable`` is False when the script was refused as not
    comparable (a range outside the arena, a flag only the model knows, more
    than the host may fault in, a mapping the kernel placed outside the
    arena), and True when the runner failed (its self-check included): then
    the script itself was fine.
    """

    def __init__(self, message: str, filename: str = "<script>", line: int = 0,
                 observations: list[dict] | None = None, comparable: bool = True) -> None:
        super().__init__(message)
        self.filename = filename
        self.line = line
        self.observations = observations or []
        self.comparable = comparable


# ------------------------------------------------------------------ compiling

def _cache_dir() -> pathlib.Path:
    """The per-user cache directory for the compiled runner."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "freepgt"


def _compiler() -> list[str]:
    """The C compiler command: ``$CC`` (split like a shell would) or cc, then gcc."""
    cc = os.environ.get("CC", "").strip()
    if cc:
        argv = shlex.split(cc)
        if shutil.which(argv[0]):
            return argv
        raise HostUnavailable(f"the C compiler $CC={cc!r} is not found")
    for name in ("cc", "gcc"):
        path = shutil.which(name)
        if path:
            return [path]
    raise HostUnavailable("no C compiler (set $CC, or install cc or gcc)")


def _platform_problem() -> str | None:
    """Why this machine can never run the runner (not Linux, not x86_64), or None."""
    if not sys.platform.startswith("linux"):
        return f"the host runner needs Linux, this is {sys.platform}"
    machine = platform.machine()
    if machine != "x86_64":
        return f"the host runner needs x86_64, this machine is {machine}"
    return None


def _compiled(compiler: list[str], cache: pathlib.Path) -> pathlib.Path:
    """The runner built by compiler in the cache directory (built now if it is not there).

    Not memoised: hashing the source costs microseconds, and a binary removed
    from the cache is then simply built again.
    """
    source = resources.files(__package__).joinpath(_SOURCE).read_bytes()
    digest = hashlib.sha256(source + "\0".join([*compiler, *_CFLAGS]).encode()).hexdigest()[:16]
    target = cache / f"runner-{digest}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HostUnavailable(f"cannot create the cache directory {cache}: {e.strerror}") from None
    with tempfile.TemporaryDirectory(prefix="freepgt-build-") as tmp:
        src = pathlib.Path(tmp) / _SOURCE
        src.write_bytes(source)
        fd, partial = tempfile.mkstemp(prefix=f".runner-{digest}-", dir=cache)
        os.close(fd)
        try:
            cmd = [*compiler, *_CFLAGS, "-o", partial, str(src)]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise HostUnavailable(f"cannot run the C compiler {compiler[0]}: {e}") from None
            if done.returncode != 0:
                messages = done.stderr.strip().splitlines() or ["(no message)"]
                raise HostUnavailable(
                    f"compiling the host runner with {shlex.join(compiler)} failed: "
                    + " / ".join(messages[:3]))
            os.chmod(partial, 0o755)
            # Atomic: a concurrent build of the same source replaces it with
            # an identical file, and no one ever runs a half-written one.
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return target


def runner_path() -> pathlib.Path:
    """The compiled runner, building it on first use.

    The binary lives in ``$XDG_CACHE_HOME/freepgt`` (or ``~/.cache/freepgt``)
    under a name holding a hash of the C source, the compiler and its flags,
    so an edited source is compiled again.  Raises HostUnavailable on a
    machine that is not Linux on x86_64, without a C compiler, or when the
    compilation fails.
    """
    problem = _platform_problem()
    if problem:
        raise HostUnavailable(problem)
    return _compiled(_compiler(), _cache_dir())


@functools.cache
def host_unavailable_reason() -> str | None:
    """None when the host runner can be used here, else the reason (computed once).

    Beyond compiling the runner, this runs it once on an empty script: it
    refuses a kernel with 5-level page tables, an arena that something else
    already uses, and a process whose transparent huge pages cannot be
    turned off.
    """
    try:
        _invoke(runner_path(), "probe", 1, [], "<probe>")
    except HostUnavailable as e:
        return str(e)
    except HostError as e:
        return f"the host runner does not work here: {e}"
    return None


def _require_host() -> pathlib.Path:
    """The runner, or HostUnavailable with the reason it cannot be used here."""
    reason = host_unavailable_reason()
    if reason is not None:
        raise HostUnavailable(reason)
    return runner_path()


# ------------------------------------------------------------- the arena rule

def _in_arena(addr: int, length: int, round_up: bool = True) -> bool:
    """Whether [addr, addr+length) (length rounded up to pages) lies in the arena."""
    span = -(-length // PAGE) * PAGE if round_up else length
    return ARENA[0] <= addr < ARENA[1] and addr + span <= ARENA[1]


def _named_ranges(op: Op) -> list[tuple[str, int, int, bool]]:
    """The address ranges that op names: (what, address, length, rounded to pages)."""
    if op.op in ("mmap", "munmap", "mprotect", "madvise"):
        return [("ADDR", op.addr, op.length, True)]
    if op.op == "touch":
        return [("ADDR", op.addr, op.length, False)]
    if op.op == "mremap":
        ranges = [("OLD", op.addr, op.length, True)]
        if "fixed" in op.flags:
            ranges.append(("NEWADDR", op.new_addr or 0, op.new_length, True))
            return ranges
        # without a fixed target the vma may grow in place
        ranges.append(("OLD", op.addr, op.new_length, True))
        if "dontunmap" in op.flags and op.new_addr is not None:
            ranges.append(("NEWADDR", op.new_addr, op.new_length, True))
        return ranges
    return []


def _outside_arena(op: Op) -> str | None:
    """Why op names a range outside the arena, or None when all of them lie in it."""
    lo, hi = ARENA
    for what, addr, length, round_up in _named_ranges(op):
        if _in_arena(addr, length, round_up):
            continue
        if not lo <= addr < hi:
            why = f"{what} {addr:#x} is outside the arena [{lo:#x}, {hi:#x})"
            if addr == 0 and op.op == "mmap":
                why += ": the kernel would choose the address"
            return why
        return f"{what} {addr:#x} + {length:#x} runs past the end of the arena {hi:#x}"
    return None


def _model_only(op: Op) -> str | None:
    """Why op cannot run on the host as it runs on the model (a model-only flag), or None."""
    if op.op == "mmap":
        for flag in sorted(op.flags):
            if flag not in _MAP:
                return f"the {flag} flag is a model extension"
    return None


def _too_big(op: Op) -> str | None:
    """Why op would fault in more than MAX_FAULT_IN bytes on the host, or None."""
    limit = f"{MAX_FAULT_IN >> 30} GiB"
    if op.op == "touch" and op.length > MAX_FAULT_IN:
        return f"LEN {op.length:#x} is over {limit}, the most one touch may fault in on the host"
    if op.op == "mmap" and "populate" in op.flags and op.length > MAX_FAULT_IN:
        return f"LEN {op.length:#x} is over {limit}, the most a populate may fault in on the host"
    return None


def _refuse(ops: Iterable[Op], filename: str, checks) -> None:
    """Raise HostError (not comparable) for the first op one of checks finds a reason against."""
    for op in ops:
        for check in checks:
            why = check(op)
            if why is not None:
                raise HostError(f"{filename}:{op.line}: {op.op}: {why}: not comparable on the host",
                                filename, op.line, comparable=False)


def check_arena(ops: Iterable[Op], filename: str = "<script>") -> None:
    """Refuse a script that names an address range outside the arena.

    Raises HostError ``FILE:LINE: OP: reason`` (``comparable`` False) for
    the first such line.  The host runner would otherwise map, touch or
    unmap memory that the runner itself uses, or let the kernel choose
    (``mmap`` ADDR 0).
    """
    _refuse(ops, filename, (_outside_arena,))


def check_comparable(ops: Iterable[Op], filename: str = "<script>") -> None:
    """Refuse a script whose host run could not be compared with the model's.

    Beyond :func:`check_arena`: an ``mmap`` with a flag only the model
    knows (``hugetlb``), and a ``touch`` or an ``mmap ... populate`` longer
    than 4 GiB (the host would fault all of it in).  Raises HostError
    ``FILE:LINE: OP: reason: not comparable on the host`` (``comparable``
    False) for the first such line; nothing runs.
    """
    _refuse(ops, filename, (_outside_arena, _model_only, _too_big))


# ------------------------------------------------------------- the runner I/O

def _prot(text: str) -> int:
    """PROT_* bits of a script PROT such as ``rw-``."""
    return sum(_PROT[c] for c in text if c != "-")


def _encode(ops: list[Op], mode: str, repeat: int) -> str:
    """The runner's input for ops (see the protocol at the top of runner.c)."""
    files: dict[str, int] = {}
    lines = [f"freepgt-runner 1 {mode} {repeat} {len(ops)}"]
    for op in ops:
        if op.op == "file":
            files[op.name] = len(files)
            lines.append(f"file {op.line} {files[op.name]} {op.size}")
        elif op.op == "mmap":
            flags = sum(_MAP[f] for f in op.flags)
            index = -1 if "anon" in op.flags else files[op.name]
            lines.append(f"mmap {op.line} {op.addr} {op.length} {_prot(op.prot)} {flags} {index} {op.offset}")
        elif op.op == "munmap":
            lines.append(f"munmap {op.line} {op.addr} {op.length}")
        elif op.op == "mprotect":
            lines.append(f"mprotect {op.line} {op.addr} {op.length} {_prot(op.prot)}")
        elif op.op == "madvise":
            lines.append(f"madvise {op.line} {op.addr} {op.length} {_MADV[op.advice]}")
        elif op.op == "mremap":
            flags = sum(_MREMAP[f] for f in op.flags)
            lines.append(f"mremap {op.line} {op.addr} {op.length} {op.new_length} {flags} {op.new_addr or 0}")
        elif op.op == "touch":
            lines.append(f"touch {op.line} {op.addr} {op.length} {1 if op.access == 'w' else 0}")
        elif op.op == "fork":
            lines.append(f"fork {op.line}")
        else:
            raise ValueError(f"unknown op {op.op!r}")
    return "\n".join(lines) + "\n"


def _observation(raw: dict) -> dict:
    """An observation as the runner printed it, with errno numbers turned into names."""
    ret = raw["ret"]
    if ret.startswith("-"):
        ret = errno_name(int(ret[1:]))
    obs = {"line": raw["line"], "op": raw["op"], "ret": ret, "vmas": raw["vmas"],
           "pgtables": raw["pgtables"], "rss": raw["rss"]}
    if "child_pgtables" in raw:
        obs["child_pgtables"] = raw["child_pgtables"]
    return obs


def _invoke(path: pathlib.Path, mode: str, repeat: int, ops: list[Op], filename: str) -> tuple[list[dict], dict]:
    """Run the runner on ops; its observations and its final status line.

    Raises HostUnavailable or HostError (with the observations so far) when
    the status is not ``ok`` or the runner died without one.
    """
    by_line = {op.line: op.op for op in ops}
    try:
        done = subprocess.run([str(path)], input=_encode(ops, mode, repeat), capture_output=True, text=True,
                              check=False)
    except OSError as e:
        raise HostUnavailable(f"cannot start the host runner {path}: {e.strerror}") from None
    observations: list[dict] = []
    status: dict | None = None
    for text in done.stdout.splitlines():
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            raise HostError(f"{filename}: the host runner printed {text[:200]!r}", filename,
                            observations=observations) from None
        if "status" in raw:
            status = raw
            break
        observations.append(_observation(raw))
    if status is None:
        if done.returncode < 0:
            how = f"was killed by signal {-done.returncode}"
        else:
            how = f"exited with status {done.returncode} without a result"
        detail = done.stderr.strip().splitlines()
        raise HostError(f"{filename}: the host runner {how}" + (f": {detail[-1]}" if detail else ""),
                        filename, observations=observations)
    if status["status"] == "unavailable":
        raise HostUnavailable(status["message"])
    if status["status"] != "ok":
        line = status.get("line", 0)
        where = f"{filename}:{line}: {by_line[line]}" if line in by_line else filename
        raise HostError(f"{where}: {status['message']}", filename, line, observations,
                        comparable=status.get("comparable", True))
    return observations, status


# ------------------------------------------------------------------ the API

def run_host(ops, filename: str = "<script>") -> list[dict]:
    """Run parsed ops on this machine's kernel; one observation per op.

    ``ops`` is the Op list of ``freepgt.ops.script.parse_script`` or
    ``load_script``.  The observations have the model's keys in the model's
    order (line, op, ret, vmas, pgtables, rss, and child_pgtables for fork);
    errnos come as names (``-ENOMEM``).  Raises HostError when the script
    is not comparable (:func:`check_comparable`, before anything runs),
    when the kernel places a mapping outside the arena (both with
    ``comparable`` False), or when the runner fails, and HostUnavailable
    when the runner cannot be used here.
    """
    ops = list(ops)
    check_comparable(ops, filename)
    observations, _ = _invoke(_require_host(), "observe", 1, ops, filename)
    if len(observations) != len(ops):
        raise HostError(f"{filename}: the host runner gave {len(observations)} observations "
                        f"for {len(ops)} operations", filename, observations=observations)
    return observations


def time_host(ops, repeat: int = 1) -> float:
    """Seconds the kernel spends on ops run ``repeat`` times over, observing nothing.

    One runner process runs the whole script ``repeat`` times; between
    repeats, outside the timed part, it unmaps the arena and gives the
    script's files back their fresh state.  Only the operations are timed
    (CLOCK_MONOTONIC around each pass over them): not the parsing, the
    process start or the set-up.  Raises like run_host.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}")
    ops = list(ops)
    check_comparable(ops, "<script>")
    _, status = _invoke(_require_host(), "time", repeat, ops, "<script>")
    return status["time_ns"] / 1e9
