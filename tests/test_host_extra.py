"""Live-kernel facts that the ops format cannot express, checked through the Python API.

Every expected value below was measured on this machine's kernel (Linux
6.18.44, x86_64, 4-level, PKU, max_map_count 65530, THP disabled with
PR_SET_THP_DISABLE) with small C programs (kept under /tmp/hostextra while
they were written: errno.c, maxmap.c, brk.c, fork.c).  The comment of each
test gives the C call and what the kernel returned; the tests themselves
drive only the model and need no host.

Conventions of the C programs: raw ``syscall(SYS_...)`` (no libc wrapper
checks), ``B = 0x100000000000`` the arena base, ``TS = 0x7ffffffff000``
(TASK_SIZE), ``T8 = TS - 8K``.  Errno cases start from the same state:
``[B, B+4K) rw-`` written, ``[B+2M, B+2M+4K) rw-`` untouched and
``[T8, TS) rw-`` (fixed_noreplace) with both pages written.  The kernel's
map_count is the number of /proc/self/maps lines minus the ``[vsyscall]``
line (the gate area is no vma); the model's ``map_count`` is its number of
vmas, so the max_map_count tests fill the model to the same totals.
"""

from __future__ import annotations

import errno

import pytest

from freepgt import Process

B = 0x100000000000
TS = 0x7FFFFFFFF000
T8 = TS - 0x2000
K, M, G = 1 << 10, 1 << 20, 1 << 30
PAGE = 4096
W = 1 << 64  # one past the largest unsigned long: lengths below are taken mod 2**64
MAX_MAP_COUNT = 65530


def errno_of(fn, *args, **kw) -> int:
    with pytest.raises(OSError) as info:
        fn(*args, **kw)
    return info.value.errno


# ====================================================================== 1. errno
#
# C: reset(); r = syscall(...); print errno name, arena+top vmas, Rss.

BASE = [(B, B + 4 * K, "rw-p"), (B + 2 * M, B + 2 * M + 4 * K, "rw-p"), (T8, TS, "rw-p")]
BASE_RSS = 12 * K  # B's page + both T8 pages


def base_process() -> Process:
    p = Process(era="linux-6.18")
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    p.touch(B, 1, "w")
    p.mmap(B + 2 * M, 4 * K, "rw-", "private,anon,fixed")
    p.mmap(T8, 8 * K, "rw-", "private,anon,fixed_noreplace")
    p.touch(T8, 8 * K, "w")
    p.file("f", 0x10000)  # C: /dev/shm file, ftruncate 64K, O_RDWR
    return p


def _call(p: Process, call: tuple):
    name, *args = call
    return getattr(p, name)(*args)


