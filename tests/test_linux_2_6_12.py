"""The linux-2.6.12 era checked path by path against the 2.6.12 sources.

Each test names the kernel functions it was derived from.  Expected values
come from reading the code, not from running the model.  A test marked
"DIFFERENCE" fails until the model is fixed.

Sources.  The NovantaPhotonics/linux-2.6.12.1 tree in the search index holds
no mm/*.c or kernel/fork.c text (only object files and a few drivers), so
the 2.6.12 behaviour was read from:

* 2.6.12-rc2 ``mm/memory.c`` (Pating/linux-2.6.12-rc2; the fault,
  copy_page_range, zap and unmap_vmas code that freepgt left alone);
* 2.6.11 ``mm/mmap.c`` (pwanbul/linux-2.6.11) for do_mmap_pgoff,
  vma_merge, find_mergeable_anon_vma, get_unmapped_area, do_munmap and
  split_vma, plus the freepgt patches and /work/shared/docs/kernel-notes.md
  section 4 for the 2.6.12 changes (unmap_region, driver failure path,
  exit_mmap);
* 2.6.12-era ``mm/madvise.c`` (madvise_dontneed checks only VM_LOCKED and
  hugetlb; VM_PFNMAP came in 2.6.15);
* 2.6.18 ``mm/mremap.c`` / ``mm/mprotect.c`` (bronson/linux-2.6.18.8-ovz-xen)
  for do_mremap / move_vma / mprotect_fixup, whose control flow is that of
  2.6.11/2.6.12 (only move_page_tables was rewritten in 2.6.14; the 2.6.12
  one moves one present pte at a time, kernel-notes 4.13);
* the 2.6.1x x86_64 ``arch/x86_64/kernel/sys_x86_64.c`` arch_get_unmapped_area
  (bottom-up from TASK_UNMAPPED_64, hint rounded with PAGE_ALIGN) and the
  2.6 i386/x86_64 do_page_fault access switch.
"""

from __future__ import annotations

import errno

import pytest

from freepgt import BusError, KernelBug, Process, SegmentationFault

E = "linux-2.6.12"
K4 = 0x1000
M2 = 0x200000
G1 = 0x40000000
B = 0x100000000000          # 16 TiB: its own pgd slot on x86_64
T = B + G1                  # a move target in another PUD slot
TASK_SIZE = 0x7FFFFFFFF000  # x86_64 2.6.12: 0x800000000000 - PAGE_SIZE


def proc(arch: str = "x86_64") -> Process:
    return Process(era=E, arch=arch)


def err(fn, *args, **kw) -> int:
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    return ei.value.errno


def vmas(p: Process) -> list[tuple[int, int, str]]:
    return p.vmas()


# ===========================================================================
# do_mmap_pgoff: flags, VM_ACCOUNT, placement
# ===========================================================================

def test_difference_noreserve_is_no_vm_flag_so_mappings_merge():
    # DIFFERENCE.  2.6.12 has no VM_NORESERVE: do_mmap_pgoff only uses
    # MAP_NORESERVE to skip setting VM_ACCOUNT ("accountable &&
    # (!(flags & MAP_NORESERVE) || OVERCOMMIT_NEVER)"), and calc_vm_flag_bits
    # does not translate it (mprotect_fixup even says "FIXME? We haven't
    # defined a VM_NORESERVE flag").  A read-only private anon mapping and a
    # read-only MAP_NORESERVE one therefore have identical vm_flags, and
    # vma_merge (can_vma_merge_after) joins them.
    p = proc()
    p.mmap(B, K4, "r--", "private,anon,fixed,noreserve")
    p.mmap(B + K4, K4, "r--", "private,anon,fixed")
    assert vmas(p) == [(B, B + 2 * K4, "r--p")]


def test_difference_mprotect_charges_noreserve_mapping_made_writable():
    # DIFFERENCE.  mprotect_fixup: "if (newflags & VM_WRITE) if (!(oldflags &
    # (VM_ACCOUNT|VM_WRITE|VM_SHARED|VM_HUGETLB))) { charged = nrpages;
    # newflags |= VM_ACCOUNT; }" -- no NORESERVE exemption ("mprotecting a
    # MAP_NORESERVE private mapping to writable will now reserve").
    # rw- noreserve (no charge) -> r-- (nothing) -> rw- charges 2 pages.
    p = proc()
    p.mmap(B, 2 * K4, "rw-", "private,anon,fixed,noreserve")
    assert p.mm.committed == 0
    p.mprotect(B, 2 * K4, "r--")
    p.mprotect(B, 2 * K4, "rw-")
    assert p.mm.committed == 2


def test_mprotect_writable_charges_once_and_never_uncharges():
    # mprotect_fixup: a private vma without VM_ACCOUNT made writable is
    # charged and gets VM_ACCOUNT; made read-only it keeps both ("cannot
    # reduce our commit if we make it unwritable again"); writable again: no
    # second charge (VM_ACCOUNT already set).
    p = proc()
    p.mmap(B, 2 * K4, "r--", "private,anon,fixed")
    assert p.mm.committed == 0
    p.mprotect(B, 2 * K4, "rw-")
    assert p.mm.committed == 2
    p.mprotect(B, 2 * K4, "r--")
    assert p.mm.committed == 2
    p.mprotect(B, 2 * K4, "rw-")
    assert p.mm.committed == 2
    assert vmas(p) == [(B, B + 2 * K4, "rw-p")]


