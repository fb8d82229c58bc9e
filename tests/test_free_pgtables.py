"""free_pgtables / free_pgd_range: floor, ceiling, gathering, exit, driver failure.

Every expected value here was worked out by hand from kernel-notes.md
(section 4.3 free_pgtables, 4.4 free_pgd_range + may_free, 4.6
FIRST_USER_ADDRESS, 4.7 unmap_region, 4.8 driver failure, 4.9 exit_mmap,
section 8 tricky cases) -- never by running the model.  The comment on each
case says which tables exist, which go, and why.

Geometries (api.md, kernel-notes 5):
  x86_64: PTE table spans PMD_SIZE 2 MiB, PMD table spans PUD_SIZE 1 GiB,
          PUD table spans PGDIR_SIZE 512 GiB; TASK_SIZE 0x7ffffffff000.
  i386:   2-level, PTE table spans 4 MiB, TASK_SIZE 0xC0000000.
  i386-pae: PTE table spans 2 MiB, PMD tables preallocated (never freed).
Counters: 2.6.12 VmPTE = PTE tables only; 6.18 = PUD+PMD+PTE tables.

Notation in comments: "PTE@X" is the PTE table whose span starts at X,
"PMD@X" the PMD table starting at X, "PUD@X" the PUD table starting at X;
fpr(addr, end, floor, ceiling) is one free_pgd_range call; "rd" rounds down.
"""

import errno

import pytest

from freepgt import KernelBug, Process
from freepgt.arch import Geometry, _levels
from freepgt.mm.memory import free_pgtables
from freepgt.vma import VM_READ, VM_WRITE, Vma

from helpers_tables import (
    C, D, ERAS, G1, G512, K4, M1, M2, M4, TASK_SIZE_I386, TASK_SIZE_X86_64, addrs, anon, calls,
    expect_pte_only, expect_x86, fpr, proc, vmpte,
)

B = 0x100000000000          # 16 TiB: a PGDIR-aligned base far from everything (pgd slot 32)
TS = TASK_SIZE_X86_64
TOP_PTE = 0x7FFFFFE00000    # rd(TS - 4K, 2 MiB)
TOP_PMD = 0x7FFFC0000000    # rd(TS - 4K, 1 GiB)
TOP_PUD = 0x7F8000000000    # rd(TS - 4K, 512 GiB): pgd slot 255

era_params = pytest.mark.parametrize("era", ERAS)


# ===========================================================================
# 1. Neighbours sharing tables with the unmapped vma (x86_64, munmap)
# ===========================================================================

@era_params
def test_prev_shares_pte_table(era):
    # P=[B, B+4K) and V=[B+8K, B+12K) both live in PTE@B.  munmap V:
    # floor = B+4K, ceiling 0.  rd(B+8K, 2M) = B < floor -> addr = B+2M,
    # which is > end-1 = B+0x2fff -> nothing freed (kernel-notes 8 case 3).
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + 2 * K4, B + 3 * K4)
    expect_x86(p, era, [B], [B], [B])
    n = calls(p)
    p.munmap(B + 2 * K4, K4)
    expect_x86(p, era, [B], [B], [B])
    assert calls(p) == n + 1
    assert p.rss == K4                      # only P's page is left
    assert p.vmas() == [(B, B + K4, "rw-p")]


@era_params
def test_next_shares_pte_table(era):
    # V=[B, B+4K), N=[B+8K, B+12K), both in PTE@B.  munmap V: floor 0,
    # ceiling rd(B+8K, 2M) = B; end-1 = B+0xfff > B-1 -> end = B+4K-2M;
    # addr = B > end-1 -> nothing freed.
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + 2 * K4, B + 3 * K4)
    p.munmap(B, K4)
    expect_x86(p, era, [B], [B], [B])
    assert p.rss == K4


@era_params
def test_both_neighbours_share_pte_table(era):
    # P=[B, B+4K), V=[B+8K, B+12K), N=[B+16K, B+20K): all in PTE@B; the
    # floor raises addr past end and the ceiling trims end below addr.
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + 2 * K4, B + 3 * K4)
    anon(p, B + 4 * K4, B + 5 * K4)
    p.munmap(B + 2 * K4, K4)
    expect_x86(p, era, [B], [B], [B])
    assert p.rss == 2 * K4


@era_params
def test_neighbours_in_other_pte_tables_same_pmd_table(era):
    # P=[B, B+4K) (PTE@B), V=[B+2M, B+2M+4K) (PTE@B+2M), N=[B+4M, B+4M+4K)
    # (PTE@B+4M), all under PMD@B / PUD@B.  munmap V: floor B+4K, ceiling
    # B+4M.  addr = B+2M >= floor; rd(ceiling) = B+4M and end-1 < it, so no
    # trim: PTE@B+2M freed.  PMD@B: slot start B < floor -> kept; PUD likewise.
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + M2, B + M2 + K4)
    anon(p, B + 2 * M2, B + 2 * M2 + K4)
    expect_x86(p, era, [B], [B], [B, B + M2, B + 2 * M2])
    p.munmap(B + M2, K4)
    expect_x86(p, era, [B], [B], [B, B + 2 * M2])


@era_params
def test_only_prev_in_other_pte_table(era):
    # P=[B, B+4K), V=[B+2M, B+2M+4K), no next: floor B+4K, ceiling 0.
    # PTE@B+2M freed; PMD@B start B < floor -> kept.
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + M2, B + M2 + K4)
    p.munmap(B + M2, K4)
    expect_x86(p, era, [B], [B], [B])


@era_params
def test_only_next_in_other_pte_table(era):
    # V=[B, B+4K), N=[B+2M, B+2M+4K): floor 0, ceiling B+2M (already
    # 2M-aligned, end-1 < it): PTE@B freed.  PMD@B: rd(B+2M, 1G) = B,
    # end-1 = B+0xfff > B-1 -> kept (shared with N).
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + M2, B + M2 + K4)
    p.munmap(B, K4)
    expect_x86(p, era, [B], [B], [B + M2])


@era_params
def test_neighbours_in_other_pmd_tables_same_pud_table(era):
    # P=[B, B+4K) (PMD@B), V=[B+1G, B+1G+4K) (PMD@B+1G), N=[B+2G, B+2G+4K)
    # (PMD@B+2G), all under PUD@B.  munmap V: floor B+4K, ceiling B+2G.
    # PTE@B+1G freed; PMD@B+1G: start B+1G >= floor, rd(B+2G, 1G) = B+2G and
    # end-1 < it -> freed; PUD@B: start B < floor -> kept.
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + G1, B + G1 + K4)
    anon(p, B + 2 * G1, B + 2 * G1 + K4)
    expect_x86(p, era, [B], [B, B + G1, B + 2 * G1], [B, B + G1, B + 2 * G1])
    p.munmap(B + G1, K4)
    expect_x86(p, era, [B], [B, B + 2 * G1], [B, B + 2 * G1])


@era_params
def test_neighbours_in_other_pud_tables(era):
    # P in PUD@B, V in PUD@B+512G, N in PUD@B+1T.  floor B+4K <= B+512G and
    # ceiling B+1T rounds (2M, 1G, 512G) to itself, beyond V: V's PTE, PMD
    # and PUD tables all go.
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + G512, B + G512 + K4)
    anon(p, B + 2 * G512, B + 2 * G512 + K4)
    three = [B, B + G512, B + 2 * G512]
    expect_x86(p, era, three, three, three)
    p.munmap(B + G512, K4)
    two = [B, B + 2 * G512]
    expect_x86(p, era, two, two, two)


@era_params
def test_lonely_vma_frees_all_levels(era):
    # kernel-notes 8 case 1: only vma [0x400000, 0x401000), floor 0, ceiling
    # 0 (= top): PTE@0x400000, PMD@0 (0 >= floor, ceiling 0 passes) and PUD@0.
    p = proc(era)
    anon(p, 0x400000, 0x401000)
    expect_x86(p, era, [0], [0], [0x400000])
    assert p.pgtables_bytes == (4096 if era == C else 12288)
    p.munmap(0x400000, K4)
    expect_x86(p, era, [], [], [])
    assert p.pgtables_bytes == 0
    assert p.rss == 0


# ===========================================================================
# 2. Floor and ceiling exactly on / one page off 2 MiB, 1 GiB, 512 GiB
# ===========================================================================
# Each row: prev (or None), victim, next (or None), tables before and after
# as (pud, pmd, pte) address lists.  Vmas never touch each other (no merge).

