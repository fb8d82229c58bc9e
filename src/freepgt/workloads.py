"""lmbench's ``lat_proc`` on the model: fork+exit, fork+exec, fork+/bin/sh -c.

``lat_proc`` (lmbench, section 7 of the kernel notes) times a loop in which
a process forks and waits for the child:

* ``lat_proc-fork`` ("Process fork+exit"): the child exits at once;
* ``lat_proc-exec`` ("Process fork+execve"): the child execs a tiny static
  binary (lmbench's ``hello-s``), which exits;
* ``lat_proc-sh`` ("Process fork+/bin/sh -c"): the child execs a shell,
  which execs the binary, which exits.

Every iteration therefore ends one to three address spaces (``exit_mmap``,
directly or through ``execve``'s ``exec_mmap``), and that teardown is where
the eras differ: 2.6.10's ``clear_page_tables`` reads every user pgd slot,
2.6.11's ``clear_page_range`` reads the whole user address space at every
level, and from 2.6.12 on ``free_pgtables`` reads only what the vmas span.

The benchmark process here is a shell-like image, laid out for each
architecture from its geometry (see :func:`placement`): text, data, bss and
a heap (brk), the dynamic loader and three libraries (text ``r-x``, on
64-bit architectures the ``---`` alignment gap, RELRO ``r--`` written by the
relocations then protected, data ``rw-``, bss), a locale archive, a vdso
page and a stack under the top of user space; about two dozen vmas and
several hundred touched pages.  Libraries, the vdso and the archive are
mapped with ``mmap(0, ...)``, so the era places them where its
``get_unmapped_area`` would (bottom-up from ``TASK_UNMAPPED_BASE`` on 64-bit
2.6, top-down below ``mmap_base`` elsewhere).

:func:`run_workload` measures, per iteration, the page-table work of every
address space the iteration ends or creates (:mod:`freepgt.costs`) and the
model's wall time.  One untimed warm-up iteration comes first (lmbench's
``-W``), so the page cache the iterations share has settled and every
measured iteration costs the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from .arch import Geometry
from .costs import Costs, snapshot
from .eras import Era, get_era
from .errors import KernelBug, Signal
from .mm.core import MM
from .process import Image, Process, Segment, small_static_image

__all__ = [
    "BASH",
    "SH",
    "WORKLOADS",
    "Library",
    "Placement",
    "ShellSpec",
    "WorkloadResult",
    "build_shell",
    "exec_image",
    "map_library",
    "placement",
    "run_workload",
    "shell_image",
]

#: the workloads, in lmbench's order
WORKLOADS = ("lat_proc-fork", "lat_proc-exec", "lat_proc-sh")

KIB = 1 << 10
MIB = 1 << 20


@dataclass(frozen=True)
class Library:
    """A shared library as ld.so maps it (sizes in bytes, rounded up to pages when mapped)."""

    name: str
    text: int
    relro: int
    data: int
    bss: int
    #: bytes of text read from its start (the code that runs)
    text_read: int


@dataclass(frozen=True)
class ShellSpec:
    """A dynamically linked shell: its own segments, heap, stack, and what it maps."""

    name: str
    text: int
    data: int
    bss: int
    #: how far brk moves the break, and how much of that heap is written
    heap: int
    heap_write: int
    stack: int
    stack_write: int
    text_read: int
    libs: tuple[Library, ...]
    #: bytes of a locale archive mapped read-only (0: none), and how much of it is read
    locale: int = 0
    locale_read: int = 0


# A 2.6-era dynamically linked bash and the libraries it needs (sizes as in
# /proc/PID/maps of bash 3 on glibc 2.3/2.5).
LD_SO = Library("ld-2.5.so", text=108 * KIB, relro=4 * KIB, data=4 * KIB, bss=4 * KIB, text_read=80 * KIB)
LIBTINFO = Library("libtinfo.so.5", text=152 * KIB, relro=12 * KIB, data=4 * KIB, bss=0, text_read=32 * KIB)
LIBDL = Library("libdl-2.5.so", text=8 * KIB, relro=4 * KIB, data=4 * KIB, bss=0, text_read=8 * KIB)
LIBC = Library("libc-2.5.so", text=1728 * KIB, relro=16 * KIB, data=8 * KIB, bss=20 * KIB, text_read=448 * KIB)

BASH = ShellSpec(
    "bash", text=848 * KIB, data=40 * KIB, bss=24 * KIB, heap=264 * KIB, heap_write=192 * KIB,
    stack=132 * KIB, stack_write=24 * KIB, text_read=384 * KIB,
    libs=(LD_SO, LIBTINFO, LIBDL, LIBC), locale=56 * MIB, locale_read=32 * KIB,
)

# /bin/sh as a small shell (dash-like): libc only, less of everything
SH = ShellSpec(
    "sh", text=100 * KIB, data=8 * KIB, bss=12 * KIB, heap=132 * KIB, heap_write=16 * KIB,
    stack=132 * KIB, stack_write=12 * KIB, text_read=64 * KIB,
    libs=(replace(LD_SO, text_read=64 * KIB), replace(LIBC, text_read=256 * KIB)),
)


@dataclass(frozen=True)
class Placement:
    """Where a shell's pieces go on one architecture."""

    #: where the executable's text starts (the ELF link address)
    text: int
    #: where its data starts; None: after the text and ``elf_align``
    data: int | None
    #: ELF maximum page size: data sits that far past the text, and each
    #: library's data that far past its text (the ``---p`` gap ld.so leaves)
    elf_align: int
    #: top of the stack
    stack_top: int
    note: str