def test_difference_fixed_range_check_comes_before_alignment():
    # DIFFERENCE.  get_unmapped_area, MAP_FIXED branch: "if (addr > TASK_SIZE
    # - len) return -ENOMEM; if (addr & ~PAGE_MASK) return -EINVAL;" (same
    # order in 2.6.11 and 2.6.18).  An unaligned fixed address above
    # TASK_SIZE - len is ENOMEM, not EINVAL.
    p = proc()
    assert err(p.mmap, TASK_SIZE + 1, K4, "rw-", "private,anon,fixed") == errno.ENOMEM
    # aligned but too high: ENOMEM as well; unaligned in range: EINVAL
    assert err(p.mmap, TASK_SIZE, K4, "rw-", "private,anon,fixed") == errno.ENOMEM
    assert err(p.mmap, B + 1, K4, "rw-", "private,anon,fixed") == errno.EINVAL


def test_mmap_zero_length_and_unaligned_offset_are_einval():
    # sys_mmap (x86_64): "if (off & ~PAGE_MASK) return -EINVAL"; do_mmap_pgoff:
    # zero length fails with EINVAL since 2.6.12 (mmap(2): "Since kernel
    # 2.6.12, mmap() fails with the error EINVAL for this case").
    p = proc()
    f = p.file("f", 4 * K4)
    assert err(p.mmap, B, 0, "rw-", "private,anon,fixed") == errno.EINVAL
    assert err(p.mmap, B, K4, "rw-", "shared,fixed", f, 1) == errno.EINVAL
    assert vmas(p) == []


def test_difference_hint_is_rounded_up():
    # DIFFERENCE.  x86_64 arch_get_unmapped_area: "if (addr) { addr =
    # PAGE_ALIGN(addr); ... if (end - len >= addr && (!vma || addr + len <=
    # vma->vm_start)) return addr; }" -- PAGE_ALIGN rounds a hint *up*.
    p = proc()
    assert p.mmap(B + 1, K4, "rw-", "private,anon") == B + K4
    assert vmas(p) == [(B + K4, B + 2 * K4, "rw-p")]


def test_difference_low_hint_is_taken():
    # DIFFERENCE.  2.6.12 has no mmap_min_addr (2.6.23): the x86_64 hint test
    # is only "end - len >= addr" and the range being free, so a hint of
    # 0x1000 is used as given.
    p = proc()
    assert p.mmap(0x1000, K4, "rw-", "private,anon") == 0x1000


def test_difference_no_hint_places_bottom_up_from_task_unmapped_base():
    # DIFFERENCE.  x86_64 in 2.6.12 has no top-down layout for 64-bit tasks:
    # arch_get_unmapped_area starts at mm->free_area_cache (mm_init sets it to
    # TASK_UNMAPPED_BASE = TASK_UNMAPPED_64 = PAGE_ALIGN(TASK_SIZE/3) =
    # PAGE_ALIGN(0x2aaaaaaaa555) = 0x2aaaaaaab000), takes the first gap above
    # it and leaves free_area_cache = addr + len, so the next one follows.
    p = proc()
    a = p.mmap(0, K4, "rw-", "private,anon")
    b = p.mmap(0, K4, "rw-", "private,anon")
    assert a == 0x2AAAAAAAB000
    assert b == a + K4


def test_map_fixed_replaces_and_merges_with_both_neighbours():
    # do_mmap_pgoff: MAP_FIXED over a mapped range calls do_munmap (two
    # split_vma), then vma_merge(prev, addr, end, ..., anon_vma NULL, file
    # NULL, pgoff = addr >> PAGE_SHIFT): prev and next are both mergeable
    # (same flags, linear pgoff, the same anon_vma on both pieces) -> case 1,
    # one vma; the replaced page is gone.
    p = proc()
    p.mmap(B, 3 * K4, "rw-", "private,anon,fixed")
    p.touch(B, 3 * K4, "w")
    p.mmap(B + K4, K4, "rw-", "private,anon,fixed")
    assert vmas(p) == [(B, B + 3 * K4, "rw-p")]
    assert p.rss == 2 * K4


def test_shared_anon_never_merges_and_private_file_merges():
    # do_mmap_pgoff: the first vma_merge is tried only for "!file &&
    # !(vm_flags & VM_SHARED)"; the second one only "if (file)" -- for shared
    # anon the local file is NULL (shmem_zero_setup set vma->vm_file), so it
    # is linked without a merge.  Private file mappings with contiguous
    # offsets merge (can_vma_merge_after: same file, vm_pgoff + pglen).
    p = proc()
    p.mmap(B, K4, "rw-", "shared,anon,fixed")
    p.mmap(B + K4, K4, "rw-", "shared,anon,fixed")
    assert vmas(p) == [(B, B + K4, "rw-s"), (B + K4, B + 2 * K4, "rw-s")]
    q = proc()
    f = q.file("f", 4 * K4)
    q.mmap(B, K4, "r--", "private,fixed", f, 0)
    q.mmap(B + K4, K4, "r--", "private,fixed", f, K4)
    q.mmap(B + 3 * K4, K4, "r--", "private,fixed", f, 2 * K4)  # offset gap
    q.mmap(B + 2 * K4, K4, "r--", "private,fixed", f, 3 * K4)  # not contiguous
    assert vmas(q) == [(B, B + 2 * K4, "r--p"), (B + 2 * K4, B + 3 * K4, "r--p"),
                       (B + 3 * K4, B + 4 * K4, "r--p")]


def test_device_mappings_never_merge():
    # vma_merge: "if (vm_flags & VM_SPECIAL) return NULL" (VM_SPECIAL =
    # VM_IO|VM_DONTCOPY|VM_DONTEXPAND|VM_RESERVED; remap_pfn_range sets
    # VM_IO|VM_RESERVED).
    p = proc()
    d = p.device("d")
    p.mmap(B, K4, "rw-", "shared,fixed", d)
    p.mmap(B + K4, K4, "rw-", "shared,fixed", d, K4)
    assert len(vmas(p)) == 2


