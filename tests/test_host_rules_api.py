"""Host-kernel rules (docs/host-kernel-notes.md) checked through the Python API.

These complement tests/host_rules/*.ops where an ops script cannot say it:
per-level table counts (the scripts only see the PUD+PMD+PTE sum), the
signal and errno objects, the child's own tables after fork.  Every expected
value is worked out by hand from the notes (see the comment of each test);
none was taken from the model.

Offsets are from the arena base B; a PUD table spans 512 GiB, a PMD table
1 GiB, a PTE table 2 MiB.
"""

from __future__ import annotations

import errno

import pytest

from freepgt import BusError, Process, SegmentationFault

B = 0x100000000000
K, M, G = 1 << 10, 1 << 20, 1 << 30
T = 1 << 40
PAGE = 4096


def levels(p: Process) -> dict[str, int]:
    t = p.tables()
    return {k: t.get(k, 0) for k in ("pud", "pmd", "pte")}


def L(pud: int, pmd: int, pte: int) -> dict[str, int]:
    return {"pud": pud, "pmd": pmd, "pte": pte}


@pytest.fixture
def p() -> Process:
    return Process(era="linux-6.18", arch="x86_64")


def errno_of(fn, *args, **kw) -> int:
    with pytest.raises(OSError) as info:
        fn(*args, **kw)
    return info.value.errno


# ---------------------------------------------------------------- §1 / §2

def test_fault_allocates_one_table_per_level(p):
    # §1: a successful fault allocates the missing PUD, PMD and PTE tables.
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    assert levels(p) == L(0, 0, 0)
    p.touch(B, 4 * K, "w")
    assert levels(p) == L(1, 1, 1)
    assert p.pgtables_bytes == 3 * PAGE


def test_munmap_many_levels(p):
    # §2 "one munmap over many vmas and holes": A@0, 4M, 1G, 512G, E@1T+2M.
    for off in (0, 4 * M, G, 512 * G, T + 2 * M):
        p.mmap(B + off, 4 * K, "rw-", "private,anon,fixed")
        p.touch(B + off, 4 * K, "w")
    assert levels(p) == L(3, 4, 5)
    p.munmap(B + 4 * M, T - 2 * M)
    # left: PUD 32 + PMD 0 + A's PTE, PUD 34 + E's PMD + PTE
    assert levels(p) == L(2, 2, 2)


def test_vma_crossing_boundaries_has_tables_on_both_sides(p):
    # §2 "vma crossing a 512 GiB / 1 GiB boundary: two PUD / two PMD tables".
    p.mmap(B + 512 * G - 4 * K, 8 * K, "rw-", "private,anon,fixed")
    p.touch(B + 512 * G - 4 * K, 8 * K, "w")
    assert levels(p) == L(2, 2, 2)
    p.munmap(B + 512 * G, 4 * K)
    assert levels(p) == L(1, 1, 1)
    p.mmap(B + G - 4 * K, 8 * K, "rw-", "private,anon,fixed")
    p.touch(B + G - 4 * K, 8 * K, "w")
    assert levels(p) == L(1, 3, 3)
    p.munmap(B + G - 4 * K, 4 * K)
    assert levels(p) == L(1, 2, 2)


def test_map_fixed_frees_before_insert(p):
    # §2 last row: the new vma does not keep the old tables alive.
    p.mmap(B, 64 * K, "rw-", "private,anon,fixed")
    p.touch(B, 64 * K, "w")
    p.mmap(B, 64 * K, "rw-", "private,anon,fixed")
    assert levels(p) == L(0, 0, 0)
    assert p.rss == 0


# ---------------------------------------------------------------- §3

def test_dontneed_never_frees_pmd_or_pud(p):
    # §3: PTE tables of wholly covered slots go; PMD and PUD stay.
    p.mmap(B, 8 * M, "rw-", "private,anon,fixed,noreserve")
    p.touch(B, 8 * M, "w")
    assert levels(p) == L(1, 1, 4)
    p.madvise(B, 8 * M, "dontneed")
    assert levels(p) == L(1, 1, 0)
    assert p.rss == 0
    # fork copies the PUD and PMD (§8: empty tables are copied)
    child = p.fork()
    assert levels(child) == L(1, 1, 0)
    assert levels(p) == L(1, 1, 0)


def test_dontneed_partial_then_whole(p):
    # §3: partial coverage keeps the (emptied) table, a later call covering
    # the whole slot within the vma frees it.
    p.mmap(B, 2 * M, "rw-", "private,anon,fixed")
    p.touch(B, 2 * M, "w")
    p.madvise(B, M, "dontneed")
    p.madvise(B + M, M, "dontneed")
    assert levels(p) == L(1, 1, 1) and p.rss == 0
    p.madvise(B, 2 * M, "dontneed")
    assert levels(p) == L(1, 1, 0)


