"""check_mm fires on each broken invariant and stays quiet on healthy mms.

Each corruption test damages exactly one thing (adjusting what else it must
so that the earlier checks still pass) and expects the message to name the
invariant.  The last tests pin the brute-force Reference to the measured
examples of host-kernel-notes.md, so that it is checked against the docs
and not only against the model.
"""

from __future__ import annotations

import errno

import pytest

from freepgt import Process
from freepgt.checks import Reference, check_mm
from freepgt.pagetable import PTE_ANON
from freepgt.vma import Vma

K4 = 0x1000
M2 = 0x200000
M4 = 0x400000
G1 = 0x40000000
G512 = 0x8000000000
B = 0x100000000000  # the host arena base (host-kernel-notes.md)

ARCH_BASE = {"x86_64": B, "i386": 0x40000000, "i386-pae": 0x40000000, "x86_64-la57": B}
ERAS = ("linux-2.6.12", "linux-6.18")


def healthy(era: str = "linux-6.18", arch: str = "x86_64") -> Process:
    """A process with a few vmas, touched pages, a hole and an mprotect split."""
    p = Process(era=era, arch=arch, check=True)
    base = ARCH_BASE[arch]
    p.mmap(base, 16 * K4, "rw-", "private,anon,fixed")
    p.touch(base, 4 * K4, "w")
    p.touch(base + 8 * K4, 2 * K4, "r")
    p.mmap(base + M4, 8 * K4, "rw-", "shared,anon,fixed")
    p.touch(base + M4, 3 * K4, "r")
    p.mprotect(base + 2 * K4, K4, "r--")
    return p


# --- healthy mms ---------------------------------------------------------------

@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("arch", ["x86_64", "i386", "i386-pae", "x86_64-la57"])
def test_healthy_processes_pass(era, arch):
    p = healthy(era, arch)
    base = ARCH_BASE[arch]
    check_mm(p.mm)
    p.munmap(base + 4 * K4, 2 * K4)
    p.madvise(base, 4 * K4, "dontneed")
    p.madvise(base + 6 * K4, 10 * K4, "dontneed")
    check_mm(p.mm)
    child = p.fork()
    check_mm(child.mm)
    child.exit()
    check_mm(child.mm)  # a dead mm: no vmas, no tables
    p.munmap(base, G1)
    check_mm(p.mm)
    assert p.tables() == {name: 0 for name in p.tables()}
    p.exit()


@pytest.mark.parametrize("era", ERAS)
def test_healthy_after_big_ranges_and_boundaries(era):
    p = Process(era=era, arch="x86_64", check=True)
    # a vma across a 512 GiB boundary, a 1 GiB boundary and a 2 MiB one
    p.mmap(B + G512 - M2, 2 * M2, "rw-", "private,anon,fixed")
    p.touch(B + G512 - K4, 2 * K4, "w")
    p.mmap(B + G1 - K4, 2 * K4, "r--", "private,anon,fixed")
    p.touch(B + G1 - K4, 2 * K4, "r")
    p.munmap(B + G512 - M2, M2)
    p.mprotect(B + G1, K4, "rw-")
    check_mm(p.mm)
    p.exit()


@pytest.mark.parametrize("era", ERAS)
def test_healthy_with_devices_mremap_brk_exec(era):
    p = Process(era=era, arch="x86_64", check=True)
    dev = p.device("fb")
    p.mmap(B, 4 * K4, "rw-", "shared", file=dev)
    bad = p.device("bad", fail=errno.EIO)
    with pytest.raises(OSError) as e:
        p.mmap(B + M2, 4 * K4, "rw-", "shared", file=bad)
    assert e.value.errno == errno.EIO
    check_mm(p.mm)  # the failed driver's tables went with unmap_region
    p.mmap(B + G1, 4 * K4, "rw-", "private,anon,fixed")
    p.touch(B + G1, 4 * K4, "w")
    p.mremap(B + G1, 4 * K4, 8 * K4, "maymove,fixed", B + 2 * G1)
    p.brk(p.mm.brk + 3 * K4)
    check_mm(p.mm)
    p.exec()
    check_mm(p.mm)
    p.exit()


