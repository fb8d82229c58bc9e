"""The runnable examples under examples/: each answers one of the seed's questions.

Expected values are worked out by hand in the comments, from
docs/kernel-notes §4.12, §8 cases 10 and 19, and §4.10.
"""

from __future__ import annotations

import importlib.util
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


@pytest.mark.parametrize("name", [p.stem for p in sorted(EXAMPLES.glob("*.py"))])
def test_example_runs_as_a_script(name, capsys):
    load(name).main()
    assert capsys.readouterr().out.strip()