def test_dontneed_hole_is_enomem_after_zapping(p):
    # §3 / §10: -ENOMEM, every mapped part zapped (and reclaimed by the rule).
    p.mmap(B, 2 * M, "rw-", "private,anon,fixed")
    p.mmap(B + 4 * M, 2 * M, "rw-", "private,anon,fixed")
    p.touch(B, 2 * M, "w")
    p.touch(B + 4 * M, 2 * M, "w")
    assert errno_of(p.madvise, B, 6 * M, "dontneed") == errno.ENOMEM
    assert p.rss == 0
    assert levels(p) == L(1, 1, 0)


def test_dontneed_len0_and_unaligned(p):
    p.mmap(B, 64 * K, "rw-", "private,anon,fixed")
    p.touch(B, 64 * K, "w")
    p.madvise(B, 0, "dontneed")
    assert errno_of(p.madvise, B + 2 * K, 4 * K, "dontneed") == errno.EINVAL
    assert p.rss == 64 * K


# ---------------------------------------------------------------- §4 / §5

def test_zero_page_not_in_rss_and_no_anon_vma(p):
    # §4: read -> zero page, table, rss 0, no anon_vma (fork copies nothing).
    p.mmap(B, 64 * K, "rw-", "private,anon,fixed")
    p.touch(B, 64 * K, "r")
    assert p.rss == 0 and levels(p) == L(1, 1, 1)
    assert levels(p.fork()) == L(0, 0, 0)
    p.touch(B, 4 * K, "w")
    assert p.rss == PAGE
    assert levels(p.fork()) == L(1, 1, 1)


def test_rss_counts_a_cache_page_once_per_mapping(p):
    # §4: a page-cache page mapped by two vmas counts twice.
    f = p.file("f", 64 * K)
    p.mmap(B, 64 * K, "rw-", "shared,fixed", file=f)
    p.mmap(B + 2 * M, 64 * K, "r--", "shared,fixed", file=f)
    p.touch(B, 4 * K, "w")
    assert p.rss == PAGE
    p.touch(B + 2 * M, 4 * K, "r")
    assert p.rss == 2 * PAGE


def test_sigbus_past_eof_allocates_pud_and_pmd_only(p):
    # §5: SIGBUS at the page; PUD and PMD allocated, not the PTE table.
    f = p.file("f", 8 * K)
    p.mmap(B + G, 64 * K, "r--", "private,fixed", file=f)
    with pytest.raises(BusError) as info:
        p.touch(B + G + 8 * K + 123, 1, "r")
    assert info.value.addr == B + G + 8 * K
    assert levels(p) == L(1, 1, 0)
    assert p.rss == 0


def test_faultaround_then_sigbus(p):
    # §5: fault-around maps the cached page first (PTE table, rss +1),
    # then SIGBUS is raised.
    g = p.file("g", 8 * K)
    p.mmap(B, 8 * K, "rw-", "shared,fixed", file=g)
    p.touch(B, 4 * K, "w")
    p.mmap(B + 2 * M, 64 * K, "r--", "private,fixed", file=g)
    with pytest.raises(BusError) as info:
        p.touch(B + 2 * M + 16 * K, 4 * K, "r")
    assert info.value.addr == B + 2 * M + 16 * K
    assert levels(p) == L(1, 1, 2)
    assert p.rss == 2 * PAGE


def test_private_write_past_eof_gives_anon_vma(p):
    # §5: a private write past EOF attaches an anon_vma before SIGBUS, so
    # fork copies the vma's tables (PUD + PMD); a read past EOF does not.
    h = p.file("h", 4 * K)
    p.mmap(B, 64 * K, "rw-", "private,fixed", file=h)
    p.mmap(B + G, 64 * K, "rw-", "private,fixed", file=h)
    with pytest.raises(BusError):
        p.touch(B + G + 4 * K, 4 * K, "r")
    assert levels(p.fork()) == L(0, 0, 0)
    with pytest.raises(BusError):
        p.touch(B + 4 * K, 4 * K, "w")
    assert levels(p) == L(1, 2, 0)
    assert levels(p.fork()) == L(1, 1, 0)