# (id, call, expected errno, vmas after (None: unchanged), rss after (None: unchanged))
# All measured; each line's C call is the same call with the flags spelled as in mman.h.
ERRNO_CASES = [
    # --- mmap: LEN > TASK_SIZE -> ENOMEM (get_unmapped_area), also when PAGE_ALIGN wraps to 0
    ("mmap_fixed_len_above_TS", ("mmap", B + 4 * M, TS + 4 * K, "rw-", "private,anon,fixed"), errno.ENOMEM),
    ("mmap_hint0_len_above_TS", ("mmap", 0, TS + 4 * K, "rw-", "private,anon"), errno.ENOMEM),
    ("mmap_hint0_len_2^64-4K", ("mmap", 0, W - 4 * K, "rw-", "private,anon"), errno.ENOMEM),
    ("mmap_hint0_len_2^64-1", ("mmap", 0, W - 1, "rw-", "private,anon"), errno.ENOMEM),
    ("mmap_fixed_len_2^64-1", ("mmap", B + 4 * M, W - 1, "rw-", "private,anon,fixed"), errno.ENOMEM),
    ("mmap_fixed_unaligned_len_above_TS", ("mmap", B + 4 * M + 1, TS + 4 * K, "rw-", "private,anon,fixed"),
     errno.ENOMEM),
    # --- mmap: fixed range crossing / starting at TASK_SIZE -> ENOMEM
    ("mmap_fixed_crossing_TS", ("mmap", TS - 4 * K, 8 * K, "rw-", "private,anon,fixed"), errno.ENOMEM),
    ("mmap_fixed_at_TS", ("mmap", TS, 4 * K, "rw-", "private,anon,fixed"), errno.ENOMEM),
    ("mmap_noreplace_crossing_TS", ("mmap", TS - 4 * K, 8 * K, "rw-", "private,anon,fixed_noreplace"),
     errno.ENOMEM),
    ("mmap_noreplace_last_page_taken", ("mmap", TS - 4 * K, 4 * K, "rw-", "private,anon,fixed_noreplace"),
     errno.EEXIST),
    # --- mmap: unaligned fixed address.  The range check comes first
    # (__get_unmapped_area: addr > TASK_SIZE - len -> ENOMEM, then
    # offset_in_page -> EINVAL): an unaligned address whose range ends above
    # TASK_SIZE is ENOMEM, not EINVAL.
    ("mmap_fixed_unaligned_crossing_TS", ("mmap", TS - 4 * K + 1, 4 * K, "rw-", "private,anon,fixed"),
     errno.ENOMEM),
    ("mmap_fixed_unaligned_below_TS", ("mmap", TS - 8 * K + 1, 4 * K, "rw-", "private,anon,fixed"), errno.EINVAL),
    ("mmap_noreplace_unaligned", ("mmap", B + 4 * M + 1, 4 * K, "rw-", "private,anon,fixed_noreplace"),
     errno.EINVAL),
    ("mmap_noreplace_unaligned_overlapping", ("mmap", B + 1, 4 * K, "rw-", "private,anon,fixed_noreplace"),
     errno.EINVAL),
    ("mmap_noreplace_unaligned_crossing_TS", ("mmap", TS - 4 * K + 1, 4 * K, "rw-", "private,anon,fixed_noreplace"),
     errno.ENOMEM),
    # --- mmap: offset + len.  tmpfs files are S_ISREG: file_mmap_ok() allows
    # pgoff <= (MAX_LFS_FILESIZE - len) >> PAGE_SHIFT, i.e. OFFSET + LEN <= 2**63 - 4K;
    # anything beyond is EOVERFLOW.  (do_mmap's own pgoff + pages overflow test
    # cannot fire on x86_64: pgoff < 2**52.)  Anonymous mappings ignore the offset.
    ("file_off_2^63-8K_len_8K", ("mmap", B + 4 * M, 8 * K, "rw-", "private,fixed", "f", (1 << 63) - 8 * K),
     errno.EOVERFLOW),
    ("file_off_2^63-4K_len_4K", ("mmap", B + 4 * M, 4 * K, "rw-", "private,fixed", "f", (1 << 63) - 4 * K),
     errno.EOVERFLOW),
    ("file_off_2^63_len_4K", ("mmap", B + 4 * M, 4 * K, "rw-", "private,fixed", "f", 1 << 63), errno.EOVERFLOW),
    ("shared_file_off_2^63_len_4K", ("mmap", B + 4 * M, 4 * K, "rw-", "shared,fixed", "f", 1 << 63),
     errno.EOVERFLOW),
    ("file_off_2^64-4K_len_4K", ("mmap", B + 4 * M, 4 * K, "rw-", "private,fixed", "f", W - 4 * K),
     errno.EOVERFLOW),
    ("file_off_2^64-4K_len_8K", ("mmap", B + 4 * M, 8 * K, "rw-", "private,fixed", "f", W - 4 * K),
     errno.EOVERFLOW),
    ("file_off_2^63_len_above_TS", ("mmap", B + 4 * M, TS + 4 * K, "rw-", "private,fixed", "f", 1 << 63),
     errno.ENOMEM),
    # --- mmap: MAP_PRIVATE|MAP_SHARED is MAP_SHARED_VALIDATE (3): anonymous ->
    # EINVAL, but only after get_unmapped_area and the NOREPLACE test (EEXIST).
    ("anon_private_and_shared", ("mmap", B + 4 * M, 8 * K, "rw-", "private,shared,anon,fixed"), errno.EINVAL),
    ("anon_private_and_shared_noreplace_overlap", ("mmap", B, 8 * K, "rw-", "private,shared,anon,fixed_noreplace"),
     errno.EEXIST),
    ("anon_neither_private_nor_shared", ("mmap", B + 4 * M, 8 * K, "rw-", "anon,fixed"), errno.EINVAL),
    ("file_neither_private_nor_shared", ("mmap", B + 4 * M, 8 * K, "rw-", "fixed", "f"), errno.EINVAL),
    # --- munmap: start > TASK_SIZE or len > TASK_SIZE - start -> EINVAL (before PAGE_ALIGN)
    ("munmap_len_wraps_to_0", ("munmap", B, W - B), errno.EINVAL),
    ("munmap_len_wraps_past_0", ("munmap", B, W - B + 4 * K), errno.EINVAL),
    ("munmap_len_2^64-1", ("munmap", B, W - 1), errno.EINVAL),
    ("munmap_crossing_TS", ("munmap", TS - 4 * K, 8 * K), errno.EINVAL),
    ("munmap_at_TS", ("munmap", TS, 4 * K), errno.EINVAL),
    ("munmap_at_TS_len0", ("munmap", TS, 0), errno.EINVAL),
    ("munmap_last_page_plus_one_byte", ("munmap", TS - 4 * K, 4 * K + 1), errno.EINVAL),
    ("munmap_to_TS_plus_one_byte", ("munmap", B, TS - B + 1), errno.EINVAL),
    ("munmap_kernel_address", ("munmap", 0xFFFF800000000000, 4 * K), errno.EINVAL),
    # --- mprotect: end = start + PAGE_ALIGN(len) <= start -> ENOMEM before anything changes
    ("mprotect_len_wraps_to_0", ("mprotect", B, W - B, "r--"), errno.ENOMEM),
    ("mprotect_len_wraps_past_0", ("mprotect", B, W - B + 4 * K, "r--"), errno.ENOMEM),
    ("mprotect_len_2^64-1", ("mprotect", B, W - 1, "r--"), errno.ENOMEM),
    ("mprotect_last_page_len_wraps_to_0", ("mprotect", TS - 4 * K, W - (TS - 4 * K), "r--"), errno.ENOMEM),
    ("mprotect_at_TS", ("mprotect", TS, 4 * K, "r--"), errno.ENOMEM),
    ("mprotect_kernel_address", ("mprotect", 0xFFFF800000000000, 4 * K, "r--"), errno.ENOMEM),
    # --- madvise: PAGE_ALIGN(len) == 0 with len != 0, or start + len < start
    # (end wraps to 0 included) -> EINVAL, nothing zapped
    ("madvise_len_2^64-1", ("madvise", B, W - 1, "dontneed"), errno.EINVAL),
    ("madvise_len_wraps_to_0", ("madvise", B, W - B, "dontneed"), errno.EINVAL),
    ("madvise_len_wraps_past_0", ("madvise", B, W - B + 4 * K, "dontneed"), errno.EINVAL),
    ("madvise_last_page_len_wraps_to_0", ("madvise", TS - 4 * K, W - (TS - 4 * K), "dontneed"), errno.EINVAL),
    ("madvise_last_page_len_2^64-1", ("madvise", TS - 4 * K, W - 1, "dontneed"), errno.EINVAL),
    ("madvise_at_TS", ("madvise", TS, 4 * K, "dontneed"), errno.ENOMEM),
    ("madvise_kernel_address", ("madvise", 0xFFFF800000000000, 4 * K, "dontneed"), errno.ENOMEM),
    # --- mremap: new_len > TASK_SIZE (after PAGE_ALIGN; 2**64-1 aligns to 0) -> EINVAL
    ("mremap_newlen_above_TS_maymove", ("mremap", B, 4 * K, TS + 4 * K, "maymove"), errno.EINVAL),
    ("mremap_newlen_above_TS", ("mremap", B, 4 * K, TS + 4 * K, ()), errno.EINVAL),
    ("mremap_newlen_TS_maymove_no_room", ("mremap", B, 4 * K, TS, "maymove"), errno.ENOMEM),
    ("mremap_newlen_2^64-1", ("mremap", B, 4 * K, W - 1, "maymove"), errno.EINVAL),
    ("mremap_same_len_above_TS", ("mremap", B, W - B, W - B, ()), errno.EINVAL),
    # --- mremap: new_addr > TASK_SIZE - new_len -> EINVAL (fixed and dontunmap)
    ("mremap_fixed_newaddr_TS", ("mremap", B, 4 * K, 4 * K, "maymove,fixed", TS), errno.EINVAL),
    ("mremap_fixed_newaddr_crossing_TS", ("mremap", B, 4 * K, 8 * K, "maymove,fixed", TS - 4 * K), errno.EINVAL),
    ("mremap_fixed_newaddr_unaligned_last_page", ("mremap", B, 4 * K, 4 * K, "maymove,fixed", TS - 4 * K + 1),
     errno.EINVAL),
    ("mremap_fixed_newaddr_TS+1", ("mremap", B, 4 * K, 4 * K, "maymove,fixed", TS + 1), errno.EINVAL),
    ("mremap_fixed_newaddr_2^64-4K", ("mremap", B, 4 * K, 4 * K, "maymove,fixed", W - 4 * K), errno.EINVAL),
    ("mremap_dontunmap_newaddr_TS", ("mremap", B, 4 * K, 4 * K, "maymove,dontunmap", TS), errno.EINVAL),
    ("mremap_fixed_without_maymove_newaddr_TS", ("mremap", B, 4 * K, 4 * K, "fixed", TS), errno.EINVAL),
    ("mremap_fixed_newlen_above_TS", ("mremap", B, 4 * K, TS + 4 * K, "maymove,fixed", 0x1000), errno.EINVAL),
    # --- mremap shrink: the tail is unmapped by do_vmi_munmap, whose own
    # checks (start + len past TASK_SIZE, wrap) give EINVAL with nothing
    # changed; old_len 2**64-1 aligns to 0 (-> EINVAL: old_len 0 on a private mapping)
    ("mremap_shrink_old_range_crossing_TS", ("mremap", T8, 12 * K, 4 * K, ()), errno.EINVAL),
    ("mremap_shrink_oldlen_wraps_to_0", ("mremap", T8, W - T8, 4 * K, ()), errno.EINVAL),
    ("mremap_shrink_oldlen_2^64-1", ("mremap", T8, W - 1, 4 * K, ()), errno.EINVAL),
    ("mremap_shrink_oldlen_ends_2^64-4K", ("mremap", T8, W - T8 - 4 * K, 4 * K, ()), errno.EINVAL),
    ("mremap_shrink_oldlen_wraps_past_0", ("mremap", T8, W - T8 + 4 * K, 4 * K, ()), errno.EINVAL),
    ("mremap_same_len_wraps", ("mremap", T8, W - T8, W - T8, ()), errno.EINVAL),
    # --- mremap on nothing mapped above TASK_SIZE -> EFAULT; grow in place across TS -> ENOMEM
    ("mremap_at_TS", ("mremap", TS, 4 * K, 4 * K, ()), errno.EFAULT),
    ("mremap_at_TS_grow_maymove", ("mremap", TS, 4 * K, 8 * K, "maymove"), errno.EFAULT),
    ("mremap_grow_last_vma_across_TS", ("mremap", T8, 8 * K, 12 * K, ()), errno.ENOMEM),
]