BOUNDARY_CASES = {
    # floor = B+2M: addr = B+2M is not < floor -> PTE@B+2M freed; PMD@B
    # start B < floor -> kept.
    "floor_on_2M": (
        (B + M2 - K4, B + M2), (B + M2 + K4, B + M2 + 2 * K4), None,
        ([B], [B], [B, B + M2]), ([B], [B], [B])),
    # floor = B+2M+4K: P's last page is in PTE@B+2M; addr B+2M < floor ->
    # addr = B+4M > end-1 -> nothing.
    "floor_2M_plus_page": (
        (B + M2 - K4, B + M2 + K4), (B + M2 + 2 * K4, B + M2 + 3 * K4), None,
        ([B], [B], [B, B + M2]), ([B], [B], [B, B + M2])),
    # floor = B+2M-4K (P ends one page below the boundary): addr B+2M >= floor
    # -> PTE@B+2M freed.
    "floor_2M_minus_page": (
        (B + M2 - 2 * K4, B + M2 - K4), (B + M2, B + M2 + K4), None,
        ([B], [B], [B, B + M2]), ([B], [B], [B])),
    # floor = B+1G: PTE@B+1G freed; PMD@B+1G start B+1G not < floor, ceiling
    # 0 -> freed; PUD@B start B < floor -> kept.  (case 7 shifted by B)
    "floor_on_1G": (
        (B + G1 - K4, B + G1), (B + G1 + K4, B + G1 + 2 * K4), None,
        ([B], [B, B + G1], [B + G1 - M2, B + G1]), ([B], [B], [B + G1 - M2])),
    # floor = B+1G+4K: V=[B+1G+2M, +4K) -> PTE@B+1G+2M freed; PMD@B+1G start
    # B+1G < floor -> kept (P's page B+1G lives under it).
    "floor_1G_plus_page": (
        (B + G1 - K4, B + G1 + K4), (B + G1 + M2, B + G1 + M2 + K4), None,
        ([B], [B, B + G1], [B + G1 - M2, B + G1, B + G1 + M2]),
        ([B], [B, B + G1], [B + G1 - M2, B + G1])),
    # floor = B+1G-4K: PMD@B+1G start >= floor -> freed as for floor_on_1G.
    "floor_1G_minus_page": (
        (B + G1 - 2 * K4, B + G1 - K4), (B + G1, B + G1 + K4), None,
        ([B], [B, B + G1], [B + G1 - M2, B + G1]), ([B], [B], [B + G1 - M2])),
    # floor = B+512G: V's PTE, PMD@B+512G and PUD@B+512G (start not < floor).
    "floor_on_512G": (
        (B + G512 - K4, B + G512), (B + G512 + K4, B + G512 + 2 * K4), None,
        ([B, B + G512], [B + G512 - G1, B + G512], [B + G512 - M2, B + G512]),
        ([B], [B + G512 - G1], [B + G512 - M2])),
    # floor = B+512G+4K: V=[B+512G+1G, +4K): its PTE and PMD@B+512G+1G go
    # (start >= floor), PUD@B+512G start < floor -> kept.
    "floor_512G_plus_page": (
        (B + G512 - K4, B + G512 + K4), (B + G512 + G1, B + G512 + G1 + K4), None,
        ([B, B + G512], [B + G512 - G1, B + G512, B + G512 + G1],
         [B + G512 - M2, B + G512, B + G512 + G1]),
        ([B, B + G512], [B + G512 - G1, B + G512], [B + G512 - M2, B + G512])),
    # floor = B+512G-4K: the PUD@B+512G start is >= floor -> all of V's go.
    "floor_512G_minus_page": (
        (B + G512 - 2 * K4, B + G512 - K4), (B + G512, B + G512 + K4), None,
        ([B, B + G512], [B + G512 - G1, B + G512], [B + G512 - M2, B + G512]),
        ([B], [B + G512 - G1], [B + G512 - M2])),
    # ceiling = B+2M: PTE@B freed; PMD@B: rd(B+2M, 1G) = B, end-1 > B-1 -> kept.
    "ceiling_on_2M": (
        None, (B, B + K4), (B + M2, B + M2 + K4),
        ([B], [B], [B, B + M2]), ([B], [B], [B + M2])),
    # ceiling = B+2M+4K rounds to B+2M: same as on.
    "ceiling_2M_plus_page": (
        None, (B, B + K4), (B + M2 + K4, B + M2 + 2 * K4),
        ([B], [B], [B, B + M2]), ([B], [B], [B + M2])),
    # ceiling = B+2M-4K rounds to B (N is in PTE@B): end trimmed to
    # B+4K-2M < addr -> nothing freed.
    "ceiling_2M_minus_page": (
        None, (B, B + K4), (B + M2 - K4, B + M2),
        ([B], [B], [B]), ([B], [B], [B])),
    # ceiling = B+1G: PTE@B and PMD@B (rd(B+1G, 1G) = B+1G > end-1) freed;
    # PUD@B: rd(B+1G, 512G) = B, end-1 > B-1 -> kept.
    "ceiling_on_1G": (
        None, (B, B + K4), (B + G1, B + G1 + K4),
        ([B], [B, B + G1], [B, B + G1]), ([B], [B + G1], [B + G1])),
    "ceiling_1G_plus_page": (
        None, (B, B + K4), (B + G1 + K4, B + G1 + 2 * K4),
        ([B], [B, B + G1], [B, B + G1]), ([B], [B + G1], [B + G1])),
    # ceiling = B+1G-4K -> rd 2M = B+1G-2M (PTE kept for N is another table):
    # PTE@B freed; PMD@B: rd(B+1G-2M, 1G) = B -> kept.
    "ceiling_1G_minus_page": (
        None, (B, B + K4), (B + G1 - K4, B + G1),
        ([B], [B], [B, B + G1 - M2]), ([B], [B], [B + G1 - M2])),
    # ceiling = B+512G: PTE@B, PMD@B, PUD@B all freed (floor 0).
    "ceiling_on_512G": (
        None, (B, B + K4), (B + G512, B + G512 + K4),
        ([B, B + G512], [B, B + G512], [B, B + G512]),
        ([B + G512], [B + G512], [B + G512])),
    "ceiling_512G_plus_page": (
        None, (B, B + K4), (B + G512 + K4, B + G512 + 2 * K4),
        ([B, B + G512], [B, B + G512], [B, B + G512]),
        ([B + G512], [B + G512], [B + G512])),
    # ceiling = B+512G-4K -> 2M-rounded B+512G-2M, 1G-rounded B+511G > B:
    # PTE@B and PMD@B freed; PUD@B (512G-rounded ceiling = B) kept.
    "ceiling_512G_minus_page": (
        None, (B, B + K4), (B + G512 - K4, B + G512),
        ([B], [B, B + G512 - G1], [B, B + G512 - M2]),
        ([B], [B + G512 - G1], [B + G512 - M2])),
}


@era_params
@pytest.mark.parametrize("case", sorted(BOUNDARY_CASES))
def test_floor_ceiling_boundaries(era, case):
    prev, victim, nxt, before, after = BOUNDARY_CASES[case]
    p = proc(era)
    for r in (prev, victim, nxt):
        if r is not None:
            anon(p, *r)
    expect_x86(p, era, *before)
    n = calls(p)
    p.munmap(victim[0], victim[1] - victim[0])
    expect_x86(p, era, *after)
    assert calls(p) == n + 1
    assert p.map_count == (prev is not None) + (nxt is not None)


# ===========================================================================
# 3. munmap in the middle of a vma; one munmap across several vmas and holes
# ===========================================================================

@era_params
def test_munmap_middle_aligned(era):
    # V=[B, B+8M) fully written: PTE@B, B+2M, B+4M, B+6M.  munmap [B+2M, B+6M)
    # splits it: A=[B, B+2M) survives below (floor B+2M), N=[B+6M, B+8M)
    # above (ceiling B+6M).  Walk [B+2M, B+6M): PTE@B+2M and PTE@B+4M freed.
    p = proc(era)
    anon(p, B, B + 4 * M2)
    expect_x86(p, era, [B], [B], [B, B + M2, B + 2 * M2, B + 3 * M2])
    p.munmap(B + M2, 2 * M2)
    expect_x86(p, era, [B], [B], [B, B + 3 * M2])
    assert p.vmas() == [(B, B + M2, "rw-p"), (B + 3 * M2, B + 4 * M2, "rw-p")]
    assert p.rss == 2 * M2


@era_params
def test_munmap_middle_unaligned(era):
    # Same V, munmap [B+1M, B+7M): floor B+1M -> addr rd = B < floor -> B+2M;
    # ceiling B+7M -> rd B+6M, end-1 = B+7M-1 > B+6M-1 -> end = B+5M.
    # Walk [B+2M, B+5M): PTE@B+2M, PTE@B+4M freed; PTE@B and @B+6M shared.
    p = proc(era)
    anon(p, B, B + 4 * M2)
    p.munmap(B + M1, 6 * M1)
    expect_x86(p, era, [B], [B], [B, B + 3 * M2])
    assert p.rss == 2 * M1


@era_params
def test_munmap_middle_no_whole_table(era):
    # munmap [B+2M+4K, B+6M-4K): floor B+2M+4K -> addr B+4M; ceiling rd
    # B+4M, end-1 > B+4M-1 -> end = B+4M-4K < addr -> nothing freed, though
    # the hole covers almost two tables (each still holds a survivor's page).
    p = proc(era)
    anon(p, B, B + 4 * M2)
    p.munmap(B + M2 + K4, 2 * M2 - 2 * K4)
    expect_x86(p, era, [B], [B], [B, B + M2, B + 2 * M2, B + 3 * M2])


