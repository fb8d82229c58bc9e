"""The architecture presets of the seed's time and their quirks, worked out by hand.

Every number here comes from kernel-notes.md section 5 and the headers it
cites (include/asm-{ia64,ppc64,sparc64,arm}/pgtable.h, page.h, processor.h;
arch/arm64/include/asm/pgtable-hwdef.h), not from freepgt.arch.
"""

import errno

import pytest

from freepgt import KernelBug, Process
from freepgt.arch import PRESETS, get_arch
from freepgt.archhooks import flush_tlb_pgtables
from freepgt.eras import get_era
from freepgt.ops.run import run_ops
from freepgt.ops.script import parse_script

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40
R1, R3, R4 = 1 << 61, 3 << 61, 4 << 61          # ia64 region bases
PAGE_OFFSET_SPARC = 0xFFFFF80000000000           # sparc64: the first address above the hole
VPTE_BASE = (1 << 64) - (1 << 33)                # sparc64: -(VPTE_SIZE / 2), VPTE_SIZE = 2^(44-13+3)

# name: (page, PMD_SIZE, PUD_SIZE, PGDIR_SIZE, [(real level, entries, table bytes)], TASK_SIZE)
GEOMETRY = {
    # 3 generic levels under the arch PML4: 1 GiB pgd slots, 2 MiB PTE tables
    "x86_64-2.6.10": (4 * K, 2 * M, 1 * G, 1 * G,
                      [("pgd", 512, 4096), ("pmd", 512, 4096), ("pte", 512, 4096)], 0x7FC0000000),
    # p = 14: pgd 3p-6 = 36, pmd 2p-3 = 25, 2^(p-3) = 2048 entries of 8 bytes
    "ia64": (16 * K, 32 * M, 64 * G, 64 * G,
             [("pgd", 2048, 16384), ("pmd", 2048, 16384), ("pte", 2048, 16384)], 0xA000000000000000),
    # 1024 x 4-byte pgd and pmd entries, 512 x 8-byte ptes: 4 KiB each
    "ppc64": (4 * K, 2 * M, 2 * G, 2 * G,
              [("pgd", 1024, 4096), ("pmd", 1024, 4096), ("pte", 512, 4096)], 0x20000000000),
    # 8 KiB pages: 2048 x 4-byte pgd/pmd entries, 1024 x 8-byte ptes
    "sparc64": (8 * K, 8 * M, 16 * G, 16 * G,
                [("pgd", 2048, 8192), ("pmd", 2048, 8192), ("pte", 1024, 8192)], (1 << 64) - (1 << 34)),
    # 2048 pgd entries of two hardware words (16 KiB), a 4 KiB page of 512 ptes
    # ARM's PTE page is 4 KiB (hardware and Linux tables) but counted as
    # PTRS_PER_PTE * sizeof(pte_t) = 512 * 4 bytes
    "arm": (4 * K, 2 * M, 2 * M, 2 * M, [("pgd", 2048, 16384), ("pte", 512, 2048)], 0xBF000000),
    "arm64-4k": (4 * K, 2 * M, 1 * G, 512 * G,
                 [("pgd", 512, 4096), ("pud", 512, 4096), ("pmd", 512, 4096), ("pte", 512, 4096)], 1 << 48),
    # 16 KiB, 48-bit VA: 11 bits a level, PGDIR_SHIFT 47 leaves a 2-entry pgd
    "arm64-16k": (16 * K, 32 * M, 64 * G, 128 * T,
                  [("pgd", 2, 16), ("pud", 2048, 16384), ("pmd", 2048, 16384), ("pte", 2048, 16384)], 1 << 48),
    # 16 KiB, 47-bit VA: (47 - 4) / 11 = 3 levels, PGDIR_SHIFT 36 with 2048 entries
    "arm64-16k-47": (16 * K, 32 * M, 64 * G, 64 * G,
                     [("pgd", 2048, 16384), ("pmd", 2048, 16384), ("pte", 2048, 16384)], 1 << 47),
    # 64 KiB, 48-bit VA: 13 bits a level, PGDIR_SHIFT 42 leaves 64 entries
    "arm64-64k": (64 * K, 512 * M, 4 * T, 4 * T,
                  [("pgd", 64, 512), ("pmd", 8192, 65536), ("pte", 8192, 65536)], 1 << 48),
}