def test_faultaround_window_clamped_to_vma_start(p):
    # §5: vma starting at table index 5, fault at index 8 (v = 3):
    # from = max(0, 5) = 5, to = min(21, 512, 8 + 64 - 3) = 21 -> 16 pages.
    f = p.file("f", 256 * K)
    p.mmap(B, 256 * K, "rw-", "shared,fixed", file=f)
    p.touch(B, 256 * K, "w")
    p.mmap(B + 2 * M + 20 * K, 256 * K, "r--", "private,fixed", file=f)
    before = p.rss
    p.touch(B + 2 * M + 32 * K, 4 * K, "r")
    assert p.rss - before == 16 * PAGE


# ---------------------------------------------------------------- §6

@pytest.mark.parametrize("prot, flags, pages, tables", [
    ("rw-", "private,anon,fixed,populate", 16, L(1, 1, 1)),
    ("-w-", "private,anon,fixed,populate", 16, L(1, 1, 1)),
    ("r--", "private,anon,fixed,populate", 0, L(1, 1, 1)),
    ("r-x", "private,anon,fixed,populate", 0, L(1, 1, 1)),
    ("r--", "shared,anon,fixed,populate", 16, L(1, 1, 1)),
    ("---", "private,anon,fixed,populate", 0, L(0, 0, 0)),
    ("---", "shared,anon,fixed,populate", 0, L(0, 0, 0)),
])
def test_populate_table(p, prot, flags, pages, tables):
    # §6, one row each, 64 KiB mappings.
    p.mmap(B, 64 * K, prot, flags)
    assert p.rss == pages * PAGE
    assert levels(p) == tables


def test_populate_private_file_up_to_eof(p):
    # §6: read-only private file populate: page-cache pages up to EOF.
    f = p.file("f", 32 * K)
    p.mmap(B, 64 * K, "r--", "private,fixed,populate", file=f)
    assert p.rss == 8 * PAGE
    assert levels(p.fork()) == L(0, 0, 0)


# ---------------------------------------------------------------- §7

def test_move_whole_pmd_table_even_empty(p):
    # §7 steps 1-2: an emptied PMD table moves whole between 1 GiB-aligned
    # addresses; to a destination only 2 MiB aligned it does not.
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    p.touch(B, 4 * K, "w")
    p.mmap(B + G, G, "rw-", "private,anon,fixed,noreserve")
    p.touch(B + G, 4 * K, "w")
    p.madvise(B + G, 2 * M, "dontneed")
    assert levels(p) == L(1, 2, 1)
    assert p.mremap(B + G, G, G, "maymove,fixed", B + 512 * G) == B + 512 * G
    assert levels(p) == L(2, 2, 1)       # PUD 33 allocated, PMD moved
    assert p.mremap(B + 512 * G, G, G, "maymove,fixed", B + G) == B + G
    assert levels(p) == L(1, 2, 1)       # moved back, PUD 33 freed
    assert p.mremap(B + G, G, G, "maymove,fixed", B + 512 * G + 2 * M) == B + 512 * G + 2 * M
    assert levels(p) == L(2, 1, 1)       # PUD 33 allocated, empty PMD left and freed


def test_move_out_of_region_with_pmd_table_allocates_pud(p):
    # §7 step 1: "takes the table count from 3 to 4" / "nothing allocated".
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    p.touch(B, 4 * K, "w")
    p.mmap(B + 4 * M, 64 * K, "rw-", "private,anon,fixed")
    p.mremap(B + 4 * M, 64 * K, 64 * K, "maymove,fixed", B + 512 * G)
    assert levels(p) == L(2, 1, 1)
    p.mmap(B + 2 * G, 64 * K, "rw-", "private,anon,fixed")
    p.mremap(B + 2 * G, 64 * K, 64 * K, "maymove,fixed", B + T)
    assert levels(p) == L(2, 1, 1)


def test_realigned_dontunmap_leaves_no_table_behind(p):
    # §7 step 4: realigned move adds 1 table (the destination PMD); the
    # blocked one adds 2 (PMD + a new PTE table; the old one stays).
    p.mmap(B + M, M, "rw-", "private,anon,fixed")
    p.touch(B + M, M, "w")
    p.mremap(B + M, M, M, "maymove,fixed,dontunmap", B + G + M)
    assert levels(p) == L(1, 2, 1)
    q = Process(era="linux-6.18", arch="x86_64")
    q.mmap(B, 4 * K, "r--", "private,anon,fixed")
    q.mmap(B + M, M, "rw-", "private,anon,fixed")
    q.touch(B + M, M, "w")
    q.mremap(B + M, M, M, "maymove,fixed,dontunmap", B + G + M)
    assert levels(q) == L(1, 2, 2)