@era_params
def test_munmap_across_vmas_and_holes(era):
    # Survivors P=[B, B+4K) and N=[B+2G, B+2G+4K).  Removed by one munmap
    # [B+1M, B+1G+1M): V1=[B+2M,+4K), V2=[B+6M,+4K), V3=[B+7M,+4K),
    # V4=[B+1G+4K,+4K), with holes between.  floor B+4K, ceiling B+2G.
    # Groups (next.start <= end + 2M): {V1} (B+6M > B+4M+4K), {V2,V3}
    # (B+7M <= B+8M+4K), {V4} -> 3 free_pgd_range calls.
    #   {V1}: fpr(B+2M, B+2M+4K, B+4K, B+6M): PTE@B+2M freed, PMD@B kept.
    #   {V2,V3}: fpr(B+6M, B+7M+4K, B+4K, B+1G+4K): PTE@B+6M freed.
    #   {V4}: fpr(B+1G+4K, .., B+4K, B+2G): PTE@B+1G and PMD@B+1G freed
    #         (start B+1G >= floor, B+2G >= end); PUD@B start < floor: kept.
    p = proc(era)
    anon(p, B, B + K4)
    for s in (B + M2, B + 3 * M2, B + 7 * M1, B + G1 + K4):
        anon(p, s, s + K4)
    anon(p, B + 2 * G1, B + 2 * G1 + K4)
    expect_x86(p, era, [B], [B, B + G1, B + 2 * G1],
               [B, B + M2, B + 3 * M2, B + G1, B + 2 * G1])
    assert p.map_count == 6
    n = calls(p)
    p.munmap(B + M1, G1)
    assert calls(p) == n + 3
    expect_x86(p, era, [B], [B, B + 2 * G1], [B, B + 2 * G1])
    assert p.map_count == 2


# ===========================================================================
# 4. Bottom and top of user space
# ===========================================================================

@era_params
def test_bottom_lonely_vma_at_0x1000(era):
    # [0x1000, 0x2000) alone: floor 0 (FIRST_USER_ADDRESS), ceiling 0:
    # PTE@0, PMD@0, PUD@0 all freed.
    p = proc(era)
    anon(p, 0x1000, 0x2000)
    expect_x86(p, era, [0], [0], [0])
    p.munmap(0x1000, K4)
    expect_x86(p, era, [], [], [])


@era_params
def test_case2_ceiling_rounds_to_zero(era):
    # kernel-notes 8 case 2: V=[0x1000, 0x2000), next at 0x100000: ceiling
    # rd(0x100000, 2M) = 0 -> return at once (a rounded 0 is not "top").
    p = proc(era)
    anon(p, 0x1000, 0x2000)
    anon(p, 0x100000, 0x101000)
    n = calls(p)
    p.munmap(0x1000, K4)
    assert calls(p) == n + 1
    expect_x86(p, era, [0], [0], [0])


@era_params
def test_bottom_vma_at_address_zero(era):
    # V=[0, 4K) (fixed mmap at 0 is allowed by the model), N=[2M, 2M+4K):
    # ceiling 2M -> PTE@0 freed; PMD@0: rd(2M, 1G) = 0 -> "rounded 0" ->
    # kept.
    p = proc(era)
    anon(p, 0, K4)
    anon(p, M2, M2 + K4)
    expect_x86(p, era, [0], [0], [0, M2])
    p.munmap(0, K4)
    expect_x86(p, era, [0], [0], [M2])


@era_params
def test_bottom_prev_at_address_zero(era):
    # P=[0, 4K), V=[2M, 2M+4K), no next: floor 4K; PTE@2M freed, PMD@0 start
    # 0 < floor -> kept.
    p = proc(era)
    anon(p, 0, K4)
    anon(p, M2, M2 + K4)
    p.munmap(M2, K4)
    expect_x86(p, era, [0], [0], [0])


@era_params
def test_top_lonely_vma_ending_at_task_size(era):
    # V=[TS-4K, TS): PTE@0x7fffffe00000, PMD@0x7fffc0000000, PUD@0x7f8000000000
    # (pgd slot 255).  Alone -> floor 0, ceiling 0: end-1 <= MAX, all freed.
    p = proc(era)
    anon(p, TS - K4, TS)
    expect_x86(p, era, [TOP_PUD], [TOP_PMD], [TOP_PTE])
    p.munmap(TS - K4, K4)
    expect_x86(p, era, [], [], [])


@era_params
def test_top_vma_with_prev_in_other_pmd_table(era):
    # P=[0x7fffb0000000, +4K) is under PMD@0x7fff80000000, same PUD as V.
    # munmap V=[TS-4K, TS): floor P.end; PTE and PMD@0x7fffc0000000 freed
    # (start >= floor), PUD@0x7f8000000000 start < floor -> kept.
    p = proc(era)
    anon(p, 0x7FFFB0000000, 0x7FFFB0001000)
    anon(p, TS - K4, TS)
    expect_x86(p, era, [TOP_PUD], [0x7FFF80000000, TOP_PMD], [0x7FFFB0000000, TOP_PTE])
    p.munmap(TS - K4, K4)
    expect_x86(p, era, [TOP_PUD], [0x7FFF80000000], [0x7FFFB0000000])


@era_params
def test_top_vma_with_prev_in_same_pte_table(era):
    # P=[0x7fffffe00000, +4K) shares PTE@TOP_PTE with V: floor raises addr to
    # 0x800000000000 > end-1 -> nothing freed.
    p = proc(era)
    anon(p, TOP_PTE, TOP_PTE + K4)
    anon(p, TS - K4, TS)
    p.munmap(TS - K4, K4)
    expect_x86(p, era, [TOP_PUD], [TOP_PMD], [TOP_PTE])


# ===========================================================================
# 5. i386 (2-level, 4 MiB PTE tables) and i386-pae
# ===========================================================================

@era_params
def test_i386_top_vma_ending_at_0xc0000000(era):
    # V=[0xBFFFF000, 0xC0000000) alone: PTE@0xBFC00000 freed.
    p = proc(era, "i386")
    anon(p, TASK_SIZE_I386 - K4, TASK_SIZE_I386)
    expect_pte_only(p, era, "i386", [0xBFC00000])
    p.munmap(TASK_SIZE_I386 - K4, K4)
    expect_pte_only(p, era, "i386", [])


@era_params
def test_i386_top_vma_prev_same_pte_table(era):
    # P=[0xBFC00000, +4K) in PTE@0xBFC00000 too: floor 0xBFC01000 > addr
    # 0xBFC00000 -> addr 0xC0000000 > end-1 -> nothing.
    p = proc(era, "i386")
    anon(p, 0xBFC00000, 0xBFC01000)
    anon(p, TASK_SIZE_I386 - K4, TASK_SIZE_I386)
    p.munmap(TASK_SIZE_I386 - K4, K4)
    expect_pte_only(p, era, "i386", [0xBFC00000])


@era_params
def test_i386_top_vma_prev_lower_pte_table(era):
    # P=[0xBF800000, +4K) in PTE@0xBF800000: floor 0xBF801000 <= 0xBFC00000
    # -> PTE@0xBFC00000 freed.
    p = proc(era, "i386")
    anon(p, 0xBF800000, 0xBF801000)
    anon(p, TASK_SIZE_I386 - K4, TASK_SIZE_I386)
    expect_pte_only(p, era, "i386", [0xBF800000, 0xBFC00000])
    p.munmap(TASK_SIZE_I386 - K4, K4)
    expect_pte_only(p, era, "i386", [0xBF800000])


@era_params
def test_i386_bottom_case2_and_aligned_ceiling(era):
    # V=[0x1000, 0x2000), N=[0x100000, +4K): rd(0x100000, 4M) = 0 -> return,
    # nothing freed.  Then with N at 0x400000 instead (fresh process):
    # ceiling 0x400000, end-1 < it -> PTE@0 freed.
    p = proc(era, "i386")
    anon(p, 0x1000, 0x2000)
    anon(p, 0x100000, 0x101000)
    p.munmap(0x1000, K4)
    expect_pte_only(p, era, "i386", [0])
    q = proc(era, "i386")
    anon(q, 0x1000, 0x2000)
    anon(q, M4, M4 + K4)
    expect_pte_only(q, era, "i386", [0, M4])
    q.munmap(0x1000, K4)
    expect_pte_only(q, era, "i386", [M4])


@era_params
def test_i386_case1_case3_case4(era):
    # case 1: lonely [0x08048000, +4K) -> PTE@0x08000000 freed.
    p = proc(era, "i386")
    anon(p, 0x08048000, 0x08049000)
    expect_pte_only(p, era, "i386", [0x08000000])
    p.munmap(0x08048000, K4)
    expect_pte_only(p, era, "i386", [])
    # case 3: P=[0x400000, 0x401000), V=[0x402000, 0x403000): same 4M table.
    p = proc(era, "i386")
    anon(p, 0x400000, 0x401000)
    anon(p, 0x402000, 0x403000)
    p.munmap(0x402000, K4)
    expect_pte_only(p, era, "i386", [0x400000])
    # case 4: P ends 4.5M, V=[5M, 5.5M), N at 5.75M: all in PTE@4M -> nothing.
    p = proc(era, "i386")
    anon(p, 0x400000, 0x480000)
    anon(p, 0x500000, 0x580000)
    anon(p, 0x5C0000, 0x5C1000)
    p.munmap(0x500000, 0x80000)
    expect_pte_only(p, era, "i386", [0x400000])