def test_orphans_flag_skips_only_the_orphan_check():
    p = healthy()
    p.mm.alloc_tables(B + 100 * G1, B + 100 * G1 + K4)
    with pytest.raises(AssertionError, match="orphan table"):
        check_mm(p.mm)
    check_mm(p.mm, orphans=True)


# --- (a) counters ------------------------------------------------------------------

def test_counter_above_tree_fires():
    p = healthy()
    p.mm.nr_tables["pte"] += 1
    with pytest.raises(AssertionError, match=r"counters: nr_tables\[pte\]"):
        check_mm(p.mm)


def test_counter_below_tree_fires():
    p = healthy()
    p.mm.nr_tables["pud"] -= 1
    with pytest.raises(AssertionError, match=r"counters: nr_tables\[pud\]"):
        check_mm(p.mm)


def test_stranded_tables_count_but_must_be_counted():
    p = healthy()
    p.mm.stranded["pte"] = 2
    with pytest.raises(AssertionError, match="counters"):
        check_mm(p.mm)
    p.mm.nr_tables["pte"] += 2  # leaked with their counter: consistent again
    check_mm(p.mm)


def test_preallocated_pae_pmds_are_not_counted():
    p = healthy(arch="i386-pae")
    assert p.mm.nr_tables["pmd"] == 0
    p.mm.nr_tables["pmd"] = len(p.mm.pt.tables["pmd"])  # counting them is wrong
    with pytest.raises(AssertionError, match=r"counters: nr_tables\[pmd\]"):
        check_mm(p.mm)


def test_process_check_runs_after_every_operation():
    p = healthy()
    p.mm.nr_tables["pte"] += 1
    with pytest.raises(AssertionError, match="counters"):
        p.touch(B, K4, "r")


# --- (b) tree -----------------------------------------------------------------------

def test_missing_parent_table_fires():
    p = healthy()
    idx = B >> p.mm.pt.shifts["pmd"]
    p.mm.pt.tables["pmd"].remove(idx, idx + 1)
    p.mm.nr_tables["pmd"] -= 1
    with pytest.raises(AssertionError, match="tree: pte table .* has no pmd table"):
        check_mm(p.mm)


def test_missing_top_level_parent_fires():
    p = healthy()
    idx = B >> p.mm.pt.shifts["pud"]
    p.mm.pt.tables["pud"].remove(idx, idx + 1)
    p.mm.nr_tables["pud"] -= 1
    with pytest.raises(AssertionError, match="tree: pmd table .* has no pud table"):
        check_mm(p.mm)


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_pte_without_pte_table_fires(arch):
    p = healthy(arch=arch)
    base = ARCH_BASE[arch]
    idx = base >> p.mm.pt.shifts["pte"]
    p.mm.pt.tables["pte"].remove(idx, idx + 1)
    p.mm.nr_tables["pte"] -= 1
    with pytest.raises(AssertionError, match="tree: pte of page .* has no pte table"):
        check_mm(p.mm)


# --- (c) ptes inside vmas ---------------------------------------------------------

def test_pte_outside_every_vma_fires():
    p = healthy()
    page = (B + 20 * K4) >> 12  # same PTE table as the first vma, but past its end
    p.mm.pt.ptes.set(page, page + 1, PTE_ANON)
    with pytest.raises(AssertionError, match="pte outside vmas"):
        check_mm(p.mm)


def test_pte_left_after_vma_shrunk_fires():
    p = healthy()
    v = p.mm.vmas.find_vma(B)
    assert v.vm_end == B + 2 * K4  # healthy() split it with mprotect
    v.vm_end = B + K4  # page 1 was written: its pte is now outside every vma
    with pytest.raises(AssertionError, match="pte outside vmas"):
        check_mm(p.mm)


# --- (d) no orphan tables ---------------------------------------------------------

def test_table_no_vma_spans_fires():
    p = healthy()
    p.mm.alloc_tables(B + 7 * G1, B + 7 * G1 + K4)  # counted, but under no vma
    with pytest.raises(AssertionError, match="orphan table: pud|orphan table: pmd|orphan table: pte"):
        check_mm(p.mm)


