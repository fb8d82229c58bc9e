"""VMAs, the objects they map, and the ordered VMA set.

A ``Vma`` carries what Linux's ``vm_area_struct`` carries for page-table
purposes: ``vm_start``, ``vm_end``, ``vm_flags``, ``vm_file``, ``vm_pgoff``
and ``anon_vma``.  ``VmaSet`` keeps them sorted and disjoint with
``find_vma``-style lookups in O(log n).  ``is_mergeable`` is the test of
``mm/vma.c`` (``is_mergeable_vma`` + ``is_mergeable_anon_vma`` + the pgoff
checks of ``can_vma_merge_before/after``).
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from typing import Iterator

from .runs import RunMap

# vm_flags bits (values are the model's own; names are the kernel's)
VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_SHARED = 0x8
VM_MAYREAD = 0x10
VM_MAYWRITE = 0x20
VM_MAYEXEC = 0x40
VM_MAYSHARE = 0x80
VM_GROWSDOWN = 0x100
VM_PFNMAP = 0x400
VM_DONTCOPY = 0x20000
VM_ACCOUNT = 0x100000
VM_NORESERVE = 0x200000
VM_HUGETLB = 0x400000
VM_DONTEXPAND = 0x40000
VM_IO = 0x4000

VM_RWX = VM_READ | VM_WRITE | VM_EXEC
#: vmas that never merge (``VM_SPECIAL``)
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP


def prot_to_flags(prot: str) -> int:
    """'rw-' -> VM_READ|VM_WRITE."""
    f = 0
    if prot[0] == "r":
        f |= VM_READ
    if prot[1] == "w":
        f |= VM_WRITE
    if prot[2] == "x":
        f |= VM_EXEC
    return f


_ids = itertools.count(1)


class AnonVma:
    """An ``anon_vma``: only its identity matters to merging and fork."""

    __slots__ = ("id",)

    def __init__(self) -> None:
        self.id = next(_ids)

    def __repr__(self) -> str:
        return f"<anon_vma {self.id}>"


class MappedObject:
    """Something a vma can map: a file, a shmem object or a device.

    Keeps the object's page cache (the pages that ever entered it) as runs of
    page indices: fault-around and rss depend on it.
    """

    kind = "file"

    def __init__(self, name: str, size: int, page_size: int = 4096) -> None:
        self.name = name
        self.size = size
        self.page_size = page_size
        self.cache = RunMap()

    @property
    def npages(self) -> int:
        """Pages below EOF: an access at or past this index is SIGBUS."""
        return -(-self.size // self.page_size)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name} size={self.size:#x}>"


class File(MappedObject):
    """A regular file on tmpfs, fresh and sparse when declared."""

    kind = "file"


class Shmem(MappedObject):
    """The shmem object behind one shared anonymous mapping (``shmem_zero_setup``)."""

    kind = "shmem"

    def __init__(self, size: int, page_size: int = 4096) -> None:
        super().__init__(f"dev/zero (deleted) {next(_ids)}", size, page_size)


class Device(MappedObject):
    """A character device whose ``mmap`` handler fills page tables with pfns.

    ``fail`` makes the handler return that errno after filling, which
    exercises the driver-failure path of ``mmap_region`` (the seed's reason
    for sending it through ``unmap_region``).
    """

    kind = "device"

    def __init__(self, name: str = "dev", size: int = 1 << 62, *, fill: bool = True,
                 fail: int | None = None, page_size: int = 4096) -> None:
        super().__init__(name, size, page_size)
        self.fill = fill
        self.fail = fail


class Vma:
    """One ``vm_area_struct``."""

    __slots__ = ("vm_start", "vm_end", "vm_flags", "vm_file", "vm_pgoff", "anon_vma")

    def __init__(self, vm_start: int, vm_end: int, vm_flags: int, vm_file: MappedObject | None,
                 vm_pgoff: int, anon_vma: AnonVma | None = None) -> None:
        self.vm_start = vm_start
        self.vm_end = vm_end
        self.vm_flags = vm_flags
        self.vm_file = vm_file
        self.vm_pgoff = vm_pgoff
        self.anon_vma = anon_vma

    @property
    def is_anonymous(self) -> bool:
        """``vma_is_anonymous``: private anonymous (shared anon has a shmem file)."""
        return self.vm_file is None

    @property
    def perms(self) -> str:
        """The four characters of /proc/PID/maps."""
        f = self.vm_flags
        return (
            ("r" if f & VM_READ else "-")
            + ("w" if f & VM_WRITE else "-")
            + ("x" if f & VM_EXEC else "-")
            + ("s" if f & VM_MAYSHARE else "p")
        )

    def clone(self) -> "Vma":
        return Vma(self.vm_start, self.vm_end, self.vm_flags, self.vm_file, self.vm_pgoff, self.anon_vma)

    def __repr__(self) -> str:
        obj = f" {self.vm_file.name}" if self.vm_file else ""
        av = f" {self.anon_vma!r}" if self.anon_vma else ""
        return f"<vma {self.vm_start:#x}-{self.vm_end:#x} {self.perms} pgoff={self.vm_pgoff:#x}{obj}{av}>"


def is_mergeable(prev: Vma, nxt: Vma, page_shift: int = 12) -> bool:
    """Can ``prev`` and ``nxt`` (adjacent, prev below) be one vma?

    Same flags, same object, contiguous ``vm_pgoff``, compatible anon_vmas
    (equal, or one of them absent), and neither is ``VM_SPECIAL`` nor
    hugetlb (2.6.12's hugetlbfs sets VM_RESERVED, later kernels
    VM_DONTEXPAND: either way ``vma_merge`` refuses).
    """
    if prev.vm_end != nxt.vm_start:
        return False
    if prev.vm_flags != nxt.vm_flags or prev.vm_flags & (VM_SPECIAL | VM_HUGETLB):
        return False
    if prev.vm_file is not nxt.vm_file:
        return False
    if prev.vm_pgoff + ((prev.vm_end - prev.vm_start) >> page_shift) != nxt.vm_pgoff:
        return False
    a, b = prev.anon_vma, nxt.anon_vma
    return a is None or b is None or a is b


class VmaSet:
    """The mm's vmas, sorted by address and disjoint (the maple tree's job)."""

    __slots__ = ("_starts", "_vmas")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._vmas: list[Vma] = []

    def __len__(self) -> int:
        return len(self._vmas)

    def __iter__(self) -> Iterator[Vma]:
        return iter(list(self._vmas))

    def __bool__(self) -> bool:
        return bool(self._vmas)

    def index_of(self, vma: Vma) -> int:
        i = bisect_right(self._starts, vma.vm_start) - 1
        if i < 0 or self._vmas[i] is not vma:
            raise KeyError(vma)
        return i

    def find_vma(self, addr: int) -> Vma | None:
        """``find_vma``: the first vma with ``vm_end > addr``."""
        i = self.find_index(addr)
        return self._vmas[i] if i < len(self._vmas) else None

    def find_index(self, addr: int) -> int:
        """Index of the first vma with ``vm_end > addr`` (len if none)."""
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and self._vmas[i].vm_end > addr:
            return i
        return i + 1

    def vma_lookup(self, addr: int) -> Vma | None:
        """``vma_lookup``: the vma containing addr, or None."""
        v = self.find_vma(addr)
        return v if v is not None and v.vm_start <= addr else None

    def prev(self, vma: Vma) -> Vma | None:
        i = self.index_of(vma)
        return self._vmas[i - 1] if i > 0 else None

    def next(self, vma: Vma) -> Vma | None:
        i = self.index_of(vma) + 1
        return self._vmas[i] if i < len(self._vmas) else None

    def below(self, addr: int) -> Vma | None:
        """The last vma starting below ``addr`` (``find_vma_prev`` without overlap)."""
        i = bisect_right(self._starts, addr - 1) - 1 if addr else -1
        return self._vmas[i] if i >= 0 else None

    def neighbours(self, start: int, end: int) -> tuple[Vma | None, Vma | None]:
        """The vma ending at or below start and the first starting at or above end.

        Meant for a range that no vma overlaps only partially.
        """
        i = self.find_index(start)
        prev = self._vmas[i - 1] if i > 0 else None
        j = self.find_index(end)
        # a vma containing ``end - 1`` still overlaps; the next one is above
        if j < len(self._vmas) and self._vmas[j].vm_start < end:
            j += 1
        nxt = self._vmas[j] if j < len(self._vmas) else None
        return prev, nxt

    def overlapping(self, start: int, end: int) -> list[Vma]:
        """Vmas meeting [start, end), in address order."""
        i = self.find_index(start)
        out = []
        vmas = self._vmas
        while i < len(vmas) and vmas[i].vm_start < end:
            out.append(vmas[i])
            i += 1
        return out

    def is_free(self, start: int, end: int) -> bool:
        v = self.find_vma(start)
        return v is None or v.vm_start >= end

    def insert(self, vma: Vma) -> None:
        i = bisect_right(self._starts, vma.vm_start)
        self._starts.insert(i, vma.vm_start)
        self._vmas.insert(i, vma)

    def remove(self, vma: Vma) -> None:
        i = self.index_of(vma)
        del self._starts[i]
        del self._vmas[i]

    def reindex(self, vma: Vma, old_start: int) -> None:
        """Call after changing ``vma.vm_start`` in place (order must not change)."""
        i = bisect_right(self._starts, old_start) - 1
        assert self._vmas[i] is vma
        self._starts[i] = vma.vm_start

    def all(self) -> list[Vma]:
        return list(self._vmas)

    def gaps_top_down(self, low: int, high: int, length: int) -> int | None:
        """Highest start of a free range of ``length`` inside [low, high), or None.

        Models ``unmapped_area_topdown`` without guard gaps or alignment.
        """
        top = high
        i = bisect_right(self._starts, high - 1) - 1
        vmas = self._vmas
        while True:
            if i >= 0 and vmas[i].vm_end > top:
                top = min(top, vmas[i].vm_start)
                i -= 1
                continue
            below_end = vmas[i].vm_end if i >= 0 else low
            below_end = max(below_end, low)
            if top - below_end >= length and top - length >= low:
                return top - length
            if i < 0:
                return None
            top = vmas[i].vm_start
            i -= 1
