"""``Process``: the Python face of the model, one process and its address space.

Each method is one system call or event, named as in Linux, raising
``OSError`` with Linux's errno on failure, ``SegmentationFault`` /
``BusError`` for faults that become signals, and ``KernelBug`` when one of
the era's ``BUG_ON`` checks fires.

>>> p = Process(era="linux-6.18", arch="x86_64")
>>> a = p.mmap(0x100000000000, 0x200000, "rw-", "private,anon,fixed")
>>> p.touch(a, 0x1000, "w")
>>> p.pgtables_bytes          # one PUD, one PMD and one PTE table
12288
>>> p.munmap(a, 0x200000)
>>> p.pgtables_bytes
0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from .arch import Geometry
from .archhooks import arch_mmap_check, arch_mremap, arch_munmap_check
from .eras import DEFAULT_ERA, Era, get_era
from .errors import syscall_error
from .mm.core import MM
from .mm.exit import ExitReport, exit_mmap
from .mm.fork import dup_mmap
from .mm.madvise import do_madvise
from .mm.memory import touch
from .mm.mmap import do_brk, do_mmap, do_munmap
from .mm.mprotect import do_mprotect
from .mm.mremap import do_mremap
from .pagetable import PTE_PFN
from .vma import (
    VM_DONTEXPAND, VM_EXEC, VM_GROWSDOWN, VM_MAYEXEC, VM_MAYREAD, VM_MAYWRITE, VM_READ, Device, File,
    MappedObject, Vma,
)

#: ``VSYSCALL32_BASE``: the ia32 vsyscall page of a 32-bit task on x86_64
VSYSCALL32_BASE = 0xFFFFE000


def _flagset(flags: str | Iterable[str]) -> frozenset[str]:
    if isinstance(flags, str):
        return frozenset(f for f in flags.replace("|", ",").split(",") if f and f != "-")
    return frozenset(flags)


@dataclass(frozen=True)
class Segment:
    """One mapping of an executable image: where, how, and how much is touched."""

    start: int
    length: int
    prot: str
    file_offset: int | None = None  # None: anonymous
    touch_read: int = 0   # bytes read from the start
    touch_write: int = 0  # bytes written from the start
    stack: bool = False


@dataclass(frozen=True)
class Image:
    """An executable as ``execve`` lays it out: file-backed segments, bss, stack."""

    name: str
    size: int
    segments: tuple[Segment, ...]


def small_static_image(geom: Geometry) -> Image:
    """A tiny static binary (like lmbench's ``hello-s``): text, data, bss, stack."""
    base = 0x400000 if geom.word_bits == 64 else 0x08048000
    ps = geom.page_size
    stack_top = geom.stack_top or geom.task_size
    return Image(
        name="hello-s",
        size=4 * ps,
        segments=(
            Segment(base, 2 * ps, "r-x", file_offset=0, touch_read=2 * ps),
            Segment(base + 2 * ps, ps, "rw-", file_offset=2 * ps, touch_write=ps),
            Segment(base + 3 * ps, ps, "rw-", touch_write=ps),
            Segment(stack_top - 33 * ps, 33 * ps, "rw-", touch_write=2 * ps, stack=True),
        ),
    )


class Process:
    """One process: an mm under a kernel era on an architecture's geometry."""

    def __init__(self, era: str | Era = DEFAULT_ERA, arch: str | Geometry = "x86_64",
                 check: bool = False, _mm: MM | None = None) -> None:
        self.era = get_era(era)
        self.geom = self.era.geometry(arch)
        self.mm = _mm if _mm is not None else MM(self.era, self.geom)
        self.files: dict[str, MappedObject] = {}
        #: run the invariant checks after every operation
        self.check = check
        self.exit_report: ExitReport | None = None

    # --- objects -------------------------------------------------------------
    def file(self, name: str, size: int) -> File:
        """Declare a fresh, sparse file of ``size`` bytes (nothing cached yet)."""
        f = File(name, size, self.geom.page_size)
        self.files[name] = f
        return f

    def map_syscall32(self, addr: int = VSYSCALL32_BASE) -> None:
        """``__map_syscall32``: map the ia32 vsyscall page with no vma (x86_64 before 2.6.12).

        A 32-bit task's first touch of its vsyscall page made the fault
        handler install the page directly, allocating PUD, PMD and PTE
        tables that no vma spans: tables that a vma-list walk never visits.
        """
        self.mm.check_alive()
        self._map_kernel_page(addr & ~(self.geom.page_size - 1))

    def _map_kernel_page(self, addr: int) -> None:
        """Install a pte for a kernel-provided page at ``addr``, with the tables it needs."""
        mm = self.mm
        page = addr >> self.geom.page_shift
        mm.alloc_tables(addr, addr + self.geom.page_size)
        mm.pt.map_pages(page, page + 1, PTE_PFN)
        self._done()

    def syscall32_setup_pages(self, addr: int = VSYSCALL32_BASE) -> None:
        """``syscall32_setup_pages``: the vsyscall page as a vma of its own (2.6.12 on).

        The gate vma is read/exec and never merges (its ``close`` is a dummy
        for that reason).  The page is mapped here as the task's first touch
        would map it; exit's walk now reaches its tables and frees them.
        """
        mm = self.mm
        mm.check_alive()
        ps = self.geom.page_size
        addr &= ~(ps - 1)
        flags = VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYEXEC | VM_MAYWRITE | VM_DONTEXPAND
        mm.vmas.insert(Vma(addr, addr + ps, flags, None, addr >> self.geom.page_shift))
        self._map_kernel_page(addr)

    def device(self, name: str = "dev", *, fill: bool = True, fail: int | None = None) -> Device:
        """A device whose mmap fills page tables with pfns and, with ``fail``, then fails."""
        return Device(name, fill=fill, fail=fail, page_size=self.geom.page_size)

    # --- system calls ------------------------------------------------------------
    def _done(self) -> None:
        if self.check:
            from .checks import check_mm

            check_mm(self.mm, orphans=self.mm.era.leaves_gap_tables)

    def _word(self, what: str, value: int) -> int:
        """An argument as the kernel sees an ``unsigned long`` (negative values wrap, as from C)."""
        if type(value) is int and 0 <= value <= self.geom.mask:
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{what} must be an int, not {type(value).__name__}")
        bits = self.geom.word_bits
        if not -(1 << (bits - 1)) <= value < 1 << bits:
            raise ValueError(f"{what} {value:#x} does not fit in a {bits}-bit word")
        return value & self.geom.mask

    def _run(self, fn: Callable, *args):
        if not self.check:
            return fn(*args)
        try:
            return fn(*args)
        finally:
            self._done()

    def mmap(self, addr: int, length: int, prot: str = "rw-", flags: str | Iterable[str] = "private,anon",
             file: MappedObject | str | None = None, offset: int = 0) -> int:
        """``mmap(2)``; ``file`` is a File, a Device or a declared file's name."""
        if isinstance(file, str):
            if file not in self.files:
                raise ValueError(f"mmap: no file named {file!r}; declare it first with Process.file()")
            file = self.files[file]
        addr = self._word("mmap: addr", addr)
        length = self._word("mmap: length", length)
        offset = self._word("mmap: offset", offset)
        if self.geom.region_shift and not length:
            # ia64 do_mmap2: "A zero mmap always succeeds in Linux, independent
            # of whether or not the remaining arguments are valid."
            self.mm.check_alive()
            return addr
        err = arch_mmap_check(self.geom, addr, length)
        if err:
            raise syscall_error(err, f"mmap({addr:#x}, {length:#x}): refused by the architecture")
        return self._run(do_mmap, self.mm, addr, length, prot, _flagset(flags), file, offset)

    def munmap(self, addr: int, length: int) -> None:
        """``munmap(2)``."""
        addr, length = self._word("munmap: addr", addr), self._word("munmap: length", length)
        err = arch_munmap_check(self.geom, addr, length)
        if err:
            raise syscall_error(err, f"munmap({addr:#x}, {length:#x}): refused by the architecture")
        self._run(do_munmap, self.mm, addr, length)

    def mprotect(self, addr: int, length: int, prot: str) -> None:
        """``mprotect(2)``."""
        self._run(do_mprotect, self.mm, self._word("mprotect: addr", addr),
                  self._word("mprotect: length", length), prot)

    def madvise(self, addr: int, length: int, advice: str = "dontneed") -> None:
        """``madvise(2)``; advice ``dontneed``."""
        self._run(do_madvise, self.mm, self._word("madvise: addr", addr),
                  self._word("madvise: length", length), advice)

    def mremap(self, old: int, old_len: int, new_len: int, flags: str | Iterable[str] = (),
               new_addr: int | None = None) -> int:
        """``mremap(2)``; flags from ``maymove``, ``fixed``, ``dontunmap``."""
        old, old_len, new_len = (self._word(n, v) for n, v in (("mremap: old", old), ("mremap: old_len", old_len),
                                                                ("mremap: new_len", new_len)))
        if new_addr is not None:
            new_addr = self._word("mremap: new_addr", new_addr)

        def sys_mremap() -> int:
            # the arch wrapper (sparc64 sys64_mremap) may refuse or turn a
            # growth into the VA hole into a move
            f, target = arch_mremap(self.mm, old, old_len, new_len, _flagset(flags), new_addr)
            return do_mremap(self.mm, old, old_len, new_len, f, target)

        return self._run(sys_mremap)

    def brk(self, addr: int) -> int:
        """``brk(2)``: returns the new break (the old one if the move was refused)."""
        return self._run(do_brk, self.mm, self._word("brk: addr", addr))

    def touch(self, addr: int, length: int, access: str = "r") -> None:
        """Read (``r``) or write (``w``) ``addr`` and the start of every following page of the range."""
        if access not in ("r", "w"):
            raise ValueError(f"touch: access must be 'r' or 'w', not {access!r}")
        self.mm.check_alive()
        # a range running past TASK_SIZE meets SIGSEGV at the first unmapped page
        addr, length = self._word("touch: addr", addr), self._word("touch: length", length)
        self._run(touch, self.mm, addr, length, access == "w")

    def fork(self) -> "Process":
        """``fork(2)``: the child, with the page tables the era's ``dup_mmap`` copies."""
        child_mm = self._run(dup_mmap, self.mm)
        child = Process(self.era, self.geom, self.check, _mm=child_mm)
        child.files = dict(self.files)
        return child

    def exit(self) -> ExitReport:
        """``exit_mmap``: tear everything down; KernelBug if the era's check fires."""
        self.exit_report = exit_mmap(self.mm)
        # mmput -> mmdrop: destroy_context frees what the arch kept apart (ppc64's huge tables)
        self.mm.destroy_context()
        return self.exit_report

    def exec(self, image: Image | None = None) -> ExitReport:
        """``execve``: drop the old mm (``exit_mmap``) and build the image's new one."""
        report = exit_mmap(self.mm)
        self.mm.destroy_context()
        self.mm = MM(self.era, self.geom)
        image = image or small_static_image(self.geom)
        f = File(image.name, image.size, self.geom.page_size)
        self.files[image.name] = f
        last_end = 0
        for seg in image.segments:
            if seg.file_offset is None:
                self.mmap(seg.start, seg.length, seg.prot, "private,anon,fixed")
            else:
                self.mmap(seg.start, seg.length, seg.prot, "private,fixed", f, seg.file_offset)
            if seg.stack:
                vma = self.mm.vmas.vma_lookup(seg.start)
                vma.vm_flags |= VM_GROWSDOWN
            else:
                last_end = max(last_end, seg.start + seg.length)
            if seg.touch_read:
                self.touch(seg.start, seg.touch_read, "r")
            if seg.touch_write:
                top = seg.start + seg.length
                start = top - seg.touch_write if seg.stack else seg.start
                self.touch(start, seg.touch_write, "w")
        if last_end:
            self.mm.start_brk = self.mm.brk = last_end
        return report

    # --- what can be seen ----------------------------------------------------------
    @property
    def pgtables_bytes(self) -> int:
        """VmPTE in bytes, as the era counts it."""
        return self.mm.pgtables_bytes

    @property
    def nr_ptes(self) -> int:
        return self.mm.nr_ptes

    @property
    def rss(self) -> int:
        """Resident bytes (the zero page never counts)."""
        return self.mm.rss

    @property
    def map_count(self) -> int:
        return self.mm.map_count

    def tables(self) -> dict[str, int]:
        """Page tables present in the tree, per level (preallocated ones excluded)."""
        pt = self.mm.pt
        return {name: pt.count(name) for name in pt.levels if name not in pt.prealloc}

    def vmas(self) -> list[tuple[int, int, str]]:
        """Every vma as (vm_start, vm_end, perms)."""
        return [(v.vm_start, v.vm_end, v.perms) for v in self.mm.vmas.all()]

    def maps(self) -> str:
        """The vmas as /proc/PID/maps would show them (without inode details)."""
        lines = []
        for v in self.mm.vmas.all():
            name = ""
            if v.vm_file is not None:
                name = v.vm_file.name
            off = v.vm_pgoff << self.geom.page_shift if v.vm_file is not None else 0
            lines.append(f"{v.vm_start:x}-{v.vm_end:x} {v.perms} {off:08x} {name}".rstrip())
        return "\n".join(lines)