def test_table_left_after_vma_removed_behind_the_models_back_fires():
    p = Process(era="linux-2.6.12", arch="i386", check=True)
    p.mmap(0x40000000, K4, "rw-", "private,anon,fixed")
    p.touch(0x40000000, K4, "w")
    p.mm.pt.zap(0x40000000, 0x40001000)
    p.mm.vmas.remove(p.mm.vmas.find_vma(0x40000000))
    with pytest.raises(AssertionError, match=r"orphan table: pte table 0x100 \(span \[0x40000000"):
        check_mm(p.mm)


# --- (e) vmas well formed -------------------------------------------------------------

def _anon_vma(start: int, end: int, flags: int) -> Vma:
    return Vma(start, end, flags, None, start >> 12)


def test_overlapping_vmas_fire():
    p = healthy()
    v = p.mm.vmas.find_vma(B)
    p.mm.vmas.insert(_anon_vma(B + 15 * K4, B + 20 * K4, v.vm_flags | 0x4))
    with pytest.raises(AssertionError, match="vmas disjoint"):
        check_mm(p.mm)


def test_unsorted_vmas_fire():
    p = healthy()
    last = p.mm.vmas.all()[-1]
    last.vm_start, last.vm_end = B - 8 * K4, B - 4 * K4  # moved below without reindexing
    p.mm.pt.ptes.remove(0, 1 << 60)
    with pytest.raises(AssertionError, match="vmas sorted"):
        check_mm(p.mm)


def test_unaligned_vma_fires():
    p = healthy()
    p.mm.vmas.all()[-1].vm_end += 1
    with pytest.raises(AssertionError, match="vmas page aligned"):
        check_mm(p.mm)


def test_empty_vma_fires():
    p = healthy()
    v = p.mm.vmas.all()[-1]
    p.mm.pt.zap(v.vm_start, v.vm_end)
    v.vm_end = v.vm_start
    with pytest.raises(AssertionError, match="vmas non-empty"):
        check_mm(p.mm)


def test_vma_above_task_size_fires():
    p = Process(era="linux-6.18", arch="i386", check=False)
    p.mm.vmas.insert(_anon_vma(0xC0000000, 0xC0001000, 0x3))
    with pytest.raises(AssertionError, match="vmas inside user space"):
        check_mm(p.mm)


# --- (f) fully merged -------------------------------------------------------------------

def test_two_mergeable_vmas_side_by_side_fire():
    p = Process(era="linux-6.18", arch="x86_64", check=True)
    p.mmap(B, 4 * K4, "rw-", "private,anon,fixed")
    v = p.mm.vmas.find_vma(B)
    twin = v.clone()
    twin.vm_start, twin.vm_end, twin.vm_pgoff = v.vm_end, v.vm_end + 4 * K4, v.vm_pgoff + 4
    p.mm.vmas.insert(twin)  # bypassing insert_vma's merge
    with pytest.raises(AssertionError, match="vmas merged"):
        check_mm(p.mm)


def test_adjacent_but_unmergeable_vmas_pass():
    p = Process(era="linux-6.18", arch="x86_64", check=True)
    p.mmap(B, 4 * K4, "rw-", "private,anon,fixed")
    p.mmap(B + 4 * K4, 4 * K4, "r--", "private,anon,fixed")      # other perms
    p.mmap(B + 8 * K4, 4 * K4, "r--", "shared,anon,fixed")       # other object
    p.mmap(B + 12 * K4, 4 * K4, "r--", "shared,anon,fixed")      # another object
    p.touch(B, K4, "w")
    p.mmap(B + 16 * K4, 4 * K4, "rw-", "private,anon,fixed")
    p.touch(B + 16 * K4, K4, "w")                                # its own anon_vma
    assert len(p.vmas()) == 5
    check_mm(p.mm)


# --- (g) run bookkeeping ---------------------------------------------------------------

def test_rss_totals_out_of_step_fire():
    p = healthy()
    p.mm.pt.ptes.totals[PTE_ANON] += 3
    with pytest.raises(AssertionError, match=r"run bookkeeping \(rss\): ptes"):
        check_mm(p.mm)