@pytest.mark.parametrize("name", sorted(GEOMETRY))
def test_geometry(name):
    page, pmd, pud, pgdir, levels, task_size = GEOMETRY[name]
    g = get_arch(name)
    assert g.page_size == page
    assert (g.PMD_SIZE, g.PUD_SIZE, g.PGDIR_SIZE) == (pmd, pud, pgdir)
    assert [(lv.name, lv.ptrs, lv.table_bytes) for lv in g.real_levels] == levels
    assert g.task_size == task_size


def test_x86_presets_have_no_quirks():
    # none of the special cases of the other architectures applies to x86
    for name in ("x86_64", "x86_64-la57", "i386", "i386-pae"):
        g = get_arch(name)
        assert g.first_user_address == 0 and not g.hugepage_only and g.va_hole is None
        assert not g.region_shift and not g.vectors_pte and g.vpte_base is None
        assert g.reserved_tables == () and g.unmappable() == ()


def test_presets_cover_the_other_architectures():
    assert {"x86_64-2.6.10", "ia64", "ppc64", "sparc64", "arm", "arm64-4k", "arm64-16k",
            "arm64-16k-47", "arm64-64k"} <= set(PRESETS)


# one page touched at an address in plain user space: the tables it needs
# (the PTE table and every real level above it but the pgd), and VmPTE as
# 2.6.12 counts it (PTE tables) and as 6.18 does (pud, pmd and pte tables)
TOUCH = {
    "x86_64-2.6.10": (1 * G, {"pmd": 1, "pte": 1}, 4096, 8192),
    "ia64": (R1 + 64 * G, {"pmd": 1, "pte": 1}, 16384, 32768),
    "ppc64": (0x10000000, {"pmd": 1, "pte": 1}, 4096, 8192),
    "sparc64": (PAGE_OFFSET_SPARC, {"pmd": 1, "pte": 1}, 8192, 16384),
    "arm64-4k": (1 * T, {"pud": 1, "pmd": 1, "pte": 1}, 4096, 12288),
    "arm64-16k": (1 * T, {"pud": 1, "pmd": 1, "pte": 1}, 16384, 49152),
    "arm64-16k-47": (1 * T, {"pmd": 1, "pte": 1}, 16384, 32768),
    "arm64-64k": (1 * T, {"pmd": 1, "pte": 1}, 65536, 131072),
}


@pytest.mark.parametrize("era", ["linux-2.6.12", "linux-6.18"])
@pytest.mark.parametrize("name", sorted(TOUCH))
def test_touch_and_munmap(era, name):
    addr, tables, vmpte_2612, vmpte_618 = TOUCH[name]
    p = Process(era=era, arch=name, check=True)
    page = p.geom.page_size
    p.mmap(addr, page, "rw-", "private,anon,fixed")
    p.touch(addr, page, "w")
    assert p.tables() == tables
    assert p.pgtables_bytes == (vmpte_2612 if era == "linux-2.6.12" else vmpte_618)
    assert p.nr_ptes == 1
    # the only vma: floor FIRST_USER_ADDRESS (0), ceiling 0, every table goes
    p.munmap(addr, page)
    assert p.tables() == {name: 0 for name in tables}
    assert p.pgtables_bytes == 0
    report = p.exit()
    assert report.tables_left == {}


@pytest.mark.parametrize("era", ["linux-2.6.12", "linux-6.18"])
def test_arm_touch_and_munmap(era):
    # a fresh ARM mm already holds the vector PTE page of [0, 2 MiB)
    p = Process(era=era, arch="arm", check=True)
    assert p.tables() == {"pte": 1} and p.nr_ptes == 1 and p.pgtables_bytes == 2048
    p.mmap(0x40000000, 4 * K, "rw-", "private,anon,fixed")
    p.touch(0x40000000, 4 * K, "w")
    assert p.tables() == {"pte": 2} and p.pgtables_bytes == 4096
    p.munmap(0x40000000, 4 * K)
    assert p.tables() == {"pte": 1} and p.nr_ptes == 1


# ---------------------------------------------------------------------------
# ARM: FIRST_USER_ADDRESS and the vector page (kernel-notes 4.6, 8 case 13)
# ---------------------------------------------------------------------------