@era_params
def test_i386_case5_end_trim_case6_floor_raise_case16(era):
    # case 5 scaled to 4M tables: P=[0xFF000, 1M) (PTE@0), V=[10M, 14M)
    # (PTE@8M, PTE@12M), N=[15M, +4K) (PTE@12M).  floor 1M: addr rd(10M) = 8M
    # >= floor; ceiling rd(15M, 4M) = 12M, end-1 > 12M-1 -> end = 10M.
    # Walk [8M, 10M): PTE@8M only.
    p = proc(era, "i386")
    anon(p, 0xFF000, M1)
    anon(p, 10 * M1, 14 * M1)
    anon(p, 15 * M1, 15 * M1 + K4)
    expect_pte_only(p, era, "i386", [0, 8 * M1, 12 * M1])
    p.munmap(10 * M1, 4 * M1)
    expect_pte_only(p, era, "i386", [0, 12 * M1])
    # case 6 scaled: P=[8M, 9M), V=[10M, 14M), N=[18M, +4K) (PTE@16M).
    # addr 8M < floor 9M -> 12M; ceiling rd 16M, no trim: PTE@12M only.
    p = proc(era, "i386")
    anon(p, 8 * M1, 9 * M1)
    anon(p, 10 * M1, 14 * M1)
    anon(p, 18 * M1, 18 * M1 + K4)
    expect_pte_only(p, era, "i386", [8 * M1, 12 * M1, 16 * M1])
    p.munmap(10 * M1, 4 * M1)
    expect_pte_only(p, era, "i386", [8 * M1, 16 * M1])
    # case 16 scaled: V=[8M, 12M), N at 12M+512K: ceiling rd = 12M, end-1 =
    # 12M-1 not > 12M-1 -> no trim: PTE@8M freed.
    p = proc(era, "i386")
    anon(p, 8 * M1, 12 * M1)
    anon(p, 12 * M1 + 512 * 1024, 12 * M1 + 512 * 1024 + K4)
    p.munmap(8 * M1, 4 * M1)
    expect_pte_only(p, era, "i386", [12 * M1])


@era_params
def test_case9_pmd_granular_x86_64(era):
    # kernel-notes 8 case 9 (C/D): P=[0x3fe000, 0x3ff000), V=[0x401000,
    # 0x5ff000), N=[0x601000, +4K).  floor 0x3ff000 <= 0x400000; ceiling rd
    # 0x600000 >= end: exactly PTE@0x400000 freed.
    p = proc(era)
    anon(p, 0x3FE000, 0x3FF000)
    anon(p, 0x401000, 0x5FF000)
    anon(p, 0x601000, 0x602000)
    expect_x86(p, era, [0], [0], [0x200000, 0x400000, 0x600000])
    p.munmap(0x401000, 0x1FE000)
    expect_x86(p, era, [0], [0], [0x200000, 0x600000])


@era_params
def test_case9_pmd_granular_i386(era):
    # Same shape on I: P ends 0x3ff000, V=[0x401000, 0x7ff000), N at
    # 0x801000: PTE@0x400000 freed (A, B and C alike; C/D here).
    p = proc(era, "i386")
    anon(p, 0x3FE000, 0x3FF000)
    anon(p, 0x401000, 0x7FF000)
    anon(p, 0x801000, 0x802000)
    expect_pte_only(p, era, "i386", [0, 0x400000, 0x800000])
    p.munmap(0x401000, 0x3FE000)
    expect_pte_only(p, era, "i386", [0, 0x800000])


@era_params
def test_case17_i386_pae_pmd_tables_never_freed(era):
    # V=[1G, 1G+4K) alone on PAE: on x86_64 its PMD table would go too, but
    # PAE's 3 user PMD pages (pgd slots 0..2, at 0, 1G, 2G) are preallocated
    # with the pgd and never freed: only PTE@1G is freed and the tlb sees no
    # pmd table.  Exit then leaves no PTE table: no BUG.
    p = proc(era, "i386-pae")
    assert addrs(p, "pmd") == [0, G1, 2 * G1]
    anon(p, G1, G1 + K4)
    assert p.tables() == {"pte": 1}
    assert addrs(p, "pte") == [G1]
    if era == C:
        assert p.pgtables_bytes == 4096       # PTE tables only in 2.6.12
    before = dict(p.mm.tlb_stats.tables_freed)
    p.munmap(G1, K4)
    assert p.tables() == {"pte": 0}
    assert addrs(p, "pmd") == [0, G1, 2 * G1]
    after = p.mm.tlb_stats.tables_freed
    assert after.get("pte", 0) - before.get("pte", 0) == 1
    assert after.get("pmd", 0) == before.get("pmd", 0) == 0
    assert p.nr_ptes == 0
    if era == C:
        assert p.pgtables_bytes == 0
    anon(p, 0x08048000, 0x08049000)
    p.exit()
    assert p.tables() == {"pte": 0}
    assert addrs(p, "pmd") == [0, G1, 2 * G1]


# ===========================================================================
# 6. Gathering nearby vmas (kernel-notes 4.3, case 11)
# ===========================================================================

@era_params
def test_case11_gap_exactly_pmd_gathers_orphan_freed(era):
    # A=[0, 2M), Bv=[4M, 5M), orphan PTE@2M (no vma), survivor N=[512M, +4K).
    # munmap [0, 5M) removes A and Bv: floor 0, ceiling 512M.  4M <= 2M + 2M
    # -> one group, one fpr(0, 5M, 0, 512M): walk [0, 5M) meets PTE@0, the
    # orphan PTE@2M and PTE@4M -> all three freed.  PMD@0: rd(512M, 1G) = 0
    # -> kept (N's table PTE@512M lives under it).
    p = proc(era)
    anon(p, 0, M2)
    anon(p, 2 * M2, 5 * M1)
    anon(p, 512 * M1, 512 * M1 + K4)
    p.mm.alloc_tables(M2, 2 * M2, "pte")
    expect_x86(p, era, [0], [0], [0, M2, 2 * M2, 512 * M1])
    n = calls(p)
    p.munmap(0, 5 * M1)
    assert calls(p) == n + 1
    expect_x86(p, era, [0], [0], [512 * M1])


@era_params
def test_case11_gap_pmd_plus_page_orphan_left(era):
    # Same with Bv=[4M+4K, 5M): 4M+4K > 2M + 2M -> two groups, two calls:
    #   fpr(0, 2M, 0, 4M+4K): ceiling rd 4M, walk [0, 2M): PTE@0 freed.
    #   fpr(4M+4K, 5M, 0, 512M): addr rd 4M, walk [4M, 5M): PTE@4M freed.
    # Neither walk visits [2M, 4M): the orphan PTE@2M stays; PMD@0 kept
    # (ceiling 512M rounds to 0 at 1G).
    p = proc(era)
    anon(p, 0, M2)
    anon(p, 2 * M2 + K4, 5 * M1)
    anon(p, 512 * M1, 512 * M1 + K4)
    p.mm.alloc_tables(M2, 2 * M2, "pte")
    expect_x86(p, era, [0], [0], [0, M2, 2 * M2, 512 * M1])
    n = calls(p)
    p.munmap(0, 5 * M1)
    assert calls(p) == n + 2
    expect_x86(p, era, [0], [0], [M2, 512 * M1])


@era_params
def test_case11_no_survivor_gathered_frees_everything(era):
    # A=[0, 2M), Bv=[4M, 5M), orphan PTE@2M, nothing else.  One group,
    # fpr(0, 5M, 0, 0): three PTE tables, PMD@0 and PUD@0 freed; no leak.
    p = proc(era)
    anon(p, 0, M2)
    anon(p, 2 * M2, 5 * M1)
    p.mm.alloc_tables(M2, 2 * M2, "pte")
    expect_x86(p, era, [0], [0], [0, M2, 2 * M2])
    n = calls(p)
    p.munmap(0, 5 * M1)
    assert calls(p) == n + 1
    expect_x86(p, era, [], [], [])
    assert p.mm.stranded == {}
    p.exit()                                  # nothing left: no BUG


@era_params
def test_case11_no_survivor_separate_strands_orphan(era):
    # Bv=[4M+4K, 5M): two groups.  fpr(0, 2M, 0, 4M+4K) frees PTE@0 only
    # (PMD@0: rd(4M, 1G) = 0 -> kept).  fpr(4M+4K, 5M, 0, 0) frees PTE@4M,
    # then PMD@0 (start 0 >= 0, ceiling 0) and PUD@0: the orphan PTE@2M under
    # the freed PMD@0 is stranded -- gone from the tree, still counted
    # (kernel-notes 4.4 last bullet, case 10).  Exit then trips the check.
    p = proc(era)
    anon(p, 0, M2)
    anon(p, 2 * M2 + K4, 5 * M1)
    p.mm.alloc_tables(M2, 2 * M2, "pte")
    n = calls(p)
    p.munmap(0, 5 * M1)
    assert calls(p) == n + 2
    assert p.tables() == {"pud": 0, "pmd": 0, "pte": 0}
    assert p.mm.stranded == {"pte": 1}
    assert p.nr_ptes == 1
    assert p.pgtables_bytes == 4096            # one PTE table, either era
    with pytest.raises(KernelBug):
        p.exit()


