"""What differs between the eras, each case worked out by hand."""

import errno

import pytest

from freepgt import KernelBug, Process
from freepgt.eras import era_names, get_era

B = 0x100000000000
K, M, G = 1 << 10, 1 << 20, 1 << 30


def test_era_registry():
    assert era_names() == ["linux-2.6.10", "linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12", "linux-6.18"]
    assert get_era("linux-6.18").name == "linux-6.18"
    with pytest.raises(ValueError, match="unknown era"):
        get_era("linux-2.4.0")


@pytest.mark.parametrize("era, vmpte", [("linux-2.6.12", 4096), ("linux-6.18", 3 * 4096)])
def test_vmpte_counts(era, vmpte):
    # one written page on x86_64: one PUD, one PMD and one PTE table;
    # 2.6.12's nr_ptes (and VmPTE) counts the PTE table only
    p = Process(era=era)
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    p.touch(B, 4 * K, "w")
    assert p.tables() == {"pud": 1, "pmd": 1, "pte": 1}
    assert p.pgtables_bytes == vmpte and p.nr_ptes == 1


@pytest.mark.parametrize("era, child", [
    ("linux-2.6.12", {"pud": 1, "pmd": 1, "pte": 1}),
    ("linux-6.18", {"pud": 0, "pmd": 0, "pte": 0}),
])
def test_fork_copy_rule(era, child):
    # a private anonymous vma only read (zero page, no anon_vma): 2.6.12
    # copies every vma's tables, 6.18 only those of vmas with an anon_vma
    p = Process(era=era)
    p.mmap(B, 8 * K, "rw-", "private,anon,fixed")
    p.touch(B, 8 * K, "r")
    c = p.fork()
    assert c.tables() == child
    assert c.rss == 0
    c.exit()


@pytest.mark.parametrize("era, arch, left", [
    ("linux-2.6.12", "x86_64", 1),   # no PT_RECLAIM
    ("linux-6.18", "x86_64", 0),     # PT_RECLAIM frees the fully zapped PTE table
    ("linux-6.18", "i386-pae", 1),   # only x86_64 selects ARCH_SUPPORTS_PT_RECLAIM
])
def test_dontneed_reclaim(era, arch, left):
    base = B if arch == "x86_64" else 0x40000000
    p = Process(era=era, arch=arch)
    p.mmap(base, 2 * M, "rw-", "private,anon,fixed")
    p.touch(base, 2 * M, "w")
    p.madvise(base, 2 * M, "dontneed")
    assert p.rss == 0
    assert p.tables()["pte"] == left


@pytest.mark.parametrize("era", ["linux-2.6.12", "linux-6.18"])
def test_populate(era):
    p = Process(era=era)
    f = p.file("f", 16 * K)
    # private anonymous: 6.18 writes every page (mm_populate); 2.6.12 hands
    # MAP_POPULATE to remap_file_pages, which wants a shared vma: nothing
    p.mmap(B, 8 * K, "rw-", "private,anon,fixed,populate")
    # shared file wholly below EOF: both eras map it (filemap_populate)
    p.mmap(B + 2 * M, 16 * K, "r--", "shared,fixed,populate", f)
    # shared file running past EOF: 2.6.12's filemap_populate refuses the
    # whole range; 6.18 maps what lies below EOF
    g = p.file("g", 4 * K)
    p.mmap(B + 4 * M, 8 * K, "r--", "shared,fixed,populate", g)
    if era == "linux-2.6.12":
        assert p.rss == 16 * K
        assert p.tables()["pte"] == 1
    else:
        # 6.18 populate of g stops at its end with PUD+PMD already there
        assert p.rss == 8 * K + 16 * K + 4 * K
        assert p.tables()["pte"] == 3


def test_fixed_noreplace_and_dontunmap_are_new():
    old = Process(era="linux-2.6.12")
    old.mmap(B, 8 * K, "rw-", "private,anon,fixed")
    with pytest.raises(OSError) as e:
        old.mremap(B, 8 * K, 8 * K, "maymove,dontunmap", B + G)
    assert e.value.errno == errno.EINVAL


@pytest.mark.parametrize("era, allocated", [("linux-2.6.12", 2), ("linux-6.18", 1)])
def test_mremap_moves_whole_pte_table(era, allocated):
    # a fully written 2 MiB-aligned 2 MiB vma moved 1 GiB up: 6.18 moves the
    # PTE table itself (HAVE_MOVE_PMD) and allocates only the destination PMD
    # table; 2.6.12 moves pte by pte and allocates a PMD and a PTE table.
    # Afterwards both hold PUD + PMD(new) + PTE(new): the old PMD table is
    # freed by the munmap of the old range (its 1 GiB lies between floor 0
    # and the moved vma), the PUD table is shared with the new place.
    p = Process(era=era)
    p.mmap(B, 2 * M, "rw-", "private,anon,fixed")
    p.touch(B, 2 * M, "w")
    before = p.mm.stats["tables_allocated"]
    assert p.mremap(B, 2 * M, 2 * M, "maymove,fixed", B + G) == B + G
    assert p.mm.stats["tables_allocated"] - before == allocated
    assert p.tables() == {"pud": 1, "pmd": 1, "pte": 1}
    assert p.rss == 2 * M


def test_2_6_12_bug_on_orphan_at_exit():
    # a PTE table outside every vma (as a 32-bit vsyscall page mapped by the
    # fault handler once was) survives free_pgtables: BUG_ON(nr_ptes) fires
    p = Process(era="linux-2.6.12")
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    p.mm.alloc_tables(B + G, B + G + 4 * K)
    with pytest.raises(KernelBug) as e:
        p.exit()
    assert "nr_ptes" in str(e.value) and "nr_ptes is 1" in str(e.value)


def test_python_arguments_are_unsigned_words():
    # a negative value is what a C caller's unsigned long would hold
    p = Process()
    with pytest.raises(OSError) as e:
        p.munmap(-4096, 4096)                      # 0xfffffffffffff000: above TASK_SIZE
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        p.mmap(-4096, 4096, "rw-", "private,anon,fixed")
    assert e.value.errno == errno.ENOMEM
    with pytest.raises(ValueError, match="64-bit word"):
        p.mmap(1 << 64, 4096, "rw-", "private,anon,fixed")
    with pytest.raises(TypeError):
        p.mmap("0x1000", 4096)
    i386 = Process(arch="i386")
    with pytest.raises(ValueError, match="32-bit word"):
        i386.mmap(1 << 32, 4096, "rw-", "private,anon,fixed")
    assert p.vmas() == [] and i386.vmas() == []


def test_every_era_sets_every_switch():
    # an era module is a complete list of switches, not a diff from the base
    from freepgt.eras.base import Era

    switches = {k for k, v in vars(Era).items()
                if not k.startswith("_") and not callable(v) and k not in ("name", "description")}
    for name in era_names():
        era = type(get_era(name))
        assert switches <= set(vars(era)), (name, sorted(switches - set(vars(era))))