def test_case_13_arm_first_pmd():
    # only vma [0x8000, 0x9000), munmapped with no neighbours: floor is
    # FIRST_USER_ADDRESS 4096, addr rounds to 0 < 4096 and moves to 2 MiB,
    # past end - 1: nothing freed; the vector PTE page survives and exit
    # allows nr_ptes == (4096 + 2 MiB - 1) >> 21 == 1
    p = Process(era="linux-2.6.12", arch="arm", check=True)
    p.mmap(0x8000, 0x1000, "rw-", "private,anon,fixed")
    p.touch(0x8000, 0x1000, "w")
    assert p.tables() == {"pte": 1}
    p.munmap(0x8000, 0x1000)
    assert p.tables() == {"pte": 1} and p.nr_ptes == 1
    assert p.mm.stats["free_pgd_range_calls"] == 1 and p.mm.tlb_stats.tables_freed == {}
    report = p.exit()
    assert report.tables_left == {"pte": 1} and report.tables_freed == {}


def test_arm_vector_page_at_fork():
    # the child's pgd comes with its own vector page; copying the parent's
    # tables over [0x8000, 0x9000) finds it there already
    p = Process(era="linux-2.6.12", arch="arm", check=True)
    p.mmap(0x8000, 0x1000, "rw-", "private,anon,fixed")
    p.touch(0x8000, 0x1000, "w")
    c = p.fork()
    assert c.tables() == {"pte": 1} and c.nr_ptes == 1
    c.exit()
    p.exit()


def test_arm_exact_bug_on_fires():
    # freepgt 1/6's exact BUG_ON(nr_ptes): a vma above the first 2 MiB
    # never walks the vector page, which is still counted at exit
    for era, fires in (("linux-2.6.12", False), ("linux-2.6.12-rc", True)):
        p = Process(era=era, arch="arm")
        p.mmap(0x400000, 0x1000, "rw-", "private,anon,fixed")
        p.touch(0x400000, 0x1000, "w")
        if fires:
            with pytest.raises(KernelBug, match="nr_ptes is 1"):
                p.exit()
        else:
            assert p.exit().tables_left == {"pte": 1}


def test_case_13_patch_1_frees_the_vector_page():
    # C1 (floor 0): the walk of [0, 0x9000) frees the PTE page holding the
    # vectors -- the bug freepgt2 fixed
    p = Process(era="linux-2.6.12-rc", arch="arm")
    p.mmap(0x8000, 0x1000, "rw-", "private,anon,fixed")
    p.touch(0x8000, 0x1000, "w")
    p.munmap(0x8000, 0x1000)
    assert p.tables() == {"pte": 0} and p.nr_ptes == 0


def test_arm_first_page_is_not_user_space():
    p = Process(era="linux-2.6.12", arch="arm", check=True)
    p.mmap(0x1000, 0x1000, "rw-", "private,anon,fixed")
    p.touch(0x1000, 0x1000, "w")
    # the vma shares the vector PTE page: munmap cannot free it
    p.munmap(0x1000, 0x1000)
    assert p.tables() == {"pte": 1}


# ---------------------------------------------------------------------------
# ia64: regions, RGN_MAP_LIMIT, and hugetlb in region 4 (8 case 14)
# ---------------------------------------------------------------------------

def test_ia64_regions_by_hand():
    g = get_arch("ia64")
    # pgd index = region << (p - 6) | slot, 256 slots of 64 GiB a region
    assert g.pgd_index(R3) == 3 << 8
    assert g.pgd_index(R3 + 5 * 64 * G + 1) == (3 << 8) | 5
    assert g.pgd_index(R4) == 1024
    # htlbpage_to_page: region kept, offset scaled down by 2^(28-14)
    assert g.htlbpage_to_page(R4 + 256 * M) == R4 + 16 * K
    assert g.htlbpage_to_page(R4 + (1 << 39)) == R4 + 32 * M
    assert g.is_hugepage_only_range(R4, 256 * M)
    assert not g.is_hugepage_only_range(R4 - 16 * K, 256 * M)   # starts in region 3
    assert not g.is_hugepage_only_range(0, 256 * M)