def test_table_totals_out_of_step_fire():
    p = healthy()
    p.mm.pt.tables["pte"].totals[True] += 1
    with pytest.raises(AssertionError, match=r"run bookkeeping \(rss\): tables\[pte\]"):
        check_mm(p.mm)


def test_unknown_pte_state_fires():
    p = healthy()
    p.mm.pt.ptes.set(B >> 12, (B >> 12) + 1, 42)
    with pytest.raises(AssertionError, match="unknown value 42"):
        check_mm(p.mm)


# --- the Reference against the measured rules (host-kernel-notes.md) -----------------

def ref(era: str = "linux-6.18", arch: str = "x86_64") -> Reference:
    return Reference(era, arch)


def counts(r: Reference) -> dict[str, int]:
    return {k: len(v) for k, v in r.table_sets().items()}


def test_reference_lone_page_unmapped_frees_all_three_levels():
    r = ref()
    r.mmap(B, K4, "rw-", False)
    assert r.touch(B, K4, "w") == ("ok", None)
    assert counts(r) == {"pud": 1, "pmd": 1, "pte": 1} and r.pgtables_bytes() == 3 * 4096
    assert r.munmap(B, K4) == ("ok", None)
    assert counts(r) == {"pud": 0, "pmd": 0, "pte": 0}


@pytest.mark.parametrize("neighbour, left", [
    (B + 8 * K4, {"pud": 1, "pmd": 1, "pte": 1}),        # same 2 MiB: nothing freed
    (B + M2, {"pud": 1, "pmd": 1, "pte": 1}),            # another 2 MiB: only the PTE table
    (B + G1, {"pud": 1, "pmd": 1, "pte": 1}),            # another 1 GiB: PTE + PMD
    (B + G512, {"pud": 1, "pmd": 1, "pte": 1}),          # another 512 GiB: all three
])
def test_reference_neighbour_rule(neighbour, left):
    r = ref()
    for a in (B, neighbour):
        r.mmap(a, K4, "rw-", False)
        r.touch(a, K4, "w")
    r.munmap(B, K4)
    assert counts(r) == left


def test_reference_prev_ending_on_boundary_frees_the_table_above():
    r = ref()
    r.mmap(B, M2, "rw-", False)
    r.touch(B + M2 - K4, K4, "w")
    r.mmap(B + M2, K4, "rw-", False)
    r.touch(B + M2, K4, "w")
    assert len(r.vmas) == 1  # merged
    r.munmap(B + M2, K4)
    assert counts(r) == {"pud": 1, "pmd": 1, "pte": 1}


def test_reference_dontneed_reclaims_only_whole_slots_in_one_vma():
    r = ref()
    r.mmap(B, 2 * M2, "rw-", False)
    r.touch(B, 2 * M2, "w")
    assert counts(r)["pte"] == 2
    r.madvise_dontneed(B + K4, M2)            # partial on both slots
    assert counts(r)["pte"] == 2 and r.rss() == M2
    r.madvise_dontneed(B + M2, M2)            # the whole second slot
    assert counts(r) == {"pud": 1, "pmd": 1, "pte": 1}
    old = ref("linux-2.6.12")
    old.mmap(B, 2 * M2, "rw-", False)
    old.touch(B, K4, "w")
    old.madvise_dontneed(B, 2 * M2)
    assert counts(old)["pte"] == 1            # no PT_RECLAIM in 2.6.12


def test_reference_slot_shared_by_two_vmas_is_not_reclaimed():
    r = ref()
    r.mmap(B, M2, "rw-", False)
    r.mmap(B + 16 * K4, 4 * K4, "r--", False)   # splits the slot between three vmas
    r.touch(B, K4, "w")
    assert r.madvise_dontneed(B, M2) == ("ok", None)
    assert counts(r)["pte"] == 1


def test_reference_zero_page_is_not_rss_and_write_replaces_it():
    r = ref()
    r.mmap(B, 4 * K4, "rw-", False)
    r.touch(B, 4 * K4, "r")
    assert r.rss() == 0 and counts(r)["pte"] == 1 and r.vmas[0].anon is None
    r.touch(B, K4, "w")
    assert r.rss() == K4 and r.vmas[0].anon is not None


