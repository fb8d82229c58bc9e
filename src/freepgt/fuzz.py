"""Random ops scripts for differential testing: generate, compare, shrink.

* :func:`generate` writes a seeded random ops script for the arena
  ``[0x100000000000, 0x200000000000)``.  Every script is *comparable* (see
  docs/ops-format.md): every address it names lies in the arena, ``mmap``
  without ``fixed*`` and ``mremap`` with ``dontunmap`` alone get a hint that
  is free, ``maymove`` alone is only used where the mapping can grow or
  shrink in place, big private maps are ``noreserve``, and files are
  declared just before their first use.  The generator keeps a model
  process alongside to know what is mapped; an op for which the model would
  choose an address itself is dropped.  Sizes and addresses cluster around
  PTE (4 KiB), PMD (2 MiB) and PUD (1 GiB) table boundaries, and per script
  the scale is small (pages around table edges), big (aligned GiB and
  512 GiB ranges, where ``mremap`` moves whole PMD and PUD tables) or mixed.
  Profile ``full`` uses every op and flag of the format; profile ``anon``
  keeps to what the brute-force :class:`~freepgt.checks.Reference` models
  (anonymous memory; no files, ``noreserve``, ``populate`` or ``mremap``).

* :func:`compare_observations` finds the first observation where two runs
  differ and the keys that differ there.

* :func:`check_script` runs one script on the model (with invariant
  checks) and on the live host (:mod:`freepgt.host`) or the Reference.

* :func:`shrink` reduces a failing script to a small one that fails the
  same way: delta debugging over lines, then simpler numbers, flags and
  protections, repeated until nothing more can go.

* ``freepgt fuzz`` (:func:`cmd_fuzz`) ties them together.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .argtypes import positive_int
from .errors import KernelBug, errno_name
from .ops.output import OBS_KEYS
from .ops.run import ARENA, ScriptRunError, apply_op, run_ops
from .ops.script import Op, ScriptError, parse_number, parse_script
from .process import Process
from .vma import VM_ACCOUNT, VM_NORESERVE, VM_SHARED

__all__ = [
    "ARENA", "PROFILES", "Difference", "Failure", "Outcome", "check_script", "cmd_fuzz",
    "compare_observations", "failure_report", "generate", "reference_in_scope", "register",
    "run_reference", "script_seed", "shrink",
]

K4 = 1 << 12
K64 = 1 << 16
M2 = 1 << 21
G1 = 1 << 30
G512 = 1 << 39
T1 = 1 << 40
BASE, END = ARENA

PROFILES = ("full", "anon")

# ---------------------------------------------------------------------------
# Number formatting
# ---------------------------------------------------------------------------


def fmt_addr(value: int) -> str:
    """An address as lowercase ``0x`` hex."""
    return hex(value)


def fmt_size(value: int) -> str:
    """A size with the largest binary suffix that divides it (``4K``, ``2052K``, ``1G``)."""
    for suffix, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if value and value % (1 << shift) == 0:
            return f"{value >> shift}{suffix}"
    return str(value)


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------

#: anchors and deltas (bytes) of the small scale: pages around table edges
_SMALL_ANCHORS = (BASE, BASE, BASE + M2, BASE + 2 * M2, BASE + G1 - M2, BASE + G1, BASE + G1 + M2,
                  BASE + G512, BASE + G512 + M2, END - M2)
_SMALL_DELTAS = tuple(p * K4 for p in (-513, -512, -511, -17, -16, -2, -1, 0, 0, 0, 0, 1, 2, 3,
                                       15, 16, 17, 511, 512, 513))
_SMALL_LENGTHS = tuple(p * K4 for p in (1, 1, 1, 2, 3, 4, 15, 16, 17, 511, 512, 513, 1024, 1025))
#: the big scale: GiB- and 512-GiB-aligned ranges, PMD and PUD moves
_BIG_ANCHORS = (BASE, BASE, BASE + G1, BASE + 2 * G1, BASE + 3 * G1, BASE + G512 - G1, BASE + G512,
                BASE + G512 + G1, BASE + T1, BASE + 2 * T1, END - G1)
_BIG_DELTAS = (0, 0, 0, 0, M2, 2 * M2, -M2, K4, -K4, G1 - M2)
_BIG_LENGTHS = (K4, 2 * K4, M2, 2 * M2, M2 + K4, G1, G1, G1 + M2, 2 * G1, G512, G512 + G1)
_SCALES = {
    "small": (_SMALL_ANCHORS, _SMALL_DELTAS, _SMALL_LENGTHS),
    "big": (_BIG_ANCHORS, _BIG_DELTAS, _BIG_LENGTHS),
    "mixed": (_SMALL_ANCHORS + _BIG_ANCHORS, _SMALL_DELTAS + _BIG_DELTAS, _SMALL_LENGTHS + _BIG_LENGTHS),
}
#: touches stay small enough that a script's writes cost at most a few hundred MiB
_TOUCH_LENGTHS = tuple(p * K4 for p in (1, 1, 1, 2, 3, 16, 17, 511, 512, 513, 1024))
_PROTS = ("rw-", "rw-", "rw-", "r--", "r--", "---", "-w-", "r-x", "--x", "rwx")
_FILE_SIZES = (8 * 1024, K64, M2 + K4, 3 << 20, G1 + K4, 4 * G1)
_FILE_OFFSETS = (0, 0, 0, K4, 16 * K4, M2, G1)
#: maps longer than this are always noreserve: the host's overcommit check
#: (private memory, and shared anonymous memory through shmem) could refuse them
_RESERVE_LIMIT = 2 * G1
#: populate only on maps up to this length
_POPULATE_LIMIT = 8 << 20

_WEIGHTS = {
    "full": (("mmap", 22), ("munmap", 8), ("mprotect", 8), ("madvise", 7), ("mremap", 14),
             ("touch", 34), ("fork", 5)),
    "anon": (("mmap", 24), ("munmap", 9), ("mprotect", 9), ("madvise", 8), ("touch", 42), ("fork", 6)),
}


def script_seed(seed: int, run: int) -> str:
    """The random.Random seed of run ``run`` of ``freepgt fuzz --seed seed``."""
    return f"freepgt-fuzz:{seed}:{run}"


class _Generator:
    def __init__(self, rng: random.Random, max_ops: int, profile: str) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
        self.r = rng
        self.max_ops = max_ops
        self.profile = profile
        self.scale = rng.choice(tuple(_SCALES))
        self.anchors, self.deltas, self.lengths = _SCALES[self.scale]
        if profile == "anon":
            self.lengths = tuple(n for n in self.lengths if n <= _RESERVE_LIMIT)
        self.lines: list[str] = []
        self.file_lines: list[str] = []
        self.files: dict[str, int] = {}
        self.proc = Process()
        self.broken = False
        names, weights = zip(*_WEIGHTS[profile])
        self.op_names: tuple[str, ...] = names
        self.op_weights: tuple[int, ...] = weights

    # --- the model alongside ----------------------------------------------------
    def _add(self, line: str) -> bool:
        """Run ``line`` on the model; keep it unless the model chose an address itself."""
        op = parse_script("\n".join(self.file_lines + [line]))[-1]
        try:
            ret, _ = apply_op(self.proc, op)
        except Exception:  # a model failure: keep the line, it is the end of the script
            self.lines.append(line)
            self.broken = True
            return True
        if ret.startswith("0x") and not (BASE <= int(ret, 16) < END):
            self._replay()
            return False
        self.lines.append(line)
        if op.op == "file":
            self.file_lines.append(line)
        return True

    def _replay(self) -> None:
        self.proc = Process()
        for op in parse_script("\n".join(self.lines)):
            apply_op(self.proc, op)

    def _vmas(self) -> list:
        return self.proc.mm.vmas.overlapping(BASE, END)

    def _free(self, start: int, end: int) -> bool:
        return BASE <= start < end <= END and self.proc.mm.vmas.is_free(start, end)

    # --- addresses and lengths --------------------------------------------------------
    def _points(self) -> list[int]:
        pts: list[int] = []
        for v in self._vmas():
            pts += (v.vm_start, v.vm_end)
            for align in (M2, G1):
                first = -(-v.vm_start // align) * align
                last = v.vm_end // align * align
                if first < v.vm_end:
                    pts.append(first)
                if v.vm_start < last:
                    pts.append(last)
        return pts

    def _addr(self) -> int:
        r = self.r
        pts = self._points()
        base = r.choice(pts) if pts and r.random() < 0.6 else r.choice(self.anchors)
        return min(max(base + r.choice(self.deltas), BASE), END - K4)

    def _length(self, addr: int) -> int:
        return max(min(self.r.choice(self.lengths), END - addr), 0)

    def _inside(self, v) -> int:
        """A page of vma ``v``: its edges, the table boundaries in it, or any page."""
        r = self.r
        size = v.vm_end - v.vm_start
        pts = [v.vm_start, v.vm_end - K4, v.vm_start + r.randrange(size // K4) * K4]
        for align in (M2, G1):
            first = -(-v.vm_start // align) * align
            if first < v.vm_end:
                pts += [first, max(first - K4, v.vm_start)]
        return r.choice(pts)

    def _range(self) -> tuple[int, int]:
        """A range for munmap, mprotect and madvise: near points, or over vmas."""
        r = self.r
        vmas = self._vmas()
        if vmas and r.random() < 0.7:
            i = r.randrange(len(vmas))
            j = min(i + r.choice((0, 0, 0, 0, 1, 2)), len(vmas) - 1)
            a = self._inside(vmas[i])
            b = vmas[j].vm_end if r.random() < 0.4 else self._inside(vmas[j]) + K4
            a, b = min(a, b), max(a, b)
            return a, (b - a) or K4
        a = self._addr()
        return a, self._length(a)

    @staticmethod
    def _fit(addr: int, length: int) -> int:
        """``length`` cut so that [addr, addr + length rounded up to pages) ends in the arena."""
        return max(min(length, (END - addr) & ~(K4 - 1)), 0)

    def _oddity(self, value: int, rate: float = 0.03) -> int:
        """Now and then an unaligned value (the kernel refuses it or rounds it)."""
        return value + self.r.choice((1, 0x10, 0x800)) if self.r.random() < rate else value

    def _hint(self, length: int) -> int | None:
        """A page-aligned address in the arena where ``length`` bytes are free."""
        rounded = -(-length // K4) * K4
        for _ in range(12):
            a = self._addr() & ~(K4 - 1)
            if rounded and self._free(a, a + rounded):
                return a
        return None

    # --- ops -----------------------------------------------------------------------
    def _file(self) -> str:
        r = self.r
        if self.files and (len(self.files) >= 3 or r.random() < 0.6):
            return r.choice(sorted(self.files))
        name = f"f{len(self.files) + 1}"
        size = r.choice(_FILE_SIZES)
        self.files[name] = size
        self._add(f"file {name} {fmt_size(size)}")
        return name

    def _mmap(self) -> None:
        r = self.r
        full = self.profile == "full"
        shared = r.random() < 0.35
        anon = not full or r.random() < 0.7
        prot = r.choice(_PROTS)
        mode = r.choices(("fixed", "fixed_noreplace", "hint"), (5, 2, 3))[0]
        addr = self._addr()
        length = self._length(addr)
        if r.random() < 0.02:
            length = 0
        if mode == "hint":
            hint = self._hint(length)
            if hint is None:
                mode = "fixed"
            else:
                addr = hint + (r.choice((1, 0x10, 0x800)) if r.random() < 0.1 else 0)
        if mode != "hint":
            addr = self._oddity(addr)
        flags = ["shared" if shared else "private"]
        if anon:
            flags.append("anon")
        if mode != "hint":
            flags.append(mode)
            if mode == "fixed_noreplace" and r.random() < 0.1:
                flags.append("fixed")  # the kernel treats both as fixed_noreplace
        if full:
            if r.random() < 0.25 or length > _RESERVE_LIMIT:
                flags.append("noreserve")
            if r.random() < 0.12 and length <= _POPULATE_LIMIT:
                flags.append("populate")
        r.shuffle(flags)
        length = self._fit(addr, length)
        line = f"mmap {fmt_addr(addr)} {fmt_size(length)} {prot} {','.join(flags)}"
        if not anon:
            name = self._file()
            offset = self._oddity(r.choice(_FILE_OFFSETS), 0.02)
            line += f" {name}" + (f" {fmt_size(offset)}" if offset or r.random() < 0.3 else "")
        self._add(line)

    def _munmap(self) -> None:
        a, n = self._range()
        if self.r.random() < 0.02:
            n = 0
        a = self._oddity(a)
        self._add(f"munmap {fmt_addr(a)} {fmt_size(self._fit(a, n))}")

    def _mprotect(self) -> None:
        a, n = self._range()
        prot = self.r.choice(_PROTS)
        if self.profile == "full" and prot[1] == "w":
            # a private vma made writable is charged for; keep that below what
            # the host's overcommit heuristic refuses
            for v in self.proc.mm.vmas.overlapping(a, a + n):
                if (not v.vm_flags & (VM_NORESERVE | VM_SHARED)
                        and v.vm_end - v.vm_start > _RESERVE_LIMIT):
                    prot = prot[0] + "-" + prot[2]
                    break
        a = self._oddity(a)
        self._add(f"mprotect {fmt_addr(a)} {fmt_size(self._fit(a, n))} {prot}")

    def _madvise(self) -> None:
        a, n = self._range()
        a = self._oddity(a)
        self._add(f"madvise {fmt_addr(a)} {fmt_size(self._fit(a, n))} dontneed")

    def _touch(self) -> None:
        r = self.r
        vmas = self._vmas()
        access = r.choice("rw")
        n = r.choice(_TOUCH_LENGTHS)
        if vmas and r.random() < 0.8:
            v = r.choice(vmas)
            a = self._inside(v)
            if r.random() < 0.7:  # mostly an access the vma allows, within it
                access = "w" if "w" in v.perms and r.random() < 0.6 else "r"
                n = min(n, v.vm_end - a)
        else:
            a = self._addr()
        if r.random() < 0.05:
            a += r.choice((1, 0x7FF, 0xFFF))
        n = max(min(n, END - a), 1)
        self._add(f"touch {fmt_addr(a)} {fmt_size(n)} {access}")

    def _mremap(self) -> None:
        r = self.r
        vmas = self._vmas()
        v = None
        if vmas and r.random() < 0.85:
            v = r.choice(vmas)
            start = r.choice((v.vm_start, v.vm_start, self._inside(v)))
            to_end = v.vm_end - start
            old_len = r.choice((to_end, to_end, min(to_end, r.choice(self.lengths)), r.choice(self.lengths)))
        else:
            start = self._addr()
            old_len = r.choice(self.lengths)
        old_len = min(old_len, END - start)
        if r.random() < 0.03:
            old_len = 0
        how = r.choices(("none", "maymove", "fixed", "dontunmap", "fixed_dontunmap", "bad"),
                        (3, 2, 6, 2, 2, 1))[0]
        if how in ("dontunmap", "fixed_dontunmap"):
            new_len = old_len if r.random() < 0.9 else r.choice(self.lengths)
        else:
            new_len = r.choice((old_len, old_len, old_len // 2 // K4 * K4 or K4,
                                old_len + r.choice(self.lengths), r.choice(self.lengths)))
        new_len = max(min(new_len, END - start), 0)
        if how == "maymove":
            grows_in_place = (new_len <= old_len or (
                v is not None and start + old_len == v.vm_end and self._free(v.vm_end, start + new_len)))
            if not grows_in_place:
                how = "fixed"
        new_addr = None
        if how in ("fixed", "fixed_dontunmap"):
            new_addr = self._oddity(self._addr() & ~(K4 - 1), 0.02)
            new_len = max(min(new_len, END - new_addr), 0)
        elif how == "dontunmap":
            new_addr = self._hint(new_len)
            if new_addr is None:
                how = "fixed_dontunmap"
                new_addr = self._addr() & ~(K4 - 1)
                new_len = max(min(new_len, END - new_addr), 0)
        elif how == "bad":
            new_addr = self._addr() & ~(K4 - 1)
            new_len = max(min(new_len, END - new_addr), 0)
        flags = {
            "none": "-",
            "maymove": "maymove",
            "fixed": "maymove,fixed",
            "dontunmap": "maymove,dontunmap",
            "fixed_dontunmap": "maymove,fixed,dontunmap",
            "bad": r.choice(("fixed", "dontunmap", "fixed,dontunmap")),
        }[how]
        if how in ("none", "maymove") and r.random() < 0.2:
            new_addr = self._addr()  # ignored without fixed or dontunmap
        start = self._oddity(start, 0.02)
        old_len = self._fit(start, old_len)
        if "fixed" not in flags:  # the vma may grow in place
            new_len = self._fit(start, new_len)
        if new_addr is not None and ("fixed" in flags or "dontunmap" in flags):
            new_len = self._fit(new_addr, new_len)
        # a vma that is charged for (VM_ACCOUNT): the kernel charges what a
        # mremap adds, all of new_len with dontunmap, and (6.18) also what a
        # fixed move takes away; keep that well below what its overcommit
        # heuristic refuses on a small machine
        at = self.proc.mm.vmas.vma_lookup(start)
        if at is not None and at.vm_flags & VM_ACCOUNT:
            if "dontunmap" in flags:
                new_len = min(new_len, _RESERVE_LIMIT)
                old_len = min(old_len, _RESERVE_LIMIT)
            old_len = min(old_len, new_len + _RESERVE_LIMIT)
            new_len = min(new_len, old_len + _RESERVE_LIMIT)
        line = f"mremap {fmt_addr(start)} {fmt_size(old_len)} {fmt_size(new_len)}"
        if flags != "-" or new_addr is not None or r.random() < 0.5:
            line += f" {flags}"
        if new_addr is not None:
            line += f" {fmt_addr(new_addr)}"
        self._add(line)

    def _fork(self) -> None:
        self._add("fork")

    def run(self) -> list[str]:
        r = self.r
        while len(self.lines) < self.max_ops and not self.broken:
            if not self._vmas() and r.random() < 0.8:
                name = "mmap"
            else:
                name = r.choices(self.op_names, self.op_weights)[0]
            getattr(self, "_" + name)()
        return self.lines[:self.max_ops]


def generate(seed: int | str, max_ops: int = 40, profile: str = "full") -> list[str]:
    """The lines of a random comparable ops script (no comments, no blank lines).

    The same ``seed``, ``max_ops`` and ``profile`` always give the same script.
    ``max_ops`` bounds the number of lines, ``file`` lines included.
    """
    return _Generator(random.Random(seed), max_ops, profile).run()


# ---------------------------------------------------------------------------
# Comparing observations
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """Where two lists of observations first differ (``index`` is 0-based)."""

    index: int
    line: int
    op: str
    keys: tuple[str, ...]
    left: dict | None
    right: dict | None


def compare_observations(left: Sequence[dict], right: Sequence[dict]) -> Difference | None:
    """The first observation where ``left`` and ``right`` differ, or None if they agree.

    ``keys`` lists the differing keys in the contract's order (unknown keys
    last, sorted).  When one list is shorter and the common part agrees, the
    difference is at the first missing observation with the key
    ``observation``.
    """
    for i, (a, b) in enumerate(zip(left, right)):
        if a != b:
            order = {k: n for n, k in enumerate(OBS_KEYS)}
            keys = sorted((k for k in set(a) | set(b) if a.get(k, _MISSING) != b.get(k, _MISSING)),
                          key=lambda k: (order.get(k, len(order)), k))
            return Difference(i, a.get("line", b.get("line", 0)), a.get("op", b.get("op", "?")),
                              tuple(keys), a, b)
    if len(left) != len(right):
        i = min(len(left), len(right))
        a = left[i] if i < len(left) else None
        b = right[i] if i < len(right) else None
        some = a or b or {}
        return Difference(i, some.get("line", 0), some.get("op", "?"), ("observation",), a, b)
    return None


_MISSING = object()

# ---------------------------------------------------------------------------
# The Reference as a third runner
# ---------------------------------------------------------------------------

_REF_MMAP_FLAGS = frozenset({"private", "shared", "anon", "fixed", "fixed_noreplace"})


def reference_in_scope(ops: Iterable[Op]) -> bool:
    """True when every op is one the brute-force Reference models."""
    for op in ops:
        if op.op == "mmap":
            if "anon" not in op.flags or op.flags - _REF_MMAP_FLAGS:
                return False
        elif op.op not in ("munmap", "mprotect", "madvise", "touch", "fork"):
            return False
    return True


def run_reference(ops: Iterable[Op], era: str = "linux-6.18", arch: str = "x86_64") -> list[dict] | None:
    """Observations of :class:`freepgt.checks.Reference` for ``ops``; None if out of its scope."""
    from .checks import Reference

    ops = list(ops)
    if not reference_in_scope(ops):
        return None
    ref = Reference(era, arch)
    out = []
    for op in ops:
        child = None
        if op.op == "mmap":
            mode = ("fixed_noreplace" if "fixed_noreplace" in op.flags
                    else "fixed" if "fixed" in op.flags else "hint")
            addr = op.addr & ~(K4 - 1) if mode == "hint" else op.addr
            if mode == "hint" and (addr == 0 or not ref.is_free(addr, addr + -(-op.length // K4) * K4)):
                return None  # the kernel would choose the address
            res = ref.mmap(addr, op.length, op.prot, "shared" in op.flags, mode)
        elif op.op == "munmap":
            res = ref.munmap(op.addr, op.length)
        elif op.op == "mprotect":
            res = ref.mprotect(op.addr, op.length, op.prot)
        elif op.op == "madvise":
            res = ref.madvise_dontneed(op.addr, op.length)
        elif op.op == "touch":
            res = ref.touch(op.addr, op.length, op.access)
        else:
            child = ref.fork()["pgtables_bytes"]
            res = ("ok", None)
        kind, value = res
        if kind == "errno":
            ret = errno_name(value)
        elif kind == "segv":
            ret = f"SIGSEGV@{value:#x}"
        elif op.op == "mmap":
            ret = hex(value)
        else:
            ret = "0"
        obs = {
            "line": op.line, "op": op.op, "ret": ret,
            "vmas": [[hex(a), hex(b), perms] for a, b, perms in ref.vma_list() if BASE <= a and b <= END],
            "pgtables": ref.pgtables_bytes(), "rss": ref.rss(),
        }
        if child is not None:
            obs["child_pgtables"] = child
        out.append(obs)
    return out


# ---------------------------------------------------------------------------
# Checking one script
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """What went wrong with a script.

    ``kind`` is ``host`` (model and live kernel differ), ``reference`` (model
    and Reference differ), ``invariant`` (a model invariant failed under
    ``check=True``), ``kernel-bug`` (the model hit a BUG) or ``crash`` (the
    model raised anything else).  ``keys`` are the differing observation
    keys, or the error's name.
    """

    kind: str
    line: int
    op: str
    keys: tuple[str, ...]
    model: dict | None = None
    other: dict | None = None
    detail: str = ""

    @property
    def signature(self) -> tuple:
        """What must stay the same while shrinking."""
        return (self.kind, self.op, self.keys)

    def describe(self) -> str:
        what = {"host": "model and host differ", "reference": "model and Reference differ",
                "invariant": "model invariant failed", "kernel-bug": "model hit a kernel BUG",
                "crash": "model crashed"}[self.kind]
        return f"{what} at line {self.line} ({self.op}): {', '.join(self.keys)}"


@dataclass
class Outcome:
    """The result of :func:`check_script`.

    ``status``: ``pass``, ``fail``, ``skip`` (the host refused the script as
    not comparable), ``host-error`` (the host runner failed otherwise) or
    ``invalid`` (the script does not parse).  ``against`` says what the model
    was compared with: ``host``, ``reference`` or ``invariants`` only.
    """

    status: str
    against: str
    failure: Failure | None = None
    reason: str = ""


def _model_observations(ops: list[Op], filename: str) -> tuple[list[dict], Failure | None]:
    got: list[dict] = []
    by_line = {op.line: op for op in ops}
    try:
        for obs in run_ops(ops, check=True, filename=filename):  # keep what came before an error
            got.append(obs)  # noqa: PERF402
    except ScriptRunError as e:
        cause = e.cause
        if isinstance(cause, KernelBug):
            return got, Failure("kernel-bug", e.line, by_line[e.line].op, (cause.check,), detail=str(cause))
        text = str(cause)
        name = text.split(":", 2)[1].strip() if text.startswith("check_mm:") else type(cause).__name__
        return got, Failure("invariant", e.line, by_line[e.line].op, (name,), detail=text)
    except Exception as e:  # an internal error of the model on some line
        current = ops[len(got)] if len(got) < len(ops) else None
        line = current.line if current else 0
        return got, Failure("crash", line, current.op if current else "?", (type(e).__name__,),
                            detail=f"{type(e).__name__}: {e}")
    return got, None


def _host_api():
    from . import host

    return host


def check_script(text: str, *, host: bool = False, reference: bool = True,
                 filename: str = "<fuzz>") -> Outcome:
    """Run ``text`` on the model (invariants checked) and compare it.

    With ``host``, the live kernel runs it too (:func:`freepgt.host.run_host`)
    and the observations must be equal; a script the host refuses as not
    comparable (``HostError`` with ``comparable`` False) is ``skip``, any
    other host failure ``host-error``.  Without ``host``, the model's
    observations are compared with the brute-force Reference when
    ``reference`` is set and the script lies within its scope; otherwise
    only the invariants are checked.
    """
    try:
        ops = parse_script(text, filename)
    except ScriptError as e:
        return Outcome("invalid", "none", reason=str(e))
    other: list[dict] | None = None
    against = "invariants"
    if host:
        api = _host_api()
        against = "host"
        try:
            other = api.run_host(ops, filename=filename)
        except api.HostError as e:
            if not e.comparable:
                return Outcome("skip", against, reason=str(e))
            return Outcome("host-error", against, reason=str(e))
        except Exception as e:  # HostUnavailable or a runner that broke
            return Outcome("host-error", against, reason=f"{type(e).__name__}: {e}")
    elif reference:
        other = run_reference(ops)
        if other is not None:
            against = "reference"
    model, error = _model_observations(ops, filename)
    if other is not None:
        diff = compare_observations(model, other[:len(model)] if error else other)
        if diff is not None:
            return Outcome("fail", against, Failure(against, diff.line, diff.op, diff.keys,
                                                    diff.left, diff.right))
    if error is not None:
        return Outcome("fail", against, error)
    return Outcome("pass", against)


# ---------------------------------------------------------------------------
# Shrinking
# ---------------------------------------------------------------------------

#: per op, the kind of each argument (index into the tokens after the op name)
_ARG_KINDS = {
    "file": ("name", "size"),
    "mmap": ("addr", "len", "prot", "mflags", "name", "off"),
    "munmap": ("addr", "len"),
    "mprotect": ("addr", "len", "prot"),
    "madvise": ("addr", "len", "word"),
    "mremap": ("addr", "len", "len", "rflags", "addr"),
    "touch": ("addr", "len", "word"),
    "fork": (),
}
_ALIGNS = (G512, G1, M2, K64, K4)


def _ordered(values: Iterable[int]) -> list[int]:
    seen: list[int] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _minimize(kind: str, value: int, works: Callable[[int], bool]) -> int:
    """The smallest value found for which ``works`` holds; ``value`` itself works.

    Addresses in the arena count from its base, other numbers from 0, and a
    length or size never goes below one page.  First the simplest value and
    ``value`` rounded down to 512 GiB, 1 GiB, 2 MiB, 64 KiB and 4 KiB, then a
    binary search in pages between the largest value known not to work and
    the smallest known to work.
    """
    floor = BASE if kind == "addr" and value >= BASE else 0
    x = value - floor
    least = K4 if kind in ("len", "size") else 0
    if x <= least:
        return value
    lo = least  # the largest value known (or taken) not to work
    for c in _ordered([least] + [x & ~(a - 1) for a in _ALIGNS]):  # ascending
        if not least <= c < x:
            continue
        if works(floor + c):
            x = c
            break
        lo = c
    while x - lo > K4:
        mid = ((lo + x) // 2) & ~(K4 - 1)
        if mid <= lo or mid >= x:
            break
        if works(floor + mid):
            x = mid
        else:
            lo = mid
    return floor + x


def _fmt_number(kind: str, value: int) -> str:
    return fmt_addr(value) if kind == "addr" else fmt_size(value)


def _token_candidates(op: str, tokens: list[str]) -> list[list[str]]:
    """Simpler versions of one line that keep its op: fewer args, flags, plainer prot."""
    out: list[list[str]] = []
    kinds = _ARG_KINDS.get(op, ())
    args = tokens[1:]
    if op == "mremap":
        if len(args) == 5:
            out.append(tokens[:5])
        if len(args) == 4 and args[3] == "-":
            out.append(tokens[:4])
    if op == "mmap" and len(args) == 6:
        out.append(tokens[:6])
    for i, kind in enumerate(kinds[:len(args)]):
        tok = args[i]
        if kind == "prot" and tok != "rw-":
            out.append(tokens[:i + 1] + ["rw-"] + tokens[i + 2:])
        elif kind == "rflags" and tok != "-":
            flags = tok.split(",")
            out.append(tokens[:i + 1] + ["-"] + tokens[i + 2:])
            if len(flags) > 1:
                for f in flags:
                    rest = ",".join(x for x in flags if x != f)
                    out.append(tokens[:i + 1] + [rest] + tokens[i + 2:])
        elif kind == "mflags":
            flags = tok.split(",")
            if "anon" not in flags:
                out.append(tokens[:i + 1] + [",".join(flags + ["anon"])])  # no NAME/OFFSET
            for f in flags:
                if f in ("noreserve", "populate", "fixed_noreplace"):
                    rest = [x for x in flags if x != f]
                    if f == "fixed_noreplace":
                        rest.append("fixed")
                    out.append(tokens[:i + 1] + [",".join(rest)] + tokens[i + 2:])
            if "shared" in flags:
                out.append(tokens[:i + 1] + [",".join("private" if x == "shared" else x for x in flags)]
                           + tokens[i + 2:])
    return out


def shrink(lines: Sequence[str], fails: Callable[[list[str]], bool], *, max_tests: int = 3000,
           deadline: float | None = None) -> list[str]:
    """A smaller script for which ``fails`` still holds.

    ``fails`` gets candidate lines (joined with newlines they are a script)
    and says whether the candidate still fails the same way; it must accept
    ``lines`` itself.  Candidates that do not parse never reach it.  The
    result is 1-minimal in lines (removing any single line makes it pass)
    and no number, flag or protection in it can be made simpler by the
    steps below, unless ``max_tests`` candidates were tried or the
    ``time.monotonic()`` ``deadline`` passed first:

    1. delta debugging (ddmin) over the lines;
    2. per line: drop optional arguments, plainer flags and ``rw-``;
    3. per number (address, length, size, offset): a smaller, rounder value,
       for every occurrence of that value at once and then one at a time,
       and shifting every arena address down together;
    and again from 1 until a round changes nothing.
    """
    cache: dict[tuple[str, ...], bool] = {}
    budget = [max_tests]

    def test(cand: list[str]) -> bool:
        key = tuple(cand)
        if key in cache:
            return cache[key]
        if budget[0] <= 0 or (deadline is not None and time.monotonic() > deadline):
            return False
        try:
            parse_script("\n".join(cand))
        except ScriptError:
            cache[key] = False
            return False
        budget[0] -= 1
        cache[key] = result = bool(fails(list(cand)))
        return result

    current = [" ".join(line.split("#", 1)[0].split()) for line in lines]
    current = [line for line in current if line]
    if not test(current):
        return current
    while True:
        before = list(current)
        current = _ddmin(current, test)
        current = _simplify_lines(current, test)
        current = _simplify_numbers(current, test)
        if current == before or budget[0] <= 0:
            return current


def _ddmin(lines: list[str], test: Callable[[list[str]], bool]) -> list[str]:
    n = 2
    while len(lines) >= 2:
        chunk = -(-len(lines) // n)
        parts = [lines[i:i + chunk] for i in range(0, len(lines), chunk)]
        reduced = False
        for i in range(len(parts)):  # try one part alone
            if len(parts) > 1 and test(parts[i]):
                lines, n, reduced = parts[i], 2, True
                break
        if not reduced:
            for i in range(len(parts)):  # try without one part
                rest = [x for j, p in enumerate(parts) if j != i for x in p]
                if test(rest):
                    lines, n, reduced = rest, max(n - 1, 2), True
                    break
        if not reduced:
            if n >= len(lines):
                break
            n = min(n * 2, len(lines))
    if len(lines) == 1 and test([]):
        return []
    return lines


def _simplify_lines(lines: list[str], test: Callable[[list[str]], bool]) -> list[str]:
    changed = True
    while changed:
        changed = False
        for i, line in enumerate(lines):
            tokens = line.split()
            for cand in _token_candidates(tokens[0], tokens):
                trial = lines[:i] + [" ".join(cand)] + lines[i + 1:]
                if test(trial):
                    lines, changed = trial, True
                    break
            if changed:
                break
    return lines


def _numbers(lines: list[str]) -> list[tuple[int, int, str, int]]:
    """(line index, token index, kind, value) of every number in the script."""
    out = []
    for i, line in enumerate(lines):
        tokens = line.split()
        for j, kind in enumerate(_ARG_KINDS.get(tokens[0], ())[:len(tokens) - 1], start=1):
            if kind in ("addr", "len", "size", "off"):
                try:
                    out.append((i, j, kind, parse_number(tokens[j])))
                except ValueError:
                    pass
    return out


def _substitute(lines: list[str], where: Iterable[tuple[int, int]], kind: str, value: int) -> list[str]:
    rows = [line.split() for line in lines]
    for i, j in where:
        rows[i][j] = _fmt_number(kind, value)
    return [" ".join(r) for r in rows]


def _shift_addresses(lines: list[str], test: Callable[[list[str]], bool]) -> list[str]:
    """Move every arena address down by the same amount: the layout stays, its numbers shrink."""
    spots = [(i, j, v) for i, j, k, v in _numbers(lines) if k == "addr" and v >= BASE]
    if not spots:
        return lines
    low = min(v for _, _, v in spots) - BASE
    for d in _ordered([low] + [low & ~(a - 1) for a in _ALIGNS]):
        if d <= 0:
            continue
        rows = [line.split() for line in lines]
        for i, j, v in spots:
            rows[i][j] = fmt_addr(v - d)
        trial = [" ".join(r) for r in rows]
        if test(trial):
            return trial
    return lines


def _simplify_numbers(lines: list[str], test: Callable[[list[str]], bool]) -> list[str]:
    lines = _shift_addresses(lines, test)
    pos = 0
    while pos < len(nums := _numbers(lines)):
        i, j, kind, value = nums[pos]
        # every occurrence of the value at once (an mmap and the touch of its
        # start), then this one alone
        same = [(a, b) for a, b, k, v in nums if v == value and (k == kind or {k, kind} <= {"len", "size"})]
        for where in ([same, [(i, j)]] if len(same) > 1 else [same]):
            def works(v: int, lines: list[str] = lines, where: list = where, kind: str = kind) -> bool:
                return test(_substitute(lines, where, kind, v))
            best = _minimize(kind, value, works)
            if best != value:
                lines = _substitute(lines, where, kind, best)
                break
        pos += 1
    return lines


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------


def _short(value, limit: int = 300) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def failure_report(lines: Sequence[str], failure: Failure, header: Sequence[str] = ()) -> str:
    """The text of a failing script: ``header`` and the failure as comments, then the lines.

    The line numbers in the comments are those of the returned text.
    """
    top = [f"# {h}" for h in header]
    body: list[str] = []
    against = {"host": "host", "reference": "Reference"}.get(failure.kind)
    if against and failure.model is not None and failure.other is not None:
        for key in failure.keys:
            body.append(f"#   model {key}: {_short(failure.model.get(key))}")
            body.append(f"#   {against:<5} {key}: {_short(failure.other.get(key))}")
    elif failure.detail:
        body.append(f"#   {_short(failure.detail)}")
    # the failure's own line number counts from the first script line
    offset = len(top) + 1 + len(body)
    position = failure.line  # 1-based in the bare script
    first = f"# {failure.kind}: " + Failure(failure.kind, position + offset, failure.op, failure.keys).describe()
    return "\n".join(top + [first] + body + list(lines)) + "\n"


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


@dataclass
class _Tally:
    runs: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    unconfirmed: int = 0
    host_errors: int = 0
    invalid: int = 0
    against: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)



def _out_problem(path: str) -> str | None:
    """Why failing scripts could not be written to the directory path, or None."""
    if os.path.isdir(path):
        return None if os.access(path, os.W_OK | os.X_OK) else "the directory is not writable"
    if os.path.exists(path):
        return "exists and is not a directory"
    # made on the first failure: its nearest existing ancestor must take it
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create it: {parent} is not writable"
    return None


def register(sub) -> None:
    """Add the ``fuzz`` subcommand to the ``freepgt`` argument parser's subparsers."""
    p = sub.add_parser(
        "fuzz", help="random ops scripts: model vs live host (--host), or model invariants + Reference",
        description=(
            "Generate seeded random comparable ops scripts and check the model on them. With --host, "
            "each script also runs on this machine's kernel and the observations must match. Without "
            "--host, the model runs with its invariant checks, and scripts within the brute-force "
            "Reference's scope (profile anon) are compared with it. Each failing script is shrunk and "
            "written to --out. Exit status 0: no failures; 1: at least one failure, host error or "
            "invalid script; 2: bad arguments or host not usable."))
    p.add_argument("--host", action="store_true", help="compare with the live kernel (freepgt.host)")
    p.add_argument("--runs", type=positive_int, default=100, help="number of random scripts (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole session (default 0)")
    p.add_argument("--out", default="fuzz-failures",
                   help="directory for minimal failing scripts (default ./fuzz-failures); "
                        "created on the first failure")
    p.add_argument("--max-ops", type=positive_int, default=40, help="lines per script at most (default 40)")
    p.add_argument("--profile", choices=("full", "anon", "both"), default=None,
                   help="full: every op and flag; anon: what the Reference models; both: alternate "
                        "per run (default: full with --host, both without)")
    p.add_argument("--no-shrink", action="store_true", help="write failing scripts as generated")
    p.add_argument("--shrink-tests", type=positive_int, default=2000,
                   help="at most this many candidate runs while shrinking one script (default 2000)")
    p.add_argument("-q", "--quiet", action="store_true", help="print the summary only")
    p.set_defaults(func=cmd_fuzz)