def test_ia64_mmap_limits():
    p = Process(era="linux-2.6.12", arch="ia64", check=True)
    limit = (1 << 44) - 16 * K                                   # RGN_MAP_LIMIT
    # the last mappable page of region 3, then one past it
    assert p.mmap(R3 + limit - 16 * K, 16 * K, "rw-", "private,anon,fixed") == R3 + limit - 16 * K
    for addr, length in ((R3 + limit, 16 * K), (R3 + limit - 16 * K, 32 * K), (R1, limit + 16 * K)):
        with pytest.raises(OSError) as e:
            p.mmap(addr, length, "rw-", "private,anon,fixed")
        assert e.value.errno == errno.EINVAL
    # a hint past the limit is refused too (do_mmap2 reads addr whatever the flags)
    with pytest.raises(OSError) as e:
        p.mmap(R1 + limit, 16 * K)
    assert e.value.errno == errno.EINVAL
    # region 4 is for huge pages only: a normal fixed mapping there is EINVAL,
    # a hint there is ignored and the mapping goes to region 1
    with pytest.raises(OSError) as e:
        p.mmap(R4, 16 * K, "rw-", "private,anon,fixed")
    assert e.value.errno == errno.EINVAL
    assert p.mmap(R4, 16 * K) == R1                              # TASK_UNMAPPED_BASE
    # "a zero mmap always succeeds", whatever the arguments
    assert p.mmap(R4 + 5, 0, "rwx", "shared,anon") == R4 + 5


def test_ia64_hugetlb_rules():
    p = Process(era="linux-2.6.12", arch="ia64", check=True)
    for addr, length in ((R4 + 16 * K, 256 * M), (R4, 16 * K), (R3, 256 * M)):
        with pytest.raises(OSError) as e:
            p.mmap(addr, length, "rw-", "private,anon,fixed,hugetlb")
        assert e.value.errno == errno.EINVAL
    # no address: the first huge page of region 4
    assert p.mmap(0, 256 * M, "rw-", "private,anon,hugetlb") == R4
    # an adjacent one never merges with it
    assert p.mmap(R4 + 256 * M, 256 * M, "rw-", "private,anon,fixed,hugetlb") == R4 + 256 * M
    assert len(p.vmas()) == 2
    # one touched byte maps the whole 256 MiB page; its tables are where
    # htlbpage_to_page puts them: R4 + 16 KiB, in the PTE table of R4
    p.touch(R4 + 256 * M + 5, 1, "r")
    assert p.rss == 256 * M
    assert p.tables() == {"pmd": 1, "pte": 1}
    assert p.mm.pt.present("pte", R4) and not p.mm.pt.present("pte", R4 + 256 * M)
    # only whole huge pages can be unmapped
    with pytest.raises(OSError) as e:
        p.munmap(R4 + 256 * M, 16 * K)
    assert e.value.errno == errno.EINVAL


class _Calls:
    """Record each free_pgd_range call and the tables it freed."""

    def __init__(self, monkeypatch):
        import freepgt.mm.memory as memory

        self.calls = []
        real = memory.free_pgd_range

        def spy(mm, tlb, addr, end, floor, ceiling):
            before = dict(tlb.stats.tables_freed)
            real(mm, tlb, addr, end, floor, ceiling)
            freed = {k: v - before.get(k, 0) for k, v in tlb.stats.tables_freed.items() if v - before.get(k, 0)}
            self.calls.append(((addr, end, floor, ceiling), freed))

        monkeypatch.setattr(memory, "free_pgd_range", spy)


def _ia64_case_14(keep_neighbour: bool) -> Process:
    p = Process(era="linux-2.6.12", arch="ia64", check=True)
    if keep_neighbour:
        p.mmap(R3, 16 * K, "rw-", "private,anon,fixed")            # B survives
        p.touch(R3, 16 * K, "w")
    p.mmap(R3 + 32 * K, 16 * K, "rw-", "private,anon,fixed")      # A, region 3
    p.touch(R3 + 32 * K, 16 * K, "w")
    p.mmap(R4 + 256 * M, 256 * M, "rw-", "private,anon,fixed,hugetlb")   # H, region 4
    p.touch(R4 + 256 * M, 1, "w")
    return p