@pytest.mark.parametrize("call, expected", [c[1:] for c in ERRNO_CASES], ids=[c[0] for c in ERRNO_CASES])
def test_errno_leaves_everything_unchanged(call, expected):
    # Measured: each call failed with `expected`, and the arena vmas, the
    # T8 vma and Rss were exactly as before (BASE, 12 KiB).
    p = base_process()
    assert errno_of(_call, p, call) == expected
    assert p.vmas() == BASE
    assert p.rss == BASE_RSS


def test_mmap_file_offset_limit_success_side():
    # C: mmap(B+4M, 4K|8K, RW, MAP_PRIVATE|MAP_FIXED, fd, off) on the tmpfs file:
    # off = 2**63-8K len 4K -> ok; off = 2**63-12K len 8K -> ok (OFFSET+LEN = 2**63-4K);
    # shared off = 2**63-8K len 4K -> ok (rw-s).
    for flags, length, off, perms in (("private,fixed", 4 * K, (1 << 63) - 8 * K, "rw-p"),
                                      ("private,fixed", 8 * K, (1 << 63) - 12 * K, "rw-p"),
                                      ("shared,fixed", 4 * K, (1 << 63) - 8 * K, "rw-s")):
        p = base_process()
        assert p.mmap(B + 4 * M, length, "rw-", flags, "f", off) == B + 4 * M
        assert p.vmas() == sorted(BASE + [(B + 4 * M, B + 4 * M + length, perms)])