def test_merge_with_prev_when_prev_and_next_anon_vmas_differ():
    # vma_merge: prev mergeable, next mergeable "before", but
    # is_mergeable_anon_vma(prev->anon_vma, next->anon_vma) fails -> cases
    # 2/5/7: only prev is extended.
    p = proc()
    p.mmap(B, K4, "rw-", "private,anon,fixed")
    p.touch(B, K4, "w")                       # anon_vma X
    p.mmap(B + 2 * K4, K4, "rw-", "private,anon,fixed")
    p.touch(B + 2 * K4, K4, "w")              # not adjacent to X: anon_vma Y
    a, c = p.mm.vmas.all()
    assert a.anon_vma is not c.anon_vma
    p.mmap(B + K4, K4, "rw-", "private,anon,fixed")
    assert vmas(p) == [(B, B + 2 * K4, "rw-p"), (B + 2 * K4, B + 3 * K4, "rw-p")]


def test_difference_driver_failure_uncharges_once():
    # DIFFERENCE.  do_mmap_pgoff: a private writable device mapping is charged
    # (charged = len >> PAGE_SHIFT, VM_ACCOUNT).  ->mmap fails ->
    # unmap_and_free_vma: unmap_region -> unmap_vmas adds the vma's VM_ACCOUNT
    # pages to nr_accounted and vm_unacct_memory(nr_accounted) gives them
    # back; then "charged = 0" so unacct_error gives nothing back twice.  Net 0.
    p = proc()
    d = p.device("d", fail=errno.EIO)
    assert err(p.mmap, B, 2 * K4, "rw-", "private,fixed", d) == errno.EIO
    assert p.mm.committed == 0
    assert vmas(p) == [] and p.nr_ptes == 0


# ===========================================================================
# populate: sys_remap_file_pages (fremap.c) -> shmem_populate
# ===========================================================================

def test_populate_only_shared_and_all_or_nothing():
    # do_mmap_pgoff: MAP_POPULATE -> sys_remap_file_pages(addr, len, 0, pgoff,
    # flags & MAP_NONBLOCK), which needs VM_SHARED and ->populate; a private
    # mapping is left alone (EINVAL, ignored).  shmem_populate: "if (pgoff >=
    # size || pgoff + (len >> PAGE_SHIFT) > size) return -EINVAL" before any
    # page, else install_page (pud/pmd/pte_alloc, rss++) for every page.
    p = proc()
    f = p.file("f", 4 * K4)
    p.mmap(B, 4 * K4, "rw-", "shared,fixed,populate", f)
    assert p.rss == 4 * K4 and p.tables() == {"pud": 1, "pmd": 1, "pte": 1}
    q = proc()
    g = q.file("g", 4 * K4)
    q.mmap(B, 4 * K4, "rw-", "private,fixed,populate", g)
    assert q.rss == 0 and q.tables() == {"pud": 0, "pmd": 0, "pte": 0}
    r = proc()
    h = r.file("h", K4)
    r.mmap(B, 2 * K4, "rw-", "shared,fixed,populate", h)  # runs past EOF
    assert r.rss == 0 and r.tables() == {"pud": 0, "pmd": 0, "pte": 0}
    s = proc()
    s.mmap(B, 3 * K4, "rw-", "shared,anon,fixed,populate")  # shmem_zero_setup
    assert s.rss == 3 * K4


# ===========================================================================
# do_munmap / split_vma: max_map_count per split
# ===========================================================================

def test_difference_munmap_middle_fails_after_first_split_one_below_limit():
    # DIFFERENCE.  do_munmap: "if (start > mpnt->vm_start) { if
    # (split_vma(mm, mpnt, start, 0)) return -ENOMEM; }" then "last =
    # find_vma(mm, end); if (last && end > last->vm_start) { if
    # (split_vma(mm, last, end, 1)) return -ENOMEM; }"; split_vma: "if
    # (mm->map_count >= sysctl_max_map_count) return -ENOMEM".  At map_count
    # = max - 1 the first split succeeds (map_count = max), the second fails:
    # -ENOMEM with the vma left split in two.
    p = proc()
    p.mmap(B, 3 * K4, "rw-", "private,anon,fixed")
    p.mm.max_map_count = 2
    assert err(p.munmap, B + K4, K4) == errno.ENOMEM
    assert vmas(p) == [(B, B + K4, "rw-p"), (B + K4, B + 3 * K4, "rw-p")]


def test_difference_munmap_tail_split_refused_at_limit():
    # DIFFERENCE.  Same code: unmapping the tail of a vma needs one split,
    # and split_vma refuses at map_count >= max_map_count.
    p = proc()
    p.mmap(B, 2 * K4, "rw-", "private,anon,fixed")
    p.mm.max_map_count = 1
    assert err(p.munmap, B + K4, K4) == errno.ENOMEM
    assert vmas(p) == [(B, B + 2 * K4, "rw-p")]


def test_difference_munmap_across_two_vmas_refused_at_limit():
    # DIFFERENCE.  The range cuts the tail of one vma and the head of the
    # next: the first split_vma already sees map_count (2) >= max (2).
    p = proc()
    p.mmap(B, 2 * K4, "rw-", "private,anon,fixed")
    p.mmap(B + 2 * K4, 2 * K4, "r--", "private,anon,fixed")
    p.mm.max_map_count = 2
    assert err(p.munmap, B + K4, 2 * K4) == errno.ENOMEM
    assert vmas(p) == [(B, B + 2 * K4, "rw-p"), (B + 2 * K4, B + 4 * K4, "r--p")]


def test_munmap_errnos_and_nothing_mapped():
    # do_munmap: "(start & ~PAGE_MASK) || start > TASK_SIZE || len >
    # TASK_SIZE-start" -> EINVAL; "(len = PAGE_ALIGN(len)) == 0" -> EINVAL;
    # no overlapping vma -> 0.
    p = proc()
    assert err(p.munmap, B + 1, K4) == errno.EINVAL
    assert err(p.munmap, B, 0) == errno.EINVAL
    assert err(p.munmap, TASK_SIZE, 2 * K4) == errno.EINVAL
    p.munmap(B, K4)