@era_params
def test_gather_counts_on_exit(era):
    # exit: free_pgtables(all vmas, floor 0, ceiling 0).  Vmas [B, +4K),
    # [B+1M, +4K), [B+3M, +4K) (gaps <= 2M: one group), [B+1G, +4K) (gap far
    # more than 2M: new group), [TS-4K, TS) (new group) -> 3 calls; all
    # tables freed (every table is under some vma).
    p = proc(era)
    for s in (B, B + M1, B + 3 * M1, B + G1, TS - K4):
        anon(p, s, s + K4)
    expect_x86(p, era, [B, TOP_PUD], [B, B + G1, TOP_PMD], [B, B + M2, B + G1, TOP_PTE])
    n = calls(p)
    report = p.exit()
    assert calls(p) == n + 3
    expect_x86(p, era, [], [], [])
    assert report.tables_left == {}
    assert report.tables_freed == {"pud": 2, "pmd": 3, "pte": 4}


# ===========================================================================
# 7. Direct free_pgd_range arithmetic (kernel-notes 4.4, section 8)
# ===========================================================================

@era_params
def test_direct_ceiling_zero_is_top(era):
    # Tables for [0x400000, +4K): fpr(0x400000, 0x401000, 0, 0): ceiling 0
    # = top -> PTE@0x400000, PMD@0, PUD@0 freed.
    p = proc(era)
    p.mm.alloc_tables(0x400000, 0x401000, "pte")
    expect_x86(p, era, [0], [0], [0x400000])
    fpr(p.mm, 0x400000, 0x401000, 0, 0)
    expect_x86(p, era, [], [], [])
    # Also at the very top: [TS-4K, TS) with ceiling 0.
    p.mm.alloc_tables(TS - K4, TS, "pte")
    fpr(p.mm, TS - K4, TS, 0, 0)
    expect_x86(p, era, [], [], [])


@era_params
def test_direct_case2_ceiling_rounding_to_zero(era):
    # PTE@0 holds [0x1000, 0x2000) and the "next" at 0x100000.
    # fpr(0x1000, 0x2000, 0, 0x100000): rd(0x100000, 2M) = 0 -> return.
    # With ceiling 0 instead (top) everything goes.
    p = proc(era)
    p.mm.alloc_tables(0x1000, 0x2000, "pte")
    p.mm.alloc_tables(0x100000, 0x101000, "pte")
    expect_x86(p, era, [0], [0], [0])
    freed_before = dict(p.mm.tlb_stats.tables_freed)
    fpr(p.mm, 0x1000, 0x2000, 0, 0x100000)
    expect_x86(p, era, [0], [0], [0])
    assert p.mm.tlb_stats.tables_freed == freed_before
    fpr(p.mm, 0x1000, 0x2000, 0, 0)
    expect_x86(p, era, [], [], [])


@era_params
def test_direct_case5_end_trimming(era):
    # Tables PTE@4M, PTE@6M.  fpr(5M, 7M, floor 1M, ceiling 7.5M): addr
    # rd = 4M >= 1M; ceiling rd 6M, end-1 = 7M-1 > 6M-1 -> end = 5M; walk
    # [4M, 5M): PTE@4M only.  PMD@0 start 0 < floor -> kept.
    p = proc(era)
    p.mm.alloc_tables(4 * M1, 8 * M1, "pte")
    expect_x86(p, era, [0], [0], [4 * M1, 6 * M1])
    fpr(p.mm, 5 * M1, 7 * M1, M1, 7 * M1 + 512 * 1024)
    expect_x86(p, era, [0], [0], [6 * M1])


@era_params
def test_direct_case6_floor_raise(era):
    # fpr(5M, 7M, floor 4.5M, ceiling 9M): addr 4M < 4.5M -> 6M; ceiling
    # rd 8M, end-1 < it; walk [6M, 7M): PTE@6M only.
    p = proc(era)
    p.mm.alloc_tables(4 * M1, 8 * M1, "pte")
    fpr(p.mm, 5 * M1, 7 * M1, 4 * M1 + 512 * 1024, 9 * M1)
    expect_x86(p, era, [0], [0], [4 * M1])


@era_params
def test_direct_case7_floor_on_boundary(era):
    # Tables for [1G-4K, 1G+4K): PTE@1G-2M, PTE@1G, PMD@0, PMD@1G, PUD@0.
    # fpr(1G, 1G+4K, floor 1G, 0): PTE@1G; PMD@1G (1G not < 1G); PUD@0 kept
    # (0 < 1G).
    p = proc(era)
    p.mm.alloc_tables(G1 - K4, G1 + K4, "pte")
    expect_x86(p, era, [0], [0, G1], [G1 - M2, G1])
    fpr(p.mm, G1, G1 + K4, G1, 0)
    expect_x86(p, era, [0], [0], [G1 - M2])
    # Floor exactly on a 2M boundary: tables for [2M-4K, 2M+4K) (PTE@0,
    # PTE@2M); fpr(2M, 2M+4K, 2M, 0) frees PTE@2M; PMD@0 start 0 < 2M kept.
    q = proc(era)
    q.mm.alloc_tables(M2 - K4, M2 + K4, "pte")
    fpr(q.mm, M2, M2 + K4, M2, 0)
    expect_x86(q, era, [0], [0], [0])
    # One page above the boundary: floor 2M+4K -> addr 2M < floor -> 4M >
    # end-1: nothing.
    r = proc(era)
    r.mm.alloc_tables(M2 - K4, M2 + 2 * K4, "pte")
    fpr(r.mm, M2 + K4, M2 + 2 * K4, M2 + K4, 0)
    expect_x86(r, era, [0], [0], [0, M2])


@era_params
def test_direct_case16_end_on_pmd_boundary(era):
    # Tables PTE@4M (vma [4M, 6M)) and PTE@6M (next at 6M+512K).
    # fpr(4M, 6M, 0, 6M+512K): ceiling rd 6M; end-1 = 6M-1 not > 6M-1 -> no
    # trim: PTE@4M freed; PTE@6M kept; PMD@0: rd(6M, 1G) = 0 -> kept.
    p = proc(era)
    p.mm.alloc_tables(4 * M1, 6 * M1, "pte")
    p.mm.alloc_tables(6 * M1 + 512 * 1024, 6 * M1 + 512 * 1024 + K4, "pte")
    expect_x86(p, era, [0], [0], [4 * M1, 6 * M1])
    fpr(p.mm, 4 * M1, 6 * M1, 0, 6 * M1 + 512 * 1024)
    expect_x86(p, era, [0], [0], [6 * M1])


def i386_4g() -> Geometry:
    """An I-like 32-bit geometry whose user space reaches the top (case 8)."""
    return Geometry(
        name="i386-4g",
        word_bits=32,
        page_shift=12,
        levels=_levels(("pgd", 22, 1024, 4), ("pte", 12, 1024, 4)),
        task_size=0xFFFFF000,
    )


@era_params
def test_direct_case8_addr_plus_pmd_wraps(era):
    # Tables PTE@0 and PTE@0xffc00000.  fpr(0xffc01000, 0xffc02000, floor
    # 0xffc01000, 0): addr rd 0xffc00000 < floor -> addr + 4M wraps to 0 ->
    # return.  (Walking from 0 would free PTE@0 and PTE@0xffc00000.)
    p = Process(era=era, arch=i386_4g())
    p.mm.alloc_tables(0, K4, "pte")
    p.mm.alloc_tables(0xFFC01000, 0xFFC02000, "pte")
    assert addrs(p, "pte") == [0, 0xFFC00000]
    n = calls(p)
    fpr(p.mm, 0xFFC01000, 0xFFC02000, 0xFFC01000, 0)
    assert calls(p) == n + 1
    assert addrs(p, "pte") == [0, 0xFFC00000]
    assert p.nr_ptes == 2
    # floor exactly 0xffc00000: not < floor -> walk -> PTE@0xffc00000 freed.
    fpr(p.mm, 0xFFC01000, 0xFFC02000, 0xFFC00000, 0)
    assert addrs(p, "pte") == [0]
    # end 0 means top: fpr(0xffc00000, 0, 0, 0) walks [0xffc00000, 2**32).
    p.mm.alloc_tables(0xFFFFE000, 0xFFFFF000, "pte")
    fpr(p.mm, 0xFFC00000, 0, 0, 0)
    assert addrs(p, "pte") == [0]
    assert p.nr_ptes == 1


@era_params
def test_gather_threshold_wraps_on_32bit(era):
    # kernel-notes 4.3: "vm_end + PMD_SIZE can wrap on 32-bit near the top,
    # which simply disables gathering there".  On the 4 GiB geometry vmas
    # [0xffc00000, 0xffc01000) and [0xffffe000, 0xfffff000): 0xffc01000 + 4M
    # wraps to 0x1000 < 0xffffe000 -> two groups.
    #   fpr(0xffc00000, 0xffc01000, 0, 0xffffe000): ceiling rd 0xffc00000,
    #     end trimmed to 0xff801000 < addr -> nothing.
    #   fpr(0xffffe000, 0xfffff000, 0, 0): PTE@0xffc00000 freed.
    p = Process(era=era, arch=i386_4g())
    anon(p, 0xFFC00000, 0xFFC01000)
    anon(p, 0xFFFFE000, 0xFFFFF000)
    assert addrs(p, "pte") == [0xFFC00000]
    n = calls(p)
    p.exit()
    assert calls(p) == n + 2
    assert p.tables() == {"pte": 0}
    assert p.nr_ptes == 0
    # Contrast on i386 (no wrap): [0xBF000000, +4K) and [0xBF400000, +4K):
    # 0xBF001000 + 4M = 0xBF401000 >= 0xBF400000 -> one group, one call.
    q = proc(era, "i386")
    anon(q, 0xBF000000, 0xBF001000)
    anon(q, 0xBF400000, 0xBF401000)
    n = calls(q)
    q.exit()
    assert calls(q) == n + 1
    assert q.tables() == {"pte": 0}