def test_mmap_anon_ignores_huge_offset():
    # C: mmap(B+4M, 8K, RW, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 2**64-4K) -> ok (rw-p);
    # the same with MAP_SHARED -> ok (rw-s).
    for flags, perms in (("private,anon,fixed", "rw-p"), ("shared,anon,fixed", "rw-s")):
        p = base_process()
        assert p.mmap(B + 4 * M, 8 * K, "rw-", flags, None, W - 4 * K) == B + 4 * M
        assert p.vmas() == sorted(BASE + [(B + 4 * M, B + 4 * M + 8 * K, perms)])


@pytest.mark.parametrize("prot", ["rw-", "r--"])
def test_mmap_file_private_and_shared_is_shared_validate(prot):
    # C: mmap(B+4M, 8K, prot, MAP_PRIVATE|MAP_SHARED|MAP_FIXED, fd, 0) -> ok: the
    # flags value 3 is MAP_SHARED_VALIDATE, so the file is mapped *shared*
    # (maps shows rw-s / r--s).  Only the anonymous case is EINVAL.
    p = base_process()
    assert p.mmap(B + 4 * M, 8 * K, prot, "private,shared,fixed", "f") == B + 4 * M
    assert p.vmas() == sorted(BASE + [(B + 4 * M, B + 4 * M + 8 * K, prot + "s")])


def test_munmap_last_user_page():
    # C: munmap(TS-4K, 4K) -> 0 and munmap(TS-4K, 4095) -> 0: the top page of T8 goes.
    for length in (4 * K, 4 * K - 1):
        p = base_process()
        p.munmap(TS - 4 * K, length)
        assert p.vmas() == BASE[:2] + [(T8, TS - 4 * K, "rw-p")]
        assert p.rss == 8 * K


@pytest.mark.parametrize("length", [W - B - 4 * K, TS - B + 4 * K, 1 << 63],
                         ids=["ends_2^64-4K", "ends_TS+4K", "len_2^63"])
def test_mprotect_range_past_TS_without_wrap_changes_up_to_hole(length):
    # C: mprotect(B, len, PROT_READ) with B+len not wrapping -> ENOMEM at the
    # hole after B's page; B's vma is already r--.
    p = base_process()
    assert errno_of(p.mprotect, B, length, "r--") == errno.ENOMEM
    assert p.vmas() == [(B, B + 4 * K, "r--p")] + BASE[1:]


@pytest.mark.parametrize("length", [8 * K, W - (TS - 4 * K) - 4 * K], ids=["8K", "ends_2^64-4K"])
def test_mprotect_last_page_past_TS(length):
    # C: mprotect(TS-4K, len, PROT_READ) -> ENOMEM; T8 split, its top page r--.
    p = base_process()
    assert errno_of(p.mprotect, TS - 4 * K, length, "r--") == errno.ENOMEM
    assert p.vmas() == BASE[:2] + [(T8, TS - 4 * K, "rw-p"), (TS - 4 * K, TS, "r--p")]
    assert p.rss == BASE_RSS


@pytest.mark.parametrize("length", [8 * K, W - (TS - 4 * K) - 4 * K], ids=["8K", "ends_2^64-4K"])
def test_madvise_last_page_past_TS(length):
    # C: madvise(TS-4K, len, MADV_DONTNEED) -> ENOMEM, the page at TS-4K is zapped
    # (T8's Rss 8K -> 4K), vmas unchanged.
    p = base_process()
    assert errno_of(p.madvise, TS - 4 * K, length, "dontneed") == errno.ENOMEM
    assert p.vmas() == BASE
    assert p.rss == BASE_RSS - 4 * K


def test_mremap_fixed_to_last_page():
    # C: mremap(B, 4K, 4K, MAYMOVE|FIXED, TS-4K) -> TS-4K: it replaces T8's top
    # page; the two pieces stay separate vmas.
    p = base_process()
    assert p.mremap(B, 4 * K, 4 * K, "maymove,fixed", TS - 4 * K) == TS - 4 * K
    assert p.vmas() == [BASE[1], (T8, TS - 4 * K, "rw-p"), (TS - 4 * K, TS, "rw-p")]


def test_mremap_shrink_within_TS():
    # C: mremap(T8, 8K, 4K, 0) -> T8; T8 is one page.  mremap(B, 3M, 4K, 0) -> B:
    # a shrink may span holes and other vmas (B+2M's vma goes).
    p = base_process()
    assert p.mremap(T8, 8 * K, 4 * K) == T8
    assert p.vmas() == BASE[:2] + [(T8, TS - 4 * K, "rw-p")]
    p = base_process()
    assert p.mremap(B, 3 * M, 4 * K) == B
    assert p.vmas() == [BASE[0], BASE[2]]


# ====================================================================== 2. max_map_count
#
# C (maxmap.c): 40 vmas V3(k) = [B+1G+k*64K, +12K) r--, 60 triples
# S(k) = [B+1.25G+k*64K: r-- | --- | rw-] (one page each), then single r--
# pages ("fillers") at B + 2*i*4K with MAP_FIXED_NOREPLACE until mmap fails.
# The count is moved up and down by mapping / unmapping fillers; each probe
# uses a fresh V3 or S.  The process had 63 vmas of its own, the model has
# none, so fillers make up the same totals.

V = B + G  # a 3-page r-- vma
S = B + G + G // 4  # r-- page, then a --- page (blocks growth), then an rw- page


def at_count(n: int) -> Process:
    p = Process(era="linux-6.18")
    p.mmap(V, 12 * K, "r--", "private,anon,fixed")
    p.mmap(S, 4 * K, "r--", "private,anon,fixed")
    p.mmap(S + 4 * K, 4 * K, "---", "private,anon,fixed")
    p.mmap(S + 8 * K, 4 * K, "rw-", "private,anon,fixed")
    i = 0
    while p.map_count < n:
        p.mmap(B + 2 * i * PAGE, PAGE, "r--", "private,anon,fixed_noreplace")
        i += 1
    assert p.map_count == n
    return p