# ===========================================================================
# mprotect_fixup: vma_merge first, then split_vma
# ===========================================================================

def test_difference_mprotect_merge_needs_no_split_at_limit():
    # DIFFERENCE.  mprotect_fixup tries "*pprev = vma_merge(mm, *pprev, start,
    # end, newflags, ...)" before any split_vma.  [B, B+4K) r-- (VM_ACCOUNT
    # kept from rw-) and [B+4K, B+12K) rw-; mprotect the first page of the
    # second to r--: vma_merge case 5 (vma_adjust moves the boundary), no new
    # vma, so it succeeds even at map_count == max_map_count.
    p = proc()
    p.mmap(B, 3 * K4, "rw-", "private,anon,fixed")
    p.mprotect(B, K4, "r--")
    assert p.map_count == 2
    p.mm.max_map_count = 2
    p.mprotect(B + K4, K4, "r--")
    assert vmas(p) == [(B, B + 2 * K4, "r--p"), (B + 2 * K4, B + 3 * K4, "rw-p")]


def test_difference_mprotect_middle_fails_after_first_split_one_below_limit():
    # DIFFERENCE.  mprotect_fixup: vma_merge finds nothing; "if (start !=
    # vma->vm_start) split_vma(mm, vma, start, 1)" succeeds at map_count 1 <
    # 2, "if (end != vma->vm_end) split_vma(mm, vma, end, 0)" fails at
    # map_count 2 >= 2: -ENOMEM, the first split stays, flags unchanged.
    p = proc()
    p.mmap(B, 3 * K4, "rw-", "private,anon,fixed")
    p.mm.max_map_count = 2
    assert err(p.mprotect, B + K4, K4, "r--") == errno.ENOMEM
    assert vmas(p) == [(B, B + K4, "rw-p"), (B + K4, B + 3 * K4, "rw-p")]


def test_mprotect_hole_changes_vmas_before_it_then_enomem():
    # sys_mprotect: each vma is fixed up in turn; "if (!vma || vma->vm_start
    # != nstart) { error = -ENOMEM; goto out; }" after the first one.
    p = proc()
    p.mmap(B, K4, "rw-", "private,anon,fixed")
    p.mmap(B + 2 * K4, K4, "rw-", "private,anon,fixed")
    assert err(p.mprotect, B, 3 * K4, "r--") == errno.ENOMEM
    assert vmas(p) == [(B, B + K4, "r--p"), (B + 2 * K4, B + 3 * K4, "rw-p")]
    assert err(p.mprotect, B + 1, K4, "r--") == errno.EINVAL
    assert err(p.mprotect, B + K4, K4, "r--") == errno.ENOMEM
    p.mprotect(B, 0, "---")          # "if (!len) return 0"


# ===========================================================================
# mremap
# ===========================================================================

def test_difference_mremap_same_length_needs_no_vma():
    # DIFFERENCE.  do_mremap: "if (old_len >= new_len) { ret = do_munmap(mm,
    # addr+new_len, old_len - new_len); if (ret && old_len != new_len) goto
    # out; ret = addr; if (!(flags & MREMAP_FIXED) || (new_addr == addr)) goto
    # out; }" comes before find_vma: with equal lengths and no FIXED the
    # address is returned even when nothing is mapped there.
    p = proc()
    assert p.mremap(B, K4, K4) == B
    assert p.mremap(B, K4, K4, "maymove") == B


def test_difference_mremap_shrink_needs_no_vma():
    # DIFFERENCE.  Same branch: a shrink is do_munmap of the tail (nothing
    # mapped -> 0) and returns addr before the -EFAULT lookup.
    p = proc()
    assert p.mremap(B, 2 * K4, K4) == B


def test_difference_mremap_fixed_unmaps_target_before_checking_source():
    # DIFFERENCE.  do_mremap, MREMAP_FIXED: "ret = do_munmap(mm, new_addr,
    # new_len)" runs before "ret = -EFAULT; vma = find_vma(mm, addr); if
    # (!vma || vma->vm_start > addr) goto out".  An unmapped source gives
    # -EFAULT after the target was already unmapped.
    p = proc()
    p.mmap(T, K4, "rw-", "private,anon,fixed")
    assert err(p.mremap, B, K4, K4, "maymove,fixed", T) == errno.EFAULT
    assert vmas(p) == []


def test_difference_mremap_old_len_zero_allowed_on_private_mapping():
    # DIFFERENCE.  do_mremap: "We allow a zero old-len as a special case";
    # 2.6.12 refuses nothing for private vmas (that came in 4.x).  FIXED+
    # MAYMOVE: not in place (old_len != vm_end - addr) -> move_vma(vma, B, 0,
    # 4K, T): copy_vma makes a new 4K vma at T (untouched anon: pgoff = T >>
    # PAGE_SHIFT), move_page_tables moves nothing, do_munmap(B, 0) fails
    # (-EINVAL, only accounting fixed up) so the source stays; returns T.
    p = proc()
    p.mmap(B, 2 * K4, "rw-", "private,anon,fixed")
    assert p.mremap(B, 0, K4, "maymove,fixed", T) == T
    assert vmas(p) == [(B, B + 2 * K4, "rw-p"), (T, T + K4, "rw-p")]


def test_difference_mremap_huge_new_len_without_fixed_is_enomem():
    # DIFFERENCE.  "new_len > TASK_SIZE" is only checked under MREMAP_FIXED.
    # Without it: find_vma ok, no VM_ACCOUNT (noreserve), not in place
    # ("max_addr - addr >= new_len" fails), no MAYMOVE -> ret = -ENOMEM.
    p = proc()
    p.mmap(B, K4, "rw-", "private,anon,fixed,noreserve")
    assert err(p.mremap, B, K4, 1 << 48) == errno.ENOMEM