def test_case_14_ia64_region_3_and_huge_region_4_alone(monkeypatch):
    p = _ia64_case_14(keep_neighbour=False)
    assert p.tables() == {"pmd": 2, "pte": 2}
    spy = _Calls(monkeypatch)
    p.munmap(R3 + 32 * K, R4 + 512 * M - (R3 + 32 * K))
    assert spy.calls == [
        # A alone (H is hugepage-only: never gathered); ceiling H's start,
        # which rounds to R4 at PGDIR level: A's PTE and PMD tables go
        ((R3 + 32 * K, R3 + 48 * K, 0, R4 + 256 * M), {"pte": 1, "pmd": 1}),
        # H through hugetlb_free_pgd_range: addr and end scaled, floor 0 and
        # ceiling 0 (the top) left as they are: the rescaled PTE and PMD tables go
        ((R4 + 16 * K, R4 + 32 * K, 0, 0), {"pte": 1, "pmd": 1}),
    ]
    assert p.tables() == {"pmd": 0, "pte": 0} and p.nr_ptes == 0


def test_case_14_ia64_with_a_region_3_survivor(monkeypatch):
    p = _ia64_case_14(keep_neighbour=True)
    spy = _Calls(monkeypatch)
    p.munmap(R3 + 32 * K, R4 + 512 * M - (R3 + 32 * K))
    assert spy.calls == [
        # floor B's end: A's PTE page (R3, 32 MiB) is B's too: nothing freed
        ((R3 + 32 * K, R3 + 48 * K, R3 + 16 * K, R4 + 256 * M), {}),
        # the region-3 floor is not scaled; H's tables lie far above it
        ((R4 + 16 * K, R4 + 32 * K, R3 + 16 * K, 0), {"pte": 1, "pmd": 1}),
    ]
    assert p.tables() == {"pmd": 1, "pte": 1}
    p.exit()


def test_ia64_huge_floor_is_scaled(monkeypatch):
    # H1 = 1 GiB at R4 survives; H2 (one huge page at R4 + 2^39) goes.
    # Scaled: H2's tables at R4 + 32 MiB, floor R4 + 64 KiB: its PTE page
    # (its own) is freed, the PMD table (shared with H1) kept.  Unscaled,
    # floor R4 + 1 GiB would have raised addr past end and leaked the page.
    p = Process(era="linux-2.6.12", arch="ia64", check=True)
    p.mmap(R4, 1 * G, "rw-", "private,anon,fixed,hugetlb")
    p.touch(R4, 1 * G, "w")
    p.mmap(R4 + (1 << 39), 256 * M, "rw-", "private,anon,fixed,hugetlb")
    p.touch(R4 + (1 << 39), 1, "w")
    assert p.tables() == {"pmd": 1, "pte": 2}
    spy = _Calls(monkeypatch)
    p.munmap(R4 + (1 << 39), 256 * M)
    assert spy.calls == [((R4 + 32 * M, R4 + 32 * M + 16 * K, R4 + 64 * K, 0), {"pte": 1})]
    assert p.tables() == {"pmd": 1, "pte": 1}
    p.exit()


def test_ia64_huge_fork_copies_rescaled_tables():
    p = Process(era="linux-2.6.12", arch="ia64", check=True)
    p.mmap(R4, 256 * M, "rw-", "private,anon,fixed,hugetlb")
    p.touch(R4, 1, "w")
    c = p.fork()
    assert c.tables() == {"pmd": 1, "pte": 1} and c.rss == 256 * M
    c.exit()
    p.exit()


# ---------------------------------------------------------------------------
# ppc64: the hugepage area and its separate tables
# ---------------------------------------------------------------------------

def test_ppc64_huge_tables_kept_until_exit(monkeypatch):
    p = Process(era="linux-2.6.12", arch="ppc64", check=True)
    p.mmap(0x10000000, 4 * K, "rw-", "private,anon,fixed")          # N, a normal neighbour
    p.touch(0x10000000, 4 * K, "w")
    assert p.mmap(0, 32 * M, "rw-", "private,anon,hugetlb") == 1 * T   # htlb_get_high_area
    p.touch(1 * T, 32 * M, "w")
    # two 16 MiB huge ptes: one hugepte page (8 GiB) under the huge pgdir,
    # nothing in the ordinary tree
    assert p.mm.huge_tables == {"huge_pgdir": 1, "hugepte": 1}
    assert p.tables() == {"pmd": 1, "pte": 1} and p.rss == 32 * M + 4 * K
    spy = _Calls(monkeypatch)
    p.munmap(0x10000000, 1 * T + 32 * M - 0x10000000)
    # N alone (ceiling H's start, 1 TB): its PTE and PMD tables go; H's
    # hugetlb_free_pgd_range is a no-op, so no second call
    assert spy.calls == [((0x10000000, 0x10001000, 0, 1 * T), {"pte": 1, "pmd": 1})]
    assert p.tables() == {"pmd": 0, "pte": 0} and p.rss == 0
    assert p.mm.huge_tables == {"huge_pgdir": 1, "hugepte": 1}
    p.exit()
    # destroy_context frees them with the mm
    assert p.mm.huge_tables == {"huge_pgdir": 0, "hugepte": 0}
    assert p.mm.stats["huge_tables_freed"] == 2


