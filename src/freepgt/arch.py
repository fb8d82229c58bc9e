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

The presets of the seed's time (2.6.10 - 2.6.12: ``x86_64-2.6.10``,
``ia64``, ``ppc64``, ``sparc64``, ``arm``) and today's arm64 granules carry
their quirks as data as well: ia64's regions and RGN_MAP_LIMIT, sparc64's VA
hole and VPTE area, the hugepage-only areas of ia64 and ppc64 and how each
architecture keeps its huge ptes, ARM's FIRST_USER_ADDRESS and the vector
PTE page that comes with its pgd.  Every quirk defaults to "absent", so a
plain geometry is exactly what it was.  Tables are keyed by their first
address shifted right by their span on every architecture; ``pgd_index``
says why that names ia64's region-split pgd slots soundly.
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
    """A page-table shape: the data an architecture preset is made of.

    The kernel's constants follow from the fields and are set once:
    ``mask`` (``~0UL``), ``top`` (2**word_bits), ``page_size``, and
    ``PGDIR_SHIFT``/``P4D_SHIFT``/``PUD_SHIFT``/``PMD_SHIFT`` with their
    ``*_SIZE``.
    """

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

    # --- architecture quirks (the defaults are "none": a flat address space) ---
    #: ``TASK_UNMAPPED_BASE`` where it is not PAGE_ALIGN(TASK_SIZE / 3)
    #: (0: the era's default); the legacy bottom-up placement starts there.
    task_unmapped_base: int = 0
    #: Where the stack of a fresh exec ends (0: TASK_SIZE).
    stack_top: int = 0
    #: ``HPAGE_SHIFT``: log2 of the huge page size; 0 when the preset has no hugetlb.
    hpage_shift: int = 0
    #: How ``huge_pte_alloc`` builds the tables of a huge page:
    #: ``"leaf"``: the huge pte is an entry of the level whose entries span
    #: HPAGE_SIZE, so the tables above it are allocated at the address
    #: (x86 pmd or i386 pgd, arm64 pmd); ``"pte"``: huge pages made of
    #: ordinary ptes in ordinary tables (sparc64); ``"rescaled"``: ordinary
    #: tables at ``htlbpage_to_page(addr)`` (ia64); ``"separate"``: a
    #: two-level huge pgdir of its own, freed only by ``destroy_context``
    #: (ppc64).
    hugetlb_tables: str = "leaf"
    #: The areas ``is_hugepage_only_range`` reports: only hugetlb mappings
    #: may lie there, and free_pgtables hands their vmas to
    #: ``hugetlb_free_pgd_range`` (ia64 region 4, ppc64 1 TB - 1.5 TB).
    hugepage_only: tuple[tuple[int, int], ...] = ()
    #: ``"contains"``: a range is hugepage-only when its first and last byte
    #: lie in an area (ia64: both in REGION_HPAGE); ``"touches"``: when
    #: ``addr > BASE - len && addr < END`` in unsigned arithmetic (ppc64's
    #: ``touches_hugepage_high_range``).
    hugepage_only_test: str = "touches"
    #: A hole in the middle of the address space that no mapping may touch
    #: (sparc64: VA bit 43 sign-extends, ``[-PAGE_OFFSET, PAGE_OFFSET)``).
    va_hole: tuple[int, int] | None = None
    #: ia64: log2 of a region's size (the region number is addr >> this);
    #: 0 on flat address spaces.
    region_shift: int = 0
    #: ia64 ``RGN_MAP_LIMIT``: offsets within a region below this are mappable.
    region_map_limit: int = 0
    #: ARM with low vectors: ``get_pgd_slow`` allocates the PTE table of
    #: [0, PMD_SIZE) with the pgd (for the machine vector page) and
    #: ``pgd_free`` frees it; free_pgtables never does (FIRST_USER_ADDRESS).
    vectors_pte: bool = False
    #: sparc64: the base of the linear "VPTE" mapping of the user page tables,
    #: whose TLB entries ``flush_tlb_pgtables`` flushes; None elsewhere.
    vpte_base: int | None = None

    def __post_init__(self) -> None:
        names = tuple(level.name for level in self.levels)
        if names != LEVEL_NAMES:
            raise ValueError(f"{self.name}: levels must be {LEVEL_NAMES}, got {names}")
        # the kernel's constants, derived once: the walks read them on every call
        derived = {
            "mask": (1 << self.word_bits) - 1,   # ~0UL
            "top": 1 << self.word_bits,          # one past the highest address
            "page_size": 1 << self.page_shift,
            "PGDIR_SHIFT": self.levels[0].shift,
            "P4D_SHIFT": self.levels[1].shift,
            "PUD_SHIFT": self.levels[2].shift,
            "PMD_SHIFT": self.levels[3].shift,
        }
        for name in ("PGDIR", "P4D", "PUD", "PMD"):
            derived[f"{name}_SIZE"] = 1 << derived[f"{name}_SHIFT"]
        for key, value in derived.items():
            object.__setattr__(self, key, value)
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
        if self.hugetlb_tables not in ("leaf", "pte", "rescaled", "separate"):
            raise ValueError(f"{self.name}: unknown hugetlb_tables {self.hugetlb_tables!r}")
        if self.hpage_shift and not self.page_shift < self.hpage_shift < self.word_bits:
            raise ValueError(f"{self.name}: HPAGE_SHIFT {self.hpage_shift} out of range")
        if self.hugepage_only_test not in ("contains", "touches"):
            raise ValueError(f"{self.name}: unknown hugepage_only_test {self.hugepage_only_test!r}")
        if (self.hugetlb_tables == "rescaled") != bool(self.region_shift and self.hugepage_only):
            raise ValueError(f"{self.name}: rescaled huge tables need regions and a hugepage-only area")
        if self.va_hole is not None and not 0 < self.va_hole[0] < self.va_hole[1] <= self.top:
            raise ValueError(f"{self.name}: bad VA hole {self.va_hole}")
        if self.region_shift and not 0 < self.region_map_limit <= 1 << self.region_shift:
            raise ValueError(f"{self.name}: regions need a RGN_MAP_LIMIT")
        # derived once: the walks ask for these on every call
        object.__setattr__(self, "_real", tuple(real))
        object.__setattr__(self, "_holes", self._unmappable())
        object.__setattr__(self, "_placement_holes", {
            False: tuple(sorted(self._holes + self.hugepage_only)),
            True: self._holes,
        })

    # --- sizes with the kernel's names -----------------------------------
    def level(self, name: str) -> Level:
        return self.levels[LEVEL_NAMES.index(name)]

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

    # --- regions, holes and huge pages --------------------------------------
    @property
    def HPAGE_SIZE(self) -> int:
        """``HPAGE_SIZE``; 0 when the preset has no hugetlb."""
        return 1 << self.hpage_shift if self.hpage_shift else 0

    @property
    def huge_pte_level(self) -> str:
        """The level whose entries map one huge page (``huge_pte_alloc``'s leaf).

        For ``hugetlb_tables == "leaf"`` the real level whose entries span
        HPAGE_SIZE (pmd on x86_64, pgd on i386 without PAE); ``"pte"`` when
        huge pages are built from ordinary ptes or no level matches.
        """
        if self.hugetlb_tables == "leaf":
            for lv in self.real_levels:
                if lv.shift == self.hpage_shift:
                    return lv.name
        return "pte"

    def region(self, addr: int) -> int:
        """``REGION_NUMBER(addr)`` (ia64: bits 63-61); 0 on flat address spaces."""
        return addr >> self.region_shift if self.region_shift else 0

    def region_offset(self, addr: int) -> int:
        """``REGION_OFFSET(addr)``: the address within its region."""
        return addr & ((1 << self.region_shift) - 1) if self.region_shift else addr

    def pgd_index(self, addr: int) -> int:
        """``pgd_index(addr)``: the slot of the pgd that maps addr.

        Flat geometries take the bits above PGDIR_SHIFT.  ia64 splits its pgd
        among the eight regions: ``region << (PAGE_SHIFT - 6) | slot``, the
        slot being the low bits of ``addr >> PGDIR_SHIFT`` within the region
        (include/asm-ia64/pgtable.h).

        The model's tables are keyed by ``addr >> span`` rather than by this
        index.  Within one region both numberings are in the same order and
        one-to-one for every mappable address (offsets below RGN_MAP_LIMIT
        fit the region's slots), and no walk of free_pgd_range, zap or fault
        crosses a region boundary (a vma never spans the unmappable tail of
        a region), so the two name the same tables.
        """
        ptrs = self.levels[0].ptrs
        if not self.region_shift:
            return (addr >> self.PGDIR_SHIFT) & (ptrs - 1)
        slots = ptrs >> (self.word_bits - self.region_shift)
        slot_bits = slots.bit_length() - 1
        return (self.region(addr) << slot_bits) | ((addr >> self.PGDIR_SHIFT) & (slots - 1))

    def htlbpage_to_page(self, addr: int) -> int:
        """ia64 ``htlbpage_to_page``: where the tables of a huge page are kept.

        ``(REGION_NUMBER(x) << 61) | (REGION_OFFSET(x) >> (HPAGE_SHIFT -
        PAGE_SHIFT))``: the region-4 offset is scaled down so that one base
        page of "table address" stands for one huge page, and the ordinary
        pgd/pmd/pte walk then finds one pte per huge page
        (include/asm-ia64/page.h).
        """
        return (self.region(addr) << self.region_shift) | (
            self.region_offset(addr) >> (self.hpage_shift - self.page_shift))

    def is_hugepage_only_range(self, addr: int, length: int) -> bool:
        """``is_hugepage_only_range(mm, addr, len)`` of 2.6.12.

        ia64 (``"contains"``): the first and the last byte lie in
        REGION_HPAGE (the test freepgt 3/6 fixed to use ``addr+len-1``).
        ppc64 (``"touches"``): ``touches_hugepage_high_range``, i.e.
        ``addr > TASK_HPAGE_BASE - len && addr < TASK_HPAGE_END`` with
        unsigned arithmetic, so a range that merely starts within ``len``
        below the area counts.  The per-mm low 256 MB hugepage segments of
        ppc64 are not modelled.  False everywhere else.
        """
        if not self.hugepage_only:
            return False
        m = self.mask
        for base, end in self.hugepage_only:
            if self.hugepage_only_test == "contains":
                last = (addr + length - 1) & m
                if base <= addr < end and base <= last < end:
                    return True
            elif addr > ((base - length) & m) and addr < end:
                return True
        return False

    @property
    def reserved_tables(self) -> tuple[tuple[str, int, int], ...]:
        """Tables that come and go with the pgd, not with any vma: (level, start, end).

        ARM's vector PTE table for [0, PMD_SIZE) (``get_pgd_slow`` /
        ``free_pgd_slow``).  free_pgtables never frees them and the invariant
        checks do not ask for a vma above them.
        """
        if self.vectors_pte:
            return (("pte", 0, self.PMD_SIZE),)
        return ()

    def unmappable(self) -> tuple[tuple[int, int], ...]:
        """The parts of user space no mapping may use, sorted.

        sparc64's VA hole, and on ia64 the tail of every user region past
        RGN_MAP_LIMIT (the unimplemented address bits).  Empty on a flat
        address space.
        """
        return self._holes

    def _unmappable(self) -> tuple[tuple[int, int], ...]:
        """Work out ``unmappable()`` (once, from ``__post_init__``)."""
        out = []
        if self.va_hole is not None:
            out.append(self.va_hole)
        if self.region_shift:
            size = 1 << self.region_shift
            for r in range(-(-self.task_size // size)):
                out.append(((r << self.region_shift) + self.region_map_limit, (r + 1) << self.region_shift))
        return tuple(sorted(out))

    def placement_holes(self, hugetlb: bool = False) -> tuple[tuple[int, int], ...]:
        """What a search for free address space must step over, sorted.

        The unmappable parts, and for a normal mapping the hugepage-only
        areas as well (the arch ``get_unmapped_area`` of ppc64 jumps over
        them, ia64 never searches region 4 for a normal mapping).
        """
        return self._placement_holes[bool(hugetlb)]

    def quirks(self) -> list[str]:
        """One line per architecture quirk the preset models (empty for a plain one)."""
        out = []
        if self.first_user_address:
            out.append(f"FIRST_USER_ADDRESS {self.first_user_address:#x}")
        if self.region_shift:
            n = -(-self.task_size >> self.region_shift)
            slots = self.levels[0].ptrs >> (self.word_bits - self.region_shift)
            out.append(f"regions 0-{n - 1} for users (region = addr >> {self.region_shift}), "
                       f"{_span(self.region_map_limit + self.page_size)} per region less one page "
                       f"mappable (RGN_MAP_LIMIT {self.region_map_limit:#x}); "
                       f"pgd index = region << {slots.bit_length() - 1} | slot")
        if self.va_hole is not None:
            out.append(f"VA hole [{self.va_hole[0]:#x}, {self.va_hole[1]:#x})")
        if self.hpage_shift:
            how = {"leaf": f"huge pte at the {self.huge_pte_level} level",
                   "pte": "built from ordinary ptes",
                   "rescaled": "tables at htlbpage_to_page(addr)",
                   "separate": "separate two-level huge tables, freed by destroy_context"}
            out.append(f"HPAGE_SIZE {_span(self.HPAGE_SIZE)}: {how[self.hugetlb_tables]}")
        for base, end in self.hugepage_only:
            out.append(f"hugepage-only [{base:#x}, {end:#x})")
        for level, start, end in self.reserved_tables:
            out.append(f"reserved {level} table for [{start:#x}, {end:#x}) (vectors page, freed by pgd_free)")
        if self.vpte_base is not None:
            out.append(f"flush_tlb_pgtables flushes the VPTE area at {self.vpte_base:#x}")
        if self.task_unmapped_base:
            out.append(f"TASK_UNMAPPED_BASE {self.task_unmapped_base:#x}")
        return out

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
    hpage_shift=21,
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
    hpage_shift=21,
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
    hpage_shift=22,
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
    hpage_shift=21,
    description="i386 with PAE, 3-level, PMD pages live with the PGD",
)

# --- presets of the seed's time (2.6.10 - 2.6.12), from the headers of those trees ---

X86_64_2_6_10 = Geometry(
    # include/asm-x86_64/pgtable.h before 4-level tables: the generic code
    # sees three levels (PGDIR_SHIFT 30, PMD_SHIFT 21, 512 entries each);
    # the arch keeps a private PML4 above them whose slot 0 is the user's.
    name="x86_64-2.6.10",
    word_bits=64,
    page_shift=12,
    levels=_levels(("pgd", 30, 512, 8), ("pmd", 21, 512, 8), ("pte", 12, 512, 8)),
    task_size=0x7FC0000000,
    mmap_base=0x7FB8000000,
    start_brk=0x00501000,
    hpage_shift=21,
    description="x86_64 as 2.6.10's generic code saw it: 3 levels under the arch's PML4, 511 GiB of user space",
)

#: ia64 RGN_MAP_LIMIT with 16 KiB pages: (1 << (4*PAGE_SHIFT - 12)) - PAGE_SIZE
IA64_RGN_MAP_LIMIT = (1 << 44) - (1 << 14)

IA64 = Geometry(
    # include/asm-ia64/pgtable.h, page.h (16 KiB pages, the Kconfig default):
    # PGDIR_SHIFT = PAGE_SHIFT + 2*(PAGE_SHIFT-3) = 36, PTRS_PER_PGD =
    # 2^(PAGE_SHIFT-3) = 2048 split among the 8 regions (256 slots each),
    # pud folded (pgtable-nopud.h), PMD_SHIFT = 2*PAGE_SHIFT-3 = 25,
    # PTRS_PER_PMD = PTRS_PER_PTE = 2048.  Regions 0-4 are user space
    # (DEFAULT_TASK_SIZE 0xa000000000000000), region 4 is REGION_HPAGE.
    name="ia64",
    word_bits=64,
    page_shift=14,
    levels=_levels(("pgd", 36, 2048, 8), ("pmd", 25, 2048, 8), ("pte", 14, 2048, 8)),
    task_size=0xA000000000000000,
    # DEFAULT_MAP_BASE: 64-bit mmaps go to region 1
    task_unmapped_base=0x2000000000000000,
    mmap_base=0x2000000000000000 + (1 << 44) - (1 << 27),
    # data and brk live in region 3, the stack at its mappable top
    start_brk=0x6000000000008000,
    stack_top=0x6000000000000000 + IA64_RGN_MAP_LIMIT,
    hpage_shift=28,  # HPAGE_SHIFT_DEFAULT: 256 MiB
    hugetlb_tables="rescaled",
    hugepage_only=((0x8000000000000000, 0xA000000000000000),),
    hugepage_only_test="contains",
    region_shift=61,
    region_map_limit=IA64_RGN_MAP_LIMIT,
    description="ia64, 16 KiB pages, 3 levels, 8 regions of 2^61 (0-4 user, 4 for huge pages)",
)

PPC64 = Geometry(
    # include/asm-ppc64/pgtable.h: PTE_INDEX_SIZE 9, PMD_INDEX_SIZE 10,
    # PGD_INDEX_SIZE 10; pmd and pgd entries are 32-bit ("each entry is
    # page aligned"), so every table is one 4 KiB page; pud folded.
    # TASK_SIZE_USER64 2 TB, TASK_UNMAPPED_BASE_USER64 = TASK_SIZE/4, and
    # the 64-bit hugepage area TASK_HPAGE_BASE..TASK_HPAGE_END (page.h).
    name="ppc64",
    word_bits=64,
    page_shift=12,
    levels=_levels(("pgd", 31, 1024, 4), ("pmd", 21, 1024, 4), ("pte", 12, 512, 8)),
    task_size=0x20000000000,
    task_unmapped_base=0x8000000000,
    mmap_base=0x20000000000 - (1 << 27),
    start_brk=0x10020000,
    hpage_shift=24,  # 16 MiB
    hugetlb_tables="separate",
    hugepage_only=((0x10000000000, 0x18000000000),),
    hugepage_only_test="touches",
    description="ppc64, 4 KiB pages, 3 levels, 41-bit user space, 1-1.5 TB for huge pages only",
)

SPARC64 = Geometry(
    # include/asm-sparc64/pgtable.h, processor.h (8 KiB pages): PMD_SHIFT =
    # PAGE_SHIFT + (PAGE_SHIFT-3) = 23, PMD_BITS = PGDIR_BITS = PAGE_SHIFT-2
    # (4-byte pmd and pgd entries, one page per table), PGDIR_SHIFT = 34,
    # PTRS_PER_PTE 1024; pud folded.  VA_BITS 44 with bit 43 sign-extended
    # leaves the hole [0x0000080000000000, 0xfffff80000000000);
    # TASK_SIZE = -VPTE_SIZE = 2^64 - 2^34; VPTE_BASE = -(VPTE_SIZE/2).
    name="sparc64",
    word_bits=64,
    page_shift=13,
    levels=_levels(("pgd", 34, 2048, 4), ("pmd", 23, 2048, 4), ("pte", 13, 1024, 8)),
    task_size=(1 << 64) - (1 << 34),
    # 64-bit: TASK_UNMAPPED_BASE is PAGE_OFFSET, above the hole
    task_unmapped_base=0xFFFFF80000000000,
    stack_top=0x0000080000000000,
    mmap_base=0x0000080000000000 - (1 << 27),
    start_brk=0x00200000,
    hpage_shift=22,  # 4 MiB, made of 512 ordinary 8 KiB ptes
    hugetlb_tables="pte",
    va_hole=(0x0000080000000000, 0xFFFFF80000000000),
    vpte_base=(1 << 64) - (1 << 33),
    description="sparc64, 8 KiB pages, 3 levels, 44-bit VA with a hole in the middle",
)

ARM = Geometry(
    # include/asm-arm/pgtable.h, memory.h (4 KiB pages, 2.6.12): PGDIR_SHIFT
    # 21 with 2048 entries, each entry two 1 MiB hardware entries (a 16 KiB
    # table); pmd folded; a PTE page holds 2 hardware tables of 256 entries
    # and their 2 Linux shadow tables, but the kernel counts it as
    # PTRS_PER_PTE * sizeof(pte_t) = 512 * 4 bytes (task_mmu's VmPTE,
    # mm_inc_nr_ptes), so the table is 2 KiB here.
    # TASK_SIZE = PAGE_OFFSET - 16 MiB; FIRST_USER_ADDRESS = PAGE_SIZE
    # (freepgt2 3/6); get_pgd_slow allocates the vector PTE page.
    name="arm",
    word_bits=32,
    page_shift=12,
    levels=_levels(("pgd", 21, 2048, 8), ("pte", 12, 512, 4)),
    task_size=0xBF000000,
    first_user_address=0x1000,
    mmap_base=0xBF000000 - (1 << 27) - 0x1000,
    start_brk=0x00011000,
    vectors_pte=True,
    description="ARM, 4 KiB pages, 2 levels of 2 MiB slots, low vectors (first PTE page kept)",
)

ARM64_4K = Geometry(
    # arch/arm64/include/asm/pgtable-hwdef.h, 4 KiB granule, VA_BITS 48:
    # 4 levels of 512 entries, PGDIR_SHIFT 39, PUD_SHIFT 30, PMD_SHIFT 21.
    name="arm64-4k",
    word_bits=64,
    page_shift=12,
    levels=_levels(("pgd", 39, 512, 8), ("pud", 30, 512, 8), ("pmd", 21, 512, 8), ("pte", 12, 512, 8)),
    task_size=1 << 48,
    mmap_base=(1 << 48) - (1 << 27),
    start_brk=0xAAAAAAAC0000,
    hpage_shift=21,
    description="arm64, 4 KiB granule, 48-bit VA, 4 levels",
)

ARM64_16K = Geometry(
    # 16 KiB granule, VA_BITS 48 (PGTABLE_LEVELS 4; the only 16 KiB layout
    # left once ARM64_VA_BITS_47 was dropped): PTRS_PER_PTE/PMD/PUD 2048
    # (PAGE_SHIFT - 3 = 11 bits each), PMD_SHIFT 25, PUD_SHIFT 36,
    # PGDIR_SHIFT 47 and PTRS_PER_PGD = 1 << (48 - 47) = 2.
    name="arm64-16k",
    word_bits=64,
    page_shift=14,
    levels=_levels(("pgd", 47, 2, 8), ("pud", 36, 2048, 8), ("pmd", 25, 2048, 8), ("pte", 14, 2048, 8)),
    task_size=1 << 48,
    mmap_base=(1 << 48) - (1 << 27),
    start_brk=0xAAAAAAAC0000,
    hpage_shift=25,
    description="arm64, 16 KiB granule, 48-bit VA, 4 levels (a 2-entry pgd)",
)

ARM64_16K_47 = Geometry(
    # 16 KiB granule, VA_BITS 47: ARM64_HW_PGTABLE_LEVELS(47) = (47-4)/11 = 3
    # (Kconfig "default 3 if ARM64_16K_PAGES && ARM64_VA_BITS_47"):
    # PGDIR_SHIFT 36 with 1 << (47 - 36) = 2048 entries, PMD_SHIFT 25.
    name="arm64-16k-47",
    word_bits=64,
    page_shift=14,
    levels=_levels(("pgd", 36, 2048, 8), ("pmd", 25, 2048, 8), ("pte", 14, 2048, 8)),
    task_size=1 << 47,
    mmap_base=(1 << 47) - (1 << 27),
    start_brk=0x555555560000,
    hpage_shift=25,
    description="arm64, 16 KiB granule, 47-bit VA, 3 levels",
)

ARM64_64K = Geometry(
    # 64 KiB granule, VA_BITS 48: (48-4)/13 = 3 levels of 8192 entries
    # below a pgd of 1 << (48 - 42) = 64 entries; PMD_SHIFT 29, PGDIR_SHIFT 42.
    name="arm64-64k",
    word_bits=64,
    page_shift=16,
    levels=_levels(("pgd", 42, 64, 8), ("pmd", 29, 8192, 8), ("pte", 16, 8192, 8)),
    task_size=1 << 48,
    mmap_base=(1 << 48) - (1 << 27),
    start_brk=0xAAAAAAAC0000,
    hpage_shift=29,
    description="arm64, 64 KiB granule, 48-bit VA, 3 levels (a 64-entry pgd)",
)

PRESETS: dict[str, Geometry] = {g.name: g for g in (
    X86_64, X86_64_LA57, I386, I386_PAE, X86_64_2_6_10, IA64, PPC64, SPARC64, ARM,
    ARM64_4K, ARM64_16K, ARM64_16K_47, ARM64_64K,
)}


def get_arch(name: str | Geometry) -> Geometry:
    """The preset called ``name`` (a Geometry is returned as it is)."""
    if isinstance(name, Geometry):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(PRESETS))}") from None
