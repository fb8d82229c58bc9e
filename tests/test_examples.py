"""The runnable examples under examples/: each answers one of the seed's questions.

Expected values are worked out by hand in the comments, from
docs/kernel-notes §4.12, §8 cases 10 and 19, and §4.10.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_explained_in_the_readme():
    readme = (EXAMPLES / "README.md").read_text()
    for path in sorted(EXAMPLES.glob("*.py")):
        assert f"`{path.name}`" in readme, path.name


def test_vsyscall32(capsys):
    rows = {(r["era"], r["gate_vma"]): r for r in load("vsyscall32").main()}
    # The page at 0xffffe000 sits in PUD slot 3 (PMD table for [3 GiB, 4 GiB))
    # and PMD slot 0x7ff; the stack ends at 3 GiB, in PUD slot 2.  Exit's
    # vma walk never reaches slot 3, but the last group (floor 0, ceiling 0)
    # frees the PUD table of pgd slot 0 above it: the PMD table and the PTE
    # page of the vsyscall page are stranded, nr_ptes stays 1.
    for era in ("linux-2.6.12-rc", "linux-2.6.12", "linux-6.18"):
        r = rows[era, False]
        assert r["stranded"] == {"pmd": 1, "pte": 1}
        assert r["bug"] is not None
        assert rows[era, True]["bug"] is None and rows[era, True]["tables_left"] == {}
    assert "BUG_ON(mm->nr_ptes)" in rows["linux-2.6.12-rc", False]["bug"]
    assert "at most 0 allowed" in rows["linux-2.6.12", False]["bug"]
    # 2.6.11's exit clears [0, MM_VM_SIZE) whole: nothing survives either way
    assert rows["linux-2.6.11", False]["bug"] is None
    assert rows["linux-2.6.11", False]["tables_left"] == {}
    assert "exit clean" in capsys.readouterr().out


def test_driver_failure():
    rows = {r["era"]: r for r in load("driver_failure").main()}
    # i386: PTE pages span 4 MiB.  The survivors' pages are in slots 64 and
    # 68; the device [0x10800000, 0x10c00000) fills slot 66.
    for era in ("linux-2.6.10", "linux-2.6.11"):
        # zap_page_range clears the ptes and keeps the table until exit
        assert rows[era]["nr_ptes_after_failure"] == 3
        assert rows[era]["exit_freed"] == {"pte": 3}
    for era in ("linux-2.6.12-rc", "linux-2.6.12", "linux-6.18"):
        # unmap_region with floor 0x10001000 and ceiling 0x11000000 frees slot 66
        assert rows[era]["nr_ptes_after_failure"] == 2
        assert rows[era]["exit_freed"] == {"pte": 2}
    assert {r["mmap"] for r in rows.values()} == {"ENODEV"}


def test_preempt_latency():
    rows = {r["era"]: r for r in load("preempt_latency").main(size=64 << 20)}
    # 64 MiB = 16384 pages: 16 blocks of 1024 pages, 2048 blocks of 8.
    off, on = rows["linux-2.6.12"], rows["linux-2.6.12 preempt=True"]
    assert (off["lock_breaks"], on["lock_breaks"]) == (16, 2048)
    # a 1024-page block holds 1024 ptes; after the last block free_pgtables
    # reads 1 pgd + 1 pud + 32 pmd entries without a break
    assert (off["longest_run"], on["longest_run"]) == (1024, 34)
    assert off["total"] == on["total"] == 16384 + 34
    # each 1024-page block: two full batches of 506 and a finish (3 flushes);
    # each 8-page block one flush; then the final tlb_finish_mmu
    assert (off["tlb_flushes"], on["tlb_flushes"]) == (16 * 3 + 1, 2048 + 1)
    # 2.6.11's exit walk of the whole user space is one run that preempt
    # cannot break: 256 pgd + 512 pud + 512 pmd entries
    assert rows["linux-2.6.11 preempt=True"]["longest_run"] == 1280
    # 2.6.10 (i386): clear_page_tables reads the 768 user pgd entries
    assert rows["linux-2.6.10 preempt=True"]["longest_run"] == 768


#: per example, one line its output must hold (runs of spaces count as one)
SCRIPT_LINES = {
    "arm_first_pmd": "linux-2.6.12-rc text at 0x8000: nr_ptes 1 at start, 0 after munmap; exit clean",
    "driver_failure": "linux-2.6.12 mmap -> -ENODEV; nr_ptes 2 before, 2 after the failure; exit frees {'pte': 2}",
    "hugepage_only": "ia64 linux-2.6.12 tables {'pmd': 2, 'pte': 2} -> after munmap {'pmd': 1, 'pte': 1}; exit clean",
    "preempt_latency": "exit of a process with 64 MiB written; work = page-table entries read under the lock",
    "sparc64_flush": "linux-2.6.12 munmap D: 1 flush, 1 VPTE page [('0xfffffffe00200000', '0xfffffffe00202000')]",
    "vsyscall32": "linux-2.6.12-rc gate vma left {} stranded {}: exit clean",
}


@pytest.mark.parametrize("name", [p.stem for p in sorted(EXAMPLES.glob("*.py"))])
def test_example_runs_as_a_script(name):
    assert name in SCRIPT_LINES, f"give examples/{name}.py a line to look for"
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=EXAMPLES.parent,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert SCRIPT_LINES[name] in lines, done.stdout


def test_hugepage_only():
    rows = {(r["arch"], r["era"]): r for r in load("hugepage_only").main()}
    # ia64 (16 KiB pages: a PTE page spans 32 MiB, a PMD table 64 GiB): the
    # region-3 vma has one PMD table and one PTE page; the huge page at
    # REGION4 + 1 TiB keeps its pte at htlbpage_to_page = REGION4 + (1 TiB >>
    # 14) = REGION4 + 64 MiB: one more PMD table and PTE page
    for era in ("linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12"):
        assert rows["ia64", era]["before"] == {"pmd": 2, "pte": 2}
    # 2.6.12: hugetlb_free_pgd_range scales [addr, end) down; the floor (end
    # of the region-3 vma) is not in region 4 and stays: both tables go
    assert rows["ia64", "linux-2.6.12"]["after_munmap"] == {"pmd": 1, "pte": 1}
    assert rows["ia64", "linux-2.6.12"]["exit"] == "exit clean"
    # 2.6.12-rc (patch 1/6) walks the unscaled range, where no table is; exit
    # frees region 3's tables only and the exact BUG_ON(nr_ptes) sees 1
    assert rows["ia64", "linux-2.6.12-rc"]["after_munmap"] == {"pmd": 2, "pte": 2}
    assert "nr_ptes is 1" in rows["ia64", "linux-2.6.12-rc"]["exit"]
    # 2.6.11's gap starts at the huge vma's own 64 GiB slot: nothing freed
    # until exit, whose walk of all user slots frees everything
    assert rows["ia64", "linux-2.6.11"]["after_munmap"] == {"pmd": 2, "pte": 2}
    assert rows["ia64", "linux-2.6.11"]["exit"] == "exit clean"
    # ppc64: the normal vma's PMD table (2 GiB) and PTE page (2 MiB) go, with
    # ceiling 1 TB; the huge pgdir and hugepte page stay until destroy_context
    for era in ("linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12"):
        r = rows["ppc64", era]
        assert r["huge_at"] == 1 << 40
        assert r["before"] == {"pmd": 1, "pte": 1, "huge_pgdir": 1, "hugepte": 1}
        assert r["after_munmap"] == {"pmd": 0, "pte": 0, "huge_pgdir": 1, "hugepte": 1}
        assert r["exit"] == "exit clean" and r["freed_by_destroy_context"] == 2


def test_sparc64_flush():
    rows = {r["era"]: r for r in load("sparc64_flush").main()}
    vpte = 0xFFFFFFFE00000000  # vpte_base = -(VPTE_SIZE / 2), VPTE_SIZE = 2^(44 - 13 + 3)
    # munmap D [0x80000000, +64K), alone in its 8 MiB slot: one VPTE page,
    # vpte_base + (0x80000000 >> 10) .. + 8 KiB
    for era in ("linux-2.6.12-rc", "linux-2.6.12", "linux-2.6.12-rc, first posting"):
        assert rows[era]["lone"] == {"flushes": 1, "pages": 1,
                                     "ranges": [(hex(vpte + 0x200000), hex(vpte + 0x202000))]}
    # 2.6.11 flushes its whole gap: C's end 0x71004000 rounded down to 8 MiB,
    # D's end + PGDIR_SIZE - 1 = 0x48000ffff rounded up: (0x480800000 -
    # 0x71000000) / 8 MiB = 2079 VPTE pages
    assert rows["linux-2.6.11"]["lone"]["pages"] == 2079
    # munmap B: its PTE page is A's too; the final code returns before the
    # walk and flushes nothing
    assert rows["linux-2.6.12"]["shared"] == {"flushes": 0, "bug": None}
    assert rows["linux-2.6.12-rc"]["shared"] == {"flushes": 0, "bug": None}
    # the first posting raises addr to 0x70800000, past end 0x70188000
    bug = rows["linux-2.6.12-rc, first posting"]["shared"]["bug"]
    assert "start 0x70800000 above end 0x70188000" in bug


def test_arm_first_pmd():
    rows = {(r["era"], r["text"]): r for r in load("arm_first_pmd").main()}
    # the vectors PTE page covers [0, 2 MiB): a fresh mm has nr_ptes 1
    assert {r["nr_ptes_at_start"] for r in rows.values()} == {1}
    # text at 0x8000 shares it.  2.6.12: floor 4096, addr 0 < floor -> 2 MiB
    # > end - 1: nothing freed.  2.6.12-rc: floor 0, the walk frees it.
    assert rows["linux-2.6.12", 0x8000]["nr_ptes_after_munmap"] == 1
    assert rows["linux-2.6.12-rc", 0x8000]["nr_ptes_after_munmap"] == 0
    # 2.6.11: first = 0 clamped to FIRST_USER_PGD_NR * PGDIR_SIZE = 2 MiB,
    # last = 0x208fff: the PMD early-out fires
    assert rows["linux-2.6.11", 0x8000]["nr_ptes_after_munmap"] == 1
    # text at 4 MiB: no walk reaches the vectors page; only the exact
    # BUG_ON(nr_ptes) of 2.6.12-rc fires at exit
    assert "nr_ptes is 1" in rows["linux-2.6.12-rc", 0x400000]["exit"]
    assert rows["linux-2.6.12", 0x400000]["exit"] == "exit clean"
    assert rows["linux-2.6.11", 0x400000]["exit"] == "exit clean"