def _alternating(n: int, max_map_count: int) -> Process:
    p = proc()
    for i in range(n):  # adjacent, alternating prot: n vmas, none can grow
        p.mmap(B + i * K4, K4, "rw-" if i % 2 else "r--", "private,anon,fixed")
    assert p.map_count == n
    p.mm.max_map_count = max_map_count
    return p


def test_difference_move_vma_refused_at_max_map_count_minus_3():
    # DIFFERENCE.  move_vma: "if (mm->map_count >= sysctl_max_map_count - 3)
    # return -ENOMEM;" -- for every move, FIXED or not.  7 >= 10 - 3.
    p = _alternating(7, 10)
    before = vmas(p)
    assert err(p.mremap, B, K4, 2 * K4, "maymove") == errno.ENOMEM
    assert vmas(p) == before


def test_difference_fixed_move_allowed_below_max_map_count_minus_3():
    # DIFFERENCE.  The only map_count test on the mremap path is move_vma's
    # "map_count >= max - 3"; 5 < 7, so the FIXED move goes through.
    p = _alternating(5, 10)
    assert p.mremap(B, K4, K4, "maymove,fixed", T) == T
    assert vmas(p) == [(B + K4, B + 2 * K4, "rw-p"), (B + 2 * K4, B + 3 * K4, "r--p"),
                       (B + 3 * K4, B + 4 * K4, "rw-p"), (B + 4 * K4, B + 5 * K4, "r--p"),
                       (T, T + K4, "r--p")]


def test_difference_move_vma_keeps_the_old_reservation():
    # DIFFERENCE.  do_mremap charges only new_len - old_len for a VM_ACCOUNT
    # vma; move_vma: "Conceal VM_ACCOUNT so old reservation is not undone"
    # (vma->vm_flags &= ~VM_ACCOUNT before do_munmap of the old range), so
    # the old pages' charge moves with the new vma (copied by copy_vma with
    # VM_ACCOUNT).  2 pages -> 4 pages: committed 2 + 2 = 4; a same-size
    # move leaves it at 2.
    p = proc()
    p.mmap(B, 2 * K4, "rw-", "private,anon,fixed")
    p.touch(B, 2 * K4, "w")
    assert p.mm.committed == 2
    p.mremap(B, 2 * K4, 4 * K4, "maymove,fixed", T)
    assert p.mm.committed == 4
    q = proc()
    q.mmap(B, 2 * K4, "rw-", "private,anon,fixed")
    q.mremap(B, 2 * K4, 2 * K4, "maymove,fixed", T)
    assert q.mm.committed == 2


def test_mremap_grow_in_place_does_not_merge_with_next():
    # do_mremap: in place is vma_adjust(vma, vma->vm_start, addr + new_len,
    # ...) -- no vma_merge, so a touching next vma stays separate.
    p = proc()
    p.mmap(B, K4, "rw-", "private,anon,fixed")
    p.mmap(B + 2 * K4, K4, "rw-", "private,anon,fixed")
    assert p.mremap(B, K4, 2 * K4) == B
    assert vmas(p) == [(B, B + 2 * K4, "rw-p"), (B + 2 * K4, B + 3 * K4, "rw-p")]


def test_move_page_tables_allocates_only_for_present_ptes():
    # 2.6.12 move_page_tables: move_one_page per page; get_one_pte_map_nested
    # returns NULL for a none pte, so alloc_one_pte_map (pud/pmd/pte_alloc)
    # runs only at the destination of a present pte.  Two present ptes in
    # two PTE tables -> at T: a new PMD table and two PTE tables.  Then
    # do_munmap(B, 4M) frees the old PTE and PMD tables (floor 0, ceiling T:
    # the PMD slot [B, B+1G) lies below T) but not the PUD table (T rounds
    # down to B at PGDIR level).
    p = proc()
    p.mmap(B, 2 * M2, "rw-", "private,anon,fixed")
    p.touch(B, K4, "w")
    p.touch(B + M2, K4, "r")       # zero page: present, moved too
    assert p.tables() == {"pud": 1, "pmd": 1, "pte": 2}
    assert p.mremap(B, 2 * M2, 2 * M2, "maymove,fixed", T) == T
    assert p.tables() == {"pud": 1, "pmd": 1, "pte": 2}
    assert p.pgtables_bytes == 2 * 4096
    assert p.rss == K4
    # a present but empty source PTE table allocates nothing at the target
    q = proc()
    q.mmap(B, 2 * K4, "rw-", "private,anon,fixed")
    q.touch(B, 2 * K4, "w")
    q.madvise(B, 2 * K4, "dontneed")
    assert q.tables() == {"pud": 1, "pmd": 1, "pte": 1}
    q.mremap(B, 2 * K4, 2 * K4, "maymove,fixed", T)
    assert q.tables() == {"pud": 1, "pmd": 0, "pte": 0}
    assert q.pgtables_bytes == 0


def test_copy_vma_pgoff_rule_decides_merging_at_the_target():
    # copy_vma: "If anonymous vma has not yet been faulted, update new pgoff
    # to match new location" (pgoff = addr >> PAGE_SHIFT), then vma_merge.
    # Untouched: merges with the untouched vma ending at T.  Touched
    # (anon_vma set): keeps its old pgoff, can_vma_merge_after fails.
    p = proc()
    p.mmap(T - K4, K4, "rw-", "private,anon,fixed")
    p.mmap(B, K4, "rw-", "private,anon,fixed")
    p.mremap(B, K4, K4, "maymove,fixed", T)
    assert vmas(p) == [(T - K4, T + K4, "rw-p")]
    q = proc()
    q.mmap(T - K4, K4, "rw-", "private,anon,fixed")
    q.mmap(B, K4, "rw-", "private,anon,fixed")
    q.touch(B, K4, "w")
    q.mremap(B, K4, K4, "maymove,fixed", T)
    assert vmas(q) == [(T - K4, T, "rw-p"), (T, T + K4, "rw-p")]