@era_params
def test_direct_free_pgtables_gather_vma_list(era):
    # free_pgtables on an explicit list (as munmap's detached vmas): vmas
    # [0, 2M) and [4M, 5M) gap = PMD_SIZE -> one call; orphan PTE@2M freed.
    p = proc(era)
    p.mm.alloc_tables(0, 5 * M1, "pte")          # PTE@0, @2M, @4M
    flags = VM_READ | VM_WRITE
    vmas = [Vma(0, M2, flags, None, 0), Vma(2 * M2, 5 * M1, flags, None, 0x400)]
    tlb = p.mm.tlb_gather_mmu(False)
    n = calls(p)
    free_pgtables(p.mm, tlb, vmas, 0, 0)
    tlb.finish()
    assert calls(p) == n + 1
    expect_x86(p, era, [], [], [])


@era_params
def test_direct_case12_intermediate_ceiling_global_floor(era):
    # Groups G1=[0x400000, +4K), G2=[1G, 1G+4K), G3=[TS-4K, TS): the shape
    # of case 12 with G2 inside pgd slot 0 so that the floor matters.
    #   G1: fpr(G1, floor 0, ceiling 1G): PTE@0x400000; PMD@0 (rd(1G,1G) =
    #       1G >= end); PUD@0 kept: rd(1G, 512G) = 0 -> rejected.
    #   G2: fpr(G2, floor 0 (global), ceiling TS-4K): PTE@1G, PMD@1G, and
    #       PUD@0 (start 0 >= 0; rd(TS-4K, 512G) = 0x7f8000000000 >= end).
    #   G3: fpr(G3, 0, 0): PTE, PMD, PUD of slot 255.
    p = proc(era)
    for s in (0x400000, G1, TS - K4):
        p.mm.alloc_tables(s, s + K4, "pte")
    expect_x86(p, era, [0, TOP_PUD], [0, G1, TOP_PMD], [0x400000, G1, TOP_PTE])
    fpr(p.mm, 0x400000, 0x401000, 0, G1)
    expect_x86(p, era, [0, TOP_PUD], [G1, TOP_PMD], [G1, TOP_PTE])
    fpr(p.mm, G1, G1 + K4, 0, TS - K4)
    expect_x86(p, era, [TOP_PUD], [TOP_PMD], [TOP_PTE])
    fpr(p.mm, TS - K4, TS, 0, 0)
    expect_x86(p, era, [], [], [])
    # A model using G1's end (0x401000) as G2's floor would keep PUD@0:
    q = proc(era)
    for s in (0x400000, G1, TS - K4):
        q.mm.alloc_tables(s, s + K4, "pte")
    fpr(q.mm, 0x400000, 0x401000, 0, G1)
    fpr(q.mm, G1, G1 + K4, 0x401000, TS - K4)
    expect_x86(q, era, [0, TOP_PUD], [TOP_PMD], [TOP_PTE])


@era_params
def test_case12_exit_global_floor(era):
    # The same three groups through exit_mmap: 3 calls, nothing left, no BUG.
    p = proc(era)
    for s in (0x400000, G1, TS - K4):
        anon(p, s, s + K4)
    n = calls(p)
    report = p.exit()
    assert calls(p) == n + 3
    expect_x86(p, era, [], [], [])
    assert report.tables_freed == {"pud": 2, "pmd": 3, "pte": 3}


@era_params
def test_case12_literal_layout(era):
    # kernel-notes 8 case 12's literal addresses: G1=[0x400000, 0x600000),
    # G2 at 0x2aaaaaaab000, G3 at TS-4K.  Note 0x2aaaaaaab000 >> 39 = 85: G2
    # is in pgd slot 85, not slot 0, so G1's own call already frees PUD@0:
    # fpr(0x400000, 0x600000, 0, 0x2aaaaaaab000): ceiling rd 2M
    # 0x2aaaaaa00000, rd 1G 0x2aaa80000000, rd 512G 0x2a8000000000 -- all
    # nonzero and >= end -> PTE@0x400000, PMD@0, PUD@0 freed.  (The notes say
    # G2 frees PUD@0: that holds only if G2 were in slot 0.)
    g2 = 0x2AAAAAAAB000
    p = proc(era)
    for s, e in ((0x400000, 0x600000), (g2, g2 + K4), (TS - K4, TS)):
        p.mm.alloc_tables(s, e, "pte")
    expect_x86(p, era, [0, 0x2A8000000000, TOP_PUD], [0, 0x2AAA80000000, TOP_PMD],
               [0x400000, 0x2AAAAAA00000, TOP_PTE])
    fpr(p.mm, 0x400000, 0x600000, 0, g2)
    expect_x86(p, era, [0x2A8000000000, TOP_PUD], [0x2AAA80000000, TOP_PMD],
               [0x2AAAAAA00000, TOP_PTE])
    # and through exit: everything freed in 3 calls.
    q = proc(era)
    anon(q, 0x400000, 0x600000)
    anon(q, g2, g2 + K4)
    anon(q, TS - K4, TS)
    n = calls(q)
    q.exit()
    assert calls(q) == n + 3
    expect_x86(q, era, [], [], [])


@era_params
def test_direct_case17_pae(era):
    # PAE: tables for [1G, 1G+4K): only PTE@1G is allocated (PMD pages are
    # preallocated).  fpr(1G, 1G+4K, 0, 0) frees PTE@1G; may_free would allow
    # the PMD page of slot 1 but pud_clear/pmd_free_tlb are no-ops there.
    p = proc(era, "i386-pae")
    p.mm.alloc_tables(G1, G1 + K4, "pte")
    assert p.tables() == {"pte": 1}
    assert p.mm.nr_tables["pmd"] == 0
    fpr(p.mm, G1, G1 + K4, 0, 0)
    assert p.tables() == {"pte": 0}
    assert addrs(p, "pmd") == [0, G1, 2 * G1]
    assert p.mm.nr_tables["pmd"] == 0
    assert p.mm.tlb_stats.tables_freed == {"pte": 1}


# ===========================================================================
# 8. exit_mmap
# ===========================================================================

@era_params
def test_exit_frees_everything(era):
    # Vmas at the bottom, middle and top; each group's walk frees its own
    # tables and, with floor 0 / ceiling 0 at the ends, all upper tables.
    p = proc(era)
    anon(p, 0x1000, 0x2000)
    anon(p, 0x400000, 0x600000)
    anon(p, B, B + K4)
    anon(p, TS - 33 * K4, TS)
    expect_x86(p, era, [0, B, TOP_PUD], [0, B, TOP_PMD], [0, 0x400000, B, TOP_PTE])
    flushes = p.mm.tlb_stats.flushes
    full = p.mm.tlb_stats.fullmm_flushes
    report = p.exit()
    expect_x86(p, era, [], [], [])
    assert report.tables_left == {} and report.stranded == {}
    assert report.tables_freed == {"pud": 3, "pmd": 3, "pte": 4}
    assert report.vmas == 4
    # One fullmm gather: 1 + 512 + 1 + 33 = 547 pages + 10 tables = 557
    # entries pass the 2.6.12 batch of 506 once -> 2 flushes there, 1 on
    # 6.18 (batch 510 * 19); every flush of this gather is a fullmm flush.
    n = 2 if era == C else 1
    assert p.mm.tlb_stats.flushes == flushes + n
    assert p.mm.tlb_stats.fullmm_flushes == full + n


@era_params
def test_case10_orphan_outside_every_vma_is_a_bug(era):
    # V=[B, B+4K) and an orphan PTE table in another pgd slot (B+512G) that
    # no vma spans.  exit: fpr(B, B+4K, 0, 0) frees V's PTE, PMD, PUD; the
    # orphan's tables are never visited -> nr_ptes 1 -> 2.6.12 BUG_ON /
    # 6.18 check_mm.
    p = proc(era)
    anon(p, B, B + K4)
    p.mm.alloc_tables(B + G512, B + G512 + K4, "pte")
    expect_x86(p, era, [B, B + G512], [B, B + G512], [B, B + G512])
    with pytest.raises(KernelBug):
        p.exit()
    expect_x86(p, era, [B + G512], [B + G512], [B + G512])
    assert p.mm.stranded == {}
    assert p.pgtables_bytes == (4096 if era == C else 12288)