def test_mmap_fails_above_max_map_count():
    # C: the filler loop stopped with ENOMEM when map_count was 65531:
    # do_mmap refuses only when map_count > max_map_count, so one vma more
    # than the limit exists.
    p = at_count(4)  # V, S and its two neighbours
    i = 0
    with pytest.raises(OSError) as info:
        while True:
            p.mmap(B + 2 * i * PAGE, PAGE, "r--", "private,anon,fixed_noreplace")
            i += 1
    assert info.value.errno == errno.ENOMEM
    assert p.map_count == MAX_MAP_COUNT + 1


def test_mmap_at_limit():
    # C: at 65531, mmap(MAP_FIXED) exactly over a filler and an mmap that would
    # merge with a filler both fail with ENOMEM (count unchanged); at 65530 a
    # new mmap succeeds (-> 65531).
    p = at_count(MAX_MAP_COUNT + 1)
    assert errno_of(p.mmap, B, PAGE, "r--", "private,anon,fixed") == errno.ENOMEM
    assert errno_of(p.mmap, B + PAGE, PAGE, "r--", "private,anon,fixed") == errno.ENOMEM
    assert p.map_count == MAX_MAP_COUNT + 1
    p = at_count(MAX_MAP_COUNT)
    p.mmap(B + 2 * G, PAGE, "r--", "private,anon,fixed")
    assert p.map_count == MAX_MAP_COUNT + 1


@pytest.mark.parametrize("count", [MAX_MAP_COUNT + 1, MAX_MAP_COUNT])
def test_munmap_hole_refused_at_limit(count):
    # C: munmap(V3+4K, 4K) -> ENOMEM at 65531 and at 65530, V3 unchanged.
    p = at_count(count)
    assert errno_of(p.munmap, V + 4 * K, 4 * K) == errno.ENOMEM
    assert p.map_count == count
    assert (V, V + 12 * K, "r--p") in p.vmas()


def test_munmap_hole_below_limit():
    # C: at 65529 munmap(V3+4K, 4K) -> 0, count 65530.
    p = at_count(MAX_MAP_COUNT - 1)
    p.munmap(V + 4 * K, 4 * K)
    assert p.map_count == MAX_MAP_COUNT


@pytest.mark.parametrize("where", ["head", "tail"])
def test_munmap_head_or_tail_at_limit(where):
    # C: at 65531 munmap(V3, 4K) and munmap(V3+8K, 4K) -> 0 (one split, net 0).
    p = at_count(MAX_MAP_COUNT + 1)
    p.munmap(V if where == "head" else V + 8 * K, 4 * K)
    assert p.map_count == MAX_MAP_COUNT + 1


@pytest.mark.parametrize("count, where", [(MAX_MAP_COUNT + 1, "middle"), (MAX_MAP_COUNT + 1, "head"),
                                          (MAX_MAP_COUNT, "middle"), (MAX_MAP_COUNT, "head")])
def test_mprotect_split_refused_at_limit(count, where):
    # C: mprotect(V3+4K, 4K, PROT_NONE) and mprotect(V3, 4K, PROT_NONE) -> ENOMEM
    # at 65531 and at 65530; V3 unchanged.
    p = at_count(count)
    start = V + 4 * K if where == "middle" else V
    assert errno_of(p.mprotect, start, 4 * K, "---") == errno.ENOMEM
    assert p.map_count == count
    assert (V, V + 12 * K, "r--p") in p.vmas()


def test_mprotect_whole_vma_at_limit():
    # C: at 65531 mprotect(V3, 12K, PROT_NONE) -> 0 (no split needed).
    p = at_count(MAX_MAP_COUNT + 1)
    p.mprotect(V, 12 * K, "---")
    assert (V, V + 12 * K, "---p") in p.vmas()


def test_mprotect_middle_one_below_limit_fails_after_first_split():
    # C: at 65529 mprotect(V3+4K, 4K, PROT_NONE) -> ENOMEM, but count -> 65530 and
    # maps shows V3 as [V3, V3+4K) r-- and [V3+4K, V3+12K) r--: vma_modify split
    # off the head (split_vma: map_count 65529 < 65530), then the tail split
    # failed (65530 >= 65530); the first split is not undone and no prot changed.
    p = at_count(MAX_MAP_COUNT - 1)
    assert errno_of(p.mprotect, V + 4 * K, 4 * K, "---") == errno.ENOMEM
    assert p.map_count == MAX_MAP_COUNT
    vs = p.vmas()
    assert (V, V + 4 * K, "r--p") in vs and (V + 4 * K, V + 12 * K, "r--p") in vs


def test_mprotect_head_one_below_limit():
    # C: at 65529 mprotect(V3, 4K, PROT_NONE) -> 0, count 65530.
    p = at_count(MAX_MAP_COUNT - 1)
    p.mprotect(V, 4 * K, "---")
    assert p.map_count == MAX_MAP_COUNT
    assert (V, V + 4 * K, "---p") in p.vmas()


def test_mprotect_middle_two_below_limit():
    # C: at 65528 mprotect(V3+4K, 4K, PROT_NONE) -> 0, count 65530 (three pieces).
    p = at_count(MAX_MAP_COUNT - 2)
    p.mprotect(V + 4 * K, 4 * K, "---")
    assert p.map_count == MAX_MAP_COUNT
    assert (V + 4 * K, V + 8 * K, "---p") in p.vmas()