def test_ppc64_area_rules():
    p = Process(era="linux-2.6.12", arch="ppc64", check=True)
    # normal mappings stay out (EINVAL fixed, hints ignored), huge ones in
    with pytest.raises(OSError) as e:
        p.mmap(1 * T + 16 * M, 4 * K, "rw-", "private,anon,fixed")
    assert e.value.errno == errno.EINVAL
    assert p.mmap(1 * T + 16 * M, 4 * K) == 0x8000000000          # TASK_UNMAPPED_BASE = TASK_SIZE / 4
    with pytest.raises(OSError) as e:
        p.mmap(0x10000000, 16 * M, "rw-", "private,anon,fixed,hugetlb")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        p.mmap(1 * T, 8 * M, "rw-", "private,anon,fixed,hugetlb")
    assert e.value.errno == errno.EINVAL


def test_ppc64_touches_quirk():
    # touches_hugepage_high_range(addr, HPAGE_SIZE) is "addr > 1 TB - 16 MiB":
    # a normal vma starting 2 MiB below the area passes mmap's check (with
    # its own length) but free_pgtables takes it for a hugepage-only vma and
    # hands it to the no-op hugetlb_free_pgd_range: its tables stay, and
    # 2.6.12's exit check fires
    p = Process(era="linux-2.6.12", arch="ppc64")
    p.mmap(1 * T - 2 * M, 2 * M, "rw-", "private,anon,fixed")
    p.touch(1 * T - 2 * M, 4 * K, "w")
    p.munmap(1 * T - 2 * M, 2 * M)
    assert p.tables() == {"pmd": 1, "pte": 1}
    with pytest.raises(KernelBug, match="nr_ptes is 1"):
        p.exit()


# ---------------------------------------------------------------------------
# sparc64: the VA hole and flush_tlb_pgtables (kernel-notes 4.11, 8 case 21)
# ---------------------------------------------------------------------------

def test_sparc64_hole_refused():
    p = Process(era="linux-2.6.12", arch="sparc64", check=True)
    hole = 0x0000080000000000
    for addr, length, flags in ((hole - 8 * K, 16 * K, "fixed"), (hole, 8 * K, "fixed"),
                                (1 << 50, 8 * K, "fixed"), (hole - 8 * K, 16 * K, "")):
        with pytest.raises(OSError) as e:
            p.mmap(addr, length, "rw-", "private,anon," + flags if flags else "private,anon")
        assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:                    # len > -PAGE_OFFSET
        p.mmap(0, hole + 8 * K)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:                    # sys64_munmap
        p.munmap(hole - 8 * K, 16 * K)
    assert e.value.errno == errno.EINVAL
    # up to the hole is fine; placement starts above it, at PAGE_OFFSET
    assert p.mmap(hole - 64 * K, 64 * K, "rw-", "private,anon,fixed") == hole - 64 * K
    assert p.mmap(0, 8 * K) == PAGE_OFFSET_SPARC
    # sys64_mremap: a fixed target in the hole is EINVAL, growing into it
    # needs MREMAP_MAYMOVE (ENOMEM) and then moves
    with pytest.raises(OSError) as e:
        p.mremap(hole - 64 * K, 64 * K, 64 * K, "maymove,fixed", hole)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        p.mremap(hole - 64 * K, 64 * K, 128 * K)
    assert e.value.errno == errno.ENOMEM
    # the move goes to get_unmapped_area: right after the page at
    # PAGE_OFFSET, with which it merges
    assert p.mremap(hole - 64 * K, 64 * K, 128 * K, "maymove") == PAGE_OFFSET_SPARC + 8 * K
    assert p.vmas() == [(PAGE_OFFSET_SPARC, PAGE_OFFSET_SPARC + 136 * K, "rw-p")]