@era_params
def test_case10_orphan_stranded_under_freed_pmd(era):
    # Orphan PTE@B+4M under V's PMD@B: exit's fpr(B, B+4K, 0, 0) frees PTE@B
    # then PMD@B (start B >= 0, ceiling 0) -- stranding the orphan -- and
    # PUD@B.  Tree empty, but nr_ptes 1 -> BUG.
    p = proc(era)
    anon(p, B, B + K4)
    p.mm.alloc_tables(B + 2 * M2, B + 2 * M2 + K4, "pte")
    expect_x86(p, era, [B], [B], [B, B + 2 * M2])
    with pytest.raises(KernelBug):
        p.exit()
    assert p.tables() == {"pud": 0, "pmd": 0, "pte": 0}
    assert p.mm.stranded == {"pte": 1}
    assert p.nr_ptes == 1
    assert p.pgtables_bytes == 4096


@era_params
def test_case10_orphan_in_a_walked_pmd_slot_is_freed(era):
    # Orphan PTE@B (like the old x86_64 vsyscall page sharing the stack's PMD
    # slot) and an untouched vma V=[B+1M, B+1M+4K) in the same 2M slot:
    # exit's walk of [rd(B+1M, 2M) = B, ...) meets PTE@B and frees it.
    p = proc(era)
    p.mm.alloc_tables(B, B + K4, "pte")
    anon(p, B + M1, B + M1 + K4, touch=False)
    p.exit()
    expect_x86(p, era, [], [], [])


@era_params
def test_exit_gap_exactly_pmd_frees_orphan(era):
    # exit version of case 11: V1=[B+2M-4K, B+2M), V2=[B+4M, B+4M+4K),
    # orphan PTE@B+2M.  B+4M <= B+2M + 2M -> one group fpr(B+2M-4K, B+4M+4K,
    # 0, 0): walk [B, B+4M+4K) frees PTE@B, the orphan, PTE@B+4M, PMD@B, PUD@B.
    p = proc(era)
    anon(p, B + M2 - K4, B + M2)
    anon(p, B + 2 * M2, B + 2 * M2 + K4)
    p.mm.alloc_tables(B + M2, B + M2 + K4, "pte")
    n = calls(p)
    p.exit()
    assert calls(p) == n + 1
    expect_x86(p, era, [], [], [])


@era_params
def test_exit_gap_pmd_plus_page_strands_orphan(era):
    # V2 at B+4M+4K: two groups.  fpr(B+2M-4K, B+2M, 0, B+4M+4K) frees PTE@B
    # (PMD@B kept: rd(B+4M, 1G) = B <= end-1).  fpr(B+4M+4K, +4K, 0, 0)
    # frees PTE@B+4M, PMD@B (stranding the orphan PTE@B+2M), PUD@B -> BUG.
    p = proc(era)
    anon(p, B + M2 - K4, B + M2)
    anon(p, B + 2 * M2 + K4, B + 2 * M2 + 2 * K4)
    p.mm.alloc_tables(B + M2, B + M2 + K4, "pte")
    n = calls(p)
    with pytest.raises(KernelBug):
        p.exit()
    assert calls(p) == n + 2
    assert p.tables() == {"pud": 0, "pmd": 0, "pte": 0}
    assert p.mm.stranded == {"pte": 1}
    assert p.nr_ptes == 1


@era_params
def test_case15_exit_walks_only_vma_ranges(era):
    # Vmas [0x400000, +4K) and [TS-4K, TS), one page each.  Per vma the zap
    # reads 1 pgd, 1 pud, 1 pmd and 1 pte entry; each of the 2 groups'
    # free_pgd_range reads 1 pgd, 1 pud, 1 pmd entry (trimmed range is one
    # page inside present tables).  A 2.6.11-style walk would read all 256
    # user pgd entries.
    p = proc(era)
    anon(p, 0x400000, 0x401000)
    anon(p, TS - K4, TS)
    p.mm.entries_examined.clear()
    p.exit()
    expect_x86(p, era, [], [], [])
    assert p.mm.entries_examined == {"pgd": 4, "pud": 4, "pmd": 4, "pte": 2}


# ===========================================================================
# 9. Driver failure in mmap (case 19) and a successful device mmap
# ===========================================================================

@era_params
def test_case19_driver_failure_alone_frees_all(era):
    # The driver fills [B, B+4M) (PUD@B, PMD@B, PTE@B, PTE@B+2M) and fails
    # with EIO: unmap_region on the unlinked vma, floor 0, ceiling 0 -> all
    # freed, no vma left.
    p = proc(era)
    dev = p.device("drv", fail=errno.EIO)
    n = calls(p)
    with pytest.raises(OSError) as exc:
        p.mmap(B, 2 * M2, "rw-", "shared,fixed", file=dev)
    assert exc.value.errno == errno.EIO
    assert calls(p) == n + 1
    expect_x86(p, era, [], [], [])
    assert p.map_count == 0
    assert p.mm.tlb_stats.tables_freed == {"pud": 1, "pmd": 1, "pte": 2}
    p.exit()


@era_params
def test_case19_driver_failure_bounded_by_neighbours(era):
    # P=[B, B+4K) (PTE@B), N=[B+6M+4K, +4K) (PTE@B+6M).  The driver fills
    # [B+8K, B+6M): PTE@B (shared), new PTE@B+2M, PTE@B+4M.  It fails:
    # unmap_region(floor B+4K, ceiling B+6M+4K): addr rd B < floor -> B+2M;
    # ceiling rd B+6M = end -> no trim; walk [B+2M, B+6M) frees PTE@B+2M and
    # PTE@B+4M.  PMD@B kept (B < floor).  The device ptes in PTE@B are zapped.
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + 3 * M2 + K4, B + 3 * M2 + 2 * K4)
    expect_x86(p, era, [B], [B], [B, B + 3 * M2])
    dev = p.device("drv", fail=errno.EIO)
    with pytest.raises(OSError) as exc:
        p.mmap(B + 2 * K4, 3 * M2 - 2 * K4, "rw-", "shared,fixed", file=dev)
    assert exc.value.errno == errno.EIO
    expect_x86(p, era, [B], [B], [B, B + 3 * M2])
    assert p.map_count == 2
    assert p.rss == 2 * K4
    assert p.mm.pt.ptes.totals.get(3, 0) == 0     # no pfn pte survives
    assert p.mm.tlb_stats.tables_freed == {"pte": 2}
    p.exit()
    expect_x86(p, era, [], [], [])


@era_params
def test_device_mmap_success_keeps_tables_until_munmap(era):
    # fail=None: the vma [B+2M, B+6M) is linked with PTE@B+2M, PTE@B+4M full
    # of pfns (not rss).  They stay; munmap (floor P.end = B+4K, ceiling 0)
    # frees both PTE tables, PMD@B kept for P.
    p = proc(era)
    anon(p, B, B + K4)
    dev = p.device("drv", fail=None)
    assert p.mmap(B + M2, 2 * M2, "rw-", "shared,fixed", file=dev) == B + M2
    expect_x86(p, era, [B], [B], [B, B + M2, B + 2 * M2])
    assert p.map_count == 2
    assert p.rss == K4
    p.munmap(B + M2, 2 * M2)
    expect_x86(p, era, [B], [B], [B])
    assert p.map_count == 1


# ===========================================================================
# 10. Cases 3, 4, 5, 6, 7 on x86_64 through munmap; case 18
# ===========================================================================

@era_params
def test_case3_x86_64(era):
    # P ends 0x401000 (P=[0x400000, 0x401000)), V=[0x402000, 0x403000), no
    # next: addr 0x400000 < floor -> 0x600000 > end-1 -> nothing.
    p = proc(era)
    anon(p, 0x400000, 0x401000)
    anon(p, 0x402000, 0x403000)
    p.munmap(0x402000, K4)
    expect_x86(p, era, [0], [0], [0x400000])


@era_params
def test_case4_x86_64(era):
    # P=[4M, 4.5M), V=[5M, 5.5M), N at 5.75M: addr -> 6M, ceiling -> 4M,
    # end -> 3.5M: nothing.
    p = proc(era)
    anon(p, 4 * M1, 4 * M1 + 512 * 1024)
    anon(p, 5 * M1, 5 * M1 + 512 * 1024)
    anon(p, 0x5C0000, 0x5C1000)
    p.munmap(5 * M1, 512 * 1024)
    expect_x86(p, era, [0], [0], [4 * M1])


@era_params
def test_case5_x86_64(era):
    # P=[0xff000, 1M) (PTE@0), V=[5M, 7M) (PTE@4M, @6M), N=[7.5M, +4K)
    # (PTE@6M).  Trimmed walk [4M, 5M): PTE@4M only.
    p = proc(era)
    anon(p, 0xFF000, M1)
    anon(p, 5 * M1, 7 * M1)
    anon(p, 7 * M1 + 512 * 1024, 7 * M1 + 512 * 1024 + K4)
    expect_x86(p, era, [0], [0], [0, 4 * M1, 6 * M1])
    p.munmap(5 * M1, 2 * M1)
    expect_x86(p, era, [0], [0], [0, 6 * M1])