def test_dontunmap_drops_anon_vma_of_whole_vma(p):
    # §7 / §8: the old vma loses its anon_vma: the child copies only the
    # new vma's tables (PUD, PMD, the moved PTE table).
    p.mmap(B, 2 * M, "rw-", "private,anon,fixed")
    p.touch(B, 2 * M, "w")
    p.mremap(B, 2 * M, 2 * M, "maymove,fixed,dontunmap", B + 4 * M)
    assert levels(p) == L(1, 1, 1)
    assert levels(p.fork()) == L(1, 1, 1)
    assert p.vmas() == [(B, B + 2 * M, "rw-p"), (B + 4 * M, B + 6 * M, "rw-p")]


def test_oldlen0_duplicates_shared_and_newaddr_equal_old_faults(p):
    # §7 OLDLEN 0: duplicate of a shared mapping; private -> -EINVAL;
    # NEWADDR == OLD -> -EFAULT with the source gone.
    p.mmap(B, 64 * K, "rw-", "shared,anon,fixed")
    p.touch(B, 16 * K, "w")
    assert p.mremap(B, 0, 64 * K, "maymove,fixed", B + 2 * M) == B + 2 * M
    p.touch(B + 2 * M, 4 * K, "r")
    assert p.rss == 8 * PAGE
    p.mmap(B + 4 * M, 64 * K, "rw-", "private,anon,fixed")
    assert errno_of(p.mremap, B + 4 * M, 0, 64 * K, "maymove,fixed", B + 6 * M) == errno.EINVAL
    assert errno_of(p.mremap, B, 0, 64 * K, "maymove,fixed", B) == errno.EFAULT
    assert [v[:2] for v in p.vmas()] == [(B + 2 * M, B + 2 * M + 64 * K), (B + 4 * M, B + 4 * M + 64 * K)]
    assert levels(p) == L(1, 1, 1)


# ---------------------------------------------------------------- §8

def test_fork_copies_grazed_table_empty(p):
    # §8: a table the copied vma only grazes is copied (empty in the child).
    p.mmap(B, 2 * M - 4 * K, "r--", "private,anon,fixed")
    p.mmap(B + 2 * M - 4 * K, 8 * K, "rw-", "private,anon,fixed")
    p.touch(B, 2 * M - 4 * K, "r")
    p.touch(B + 2 * M, 4 * K, "w")
    before = (p.pgtables_bytes, p.rss, p.vmas())
    child = p.fork()
    assert levels(child) == L(1, 1, 2)
    assert (p.pgtables_bytes, p.rss, p.vmas()) == before


def test_fork_shared_never_copied(p):
    f = p.file("f", 64 * K)
    p.mmap(B, 64 * K, "rw-", "shared,anon,fixed")
    p.touch(B, 64 * K, "w")
    p.mmap(B + G, 64 * K, "rw-", "shared,fixed", file=f)
    p.touch(B + G, 64 * K, "w")
    assert levels(p.fork()) == L(0, 0, 0)


def test_fork_mprotect_keeps_anon_vma(p):
    p.mmap(B, 64 * K, "rw-", "private,anon,fixed")
    p.touch(B, 4 * K, "w")
    p.mprotect(B, 64 * K, "---")
    assert levels(p.fork()) == L(1, 1, 1)
    p.mmap(B + G, 64 * K, "---", "private,anon,fixed")
    p.mprotect(B + G, 64 * K, "rw-")
    p.touch(B + G, 64 * K, "r")
    assert levels(p.fork()) == L(1, 1, 1)


# ---------------------------------------------------------------- §9

def test_reuse_lets_w_vma_merge_after_mprotect(p):
    # §9 anon_vma reuse example.
    p.mmap(B, 64 * K, "rw-", "private,anon,fixed")
    p.touch(B, 64 * K, "w")
    p.mmap(B + 64 * K, 64 * K, "-w-", "private,anon,fixed")
    p.touch(B + 64 * K, 4 * K, "w")
    p.mprotect(B + 64 * K, 64 * K, "rw-")
    assert p.vmas() == [(B, B + 128 * K, "rw-p")]
    assert p.map_count >= 1


def test_written_rw_made_ro_keeps_account(p):
    # §9 VM_ACCOUNT: written rw- made r-- does not merge with a fresh r--;
    # an unwritten one does.
    p.mmap(B, 64 * K, "rw-", "private,anon,fixed")
    p.touch(B, 4 * K, "w")
    p.mprotect(B, 64 * K, "r--")
    p.mmap(B + 64 * K, 64 * K, "r--", "private,anon,fixed")
    assert len(p.vmas()) == 2
    p.mmap(B + 2 * M, 64 * K, "rw-", "private,anon,fixed")
    p.mprotect(B + 2 * M, 64 * K, "r--")
    p.mmap(B + 2 * M + 64 * K, 64 * K, "r--", "private,anon,fixed")
    assert p.vmas()[-1] == (B + 2 * M, B + 2 * M + 128 * K, "r--p")