def test_mmap_fixed_splitting_at_limit():
    # C: at 65530: mmap(V3+4K, 4K, PROT_NONE, MAP_FIXED) -> ENOMEM (V3 unchanged);
    # mmap over V3's head -> ok (65531); over its tail -> ok (65531); over all
    # of V3 -> ok (65530).  At 65529 the middle one -> ok (65531).
    p = at_count(MAX_MAP_COUNT)
    assert errno_of(p.mmap, V + 4 * K, 4 * K, "---", "private,anon,fixed") == errno.ENOMEM
    assert (V, V + 12 * K, "r--p") in p.vmas()
    for start, length, after in ((V, 4 * K, MAX_MAP_COUNT + 1), (V + 8 * K, 4 * K, MAX_MAP_COUNT + 1),
                                 (V, 12 * K, MAX_MAP_COUNT)):
        p = at_count(MAX_MAP_COUNT)
        p.mmap(start, length, "---", "private,anon,fixed")
        assert p.map_count == after
    p = at_count(MAX_MAP_COUNT - 1)
    p.mmap(V + 4 * K, 4 * K, "---", "private,anon,fixed")
    assert p.map_count == MAX_MAP_COUNT + 1


# measured at every count from 65531 down to 65522; the boundary ones are kept
@pytest.mark.parametrize("count", [MAX_MAP_COUNT + 1, MAX_MAP_COUNT - 4, MAX_MAP_COUNT - 5,
                                   MAX_MAP_COUNT - 6, MAX_MAP_COUNT - 8])
def test_mremap_fixed_and_dontunmap_near_limit(count):
    # C: mremap(S, 4K, 4K, MAYMOVE|FIXED, B+2G+..) and the same with
    # MAYMOVE|DONTUNMAP|FIXED -> ENOMEM for every count >= 65525 (65531 ... 65525),
    # ok below (65524 ... 65522): check_mremap_params' map_count + 2 >= max - 3.
    refused = count >= MAX_MAP_COUNT - 5
    for flags in ("maymove,fixed", "maymove,dontunmap,fixed"):
        p = at_count(count)
        if refused:
            assert errno_of(p.mremap, S, 4 * K, 4 * K, flags, B + 2 * G) == errno.ENOMEM
            assert p.map_count == count
        else:
            assert p.mremap(S, 4 * K, 4 * K, flags, B + 2 * G) == B + 2 * G


@pytest.mark.parametrize("count", [MAX_MAP_COUNT + 1, MAX_MAP_COUNT - 2, MAX_MAP_COUNT - 3,
                                   MAX_MAP_COUNT - 4, MAX_MAP_COUNT - 8])
def test_mremap_maymove_move_near_limit(count):
    # C: mremap(S, 4K, 12K, MAYMOVE) where S+4K is taken, so it must move ->
    # ENOMEM for every count >= 65527 (65531 ... 65527), moved below
    # (65526 ... 65522): prep_move_vma's map_count >= max - 3.
    p = at_count(count)
    if count >= MAX_MAP_COUNT - 3:
        assert errno_of(p.mremap, S, 4 * K, 12 * K, "maymove") == errno.ENOMEM
        assert (S, S + 4 * K, "r--p") in p.vmas()
    else:
        assert p.mremap(S, 4 * K, 12 * K, "maymove") != S


def test_mremap_in_place_at_limit():
    # C: at 65531: mremap(S+8K, 4K, 8K, 0) (grow in place) -> ok; mremap of a grown
    # filler back to 4K (tail) -> ok; mremap(V3, 8K, 4K, 0) -> ENOMEM (the
    # shrink would unmap V3's middle page: a hole needs a split).
    p = at_count(MAX_MAP_COUNT + 1)
    assert p.mremap(S + 8 * K, 4 * K, 8 * K) == S + 8 * K
    assert p.mremap(S + 8 * K, 8 * K, 4 * K) == S + 8 * K
    assert errno_of(p.mremap, V, 8 * K, 4 * K) == errno.ENOMEM
    assert (V, V + 12 * K, "r--p") in p.vmas()
    assert p.map_count == MAX_MAP_COUNT + 1


# ====================================================================== 3. brk
#
# C (brk.c): a static -nostdlib -no-pie program with a 20 KiB bss (so the bss
# is an anonymous rw- vma) using raw syscalls only, so nothing else ever
# calls brk.  Run normally (start_brk randomized: no vma near it) and under
# `setarch -R` (start_brk = end of the bss vma).  Both runs gave the same
# vma results; the VmPTE numbers below are from the `setarch -R` run, whose
# layout (binary at 0x400000, heap right after the bss) is the one
# Process.exec() builds.


def fresh_brk() -> tuple[Process, int]:
    p = Process(era="linux-6.18")
    sb = p.brk(0)  # brk below start_brk returns the current break
    assert sb == p.mm.start_brk
    return p, sb


def test_brk_grow_shrink_vmas():
    # C: brk(sb+0x3000) -> sb+0x3000, one vma [sb, sb+0x3000) rw-p [heap];
    # brk(sb+0x1800) -> sb+0x1800, vma [sb, sb+0x2000); brk(sb) -> sb, no vma;
    # brk(sb-0x1000) -> sb (refused, returns the current break).
    p, sb = fresh_brk()
    assert p.brk(sb + 0x3000) == sb + 0x3000
    assert p.vmas() == [(sb, sb + 0x3000, "rw-p")]
    p.touch(sb, 0x3000, "w")
    assert p.brk(sb + 0x1800) == sb + 0x1800
    assert p.vmas() == [(sb, sb + 0x2000, "rw-p")]
    assert p.brk(sb) == sb
    assert p.vmas() == []
    assert p.brk(sb - 0x1000) == sb


