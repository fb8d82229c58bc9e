"""Parse ops scripts (format v1, see docs/ops-format.md) into Op records.

The parser checks the whole script before returning anything, so a runner
never starts on a script that would be refused halfway through.  It checks
syntax only: alignment, the arena bounds and flag combinations that the
kernel itself rejects (``mremap`` with ``fixed`` but not ``maymove``, say)
are left to the run, where they become observations such as ``-EINVAL``.

One mmap flag is a model-only extension, not part of the ops format that
the host runner understands: ``hugetlb`` maps anonymous huge pages
(MAP_HUGETLB; a hugetlbfs mapping in 2.6.12 terms).  Start and length must
be multiples of the architecture's HPAGE_SIZE, or the run answers
``-EINVAL``; on ia64 and ppc64 the range must lie in the hugepage-only area.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["ScriptError", "Op", "parse_number", "parse_script", "load_script"]


class ScriptError(Exception):
    """A script that breaks the ops format; str() is 'FILE:LINE: reason'."""

    def __init__(self, filename: str, line: int, reason: str):
        # All three go to Exception so that the error survives pickling
        # (multiprocessing) and repr() shows what was wrong.
        super().__init__(filename, line, reason)
        self.filename = filename
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Op:
    """One operation line of a script; fields an op does not use keep defaults."""

    line: int
    op: str
    addr: int = 0
    length: int = 0
    new_length: int = 0
    new_addr: int | None = None
    prot: str = ""
    flags: frozenset[str] = frozenset()
    name: str | None = None
    offset: int = 0
    size: int = 0
    advice: str = ""
    access: str = ""


_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_LIMIT = 1 << 64
# re.ASCII keeps \d-like classes from accepting other scripts' digits; the
# classes are spelled out anyway so that '_' (which int() accepts) is refused.
_NUMBER_RE = re.compile(r"(0x[0-9a-fA-F]+|[0-9]+)([KMGT]?)", re.ASCII)
_BAD_SUFFIX_RE = re.compile(r"(?:0x[0-9a-fA-F]+|[0-9]+)([A-Za-z]+)", re.ASCII)
_NUMBER_HELP = "expected decimal or 0x hex with an optional K, M, G or T suffix"


def parse_number(token: str) -> int:
    """Return the value of a script number such as ``4096``, ``0x1000``, ``4K``.

    Decimal or lower-case-``0x`` hex, optionally followed by an upper-case
    binary suffix (K, M, G, T).  The value must fit in 64 bits unsigned.
    Raises ValueError with a message naming the token and what is wrong.
    """
    if token == "":
        raise ValueError("empty number")
    m = _NUMBER_RE.fullmatch(token)
    if m is None:
        if token.startswith("-"):
            raise ValueError(f"negative number {token!r}")
        if token.startswith("0X"):
            raise ValueError(f"bad number {token!r}: hex prefix must be lower-case '0x'")
        if token == "0x":
            raise ValueError(f"bad number {token!r}: no hex digits after '0x'")
        bad = _BAD_SUFFIX_RE.fullmatch(token)
        if bad is not None:
            raise ValueError(
                f"bad number {token!r}: unknown suffix {bad.group(1)!r} (use K, M, G or T)"
            )
        raise ValueError(f"bad number {token!r}: {_NUMBER_HELP}")
    digits, suffix = m.groups()
    value = int(digits, 0) if digits.startswith("0x") else int(digits, 10)
    value *= _SUFFIXES[suffix]
    if value >= _LIMIT:
        raise ValueError(f"number {token!r} does not fit in 64 bits")
    return value


_PROT_RE = re.compile(r"[r-][w-][x-]")
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)

_MMAP_SHARING = frozenset({"private", "shared"})
_MMAP_FLAGS = _MMAP_SHARING | {"anon", "fixed", "fixed_noreplace", "noreserve", "populate"}
#: accepted on top of the format's flags, but not advertised as part of it
_MMAP_MODEL_FLAGS = frozenset({"hugetlb"})
_MREMAP_FLAGS = frozenset({"maymove", "fixed", "dontunmap"})
_ADVICE = frozenset({"dontneed"})
_ACCESS = frozenset({"r", "w"})

# The usage line of each op, shown when the argument count is wrong, and
# the minimum and maximum number of arguments it takes.
_USAGE = {
    "file": ("NAME SIZE", 2, 2),
    "mmap": ("ADDR LEN PROT FLAGS [NAME [OFFSET]]", 4, 6),
    "munmap": ("ADDR LEN", 2, 2),
    "mprotect": ("ADDR LEN PROT", 3, 3),
    "madvise": ("ADDR LEN ADVICE", 3, 3),
    "mremap": ("OLD OLDLEN NEWLEN [FLAGS [NEWADDR]]", 3, 5),
    "touch": ("ADDR LEN r|w", 3, 3),
    "fork": ("", 0, 0),
}


class _Refusal(Exception):
    """A reason to refuse the current line; parse_script adds file and line."""


def _number(op: str, what: str, token: str) -> int:
    try:
        return parse_number(token)
    except ValueError as e:
        raise _Refusal(f"{op}: bad {what}: {e}") from None


def _prot(op: str, token: str) -> str:
    if _PROT_RE.fullmatch(token) is None:
        raise _Refusal(
            f"{op}: bad PROT {token!r}: expected three characters "
            "'r' or '-', 'w' or '-', 'x' or '-' (like 'rw-')"
        )
    return token


def _flag_list(op: str, token: str, known: frozenset[str],
               model_only: frozenset[str] = frozenset()) -> frozenset[str]:
    """Split a comma list of flags, refusing empty, unknown and repeated ones.

    ``model_only`` flags are accepted too but left out of the list a refusal
    shows, which names the format's own flags.
    """
    seen: set[str] = set()
    for flag in token.split(","):
        if flag == "":
            raise _Refusal(f"{op}: empty flag in {token!r}")
        if flag not in known and flag not in model_only:
            choices = ", ".join(sorted(known))
            raise _Refusal(f"{op}: unknown flag {flag!r} (known: {choices})")
        if flag in seen:
            raise _Refusal(f"{op}: flag {flag!r} given twice")
        seen.add(flag)
    return frozenset(seen)


def _parse_file(line: int, args: list[str], files: set[str]) -> Op:
    name, size = args
    if _NAME_RE.fullmatch(name) is None:
        raise _Refusal(f"file: bad NAME {name!r}: expected [A-Za-z0-9_.-]+")
    # '.' and '..' match the pattern but name directories, not files, in
    # the directory where the host runner creates its files.
    if name in (".", ".."):
        raise _Refusal(f"file: bad NAME {name!r}: '.' and '..' are not file names")
    if name in files:
        raise _Refusal(f"file: {name!r} declared twice")
    value = _number("file", "SIZE", size)
    files.add(name)
    return Op(line=line, op="file", name=name, size=value)


def _parse_mmap(line: int, args: list[str], files: set[str]) -> Op:
    addr = _number("mmap", "ADDR", args[0])
    length = _number("mmap", "LEN", args[1])
    prot = _prot("mmap", args[2])
    flags = _flag_list("mmap", args[3], _MMAP_FLAGS, _MMAP_MODEL_FLAGS)
    sharing = flags & _MMAP_SHARING
    if len(sharing) != 1:
        what = "both" if sharing else "neither"
        raise _Refusal(f"mmap: FLAGS need exactly one of 'private', 'shared', got {what}")
    rest = args[4:]
    if "anon" in flags:
        if rest:
            raise _Refusal("mmap: NAME and OFFSET are not allowed with 'anon'")
        return Op(line=line, op="mmap", addr=addr, length=length, prot=prot, flags=flags)
    if not rest:
        raise _Refusal("mmap: NAME is required without 'anon'")
    name = rest[0]
    if name not in files:
        raise _Refusal(f"mmap: file {name!r} is not declared by an earlier 'file' line")
    offset = _number("mmap", "OFFSET", rest[1]) if len(rest) > 1 else 0
    return Op(
        line=line, op="mmap", addr=addr, length=length, prot=prot, flags=flags,
        name=name, offset=offset,
    )


def _parse_munmap(line: int, args: list[str], files: set[str]) -> Op:
    addr = _number("munmap", "ADDR", args[0])
    length = _number("munmap", "LEN", args[1])
    return Op(line=line, op="munmap", addr=addr, length=length)


def _parse_mprotect(line: int, args: list[str], files: set[str]) -> Op:
    addr = _number("mprotect", "ADDR", args[0])
    length = _number("mprotect", "LEN", args[1])
    prot = _prot("mprotect", args[2])
    return Op(line=line, op="mprotect", addr=addr, length=length, prot=prot)


def _parse_madvise(line: int, args: list[str], files: set[str]) -> Op:
    addr = _number("madvise", "ADDR", args[0])
    length = _number("madvise", "LEN", args[1])
    advice = args[2]
    if advice not in _ADVICE:
        raise _Refusal(f"madvise: unknown ADVICE {advice!r} (known: dontneed)")
    return Op(line=line, op="madvise", addr=addr, length=length, advice=advice)


def _parse_mremap(line: int, args: list[str], files: set[str]) -> Op:
    old = _number("mremap", "OLD", args[0])
    old_len = _number("mremap", "OLDLEN", args[1])
    new_len = _number("mremap", "NEWLEN", args[2])
    flags: frozenset[str] = frozenset()
    if len(args) > 3 and args[3] != "-":
        flags = _flag_list("mremap", args[3], _MREMAP_FLAGS)
    # NEWADDR is accepted with any flags: the format makes it ignored, not
    # wrong, when neither 'fixed' nor 'dontunmap' is given.
    new_addr = _number("mremap", "NEWADDR", args[4]) if len(args) > 4 else None
    return Op(
        line=line, op="mremap", addr=old, length=old_len, new_length=new_len,
        flags=flags, new_addr=new_addr,
    )


def _parse_touch(line: int, args: list[str], files: set[str]) -> Op:
    addr = _number("touch", "ADDR", args[0])
    length = _number("touch", "LEN", args[1])
    access = args[2]
    if access not in _ACCESS:
        raise _Refusal(f"touch: bad access {access!r}: expected 'r' or 'w'")
    return Op(line=line, op="touch", addr=addr, length=length, access=access)


def _parse_fork(line: int, args: list[str], files: set[str]) -> Op:
    return Op(line=line, op="fork")


_PARSERS = {
    "file": _parse_file,
    "mmap": _parse_mmap,
    "munmap": _parse_munmap,
    "mprotect": _parse_mprotect,
    "madvise": _parse_madvise,
    "mremap": _parse_mremap,
    "touch": _parse_touch,
    "fork": _parse_fork,
}


def _check_arity(op: str, args: list[str]) -> None:
    usage, low, high = _USAGE[op]
    if low <= len(args) <= high:
        return
    count = f"{len(args)} argument" + ("" if len(args) == 1 else "s")
    if high == 0:
        raise _Refusal(f"{op}: takes no arguments, got {count}")
    raise _Refusal(f"{op}: expected {usage}, got {count}")


def parse_script(text: str, filename: str = "<script>") -> list[Op]:
    """Parse the text of an ops script into its operations, in order.

    Raises ScriptError for the first line that breaks the format; nothing is
    returned unless the whole script is valid.
    """
    ops: list[Op] = []
    files: set[str] = set()
    # Split on '\n' only: str.splitlines() also breaks on form feeds and
    # other separators, and line numbers would then disagree with editors.
    for number, raw in enumerate(text.split("\n"), start=1):
        tokens = raw.split("#", 1)[0].split()
        if not tokens:
            continue
        op, args = tokens[0], tokens[1:]
        try:
            parser = _PARSERS.get(op)
            if parser is None:
                raise _Refusal(f"unknown op {op!r} (known: {', '.join(_PARSERS)})")
            _check_arity(op, args)
            ops.append(parser(number, args, files))
        except _Refusal as e:
            raise ScriptError(filename, number, str(e)) from None
    return ops


def load_script(path: str | os.PathLike[str]) -> list[Op]:
    """Read and parse the ops script at path; errors name the file as str(path).

    A file that is not UTF-8 is refused as a ScriptError on the line of its
    first bad byte; errors opening or reading the file propagate as OSError.
    """
    filename = str(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ScriptError(filename, line, f"not valid UTF-8 (byte {data[e.start]:#04x})") from None
    return parse_script(text, filename)