@era_params
def test_case6_x86_64(era):
    # P=[4M, 4.5M) (PTE@4M), V=[5M, 7M), N=[9M, +4K) (PTE@8M).  addr 4M <
    # 4.5M -> 6M; ceiling rd 8M: walk [6M, 7M) frees PTE@6M only.
    p = proc(era)
    anon(p, 4 * M1, 4 * M1 + 512 * 1024)
    anon(p, 5 * M1, 7 * M1)
    anon(p, 9 * M1, 9 * M1 + K4)
    expect_x86(p, era, [0], [0], [4 * M1, 6 * M1, 8 * M1])
    p.munmap(5 * M1, 2 * M1)
    expect_x86(p, era, [0], [0], [4 * M1, 8 * M1])


@era_params
def test_case7_x86_64(era):
    # P=[1G-4K, 1G) read-only (so it does not merge with V), V=[1G, 1G+4K),
    # no next: floor 1G -> PTE@1G and PMD@1G freed, PUD@0 kept.
    p = proc(era)
    anon(p, G1 - K4, G1, "r--")
    anon(p, G1, G1 + K4)
    assert p.map_count == 2
    expect_x86(p, era, [0], [0, G1], [G1 - M2, G1])
    p.munmap(G1, K4)
    expect_x86(p, era, [0], [0], [G1 - M2])


@era_params
def test_case16_x86_64(era):
    # V=[4M, 6M), N=[6.5M, +4K): ceiling rd 6M; end-1 = 6M-1 -> no trim:
    # PTE@4M freed, PTE@6M (N's) kept.
    p = proc(era)
    anon(p, 4 * M1, 6 * M1)
    anon(p, 6 * M1 + 512 * 1024, 6 * M1 + 512 * 1024 + K4)
    p.munmap(4 * M1, 2 * M1)
    expect_x86(p, era, [0], [0], [6 * M1])


@era_params
def test_case18_munmap_nothing_and_len_zero(era):
    # len 0 -> EINVAL; unaligned start -> EINVAL; a range with no vma ->
    # returns without a free_pgd_range call, tables and tlb untouched.
    p = proc(era)
    anon(p, B, B + K4)
    with pytest.raises(OSError) as exc:
        p.munmap(B, 0)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(OSError) as exc:
        p.munmap(B + 1, K4)
    assert exc.value.errno == errno.EINVAL
    n = calls(p)
    flushes = p.mm.tlb_stats.flushes
    p.munmap(B + M2, 4 * M2)
    p.munmap(0, B)                       # everything below V: no vma there
    assert calls(p) == n
    assert p.mm.tlb_stats.flushes == flushes
    expect_x86(p, era, [B], [B], [B])
    assert p.map_count == 1


# ===========================================================================
# 11. TLB gather
# ===========================================================================

@era_params
def test_tlb_small_munmap_one_flush(era):
    # munmap of a lonely written page: 1 page + PTE, PMD, PUD tables queued
    # (4 entries, far below any batch) -> exactly one flush at tlb_finish_mmu,
    # not a fullmm one.
    p = proc(era)
    anon(p, B, B + K4)
    st = p.mm.tlb_stats
    flushes, full = st.flushes, st.fullmm_flushes
    freed = dict(st.tables_freed)
    p.munmap(B, K4)
    assert st.flushes == flushes + 1
    assert st.fullmm_flushes == full
    delta = {k: v - freed.get(k, 0) for k, v in st.tables_freed.items() if v != freed.get(k, 0)}
    assert delta == {"pud": 1, "pmd": 1, "pte": 1}


@era_params
def test_tlb_munmap_pmd_level(era):
    # The "other PMD table" case: PTE@B+1G and PMD@B+1G freed, PUD kept.
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + G1, B + G1 + K4)
    st = p.mm.tlb_stats
    flushes = st.flushes
    p.munmap(B + G1, K4)
    assert st.flushes == flushes + 1
    assert st.tables_freed == {"pmd": 1, "pte": 1}


@era_params
def test_tlb_untouched_munmap_no_flush(era):
    # Nothing was mapped and no table existed: need_flush never set, so
    # tlb_finish_mmu flushes nothing (kernel-notes 1.4), but the
    # free_pgd_range call still happens.
    p = proc(era)
    anon(p, B, B + K4, touch=False)
    flushes = p.mm.tlb_stats.flushes
    n = calls(p)
    p.munmap(B, K4)
    assert p.mm.tlb_stats.flushes == flushes
    assert calls(p) == n + 1


@era_params
def test_tlb_exit_is_fullmm(era):
    p = proc(era)
    anon(p, B, B + K4)
    anon(p, B + G512, B + G512 + K4)
    st = p.mm.tlb_stats
    flushes, full = st.flushes, st.fullmm_flushes
    p.exit()
    assert st.fullmm_flushes == full + 1
    assert st.flushes == flushes + 1
    assert st.tables_freed == {"pud": 2, "pmd": 2, "pte": 2}


# ===========================================================================
# 12. Counters stay consistent with the tree (both eras, several steps)
# ===========================================================================

@era_params
def test_counters_after_each_step(era):
    # Step by step, exact tables and VmPTE:
    p = proc(era)
    assert p.pgtables_bytes == 0 and p.nr_ptes == 0
    anon(p, B, B + 2 * M2)                       # PTE@B, @B+2M; PMD@B; PUD@B
    expect_x86(p, era, [B], [B], [B, B + M2])
    anon(p, B + G1, B + G1 + K4)                 # + PTE@B+1G, PMD@B+1G
    expect_x86(p, era, [B], [B, B + G1], [B, B + M2, B + G1])
    p.munmap(B + M2, M2)                         # floor B+2M, ceiling B+1G: PTE@B+2M
    expect_x86(p, era, [B], [B, B + G1], [B, B + G1])
    p.munmap(B, M2)                              # floor 0, ceiling B+1G: PTE@B, PMD@B
    expect_x86(p, era, [B], [B + G1], [B + G1])
    p.munmap(B + G1, K4)                         # alone: PTE, PMD@B+1G, PUD@B
    expect_x86(p, era, [], [], [])
    assert p.pgtables_bytes == vmpte(era, "x86_64") == 0


@era_params
def test_case10_orphan_pmd_and_pte_stranded_under_freed_pud(era):
    # Orphan tables for [B+1G, B+1G+4K): PMD@B+1G and PTE@B+1G, under V's
    # PUD@B but outside every vma.  exit: fpr(B, B+4K, 0, 0) frees PTE@B,
    # PMD@B and PUD@B; the walk never visits [B+1G, ...), so the orphan PMD
    # and PTE tables are stranded (unreachable, still counted): nr_ptes 1,
    # 6.18 counts the PMD and PTE pages (8192), 2.6.12 the PTE page (4096).
    p = proc(era)
    anon(p, B, B + K4)
    p.mm.alloc_tables(B + G1, B + G1 + K4, "pte")
    expect_x86(p, era, [B], [B, B + G1], [B, B + G1])
    with pytest.raises(KernelBug):
        p.exit()
    assert p.tables() == {"pud": 0, "pmd": 0, "pte": 0}
    assert p.mm.stranded == {"pmd": 1, "pte": 1}
    assert p.nr_ptes == 1
    assert p.pgtables_bytes == (4096 if era == C else 8192)


@pytest.mark.parametrize("era, expected", [(C, 7), (D, 1)])
def test_tlb_large_munmap_flushes(era, expected):
    # A lonely 8 MiB vma, fully written (2048 anon pages), munmapped.
    # 2.6.12 (SMP, FREE_PTE_NR 506, no CONFIG_PREEMPT -> ZAP_BLOCK_SIZE 1024
    # pages; kernel-notes 1.4 and 4.10): unmap_vmas zaps in two blocks of
    # 1024 pages; in each the batch fills at 506 and 1012 (2 flushes) and the
    # block ends with tlb_finish_mmu flushing the 12 left (1) -> 6; then
    # free_pgtables queues PTE x4 + PMD + PUD on the fresh gather and the
    # final tlb_finish_mmu flushes them (1) -> 7.
    # 6.18: one gather of up to 510 * 19 entries, no per-block finish: the
    # 2048 pages + 6 tables never fill it -> the final flush only -> 1.
    p = proc(era)
    anon(p, B, B + 4 * M2)
    st = p.mm.tlb_stats
    flushes = st.flushes
    p.munmap(B, 4 * M2)
    expect_x86(p, era, [], [], [])
    assert st.flushes - flushes == expected


@pytest.mark.parametrize("era, expected", [(C, 3), (D, 1)])
def test_tlb_batch_fills_twice_within_one_block(era, expected):
    # A lonely vma of 1020 written pages [B, B+0x3fc000) (PTE@B, PTE@B+2M),
    # munmapped.  2.6.12: 1020 pages < ZAP_BLOCK_SIZE (1024), so no block
    # finish; tlb_remove_page fills the 506-entry batch at pages 506 and 1012
    # (2 flushes), 8 pages stay queued, free_pgtables adds PTE x2 + PMD + PUD
    # and tlb_finish_mmu flushes them (1) -> 3.  6.18: 1024 entries never fill
    # the gather -> 1.
    p = proc(era)
    anon(p, B, B + 1020 * K4)
    expect_x86(p, era, [B], [B], [B, B + M2])
    st = p.mm.tlb_stats
    flushes = st.flushes
    p.munmap(B, 1020 * K4)
    expect_x86(p, era, [], [], [])
    assert st.pages_freed == 1020
    assert st.flushes - flushes == expected