def _down(x: int, a: int) -> int:
    return x & ~(a - 1)


def _up(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def placement(geom: Geometry) -> Placement:
    """The layout a shell gets on this geometry (text, data, stack; libraries go where the era puts them).

    * x86_64: text at 0x400000 (the x86_64 ELF default), data 2 MiB past it
      (max-page-size), stack under TASK_SIZE;
    * i386: text at 0x08048000, data right after it (4 KiB max-page-size);
    * 32-bit ARM: text at 0x8000, 32 KiB alignment;
    * arm64: 0x400000, 64 KiB alignment; ppc64: 0x10000000, 64 KiB;
    * sparc64: 0x100000, 1 MiB alignment, stack top 0x80000000000 (the
      64-bit STACK_TOP, just under the VA hole);
    * ia64: text in region 2 (0x4000000000000000), data, bss, heap and the
      stack in region 3 (0x6000000000000000, stack at the top of the part
      of the region the page tables map), libraries where the era places
      them;
    * anything else: 0x400000 on 64-bit, 0x08048000 on 32-bit, data right
      after the text, stack under TASK_SIZE.

    The stack ends at the geometry's ``stack_top`` where it has one
    (sparc64, ia64), else at TASK_SIZE.  A layout that would not fit under
    the stack falls back to the generic one.
    """
    ps = geom.page_size
    name = geom.name
    top = _down(getattr(geom, "stack_top", 0) or geom.task_size, ps)
    generic_text = 0x400000 if geom.word_bits == 64 else 0x08048000
    generic = Placement(generic_text, None, ps, top, "generic: ELF default text, stack under TASK_SIZE")
    if name.startswith("x86_64"):
        p = Placement(0x400000, None, 2 * MIB, top, "x86_64: text 0x400000, 2 MiB ELF alignment")
    elif name.startswith("i386"):
        p = Placement(0x08048000, None, 4 * KIB, top, "i386: text 0x08048000")
    elif name.startswith(("arm64", "aarch64")):
        p = Placement(0x400000, None, 64 * KIB, top, "arm64: text 0x400000, 64 KiB ELF alignment")
    elif name.startswith("arm"):
        p = Placement(0x8000, None, 32 * KIB, top, "ARM: text 0x8000, 32 KiB ELF alignment")
    elif name.startswith("ppc64"):
        p = Placement(0x10000000, None, 64 * KIB, top, "ppc64: text 0x10000000, 64 KiB ELF alignment")
    elif name.startswith("sparc64"):
        stack = min(top, 0x80000000000)
        p = Placement(0x100000, None, 1 * MIB, stack, "sparc64: text 0x100000, stack under the VA hole")
    elif name.startswith("ia64"):
        region = 1 << 61
        # each region maps RGN_MAP_LIMIT = 2**(4p-12) bytes less a guard page
        mappable = getattr(geom, "region_map_limit", 0) or (1 << (4 * geom.page_shift - 12)) - ps
        stack = min(top, 3 * region + mappable)
        p = Placement(2 * region, 3 * region, 64 * KIB, stack,
                      "ia64: text in region 2, data, heap and stack in region 3")
    else:
        p = generic
    if p.text >= p.stack_top or (p.data is not None and p.data >= p.stack_top) or p.text < geom.first_user_address:
        return generic
    return p


def shell_image(geom: Geometry, spec: ShellSpec, place: Placement | None = None) -> Image:
    """The executable part of a shell, as ``execve`` maps it: text, data, bss, stack."""
    ps = geom.page_size
    place = place or placement(geom)
    text = _up(spec.text, ps)
    data = _up(spec.data, ps)
    bss = _up(spec.bss, ps)
    stack = _up(spec.stack, ps)
    data_at = place.data if place.data is not None else place.text + text + (
        _up(place.elf_align, ps) if place.elf_align > ps else 0)
    return Image(
        name=spec.name,
        size=text + data,
        segments=(
            Segment(place.text, text, "r-x", file_offset=0, touch_read=min(text, _up(spec.text_read, ps))),
            Segment(data_at, data, "rw-", file_offset=text, touch_write=data),
            Segment(data_at + data, bss, "rw-", touch_write=bss),
            Segment(place.stack_top - stack, stack, "rw-", touch_write=min(stack, _up(spec.stack_write, ps)),
                    stack=True),
        ),
    )


def _file(p: Process, name: str, size: int):
    """The file called ``name`` (shared with the parent, page cache and all), declared if new."""
    f = p.files.get(name)
    if f is None or f.size != size:
        f = p.file(name, size)
    return f


def map_library(p: Process, lib: Library, place: Placement) -> int:
    """Map a shared library the way ld.so does (``_dl_map_object_from_fd``); return its base.

    The whole extent is mapped ``r-x`` from the file where the era places
    it; on architectures whose ELF alignment exceeds the page, the hole
    between text and data becomes ``---``; data (RELRO first) is mapped
    over it ``rw-`` and written by the relocations, RELRO is then made
    ``r--`` (``_dl_protect_relro``), bss is anonymous; the text that runs
    is read.
    """
    ps = p.geom.page_size
    text, relro, data, bss = (_up(x, ps) for x in (lib.text, lib.relro, lib.data, lib.bss))
    gap = _up(place.elf_align, ps) if place.elf_align > ps else 0
    f = _file(p, lib.name, text + relro + data)
    base = p.mmap(0, text + gap + relro + data + bss, "r-x", "private", f, 0)
    if gap:
        p.mprotect(base + text, gap, "---")
    d = base + text + gap
    p.mmap(d, relro + data, "rw-", "private,fixed", f, text)
    p.touch(d, relro + data, "w")
    if relro:
        p.mprotect(d, relro, "r--")
    if bss:
        p.mmap(d + relro + data, bss, "rw-", "private,anon,fixed")
        p.touch(d + relro + data, bss, "w")
    p.touch(base, min(text, _up(lib.text_read, ps)), "r")
    return base


def build_shell(p: Process, spec: ShellSpec, place: Placement | None = None) -> None:
    """Exec the shell ``spec`` in ``p`` and run its start-up.

    ``execve`` maps the image (:func:`shell_image`); then the loader and the
    libraries (:func:`map_library`), a vdso page, the heap (``brk``) and,
    for a shell that sets its locale, the locale archive.
    """
    g = p.geom
    place = place or placement(g)
    exec_image(p, shell_image(g, spec, place))
    _build_rest(p, spec, place)


def exec_image(p: Process, image: Image) -> MM:
    """``execve`` of ``image`` in ``p`` (``Process.exec``), going on past a BUG; return the old mm.

    When the era's check after the old mm's ``exit_mmap`` fires (say
    2.6.12-rc's exact ``BUG_ON(mm->nr_ptes)`` on ARM, whose pgd comes with
    the vectors PTE page), the old mm is dead and keeps the verdict (see
    :func:`freepgt.costs.exit_bug`); the image is then mapped by a second
    ``Process.exec`` from a blank mm: no vma, no counted table, so its
    ``exit_mmap`` does nothing and the check stays quiet.
    """
    old = p.mm
    try:
        p.exec(image)
    except KernelBug:
        blank = MM(p.era, p.geom)
        blank.nr_tables = dict.fromkeys(blank.nr_tables, 0)
        p.mm = blank
        p.exec(image)
    return old


def _build_rest(p: Process, spec: ShellSpec, place: Placement) -> None:
    """What follows ``execve`` of a shell: loader, vdso, libraries, heap, locale archive."""
    ps = p.geom.page_size
    libs = list(spec.libs)
    if libs:
        # the kernel maps the interpreter at exec, with the vdso
        map_library(p, libs[0], place)
    vdso = _file(p, "[vdso]", ps)
    p.touch(p.mmap(0, ps, "r-x", "private", vdso, 0), ps, "r")
    for lib in libs[1:]:
        map_library(p, lib, place)
    heap = _up(spec.heap, ps)
    start = p.mm.start_brk
    p.brk(start + heap)
    p.touch(start, min(heap, _up(spec.heap_write, ps)), "w")
    if spec.locale:
        size = _up(spec.locale, ps)
        f = _file(p, "locale-archive", size)
        at = p.mmap(0, size, "r--", "private", f, 0)
        p.touch(at, min(size, _up(spec.locale_read, ps)), "r")


# ---------------------------------------------------------------------------
# Running a workload
# ---------------------------------------------------------------------------

@dataclass
class WorkloadResult:
    """One workload under one era on one architecture; ``error`` says why there are no numbers."""

    workload: str
    arch: str
    era: str
    iterations: int
    #: the geometry the era used for the architecture (2.6.10 maps x86_64 to its own)
    geometry: str | None = None
    #: page-table work per iteration (every iteration costs the same)
    costs: Costs | None = None
    seconds_per_iteration: float | None = None
    #: the benchmark (parent) process: vmas and resident pages
    parent_vmas: int = 0
    parent_pages: int = 0
    error: str | None = None


class _Ended:
    """The address spaces an iteration ends, each snapshotted as it dies."""

    def __init__(self) -> None:
        self.costs = Costs()

    def add(self, mm: MM) -> None:
        self.costs = self.costs + snapshot(mm)

    def exit(self, p: Process) -> None:
        """``exit``: ``exit_mmap``; a BUG is recorded (in the snapshot), not raised."""
        try:
            p.exit()
        except KernelBug:
            pass
        self.add(p.mm)

    def exec(self, p: Process, image: Image) -> None:
        """``execve``: the old mm goes through ``exit_mmap`` (recorded) and the image is mapped."""
        self.add(exec_image(p, image))


def _iteration(parent: Process, workload: str, place: Placement) -> Costs:
    """One lat_proc iteration; its cost is that of every address space it created or ended."""
    before = snapshot(parent)
    child = parent.fork()
    ended = _Ended()
    g = parent.geom
    if workload == "lat_proc-exec":
        ended.exec(child, small_static_image(g))
    elif workload == "lat_proc-sh":
        sh_image = shell_image(g, SH, place)
        ended.exec(child, sh_image)
        _build_rest(child, SH, place)
        ended.exec(child, small_static_image(g))
    ended.exit(child)
    return ended.costs + (snapshot(parent) - before)


def run_workload(workload: str, era: "str | Era", arch: str = "x86_64", iterations: int = 20) -> WorkloadResult:
    """Run ``workload`` for ``iterations`` measured iterations (after one warm-up).

    Returns the costs per iteration and the model's seconds per iteration
    (``time.perf_counter`` over the measured loop).  An era that cannot run
    the architecture (``Process`` raises ValueError) gives a result with
    ``error`` set and no numbers.
    """
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    era = get_era(era)
    result = WorkloadResult(workload, arch, era.name, iterations)
    try:
        parent = Process(era=era, arch=arch)
    except ValueError as e:
        result.error = str(e)
        return result
    g = parent.geom
    result.geometry = g.name
    place = placement(g)
    try:
        build_shell(parent, BASH, place)
    except (OSError, Signal) as e:
        result.error = f"the shell does not fit this layout: {e}"
        return result
    result.parent_vmas = parent.map_count
    result.parent_pages = parent.rss >> g.page_shift
    _iteration(parent, workload, place)  # warm-up
    total = Costs()
    t0 = time.perf_counter()
    for _ in range(iterations):
        total = total + _iteration(parent, workload, place)
    elapsed = time.perf_counter() - t0
    result.costs = total.scaled(iterations)
    result.seconds_per_iteration = elapsed / iterations
    return result