# ===========================================================================
# Faults: handle_mm_fault, do_anonymous_page, do_no_page, do_wp_page
# ===========================================================================

def test_anonymous_read_maps_zero_page_write_allocates():
    # handle_mm_fault: pud_alloc, pmd_alloc, pte_alloc_map, then
    # do_no_page -> do_anonymous_page: read maps ZERO_PAGE (no rss, no
    # anon_vma); write: anon_vma_prepare, a zeroed page, rss++.  A write to
    # the zero-page pte: do_wp_page copies (anon_vma_prepare, rss++ since the
    # old page is PageReserved).
    p = proc()
    p.mmap(B, 2 * K4, "rw-", "private,anon,fixed")
    p.touch(B, K4, "r")
    assert p.tables() == {"pud": 1, "pmd": 1, "pte": 1}
    assert p.rss == 0 and p.mm.vmas.all()[0].anon_vma is None
    p.touch(B, K4, "w")
    assert p.rss == K4 and p.mm.vmas.all()[0].anon_vma is not None
    p.touch(B + K4, K4, "w")
    assert p.rss == 2 * K4


def test_private_file_read_then_cow():
    # do_no_page: ->nopage (shmem_nopage) gives the page cache page; read maps
    # it (not PageReserved -> rss++).  Write: do_wp_page, can_share_swap_page
    # is false for a page-cache page (page_count 2, not swapcache), so copy:
    # anon_vma_prepare, rss unchanged.
    p = proc()
    f = p.file("f", 2 * K4)
    p.mmap(B, 2 * K4, "rw-", "private,fixed", f)
    p.touch(B, K4, "r")
    assert p.rss == K4 and 0 in f.cache
    assert p.mm.vmas.all()[0].anon_vma is None
    p.touch(B, K4, "w")
    assert p.rss == K4 and p.mm.vmas.all()[0].anon_vma is not None


def test_difference_sigbus_leaves_the_pte_table_it_faulted_in():
    # DIFFERENCE.  handle_mm_fault allocates pud, pmd *and* the PTE table
    # (pte_alloc_map, nr_ptes++) before handle_pte_fault -> do_no_page ->
    # shmem_nopage returns NOPAGE_SIGBUS past EOF.  So the SIGBUS leaves a PTE
    # table: nr_ptes 1, VmPTE 4096.  The vma covers it, so exit frees it.
    p = proc()
    f = p.file("f", K4)
    p.mmap(B, 2 * M2, "rw-", "shared,fixed", f)
    with pytest.raises(BusError) as ei:
        p.touch(B + M2, K4, "r")
    assert ei.value.addr == B + M2
    assert p.tables() == {"pud": 1, "pmd": 1, "pte": 1}
    assert p.nr_ptes == 1 and p.pgtables_bytes == 4096 and p.rss == 0
    report = p.exit()
    assert report.tables_left == {}


def test_difference_write_fault_past_eof_leaves_pte_table():
    # DIFFERENCE.  Same for a private write past EOF: the table comes from
    # handle_mm_fault before nopage says SIGBUS.
    p = proc()
    f = p.file("f", K4)
    p.mmap(B, 2 * M2, "rw-", "private,fixed", f)
    with pytest.raises(BusError):
        p.touch(B + M2, K4, "w")
    assert p.nr_ptes == 1


def test_difference_private_write_past_eof_creates_no_anon_vma():
    # DIFFERENCE.  do_no_page calls ->nopage first ("if (new_page ==
    # NOPAGE_SIGBUS) return VM_FAULT_SIGBUS;") and only then, for the early
    # COW, anon_vma_prepare.  A write fault past EOF leaves vma->anon_vma NULL.
    p = proc()
    f = p.file("f", K4)
    p.mmap(B, 2 * K4, "rw-", "private,fixed", f)
    p.touch(B, K4, "r")
    with pytest.raises(BusError) as ei:
        p.touch(B + K4, K4, "w")
    assert ei.value.addr == B + K4
    assert p.mm.vmas.all()[0].anon_vma is None


@pytest.mark.parametrize("arch, base", [("x86_64", B), ("i386", 0x10000000)])
def test_difference_read_of_write_only_mapping_is_sigsegv(arch, base):
    # DIFFERENCE.  do_page_fault (i386 and x86_64, 2.6.12): "case 0: /* read,
    # not present */ if (!(vma->vm_flags & (VM_READ | VM_EXEC))) goto
    # bad_area;" -- a first read of a -w- page is SIGSEGV (modern kernels
    # accept any of VM_READ|VM_WRITE|VM_EXEC).
    p = proc(arch)
    p.mmap(base, K4, "-w-", "private,anon,fixed")
    with pytest.raises(SegmentationFault):
        p.touch(base, K4, "r")
    assert p.rss == 0


def test_read_of_written_write_only_page_does_not_fault():
    # Once written, the pte is present and readable (x86 cannot express
    # write-only), so the read raises no fault at all.
    p = proc()
    p.mmap(B, K4, "-w-", "private,anon,fixed")
    p.touch(B, K4, "w")
    p.touch(B, K4, "r")
    assert p.rss == K4


def test_difference_read_of_exec_only_mapping_is_allowed_on_x86_64():
    # DIFFERENCE.  Same switch: VM_EXEC satisfies a read fault; 2.6.12 has no
    # protection keys, so --x reads map the zero page.
    p = proc()
    p.mmap(B, K4, "--x", "private,anon,fixed")
    p.touch(B, K4, "r")
    assert p.tables() == {"pud": 1, "pmd": 1, "pte": 1} and p.rss == 0


# ===========================================================================
# anon_vma_prepare / find_mergeable_anon_vma
# ===========================================================================

