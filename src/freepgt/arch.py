"""Page-table geometries and architecture presets.

A geometry is plain data: the word size, the page size, and one row per
page-table level from the top (``pgd``) to the bottom (``pte``).  Levels that
an architecture folds (a 2-level i386 has no real pud or pmd) keep their row,
with a single entry and the span of the level above, exactly as the kernel's
``pgtable-nopud.h`` / ``pgtable-nopmd.h`` fold them.  The walk code reads the
same for every geometry; folded levels simply contribute no tables.

Naming follows the kernel: a *PTE table* is the page of ptes that one pmd
entry points to (it spans ``PMD_SIZE``), a *PMD table* spans ``PUD_SIZE``, a
*PUD table* spans ``P4D_SIZE`` and a *P4D table* spans ``PGDIR_SIZE``.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVEL_NAMES = ("pgd", "p4d", "pud", "pmd", "pte")


@dataclass(frozen=True)
class Level:
    """One level of the tree: entries of this level each span ``1 << shift``."""

    name: str
    shift: int
    ptrs: int
    entry_bytes: int
    folded: bool = False
    #: Tables of this level are allocated with the pgd and never freed by
    #: free_pgtables (i386 PAE pmd pages: ``pud_clear`` and ``__pmd_free_tlb``
    #: are no-ops there).
    preallocated: bool = False

    @property
    def table_bytes(self) -> int:
        """Bytes of one table of this level."""
        return self.ptrs * self.entry_bytes


@dataclass(frozen=True)
class Geometry:
    """A page-table shape: the data an architecture preset is made of."""

    name: str
    word_bits: int
    page_shift: int
    levels: tuple[Level, ...]
    task_size: int
    first_user_address: int = 0
    #: Where top-down mmap placement starts (below the stack gap).
    mmap_base: int = 0
    #: Where brk starts on a fresh exec.
    start_brk: int = 0
    #: ``USER_PGTABLES_CEILING``: 0 means "the top of the address space".
    user_pgtables_ceiling: int = 0
    description: str = ""
    #: x86 page tables cannot say "write-only": such a vma is readable.
    write_implies_read: bool = True
    #: Exec-only is readable unless the CPU has protection keys: then
    #: PROT_EXEC alone gets the execute-only pkey and reads fault (this
    #: machine's CPU has PKU, so the x86_64 presets say False).
    exec_implies_read: bool = True
    #: Levels whose tables current kernels count in ``pgtables_bytes``.
    counted: tuple[str, ...] = ("pud", "pmd", "pte")

    def __post_init__(self) -> None:
        names = tuple(level.name for level in self.levels)
        if names != LEVEL_NAMES:
            raise ValueError(f"{self.name}: levels must be {LEVEL_NAMES}, got {names}")
        for upper, lower in zip(self.levels, self.levels[1:]):
            if lower.shift > upper.shift:
                raise ValueError(f"{self.name}: {lower.name} spans more than {upper.name}")
            if lower.folded and lower.shift != upper.shift:
                raise ValueError(f"{self.name}: folded {lower.name} must span as {upper.name}")
        if self.levels[0].folded or self.levels[-1].folded:
            raise ValueError(f"{self.name}: pgd and pte cannot be folded")
        if self.levels[-1].shift != self.page_shift:
            raise ValueError(f"{self.name}: pte entries must span one page")
        real = [lv for lv in self.levels if not lv.folded]
        for upper, lower in zip(real, real[1:]):
            if upper.shift - lower.shift != (lower.ptrs.bit_length() - 1):
                raise ValueError(
                    f"{self.name}: {lower.name} has {lower.ptrs} entries but "
                    f"{upper.name} entries span 2**{upper.shift - lower.shift} of them"
                )
        if not 2 <= len(real) <= 5:
            raise ValueError(f"{self.name}: 2 to 5 real levels, got {len(real)}")
        # derived once: the walks ask for these on every call
        object.__setattr__(self, "_real", tuple(real))

    # --- sizes with the kernel's names -----------------------------------
    def level(self, name: str) -> Level:
        return self.levels[LEVEL_NAMES.index(name)]

    @property
    def mask(self) -> int:
        """All ones in a word: ``~0UL``."""
        return (1 << self.word_bits) - 1

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def PGDIR_SHIFT(self) -> int:
        return self.levels[0].shift

    @property
    def P4D_SHIFT(self) -> int:
        return self.levels[1].shift

    @property
    def PUD_SHIFT(self) -> int:
        return self.levels[2].shift

    @property
    def PMD_SHIFT(self) -> int:
        return self.levels[3].shift

    @property
    def PGDIR_SIZE(self) -> int:
        return 1 << self.PGDIR_SHIFT

    @property
    def P4D_SIZE(self) -> int:
        return 1 << self.P4D_SHIFT

    @property
    def PUD_SIZE(self) -> int:
        return 1 << self.PUD_SHIFT

    @property
    def PMD_SIZE(self) -> int:
        return 1 << self.PMD_SHIFT

    @property
    def real_levels(self) -> tuple[Level, ...]:
        """The levels that have tables of their own, top first."""
        return self._real

    @property
    def table_levels(self) -> tuple[Level, ...]:
        """Real levels below the pgd: the tables that come and go."""
        return self._real[1:]

    def table_span_shift(self, name: str) -> int:
        """log2 of the VA span of one table of level ``name`` (its parent entry's span)."""
        real = self.real_levels
        for upper, lower in zip(real, real[1:]):
            if lower.name == name:
                return upper.shift
        raise KeyError(f"{self.name}: {name} is not a real level below the pgd")

    def table_span(self, name: str) -> int:
        return 1 << self.table_span_shift(name)

    @property
    def top(self) -> int:
        """One past the highest address of the word: 2**word_bits."""
        return 1 << self.word_bits

    # --- unsigned arithmetic ------------------------------------------------
    def u(self, x: int) -> int:
        """``x`` as an unsigned long: wrapped modulo 2**word_bits."""
        return x & self.mask

    def addr_end(self, addr: int, end: int, size: int) -> int:
        """``p?d_addr_end``: the next ``size`` boundary after addr, or end.

        A boundary that wraps to 0 and an ``end`` of 0 both mean the top of
        the address space, hence the comparison of ``x - 1`` values.
        """
        m = self.mask
        boundary = ((addr + size) & m) & ~(size - 1)
        return boundary if ((boundary - 1) & m) < ((end - 1) & m) else end

    def describe(self) -> str:
        """One line per level: name, entries, span, table bytes."""
        rows = []
        for lv in self.levels:
            if lv.folded:
                rows.append(f"  {lv.name:<4} folded")
            else:
                extra = " (preallocated with the pgd)" if lv.preallocated else ""
                rows.append(
                    f"  {lv.name:<4} {lv.ptrs:>5} entries x {_span(1 << lv.shift):>8}, "
                    f"table {lv.table_bytes} bytes{extra}"
                )
        return "\n".join(rows)


def _span(n: int) -> str:
    for unit, shift in (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}iB"
    return f"{n} B"


def _levels(*rows: tuple) -> tuple[Level, ...]:
    """Build the five rows from (name, shift, ptrs, entry_bytes[, flags]) tuples.

    Missing names are folded into the level above them.
    """
    given = {row[0]: row for row in rows}
    out: list[Level] = []
    for name in LEVEL_NAMES:
        if name in given:
            row = given[name]
            flags = row[4] if len(row) > 4 else ""
            out.append(Level(name, row[1], row[2], row[3], False, "prealloc" in flags))
        else:
            out.append(Level(name, out[-1].shift, 1, out[-1].entry_bytes, True))
    return tuple(out)


X86_64 = Geometry(
    name="x86_64",
    word_bits=64,
    page_shift=12,
    levels=_levels(("pgd", 39, 512, 8), ("pud", 30, 512, 8), ("pmd", 21, 512, 8), ("pte", 12, 512, 8)),
    task_size=0x7FFFFFFFF000,
    mmap_base=0x7FFFF7FFF000,
    start_brk=0x555555559000,
    exec_implies_read=False,
    description="x86_64, 4-level, 47-bit user space (this machine)",
)

X86_64_LA57 = Geometry(
    name="x86_64-la57",
    word_bits=64,
    page_shift=12,
    levels=_levels(
        ("pgd", 48, 512, 8), ("p4d", 39, 512, 8), ("pud", 30, 512, 8), ("pmd", 21, 512, 8), ("pte", 12, 512, 8)
    ),
    task_size=0xFFFFFFFFFFF000,
    mmap_base=0x7FFFF7FFF000,
    start_brk=0x555555559000,
    exec_implies_read=False,
    description="x86_64 with 5-level paging (LA57), 56-bit user space",
)

I386 = Geometry(
    name="i386",
    word_bits=32,
    page_shift=12,
    levels=_levels(("pgd", 22, 1024, 4), ("pte", 12, 1024, 4)),
    task_size=0xC0000000,
    mmap_base=0xB7FFF000,
    start_brk=0x0804C000,
    description="i386 without PAE, 2-level, 4 MiB per PTE table",
)

I386_PAE = Geometry(
    name="i386-pae",
    word_bits=32,
    page_shift=12,
    levels=_levels(("pgd", 30, 4, 8), ("pmd", 21, 512, 8, "prealloc"), ("pte", 12, 512, 8)),
    task_size=0xC0000000,
    mmap_base=0xB7FFF000,
    start_brk=0x0804C000,
    description="i386 with PAE, 3-level, PMD pages live with the PGD",
)

PRESETS: dict[str, Geometry] = {g.name: g for g in (X86_64, X86_64_LA57, I386, I386_PAE)}


def get_arch(name: str | Geometry) -> Geometry:
    """The preset called ``name`` (a Geometry is returned as it is)."""
    if isinstance(name, Geometry):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(PRESETS))}") from None
