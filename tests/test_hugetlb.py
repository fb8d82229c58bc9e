"""hugetlb vmas where they meet unmapping: madvise, mremap and unmap_vmas' blocks.

Expected values are worked out by hand from the 2.6.12 sources
(``madvise_dontneed``, ``do_mremap``, ``unmap_vmas``) and 6.x's
``madvise_dontneed_free_valid_vma``.
"""

from __future__ import annotations

import errno

import pytest

from freepgt import Process

B = 0x100000000000
K4, M2 = 0x1000, 0x200000


def _huge(era: str, length: int = 2 * M2, base: int = B) -> Process:
    p = Process(era=era, check=True)
    p.mmap(base, length, "rw-", "private,anon,fixed,hugetlb")
    p.touch(base, length, "w")
    return p


@pytest.mark.parametrize("era", ["linux-2.6.10", "linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12"])
def test_2_6_refuses_dontneed_and_mremap_on_hugetlb(era):
    base = 0x40000000  # inside 2.6.10's 511 GiB x86_64 layout too
    p = _huge(era, base=base)
    for call in (lambda: p.madvise(base, M2), lambda: p.mremap(base, 2 * M2, 4 * M2, "maymove")):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EINVAL
    assert p.rss == 2 * M2


def test_6_18_dontneed_takes_whole_huge_pages_from_an_aligned_start():
    p = _huge("linux-6.18")
    with pytest.raises(OSError) as e:
        p.madvise(B + K4, M2)                 # start inside a huge page
    assert e.value.errno == errno.EINVAL
    assert p.rss == 2 * M2
    p.madvise(B, M2 + K4)                     # end rounded down: the first huge page only
    assert p.rss == M2
    p.madvise(B, 2 * M2)
    assert p.rss == 0


def test_2_6_12_zaps_a_hugetlb_vma_as_one_block():
    # A = [B, B+4K) written, H = [B+2M, B+10M) four huge pages, munmapped
    # together.  zap_bytes starts at 4 MiB: A uses 4K of it and its page
    # waits in the gather.  H goes to unmap_hugepage_range whole, which
    # drops its huge pages at once and ends with flush_tlb_range (flush 1);
    # its 8 MiB take zap_bytes below 0: tlb_finish_mmu flushes A's page
    # (flush 2) and that is the one lock-drop point.  free_pgtables then
    # frees A's PTE table, the PMD and the PUD table, and the last
    # tlb_finish_mmu flushes them (flush 3).
    p = Process(era="linux-2.6.12", check=True)
    p.mmap(B, K4, "rw-", "private,anon,fixed")
    p.touch(B, K4, "w")
    p.mmap(B + M2, 4 * M2, "rw-", "private,anon,fixed,hugetlb")
    p.touch(B + M2, 4 * M2, "w")
    flushes = p.mm.tlb_stats.flushes
    breaks = p.mm.latency.lock_breaks
    p.munmap(B, 5 * M2)
    assert p.mm.tlb_stats.flushes - flushes == 3
    assert p.mm.latency.lock_breaks - breaks == 1
    assert p.mm.tlb_stats.pages_freed == 1  # only A's page went through the gather
    assert p.tables() == {"pud": 0, "pmd": 0, "pte": 0}