def test_find_mergeable_anon_vma_tries_next_first():
    # find_mergeable_anon_vma: "near = vma->vm_next" first (flags equal but
    # for RWX, adjacent, can_vma_merge_before with pgoff contiguous), then
    # prev.  M between P (anon_vma X) and N (anon_vma Y) gets Y; a later
    # mprotect then merges M with N (is_mergeable_anon_vma(Y, X) blocks P).
    p = proc()
    p.mmap(B, K4, "rw-", "private,anon,fixed")
    p.touch(B, K4, "w")
    p.mprotect(B, K4, "r--")
    p.mmap(B + 2 * K4, K4, "rw-", "private,anon,fixed")
    p.touch(B + 2 * K4, K4, "w")
    p.mprotect(B + 2 * K4, K4, "r--")
    p.mmap(B + K4, K4, "rw-", "private,anon,fixed")
    pv, m, n = p.mm.vmas.all()
    assert pv.anon_vma is not n.anon_vma
    p.touch(B + K4, K4, "w")
    assert m.anon_vma is n.anon_vma
    p.mprotect(B + K4, K4, "r--")
    assert vmas(p) == [(B, B + K4, "r--p"), (B + K4, B + 3 * K4, "r--p")]


# ===========================================================================
# madvise(MADV_DONTNEED)
# ===========================================================================

def test_madvise_dontneed_hole_zaps_then_enomem():
    # sys_madvise: "If the interval [start,end) covers some unmapped address
    # ranges, just ignore them, but return -ENOMEM at the end"; every vma
    # part is zapped (zap_page_range), tables stay.
    p = proc()
    p.mmap(B, K4, "rw-", "private,anon,fixed")
    p.mmap(B + 2 * K4, K4, "rw-", "private,anon,fixed")
    p.touch(B, K4, "w")
    p.touch(B + 2 * K4, K4, "w")
    assert err(p.madvise, B, 3 * K4, "dontneed") == errno.ENOMEM
    assert p.rss == 0 and p.tables()["pte"] == 1
    assert err(p.madvise, B + 1, K4, "dontneed") == errno.EINVAL
    assert err(p.madvise, B + 4 * K4, K4, "dontneed") == errno.ENOMEM  # no vma
    p.madvise(B, 0, "dontneed")


def test_difference_madvise_dontneed_on_device_mapping_zaps():
    # DIFFERENCE.  madvise_dontneed (2.6.12): "if ((vma->vm_flags & VM_LOCKED)
    # || is_vm_hugetlb_page(vma)) return -EINVAL;" -- no VM_IO/VM_RESERVED
    # test (VM_PFNMAP arrived in 2.6.15), so the pfn ptes are zapped.
    p = proc()
    d = p.device("d")
    p.mmap(B, 2 * K4, "rw-", "shared,fixed", d)
    p.madvise(B, 2 * K4, "dontneed")
    assert len(p.mm.pt.ptes) == 0
    assert p.tables()["pte"] == 1


def test_difference_madvise_gathers_per_vma():
    # DIFFERENCE.  sys_madvise calls madvise_vma per vma, and
    # madvise_dontneed -> zap_page_range does its own tlb_gather_mmu /
    # unmap_vmas / tlb_finish_mmu: one flush per vma with something zapped.
    p = proc()
    p.mmap(B, K4, "rw-", "private,anon,fixed")
    p.touch(B, K4, "w")
    p.mprotect(B, K4, "r--")
    p.mmap(B + K4, K4, "rw-", "private,anon,fixed")
    p.touch(B + K4, K4, "w")
    assert p.map_count == 2
    st = p.mm.tlb_stats
    before = st.flushes
    p.madvise(B, 2 * K4, "dontneed")
    assert st.flushes - before == 2


def test_difference_madvise_zap_restarts_every_zap_block():
    # DIFFERENCE.  zap_page_range -> unmap_vmas: ZAP_BLOCK_SIZE = 1024 pages
    # (no CONFIG_PREEMPT); 2048 written pages: in each block tlb_remove_page
    # fills FREE_PTE_NR (506) at pages 506 and 1012 (2 flushes), then
    # "zap_bytes" reaches 0 -> tlb_finish_mmu flushes the 12 left (1) and a
    # new gather starts: 3 + 3 = 6; zap_page_range's final tlb_finish_mmu has
    # nothing pending (need_flush 0).
    p = proc()
    p.mmap(B, 2048 * K4, "rw-", "private,anon,fixed,noreserve")
    p.touch(B, 2048 * K4, "w")
    st = p.mm.tlb_stats
    before = st.flushes
    p.madvise(B, 2048 * K4, "dontneed")
    assert st.flushes - before == 6


def test_difference_full_gather_batch_leaves_nothing_to_flush():
    # DIFFERENCE.  asm-generic/tlb.h: tlb_remove_page sets need_flush, queues
    # the page, and "if (tlb->nr >= FREE_PTE_NR) tlb_flush_mmu(tlb, 0, 0)",
    # which clears need_flush.  Exactly 506 pages: one flush when the batch
    # fills; tlb_finish_mmu -> tlb_flush_mmu returns at "if
    # (!tlb->need_flush)".  1 flush, not 2.
    p = proc()
    p.mmap(B, 506 * K4, "rw-", "private,anon,fixed")
    p.touch(B, 506 * K4, "w")
    st = p.mm.tlb_stats
    before = st.flushes
    p.madvise(B, 506 * K4, "dontneed")
    assert st.flushes - before == 1


def test_difference_file_pages_fill_the_gather_too():
    # DIFFERENCE.  zap_pte_range: every present pte whose page is not
    # PageReserved goes through "tlb->freed++; page_remove_rmap(page);
    # tlb_remove_page(tlb, page);" -- page-cache pages included.  1012 shared
    # file pages (< ZAP_BLOCK_SIZE) fill the 506 batch twice: 2 flushes, and
    # nothing is left for tlb_finish_mmu.
    p = proc()
    f = p.file("f", 1012 * K4)
    p.mmap(B, 1012 * K4, "rw-", "shared,fixed", f)
    p.touch(B, 1012 * K4, "w")
    st = p.mm.tlb_stats
    before = st.flushes
    p.madvise(B, 1012 * K4, "dontneed")
    assert st.flushes - before == 2