def test_sparc64_flush_tlb_pgtables_on_munmap():
    p = Process(era="linux-2.6.12", arch="sparc64", check=True)
    st = p.mm.tlb_stats
    # a vma straddling the 8 MiB boundary: two PTE pages
    low = 8 * M - 8 * K
    p.mmap(low, 16 * K, "rw-", "private,anon,fixed")
    p.touch(low, 16 * K, "w")
    p.mmap(PAGE_OFFSET_SPARC, 8 * K, "rw-", "private,anon,fixed")
    p.touch(PAGE_OFFSET_SPARC, 8 * K, "w")
    assert p.tables() == {"pmd": 2, "pte": 3}
    p.munmap(low, 16 * K)
    # free_pgd_range(0 .. 8 MiB + 8 KiB) trimmed to [0, 8 MiB + 8 KiB); the
    # flush rounds to [0, 16 MiB): VPTE [base + 0, base + (16 MiB >> 10)),
    # one 8 KiB VPTE page per 8 MiB PTE page
    assert st.pgtable_flush_ranges == [(VPTE_BASE, VPTE_BASE + 0x4000)]
    assert (st.pgtable_flushes, st.pgtable_flush_pages) == (1, 2)
    p.munmap(PAGE_OFFSET_SPARC, 8 * K)
    # above the hole the arithmetic shift lands below vpte_base:
    # -2^43 >> 10 = -2^33
    assert st.pgtable_flush_ranges[-1] == (VPTE_BASE - (1 << 33), VPTE_BASE - (1 << 33) + 0x2000)
    assert (st.pgtable_flushes, st.pgtable_flush_pages) == (2, 3)
    # exit's gather is a full-mm one: no flush_tlb_pgtables
    p.exit()
    assert st.pgtable_flushes == 2


def test_flush_tlb_pgtables_only_where_the_era_has_it():
    for era, flushes in (("linux-2.6.12", 1), ("linux-6.18", 0)):
        p = Process(era=era, arch="sparc64")
        p.mmap(PAGE_OFFSET_SPARC, 8 * K, "rw-", "private,anon,fixed")
        p.touch(PAGE_OFFSET_SPARC, 8 * K, "w")
        p.munmap(PAGE_OFFSET_SPARC, 8 * K)
        assert p.mm.tlb_stats.pgtable_flushes == flushes
    # and never on an architecture without a VPTE area
    p = Process(era="linux-2.6.12", arch="x86_64")
    p.mmap(1 * T, 4 * K, "rw-", "private,anon,fixed")
    p.touch(1 * T, 4 * K, "w")
    p.munmap(1 * T, 4 * K)
    assert p.mm.tlb_stats.pgtable_flushes == 0


def test_flush_tlb_pgtables_bug_and_hole_straddling():
    p = Process(era="linux-2.6.12", arch="sparc64")
    with pytest.raises(KernelBug, match="flush_tlb_pgtables start > end"):
        flush_tlb_pgtables(p.mm, 0x700800000, 0x700188000)
    # a range straddling the hole (munmap across it, before freepgt): the
    # 2.6.12 form swaps the VPTE ends; 2.6.11 compared longs and BUGged
    s, e = 0x7FFF0000000, PAGE_OFFSET_SPARC + 8 * M
    with pytest.raises(KernelBug, match="signed"):
        flush_tlb_pgtables(p.mm, s, e, signed_check=True)
    flush_tlb_pgtables(p.mm, s, e)
    # s: 0x7fff0000000 >> 10 = 0x1fffc0000 above the base; e: -2^43 + 2^23
    # >> 10 = -2^33 + 2^13 below it; swapped
    lo, hi = VPTE_BASE - (1 << 33) + 0x2000, VPTE_BASE + 0x1FFFC0000
    assert p.mm.tlb_stats.pgtable_flush_ranges == [(lo, hi)]
    assert p.mm.tlb_stats.pgtable_flush_pages == (hi - lo) // (8 * K)