def test_brk_does_not_merge_with_anon_vma_below_start_brk():
    # C (ASLR run): mmap(sb-0x2000, 0x2000, RW, PRIVATE|ANON|FIXED_NOREPLACE) -> ok,
    # then brk(sb+0x2000) -> sb+0x2000: maps shows [sb-0x2000, sb) rw-p and
    # [sb, sb+0x2000) rw-p [heap] as two vmas.  do_brk_flags only expands the
    # vma found by vma_prev_limit(start_brk), one that starts at or above start_brk.
    p, sb = fresh_brk()
    p.mmap(sb - 0x2000, 0x2000, "rw-", "private,anon,fixed_noreplace")
    assert p.brk(sb + 0x2000) == sb + 0x2000
    assert p.vmas() == [(sb - 0x2000, sb, "rw-p"), (sb, sb + 0x2000, "rw-p")]


def test_brk_does_not_merge_with_bss():
    # C (setarch -R): the bss vma [0x403000, 0x41b000) rw-p (written) ends at
    # start_brk 0x41b000; brk(sb+0x3000) -> sb+0x3000 and maps shows the bss vma
    # unchanged plus [0x41b000, 0x41e000) rw-p [heap].
    p = Process(era="linux-6.18")
    p.exec()
    sb = p.mm.start_brk
    bss = [v for v in p.vmas() if v[1] == sb]
    assert bss and bss[0][2] == "rw-p"
    assert p.brk(sb + 0x3000) == sb + 0x3000
    assert bss[0] in p.vmas()
    assert (sb, sb + 0x3000, "rw-p") in p.vmas()


def test_brk_pgtables_no_aslr():
    # C (setarch -R, sb = 0x41b000, binary in the 2 MiB slot at 0x400000):
    # brk(sb+3 pages) + write them -> VmPTE +0; brk(sb+4M) and write every page
    # -> VmPTE +8192 (the PTE tables of the 0x600000 and 0x800000 slots);
    # brk(sb) -> +0 again.  (ASLR run, heap alone in its 2 MiB slots: +4096
    # for 3 pages, +12288 for 4 MiB, 0 after brk(sb).)
    p = Process(era="linux-6.18")
    p.exec()
    sb = p.mm.start_brk
    assert sb < 0x600000
    base = p.pgtables_bytes
    p.brk(sb + 0x3000)
    p.touch(sb, 0x3000, "w")
    assert p.pgtables_bytes - base == 0
    p.brk(sb)
    p.brk(sb + 0x400000)
    p.touch(sb, 0x400000, "w")
    assert p.pgtables_bytes - base == 8192
    assert p.brk(sb) == sb
    assert p.pgtables_bytes - base == 0


def test_brk_anon_mmap_right_above_merges_into_heap():
    # C (brk3, ASLR run, nothing near the heap): brk(sb+0x2000) -> sb+0x2000;
    # mmap(sb+0x2000, 0x1000, RW, PRIVATE|ANON|FIXED_NOREPLACE) -> ok, maps shows
    # one vma [sb, sb+0x3000) rw-p [heap]; brk(sb+0x4000) -> sb+0x2000 (refused:
    # a vma at oldbrk); brk(sb+0x1000) -> sb+0x1000, maps [sb, sb+0x1000) [heap]
    # and [sb+0x2000, sb+0x3000).  (The setarch -R run with the bss right below
    # start_brk gave the same heap vmas.)
    p, sb = fresh_brk()
    assert p.brk(sb + 0x2000) == sb + 0x2000
    p.mmap(sb + 0x2000, 0x1000, "rw-", "private,anon,fixed_noreplace")
    assert p.vmas() == [(sb, sb + 0x3000, "rw-p")]
    assert p.brk(sb + 0x4000) == sb + 0x2000
    assert p.brk(sb + 0x1000) == sb + 0x1000
    assert p.vmas() == [(sb, sb + 0x1000, "rw-p"), (sb + 0x2000, sb + 0x3000, "rw-p")]


def test_brk_shrink_over_nothing_is_refused():
    # C (brk.c, both runs; continuing the sequence of
    # test_brk_does_not_merge_with_anon_vma_below_start_brk, sb-0x2000 vma
    # mapped, brk = sb+0x2000): mmap(sb+0x2000, 0x1000) -> merges into the
    # heap; brk(sb+0x1000) -> sb+0x1000; munmap(sb, 0x3000) -> 0 (heap gone);
    # brk(sb+0x800) -> sb+0x800 (same page as the old break: only mm->brk
    # moves); brk(sb) -> sb+0x800: refused, because no vma lies in
    # [sb, sb+0x1000) (the shrink path's `goto out` when vma_find finds nothing).
    p, sb = fresh_brk()
    p.mmap(sb - 0x2000, 0x2000, "rw-", "private,anon,fixed_noreplace")
    p.brk(sb + 0x2000)
    p.mmap(sb + 0x2000, 0x1000, "rw-", "private,anon,fixed_noreplace")
    assert p.brk(sb + 0x1000) == sb + 0x1000
    p.munmap(sb, 0x3000)
    assert p.brk(sb + 0x800) == sb + 0x800
    assert p.brk(sb) == sb + 0x800
    assert p.brk(0) == sb + 0x800