# ===========================================================================
# unmap_region / unmap_vmas / free_pgtables / tlb gather
# ===========================================================================

def test_unmap_vmas_zap_bytes_carry_across_vmas():
    # unmap_vmas: zap_bytes is set once and only reset after a block ends, so
    # blocks count address space processed across vmas.  vma1 [B, B+2M) and
    # vma2 [B+4M, B+8M), all pages written, one munmap(B, 8M):
    #   vma1 512 pages: batch full at 506 (1), 6 queued, zap_bytes 2M left;
    #   vma2 first 2M (512 pages): batch full after 500 (2), 12 queued,
    #     zap_bytes 0 -> tlb_finish_mmu (3), new gather;
    #   vma2 last 512 pages: batch full at 506 (4), 6 queued;
    #   free_pgtables gathers both (B+4M <= B+2M+PMD_SIZE): PTE x3 + PMD + PUD
    #     queued -> unmap_region's tlb_finish_mmu (5).
    p = proc()
    p.mmap(B, M2, "rw-", "private,anon,fixed")
    p.mmap(B + 2 * M2, 2 * M2, "rw-", "private,anon,fixed")
    p.touch(B, M2, "w")
    p.touch(B + 2 * M2, 2 * M2, "w")
    st = p.mm.tlb_stats
    before = st.flushes
    p.munmap(B, 4 * M2)
    assert st.flushes - before == 5
    assert p.tables() == {"pud": 0, "pmd": 0, "pte": 0} and p.nr_ptes == 0


# ===========================================================================
# dup_mmap / copy_page_range, exit_mmap
# ===========================================================================

def test_fork_copies_every_table_over_every_vma():
    # dup_mmap copies every vma (no anon_vma test until 2.6.14) and calls
    # copy_page_range; copy_pud/pmd/pte_range allocate a child table wherever
    # the parent has a present entry over the vma -- an emptied PTE table
    # too.  copy_one_pte: the zero page is PageReserved (copied, not counted),
    # other pages rss++.
    p = proc()
    f = p.file("f", K4)
    p.mmap(B, 2 * M2, "rw-", "private,anon,fixed")
    p.touch(B, K4, "w")
    p.touch(B + K4, K4, "r")                   # zero page
    p.touch(B + M2, K4, "w")
    p.madvise(B + M2, K4, "dontneed")          # empty PTE table stays
    p.mmap(T, K4, "rw-", "shared,fixed", f)
    p.touch(T, K4, "r")
    c = p.fork()
    assert c.tables() == p.tables() == {"pud": 1, "pmd": 2, "pte": 3}
    assert c.pgtables_bytes == 3 * 4096
    assert c.rss == 2 * K4
    assert c.vmas() == p.vmas()
    c.exit()
    p.exit()


def test_difference_fork_child_shares_the_parents_anon_vma():
    # DIFFERENCE.  dup_mmap (2.6.12): "*tmp = *mpnt; ... anon_vma_link(tmp);"
    # -- the child's vma is linked onto the parent's anon_vma itself (per-
    # process anon_vmas and anon_vma_fork came with anon_vma chains, 2.6.34).
    p = proc()
    p.mmap(B, K4, "rw-", "private,anon,fixed")
    p.touch(B, K4, "w")
    c = p.fork()
    assert c.mm.vmas.all()[0].anon_vma is p.mm.vmas.all()[0].anon_vma


def test_exit_frees_everything_and_bug_on_only_for_orphans():
    # exit_mmap: unmap_vmas(0, -1), free_pgtables(vma, FIRST_USER_ADDRESS, 0),
    # then BUG_ON(nr_ptes > (FIRST_USER_ADDRESS + PMD_SIZE - 1) >> PMD_SHIFT)
    # = BUG_ON(nr_ptes > 0) on x86_64.
    p = proc()
    p.mmap(B, K4, "rw-", "private,anon,fixed")
    p.mmap(T, K4, "rw-", "private,anon,fixed")
    p.touch(B, K4, "w")
    p.touch(T, K4, "w")
    report = p.exit()
    assert report.tables_left == {} and p.nr_ptes == 0
    q = proc()
    q.mmap(B, K4, "rw-", "private,anon,fixed")
    q.mm.alloc_tables(T, T + K4, "pte")        # a PTE table no vma covers
    with pytest.raises(KernelBug):
        q.exit()


def test_zap_block_end_in_an_empty_stretch_flushes_what_is_pending():
    # unmap_vmas counts ZAP_BLOCK_SIZE (1024 pages, 4 MiB) across vmas and
    # finishes the gather whenever zap_bytes reaches 0, wherever that falls.
    # A = [B, B+4K) written, C = [B+2M, B+10M) never touched; munmap both.
    # A's page waits in the gather; 4 MiB into the zap (inside C, where no
    # pte is) the block ends: flush 1.  The next block ends with nothing
    # pending (no flush); free_pgtables then queues the PTE table (and the
    # PMD and PUD tables) and tlb_finish_mmu flushes them: flush 2.
    from freepgt import Process

    base = 0x100000000000
    p = Process(era="linux-2.6.12")
    p.mmap(base, 4096, "rw-", "private,anon,fixed")
    p.touch(base, 4096, "w")
    p.mmap(base + (2 << 20), 8 << 20, "r--", "private,anon,fixed")
    before = p.mm.tlb_stats.flushes
    p.munmap(base, 10 << 20)
    assert p.mm.tlb_stats.flushes - before == 2
    assert p.mm.tlb_stats.tables_freed == {"pte": 1, "pmd": 1, "pud": 1}