# ---------------------------------------------------------------- §10 / §11 / §12

def test_errno_rows(p):
    f = p.file("f", 8 * K)
    assert errno_of(p.mmap, B + 1, 4 * K, "rw-", "private,anon,fixed") == errno.EINVAL
    assert errno_of(p.mmap, B, 0, "rw-", "private,anon,fixed") == errno.EINVAL
    assert errno_of(p.mmap, B, 4 * K, "r--", "private,fixed", file=f, offset=1024) == errno.EINVAL
    p.mmap(B, 64 * K, "rw-", "private,anon,fixed")
    assert errno_of(p.mmap, B + 32 * K, 64 * K, "rw-", "private,anon,fixed_noreplace") == errno.EEXIST
    assert errno_of(p.munmap, B + 1, 4 * K) == errno.EINVAL
    assert errno_of(p.munmap, B, 0) == errno.EINVAL
    p.munmap(B + G, 64 * K)
    assert errno_of(p.mprotect, B + 1, 4 * K, "r--") == errno.EINVAL
    p.mprotect(B + 64 * K, 0, "r--")
    assert errno_of(p.mprotect, B + 32 * K, 64 * K, "r--") == errno.ENOMEM
    assert p.vmas() == [(B, B + 32 * K, "rw-p"), (B + 32 * K, B + 64 * K, "r--p")]
    p.mprotect(B, 64 * K, "rw-")
    assert errno_of(p.mremap, B + G, 4 * K, 8 * K) == errno.EFAULT
    assert errno_of(p.mremap, B, 128 * K, 256 * K) == errno.EFAULT
    p.mmap(B + 128 * K, 64 * K, "r--", "private,anon,fixed")
    assert errno_of(p.mremap, B, 64 * K, 192 * K) == errno.ENOMEM
    assert errno_of(p.mremap, B, 64 * K, 64 * K, "fixed", B + 2 * M) == errno.EINVAL
    assert errno_of(p.mremap, B, 64 * K, 64 * K, "dontunmap", B + 2 * M) == errno.EINVAL
    assert errno_of(p.mremap, B, 64 * K, 128 * K, "maymove,fixed,dontunmap", B + 2 * M) == errno.EINVAL
    assert errno_of(p.mremap, B, 64 * K, 64 * K, "maymove,fixed", B + 32 * K) == errno.EINVAL
    assert errno_of(p.mremap, B, 64 * K, 0) == errno.EINVAL
    assert p.mremap(B, 64 * K, 64 * K) == B
    assert p.pgtables_bytes == 0 and p.rss == 0


def test_signals(p):
    # §11: SIGSEGV at the page, no table; earlier pages accessed.
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    p.mmap(B + 4 * K, 4 * K, "r--", "private,anon,fixed")
    with pytest.raises(SegmentationFault) as info:
        p.touch(B + G + 5, 4 * K, "r")
    assert info.value.addr == B + G
    assert levels(p) == L(0, 0, 0)
    with pytest.raises(SegmentationFault) as info:
        p.touch(B, 12 * K, "w")
    assert info.value.addr == B + 4 * K
    assert p.rss == PAGE and levels(p) == L(1, 1, 1)
    q = Process(era="linux-6.18", arch="x86_64")
    q.mmap(B, 4 * K, "-w-", "private,anon,fixed")
    q.touch(B, 4 * K, "r")               # x86 cannot map write-only: readable
    assert levels(q) == L(1, 1, 1) and q.rss == 0
    # --x: this machine's CPU has protection keys, so PROT_EXEC alone gets
    # the execute-only pkey and a read faults (measured on the host kernel)
    q = Process(era="linux-6.18", arch="x86_64")
    q.mmap(B, 4 * K, "--x", "private,anon,fixed,populate")
    assert levels(q) == L(0, 0, 0)
    with pytest.raises(SegmentationFault):
        q.touch(B, 4 * K, "r")
    assert levels(q) == L(0, 0, 0)
    q = Process(era="linux-6.18", arch="x86_64")
    q.mmap(B, 4 * K, "r-x", "private,anon,fixed")
    with pytest.raises(SegmentationFault):
        q.touch(B, 4 * K, "w")
    assert levels(q) == L(0, 0, 0)


def test_hint_rounded_down_and_honoured(p):
    # §12
    assert p.mmap(B + 2 * M + 4095, 8 * K, "r--", "private,anon") == B + 2 * M