def _profile_for(choice: str, run: int) -> str:
    if choice == "both":
        return PROFILES[run % 2]
    return choice


def cmd_fuzz(args: argparse.Namespace) -> int:
    problem = _out_problem(args.out)
    if problem is not None:
        print(f"freepgt fuzz: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    profile_choice = args.profile or ("full" if args.host else "both")
    if args.host:
        try:
            api = _host_api()
            reason = api.host_unavailable_reason()
        except ImportError as e:
            reason = f"freepgt.host cannot be imported: {e}"
        if reason is not None:
            print(f"freepgt fuzz: the host runner is not usable: {reason}", file=sys.stderr)
            return 2
    t = _Tally()
    started = time.monotonic()
    for run in range(args.runs):
        profile = _profile_for(profile_choice, run)
        lines = generate(script_seed(args.seed, run), args.max_ops, profile)
        text = "\n".join(lines) + "\n"
        outcome = check_script(text, host=args.host, filename=f"seed{args.seed}-run{run}")
        t.runs += 1
        t.against[outcome.against] = t.against.get(outcome.against, 0) + 1
        if outcome.status == "pass":
            t.passed += 1
            continue
        if outcome.status == "skip":
            t.skipped += 1
            if not args.quiet:
                print(f"run {run}: skipped, not comparable: {outcome.reason}")
            continue
        if outcome.status in ("host-error", "invalid"):
            if outcome.status == "invalid":
                t.invalid += 1
            else:
                t.host_errors += 1
            if not args.quiet:
                print(f"run {run}: {outcome.status}: {outcome.reason}")
            continue
        t.failed += 1
        failure = outcome.failure
        assert failure is not None
        minimal, shrunk = lines, False
        if args.host:  # the model is deterministic; make sure the host is too
            again = check_script(text, host=True, filename=f"seed{args.seed}-run{run}")
            if again.failure is None or again.failure.signature != failure.signature:
                t.unconfirmed += 1
                path = _write_failure(args, run, profile, len(lines), lines, failure, False,
                                      note="did not fail the same way on a second host run")
                t.files.append(path)
                if not args.quiet:
                    print(f"run {run}: {failure.describe()}, but not on a second run -> {path}")
                continue
        if not args.no_shrink:
            candidate = shrink(lines, _same_failure(failure, args.host), max_tests=args.shrink_tests)
            final = check_script("\n".join(candidate) + "\n", host=args.host)
            if final.failure is not None and final.failure.signature == failure.signature:
                minimal, failure, shrunk = candidate, final.failure, True
        path = _write_failure(args, run, profile, len(lines), minimal, failure, shrunk)
        t.files.append(path)
        if not args.quiet:
            print(f"run {run}: {failure.describe()} -> {path} ({len(minimal)} lines)")
    elapsed = time.monotonic() - started
    print(_summary(args, t, profile_choice, elapsed))
    return 1 if t.failed or t.host_errors or t.invalid else 0


def _same_failure(target: Failure, host: bool) -> Callable[[list[str]], bool]:
    def fails(lines: list[str]) -> bool:
        outcome = check_script("\n".join(lines) + "\n", host=host)
        return outcome.failure is not None and outcome.failure.signature == target.signature
    return fails


def _write_failure(args: argparse.Namespace, run: int, profile: str, generated: int,
                   lines: list[str], failure: Failure, shrunk: bool, note: str = "") -> str:
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"seed{args.seed}-run{run}.ops")
    mode = "--host" if args.host else "(model only)"
    header = [
        f"freepgt fuzz {mode} --seed {args.seed}: run {run}, profile {profile}, max-ops {args.max_ops}",
        (f"generated {generated} lines, shrunk to {len(lines)}" if shrunk
         else f"{generated} lines as generated (not shrunk)") + (f"; {note}" if note else ""),
        "again: " + ("freepgt diff FILE" if args.host else "freepgt run --check --format jsonl FILE"),
    ]
    with open(path, "w") as f:
        f.write(failure_report(lines, failure, header))
    return path


def _summary(args: argparse.Namespace, t: _Tally, profile: str, elapsed: float) -> str:
    if args.host:
        what = "model vs live host"
    else:
        ref = t.against.get("reference", 0)
        what = (f"model with invariant checks; {ref} of them also compared with the brute-force "
                f"Reference, {t.runs - ref} checked with invariants only")
    failed = f"{t.failed} failed"
    if t.unconfirmed:
        failed += f" ({t.unconfirmed} of them not again on a second run)"
    parts = [f"{t.passed} passed", failed]
    if args.host or t.skipped:
        parts.append(f"{t.skipped} skipped as not comparable")
    if t.host_errors:
        parts.append(f"{t.host_errors} host error{'s' if t.host_errors != 1 else ''} (counted as failures)")
    if t.invalid:
        parts.append(f"{t.invalid} invalid (counted as failures)")
    files = f"{len(t.files)} file(s) written to {args.out}" if t.files else "no files written"
    return (f"fuzz: {t.runs} runs (seed {args.seed}, profile {profile}, max-ops {args.max_ops}; {what}): "
            f"{', '.join(parts)}; {files}; {elapsed:.1f} s")
