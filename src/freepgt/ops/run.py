"""Run an ops script on the model and produce one observation per operation."""

from __future__ import annotations

from typing import Iterable, Iterator

from ..errors import KernelBug, Signal, errno_name
from ..pagetable import RSS_STATES
from ..process import Process
from .script import Op, ScriptError

#: the address range every comparable script works in (docs/ops-format.md)
ARENA = (0x100000000000, 0x200000000000)


class ScriptRunError(Exception):
    """The model stopped on a line: a kernel BUG (never corrected silently)."""

    def __init__(self, filename: str, line: int, op: str, cause: Exception) -> None:
        super().__init__(f"{filename}:{line}: {op}: {cause}")
        self.filename = filename
        self.line = line
        self.cause = cause


def arena_for(process: Process) -> tuple[int, int]:
    """The arena on geometries whose user space holds it; all of user space elsewhere."""
    if process.geom.task_size >= ARENA[1]:
        return ARENA
    return (0, process.geom.task_size)


def observe(process: Process, op: Op, ret: str, baseline: int, child_pgtables: int | None = None) -> dict:
    """The observation after ``op``: the contract's keys in order."""
    lo, hi = arena_for(process)
    mm = process.mm
    ps = process.geom.page_shift
    vmas = []
    rss_pages = 0
    for v in mm.vmas.overlapping(lo, hi):
        vmas.append([hex(v.vm_start), hex(v.vm_end), v.perms])
        for a, b, state in mm.pt.ptes.runs(v.vm_start >> ps, v.vm_end >> ps):
            if state in RSS_STATES:
                rss_pages += b - a
    obs = {
        "line": op.line,
        "op": op.op,
        "ret": ret,
        "vmas": vmas,
        "pgtables": mm.pgtables_bytes - baseline,
        "rss": rss_pages << ps,
    }
    if child_pgtables is not None:
        obs["child_pgtables"] = child_pgtables
    return obs


def apply_op(process: Process, op: Op) -> tuple[str, int | None]:
    """Carry out one operation; return (ret, child_pgtables)."""
    try:
        if op.op == "file":
            process.file(op.name, op.size)
            return "0", None
        if op.op == "mmap":
            addr = process.mmap(op.addr, op.length, op.prot, op.flags,
                                None if "anon" in op.flags else op.name, op.offset)
            return hex(addr), None
        if op.op == "munmap":
            process.munmap(op.addr, op.length)
        elif op.op == "mprotect":
            process.mprotect(op.addr, op.length, op.prot)
        elif op.op == "madvise":
            process.madvise(op.addr, op.length, op.advice)
        elif op.op == "mremap":
            return hex(process.mremap(op.addr, op.length, op.new_length, op.flags, op.new_addr)), None
        elif op.op == "touch":
            process.touch(op.addr, op.length, op.access)
        elif op.op == "fork":
            child = process.fork()
            child_bytes = child.pgtables_bytes
            child.exit()
            return "0", child_bytes
        else:
            raise ValueError(f"unknown op {op.op!r}")
    except OSError as e:
        return errno_name(e.errno), None
    except Signal as s:
        return f"{s.signame}@{s.addr:#x}", None
    return "0", None


def check_words(ops: Iterable[Op], geom, filename: str = "<script>") -> None:
    """Refuse, before anything runs, a script whose numbers do not fit the geometry's word.

    A 32-bit geometry cannot take the 64-bit arena's addresses: every
    address, length and offset must be an ``unsigned long`` of the
    architecture.  Raises ScriptError naming the first such line.
    """
    limit = 1 << geom.word_bits
    for op in ops:
        for field in ("addr", "length", "new_length", "new_addr", "offset", "size"):
            value = getattr(op, field)
            if value is not None and value >= limit:
                raise ScriptError(filename, op.line,
                                  f"{op.op}: {field.replace('_', ' ')} {value:#x} does not fit in "
                                  f"a {geom.word_bits}-bit word ({geom.name})")


def run_ops(ops: Iterable[Op], era: str = "linux-6.18", arch: str = "x86_64", check: bool = False,
            filename: str = "<script>", process: Process | None = None) -> Iterator[dict]:
    """Run ``ops`` on a fresh process; yield one observation per operation line.

    A kernel BUG (or a failed invariant with ``check``) stops the run with
    ScriptRunError naming the line.
    """
    process = process or Process(era=era, arch=arch, check=check)
    baseline = process.pgtables_bytes
    for op in ops:
        try:
            ret, child = apply_op(process, op)
        except (KernelBug, AssertionError) as e:
            raise ScriptRunError(filename, op.line, op.op, e) from e
        yield observe(process, op, ret, baseline, child)