def test_first_posting_trim_hits_sparc64_bug():
    # the 21 March posting: addr raised past end (floor shares the first
    # PTE page) still reaches flush_tlb_pgtables, with start above end
    era = get_era("linux-2.6.12-rc")
    p = Process(era=era.with_switches(first_posting_trim=True), arch="sparc64")
    p.mmap(PAGE_OFFSET_SPARC, 8 * K, "rw-", "private,anon,fixed")
    p.mmap(PAGE_OFFSET_SPARC + 16 * K, 8 * K, "rw-", "private,anon,fixed")
    with pytest.raises(KernelBug, match="flush_tlb_pgtables start > end"):
        p.munmap(PAGE_OFFSET_SPARC + 16 * K, 8 * K)


# ---------------------------------------------------------------------------
# hugetlb on the architectures where it is an ordinary vma for free_pgtables
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("era", ["linux-2.6.12", "linux-6.18"])
def test_x86_64_hugetlb(era):
    p = Process(era=era, arch="x86_64", check=True)
    base = 0x100000000000
    with pytest.raises(OSError) as e:
        p.mmap(base + 4 * K, 2 * M, "rw-", "private,anon,fixed,hugetlb")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        p.mmap(base, 3 * M, "rw-", "private,anon,fixed,hugetlb")
    assert e.value.errno == errno.EINVAL
    p.mmap(base, 2 * M, "rw-", "private,anon,fixed,hugetlb")
    p.mmap(base + 2 * M, 2 * M, "rw-", "private,anon,fixed,hugetlb")
    assert len(p.vmas()) == 2                      # never merged
    p.touch(base, 1, "w")
    # the huge pte is a pmd entry: a PUD and a PMD table, no PTE table
    assert p.tables() == {"pud": 1, "pmd": 1, "pte": 0}
    assert p.rss == 2 * M and p.nr_ptes == 0
    p.munmap(base, 4 * M)
    assert p.tables() == {"pud": 0, "pmd": 0, "pte": 0} and p.rss == 0


def test_i386_and_sparc64_hugetlb_tables():
    # i386: the 4 MiB huge pte is a pgd entry, no table at all
    p = Process(era="linux-2.6.12", arch="i386", check=True)
    p.mmap(0x40000000, 4 * M, "rw-", "private,anon,fixed,hugetlb")
    p.touch(0x40000000, 1, "r")
    assert p.tables() == {"pte": 0} and p.rss == 4 * M
    # sparc64: 4 MiB huge pages are 512 ordinary ptes in an ordinary PTE page
    p = Process(era="linux-2.6.12", arch="sparc64", check=True)
    assert p.mmap(0, 4 * M, "rw-", "private,anon,hugetlb") == PAGE_OFFSET_SPARC
    p.touch(PAGE_OFFSET_SPARC, 1, "w")
    assert p.tables() == {"pmd": 1, "pte": 1}
    # ARM of 2.6.12 has no hugetlb
    p = Process(era="linux-2.6.12", arch="arm")
    with pytest.raises(OSError) as e:
        p.mmap(0x40000000, 2 * M, "rw-", "private,anon,fixed,hugetlb")
    assert e.value.errno == errno.EINVAL


def test_hugetlb_in_an_ops_script():
    text = ("mmap 0x100000000000 2M rw- private,anon,fixed,hugetlb\n"
            "touch 0x100000000000 1 w\n"
            "munmap 0x100000000000 2M\n")
    obs = list(run_ops(parse_script(text), era="linux-2.6.12", arch="x86_64", check=True))
    assert [o["ret"] for o in obs] == ["0x100000000000", "0", "0"]
    assert [o["rss"] for o in obs] == [0, 2 * M, 0]
    assert [o["pgtables"] for o in obs] == [0, 0, 0]     # 2.6.12 counts PTE pages only


def test_cli_arch_lists_quirks(capsys):
    from freepgt.cli import main

    assert main(["arch"]) == 0
    out = capsys.readouterr().out
    assert "VA hole [0x80000000000, 0xfffff80000000000)" in out
    assert "hugepage-only [0x10000000000, 0x18000000000)" in out
    assert "regions 0-4 for users" in out and "pgd index = region << 8 | slot" in out
    assert "FIRST_USER_ADDRESS 0x1000; reserved pte table for [0x0, 0x200000)" in out
    assert "one table spans: pmd 64 GiB, pte 32 MiB" in out