def test_brk_keeps_a_page_below_the_next_vma():
    # C (brk2, both runs): mmap(sb+0x5000, 0x1000, RW, PRIVATE|ANON|FIXED_NOREPLACE)
    # -> ok; brk(sb+0x5000) -> sb and brk(sb+0x4001) -> sb (refused:
    # newbrk + PAGE_SIZE > next->vm_start); brk(sb+0x4000) -> sb+0x4000, heap
    # [sb, sb+0x4000); munmap(sb+0x5000, 0x1000); brk(sb+0x5000) -> sb+0x5000,
    # heap [sb, sb+0x5000).
    p, sb = fresh_brk()
    p.mmap(sb + 0x5000, 0x1000, "rw-", "private,anon,fixed_noreplace")
    assert p.brk(sb + 0x5000) == sb
    assert p.brk(sb + 0x4001) == sb
    assert p.brk(sb + 0x4000) == sb + 0x4000
    assert p.vmas() == [(sb, sb + 0x4000, "rw-p"), (sb + 0x5000, sb + 0x6000, "rw-p")]
    p.munmap(sb + 0x5000, 0x1000)
    assert p.brk(sb + 0x5000) == sb + 0x5000
    assert p.vmas() == [(sb, sb + 0x5000, "rw-p")]


def test_brk_shrink_over_nothing_then_grow():
    # C (brk2, continuing): munmap(sb, 0x5000) -> 0; brk(sb+0x1000) -> sb+0x5000
    # (refused: nothing in [sb+0x1000, sb+0x5000)); brk(sb+0x6000) -> sb+0x6000
    # and the heap is [sb+0x5000, sb+0x6000) (grown from the old break).
    p, sb = fresh_brk()
    p.mmap(sb + 0x5000, 0x1000, "rw-", "private,anon,fixed_noreplace")
    p.brk(sb + 0x4000)
    p.munmap(sb + 0x5000, 0x1000)
    p.brk(sb + 0x5000)
    p.munmap(sb, 0x5000)
    assert p.brk(sb + 0x1000) == sb + 0x5000
    assert p.brk(sb + 0x6000) == sb + 0x6000
    assert p.vmas() == [(sb + 0x5000, sb + 0x6000, "rw-p")]


# ====================================================================== 4. fork: the child's side
#
# C (fork.c, static, so the child's own non-arena tables do not move; two
# VmPTE readings right after fork agreed): the parent maps
#   A  [B, +4K) rw- written                 (anon_vma: copied)
#   Bv [B+64K, +4K) rw- untouched           (same PTE table as A)
#   C  [B+1G, +4K) rw- read (zero page)
#   D  [B+512G, +4K) rw- untouched
#   E  [B+2G, +4K) shared anon, written
#   H  [B+3G, +4K) rw- read (zero page)
#   I  [B+4G, +12K) rw-, first page written, then a fresh MAP_FIXED rw- page
#      over its middle page (it merges back: one vma)
# then forks; the child prints the change of its VmPTE and its arena Rss
# after each step.


def test_child_faults_in_vmas_fork_did_not_copy():
    p = Process(era="linux-6.18")
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    p.touch(B, 1, "w")
    p.mmap(B + 64 * K, 4 * K, "rw-", "private,anon,fixed")
    p.mmap(B + G, 4 * K, "rw-", "private,anon,fixed")
    p.touch(B + G, 1, "r")
    p.mmap(B + 512 * G, 4 * K, "rw-", "private,anon,fixed")
    p.mmap(B + 2 * G, 4 * K, "rw-", "shared,anon,fixed")
    p.touch(B + 2 * G, 1, "w")
    p.mmap(B + 3 * G, 4 * K, "rw-", "private,anon,fixed")
    p.touch(B + 3 * G, 1, "r")
    p.mmap(B + 4 * G, 12 * K, "rw-", "private,anon,fixed")
    p.touch(B + 4 * G, 1, "w")
    p.mmap(B + 4 * G + 4 * K, 4 * K, "rw-", "private,anon,fixed")
    # measured parent maps: I is one vma again
    assert (B + 4 * G, B + 4 * G + 12 * K, "rw-p") in p.vmas()
    parent_pt, parent_rss = p.pgtables_bytes, p.rss
    assert parent_rss == 12 * K  # measured: A + E + I's first page

    c = p.fork()
    last = c.pgtables_bytes
    assert c.rss == 8 * K  # measured: A and I's first page (E is not copied)

    def step(expect_pt: int, expect_rss: int) -> None:
        nonlocal last
        assert (c.pgtables_bytes - last, c.rss) == (expect_pt, expect_rss)
        last = c.pgtables_bytes

    c.touch(B + 64 * K, 1, "w")        # Bv: dVmPTE 0, Rss 12K
    step(0, 12 * K)
    c.touch(B + G, 1, "w")             # C: dVmPTE +8192 (PMD + PTE), Rss 16K
    step(8192, 16 * K)
    c.touch(B + 512 * G, 1, "w")       # D: dVmPTE +12288 (PUD + PMD + PTE), Rss 20K
    step(12288, 20 * K)
    c.touch(B + 2 * G, 1, "r")         # E: dVmPTE +8192, Rss 24K (the shmem page)
    step(8192, 24 * K)
    c.touch(B + 3 * G, 1, "r")         # H: dVmPTE +8192, Rss 24K (zero page)
    step(8192, 24 * K)
    c.touch(B, 1, "w")                 # A: COW, dVmPTE 0, Rss 24K
    step(0, 24 * K)
    c.touch(B + 4 * G + 4 * K, 1, "w")  # I middle: dVmPTE 0, Rss 28K
    step(0, 28 * K)
    c.touch(B + 4 * G + 8 * K, 1, "w")  # I top: dVmPTE 0, Rss 32K
    step(0, 32 * K)
    c.munmap(B + 512 * G, 4 * K)       # munmap D: dVmPTE -12288, Rss 28K
    step(-12288, 28 * K)
    c.munmap(B + G, 4 * K)             # munmap C: dVmPTE -8192, Rss 24K
    step(-8192, 24 * K)
    # the parent after the child exited: VmPTE and Rss as before the fork
    c.exit()
    assert (p.pgtables_bytes, p.rss) == (parent_pt, parent_rss)