def test_reference_fork_rule_per_era():
    for era, expect in (("linux-2.6.12", 2), ("linux-6.18", 1)):
        r = ref(era)
        r.mmap(B, K4, "rw-", False)
        r.touch(B, K4, "w")                     # anon_vma
        r.mmap(B + G1, K4, "rw-", False)
        r.touch(B + G1, K4, "r")                # zero page only: no anon_vma
        child = r.fork()
        assert len(child["tables"]["pte"]) == expect
        assert child["rss"] == K4


def test_reference_fault_around_on_shared_anon():
    r = ref()
    r.mmap(B, 32 * K4, "rw-", True)
    r.touch(B, 32 * K4, "w")
    r.madvise_dontneed(B, 32 * K4)
    assert r.rss() == 0
    r.touch(B + 5 * K4, K4, "r")                # one read brings back the 16-page window
    assert r.rss() == 16 * K4
    old = ref("linux-2.6.12")
    old.mmap(B, 32 * K4, "rw-", True)
    old.touch(B, 32 * K4, "w")
    old.madvise_dontneed(B, 32 * K4)
    old.touch(B + 5 * K4, K4, "r")
    assert old.rss() == K4


def test_reference_account_and_anon_vma_merging():
    r = ref()
    r.mmap(B, 4 * K4, "rw-", False)
    r.mprotect(B, 4 * K4, "r--")               # unwritten anon: VM_ACCOUNT dropped (6.18)
    r.mmap(B + 4 * K4, 4 * K4, "r--", False)
    assert r.vma_list() == [(B, B + 8 * K4, "r--p")]
    old = ref("linux-2.6.12")
    old.mmap(B, 4 * K4, "rw-", False)
    old.mprotect(B, 4 * K4, "r--")             # 2.6.12 never drops VM_ACCOUNT
    old.mmap(B + 4 * K4, 4 * K4, "r--", False)
    assert len(old.vma_list()) == 2
    # written rw- next to -w-: the -w- vma's first write reuses the anon_vma
    r = ref()
    r.mmap(B, 4 * K4, "rw-", False)
    r.touch(B, K4, "w")
    r.mmap(B + 4 * K4, 4 * K4, "-w-", False)
    r.touch(B + 4 * K4, K4, "w")
    r.mprotect(B + 4 * K4, 4 * K4, "rw-")
    assert r.vma_list() == [(B, B + 8 * K4, "rw-p")]


def test_reference_errors():
    r = ref()
    assert r.munmap(B + 1, K4) == ("errno", errno.EINVAL)
    assert r.munmap(B, 0) == ("errno", errno.EINVAL)
    assert r.munmap(B, K4) == ("ok", None)
    assert r.mprotect(B, K4, "r--") == ("errno", errno.ENOMEM)
    assert r.madvise_dontneed(B, K4) == ("errno", errno.ENOMEM)
    assert r.touch(B, K4, "r") == ("segv", B)
    r.mmap(B, K4, "r--", False)
    assert r.touch(B, K4, "w") == ("segv", B)
    assert r.mmap(B, K4, "rw-", False, "fixed_noreplace") == ("errno", errno.EEXIST)


def test_mremap_growth_without_merge_is_legitimate_in_2_6_12():
    """2.6.12's do_mremap grows a vma in place with vma_adjust() and never
    merges it with the next vma it now touches, so two adjacent mergeable
    vmas are a real 2.6.12 state; 6.18 merges them (host-kernel-notes §7)."""
    for era, n in (("linux-2.6.12", 2), ("linux-6.18", 1)):
        p = Process(era=era, arch="x86_64", check=True)
        p.mmap(B, 4 * K4, "rw-", "private,anon,fixed")
        p.mmap(B + 8 * K4, 4 * K4, "rw-", "private,anon,fixed")
        p.mremap(B, 4 * K4, 8 * K4)
        assert len(p.vmas()) == n
        check_mm(p.mm)
