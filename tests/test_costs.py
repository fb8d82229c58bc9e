"""Cost accounting (freepgt.costs) and ``--costs``: numbers worked out by hand."""

import json
import subprocess
import sys

import pytest

from freepgt import KernelBug, Process
from freepgt.costs import Costs, leaked_bytes, run_ops_with_costs, snapshot
from freepgt.ops.output import COST_KEYS, OBS_KEYS, to_json_line
from freepgt.ops.script import parse_script

B = 0x100000000000  # 16 TiB: PUD slot 32 (512 GiB per PGD entry), a fresh PMD and PUD table
K, M, G = 1 << 10, 1 << 20, 1 << 30


# ---------------------------------------------------------------------------
# leaked bytes on hand-made layouts
# ---------------------------------------------------------------------------

def test_no_leak_while_vmas_span_every_table():
    p = Process(era="linux-2.6.12", arch="x86_64")
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    p.touch(B, 4 * K, "w")  # PTE [B, B+2M), PMD [B, B+1G), PUD [B, B+512G)
    assert p.tables() == {"pud": 1, "pmd": 1, "pte": 1}
    assert leaked_bytes(p) == 0


def test_leaked_tables_at_every_level_x86_64():
    p = Process(era="linux-2.6.12", arch="x86_64")
    mm = p.mm
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    p.touch(B, 4 * K, "w")
    # a PTE table in [B+4M, B+6M): its PMD and PUD tables are the vma's, only it is leaked
    mm.alloc_tables(B + 4 * M, B + 4 * M + 4 * K)
    assert leaked_bytes(p) == 4096
    # [B+2G, ..): a PMD table spanning [B+2G, B+3G) and a PTE table, both beyond the vma
    mm.alloc_tables(B + 2 * G, B + 2 * G + 4 * K)
    assert leaked_bytes(p) == 4096 + 2 * 4096
    # another PGD slot: PUD, PMD and PTE table, all three leaked
    mm.alloc_tables(0x300000000000, 0x300000001000)
    assert leaked_bytes(p) == 4096 + 2 * 4096 + 3 * 4096
    # a vma over [B+2G+4M, +4K) now spans the PMD table of [B+2G, B+3G) (not its PTE table)
    p.mmap(B + 2 * G + 4 * M, 4 * K, "rw-", "private,anon,fixed")
    assert leaked_bytes(p) == 4096 + 4096 + 3 * 4096


def test_stranded_tables_are_leaked_and_exit_reports_the_bug():
    p = Process(era="linux-2.6.12", arch="x86_64")
    mm = p.mm
    p.mmap(B, 4 * K, "rw-", "private,anon,fixed")
    p.touch(B, 4 * K, "w")
    mm.alloc_tables(B + 4 * M, B + 4 * M + 4 * K)  # an orphan PTE table beside the vma
    p.munmap(B, 4 * K)
    # free_pgd_range(B, B+4K, floor 0, ceiling 0) frees the vma's PTE table, then the PMD and
    # PUD tables above: the orphan is stranded under them, still counted in nr_ptes
    assert mm.stranded == {"pte": 1}
    assert p.tables() == {"pud": 0, "pmd": 0, "pte": 0}
    assert leaked_bytes(p) == 4096
    assert snapshot(p).bug is None  # alive: no verdict yet
    with pytest.raises(KernelBug, match="BUG_ON"):
        p.exit()
    c = snapshot(p)
    assert c.leaked_bytes == 4096
    assert c.bug.startswith("kernel BUG: BUG_ON(mm->nr_ptes > (FIRST_USER_ADDRESS+PMD_SIZE-1)>>PMD_SHIFT)")
    assert snapshot(p).bug == c.bug  # asking again changes nothing
    assert p.mm.warnings == []


def test_i386_two_level_leak():
    p = Process(era="linux-2.6.12", arch="i386")
    p.mm.alloc_tables(0x10000000, 0x10001000)  # one 4 KiB PTE table spanning 4 MiB
    assert leaked_bytes(p) == 4096
    p.mmap(0x10100000, 4 * K, "rw-", "private,anon,fixed")  # inside that 4 MiB
    assert leaked_bytes(p) == 0
    p.mmap(0x10400000, 4 * K, "rw-", "private,anon,fixed")
    p.mm.alloc_tables(0x20000000, 0x20400000 + 4 * K)  # two tables, [0x20000000, 0x20800000)
    assert leaked_bytes(p) == 2 * 4096


def test_i386_pae_preallocated_pmd_pages_are_not_leaked():
    p = Process(era="linux-2.6.12", arch="i386-pae")
    assert p.mm.pt.count("pmd") == 3  # the three user PMD pages come with the pgd
    assert leaked_bytes(p) == 0
    p.mm.alloc_tables(0x10000000, 0x10001000)  # a PTE table of 512 8-byte entries
    assert leaked_bytes(p) == 4096


def test_leak_cost_follows_tables_not_pages():
    p = Process(era="linux-6.18", arch="x86_64")
    p.mmap(B, 1 << 40, "rw-", "private,anon,fixed,noreserve")
    p.touch(B, 1 << 40, "w")  # a terabyte: 2 PUD, 1024 PMD and 524288 PTE tables, as runs
    assert leaked_bytes(p) == 0
    p.munmap(B + (1 << 39), 1 << 39)
    assert leaked_bytes(p) == 0


# ---------------------------------------------------------------------------
# snapshots and differences
# ---------------------------------------------------------------------------

def test_costs_arithmetic():
    a = Costs(examined={"pgd": 1, "pte": 5}, freed={"pte": 1}, tlb_flushes=2, leaked_bytes=4096)
    b = Costs(examined={"pgd": 3, "pmd": 2, "pte": 6}, freed={"pte": 2}, tlb_flushes=5, leaked_bytes=0,
              bug="kernel BUG: x")
    d = b - a
    assert d.examined == {"pgd": 2, "pmd": 2, "pte": 1}
    assert d.freed == {"pte": 1} and d.tlb_flushes == 3 and d.leaked_bytes == -4096
    assert d.bug == "kernel BUG: x"
    s = a + b
    assert s.entries_examined == 17 and s.tables_freed == 3 and s.bug == "kernel BUG: x"
    assert (b + b + b).scaled(3) == b


def test_snapshot_lists_only_real_levels():
    i386 = snapshot(Process(era="linux-2.6.12", arch="i386"))
    assert list(i386.examined) == ["pgd", "pte"] and list(i386.freed) == ["pte"]
    pae = snapshot(Process(era="linux-2.6.12", arch="i386-pae"))
    assert list(pae.examined) == ["pgd", "pmd", "pte"] and list(pae.freed) == ["pte"]
    x = snapshot(Process(era="linux-6.18", arch="x86_64"))
    assert list(x.examined) == ["pgd", "pud", "pmd", "pte"] and list(x.freed) == ["pud", "pmd", "pte"]


# One vma of 8 MiB at B, all written: PTE tables at B, B+2M, B+4M, B+6M, the PMD table
# [B, B+1G) and the PUD table [B, B+512G).
SCRIPT = """\
mmap 0x100000000000 8M rw- private,anon,fixed
touch 0x100000000000 8M w
munmap 0x100000100000 4M
munmap 0x100000000000 8M
"""

# munmap [B+1M, B+5M): prev [B, B+1M), next [B+5M, B+8M).
#   zap (unmap_vmas) of [B+1M, B+5M): pgd 1, pud 1, pmd entries 0..2 = 3, ptes 1024.
#   free_pgd_range(B+1M, B+5M, floor B+1M, ceiling B+5M): addr rounds to B, below the floor,
#   so B+2M; the ceiling rounds to B+4M and end (B+5M) passes it, so end = B+3M; the walk
#   of [B+2M, B+3M) reads pgd 1, pud 1, pmd 1 and frees the PTE table at B+2M; the PMD
#   table starts below the floor and stays.
FIRST_MUNMAP = {"pgd": 2, "pud": 2, "pmd": 4, "pte": 1024}
# munmap [B, B+8M) removes [B, B+1M) and [B+5M, B+8M); no neighbours (floor 0, ceiling 0).
#   zap: [B, B+1M) pgd 1, pud 1, pmd 1, ptes 256; [B+5M, B+8M) pgd 1, pud 1, pmd 2, ptes 768.
#   free_pgtables: the two vmas are more than PMD_SIZE apart, so two calls:
#   free_pgd_range(B, B+1M, 0, B+5M): reads pgd 1, pud 1, pmd 1, frees the PTE table at B;
#     the PMD table's span reaches past the ceiling (B+5M rounds to B at 1 GiB): kept.
#   free_pgd_range(B+5M, B+8M, 0, 0): walks [B+4M, B+8M): pgd 1, pud 1, pmd 2, frees the
#     PTE tables at B+4M and B+6M, then the PMD table and the PUD table.
SECOND_MUNMAP = {"pgd": 4, "pud": 4, "pmd": 6, "pte": 1024}


@pytest.mark.parametrize("era, flushes", [
    # 2.6.12: 1024 pages through a 506-entry batch fill it twice (2 flushes), the
    # ZAP_BLOCK_SIZE block (1024 pages = 4 MiB) ends with a flush, the freed table one more
    ("linux-2.6.12", (4, None)),
    # 6.18: the batch holds them all: one flush at tlb_finish_mmu
    ("linux-6.18", (1, 1)),
])
def test_per_op_costs_by_hand(era, flushes):
    obs = list(run_ops_with_costs(parse_script(SCRIPT, "t.ops"), era=era, arch="x86_64"))
    assert [o["examined"] for o in obs[:2]] == [{"pgd": 0, "pud": 0, "pmd": 0, "pte": 0}] * 2
    assert obs[2]["examined"] == FIRST_MUNMAP
    assert obs[2]["freed"] == {"pud": 0, "pmd": 0, "pte": 1}
    assert obs[3]["examined"] == SECOND_MUNMAP
    assert obs[3]["freed"] == {"pud": 1, "pmd": 1, "pte": 3}
    assert [o["leaked"] for o in obs] == [0, 0, 0, 0]
    assert obs[2]["flushes"] == flushes[0]
    if flushes[1] is not None:
        assert obs[3]["flushes"] == flushes[1]


def test_fork_line_counts_the_childs_exit():
    text = ("mmap 0x100000000000 4K rw- private,anon,fixed\n"
            "touch 0x100000000000 4K w\n"
            "fork\n")
    obs = list(run_ops_with_costs(parse_script(text, "t.ops"), era="linux-2.6.12", arch="x86_64"))
    # the child's exit_mmap: zap [B, B+4K) (pgd, pud, pmd, 1 pte), then free_pgd_range over
    # [B, B+4K) with floor 0, ceiling 0 (pgd, pud, pmd) frees PTE, PMD and PUD table
    assert obs[2]["examined"] == {"pgd": 2, "pud": 2, "pmd": 2, "pte": 1}
    assert obs[2]["freed"] == {"pud": 1, "pmd": 1, "pte": 1}
    assert obs[2]["leaked"] == 0


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "freepgt", *args], capture_output=True, text=True, check=False)


def test_costs_keys_come_after_the_contract_and_leave_it_unchanged(tmp_path):
    path = tmp_path / "t.ops"
    path.write_text(SCRIPT)
    plain = _cli("run", str(path), "--format", "jsonl", "--era", "linux-2.6.12")
    costed = _cli("run", str(path), "--format", "jsonl", "--era", "linux-2.6.12", "--costs")
    assert plain.returncode == costed.returncode == 0, costed.stderr
    for a, b in zip(plain.stdout.splitlines(), costed.stdout.splitlines(), strict=True):
        obj = json.loads(b)
        assert list(obj)[-len(COST_KEYS):] == list(COST_KEYS)
        contract = {k: v for k, v in obj.items() if k in OBS_KEYS}
        assert to_json_line(contract) == a
    last = json.loads(costed.stdout.splitlines()[-1])
    assert last["examined"] == SECOND_MUNMAP


def test_costs_table_columns(tmp_path):
    path = tmp_path / "t.ops"
    path.write_text(SCRIPT)
    plain = _cli("run", str(path))
    assert plain.stdout.splitlines()[1].split() == ["line", "op", "ret", "pgtables", "rss"] + ["child"]
    r = _cli("run", str(path), "--costs")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split() == ["line", "op", "ret", "pgtables", "rss", "child",
                                "examined", "freed", "flushes", "leaked"]
    row = next(ln for ln in lines if ln.lstrip().startswith("4 "))
    assert row.split()[-4:] == ["1,038", "5", "1", "0"]
    demo = _cli("demo", "--costs")
    assert demo.returncode == 0 and "examined" in demo.stdout.splitlines()[1]


def test_arm_vectors_pte_table_is_the_archs_own():
    p = Process(era="linux-2.6.12", arch="arm")
    p.mm.alloc_tables(0, 0x1000)           # the PTE table of [0, 2 MiB): the vector page's
    p.mm.alloc_tables(0x400000, 0x401000)  # [4 MiB, 6 MiB): nobody's
    assert leaked_bytes(p) == 2048         # counted as the kernel does: 512 ptes of 4 bytes


def test_costs_table_ends_with_the_scripts_totals(tmp_path, capsys):
    # linux-2.6.12, x86_64: 4 MiB written then unmapped, no neighbours.
    # The zap reads 1 pgd, 1 pud, 2 pmd and 1024 pte entries; free_pgd_range
    # (floor 0, ceiling 0) reads 1 pgd, 1 pud and 2 pmd entries and frees
    # 2 PTE tables, the PMD table and the PUD table.  Flushes: the 1024 anon
    # pages fill the 506-entry batch twice, the end of the 1024-page zap
    # block finishes the gather, and the 4 freed tables make the final one.
    from freepgt.cli import main

    script = tmp_path / "t.ops"
    script.write_text("mmap 0x100000000000 4M rw- private,anon,fixed\n"
                      "touch 0x100000000000 4M w\n"
                      "munmap 0x100000000000 4M\n")
    assert main(["run", str(script), "--era", "linux-2.6.12", "--costs"]) == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-1].split()
    assert last == ["total", "1,032", "4", "4", "0"]


def test_ia64_huge_tables_are_spanned_where_they_are():
    # a 256 MiB huge page at REGION4 + 1 TiB keeps its pte at
    # htlbpage_to_page = REGION4 + (1 TiB >> 14) = REGION4 + 64 MiB: the PMD
    # table and PTE page there belong to the vma, not leaked; once the vma
    # is gone under the seed as first merged (which walks the unscaled
    # range), both are: a 16 KiB PMD table and a 16 KiB PTE page
    region4, mib, tib = 0x8000000000000000, 1 << 20, 1 << 40
    for era, left in (("linux-2.6.12", 0), ("linux-2.6.12-rc", 2 * 16384)):
        p = Process(era=era, arch="ia64")
        p.mmap(region4 + tib, 256 * mib, "rw-", "private,anon,fixed,hugetlb")
        p.touch(region4 + tib, 256 * mib, "w")
        assert leaked_bytes(p) == 0
        p.munmap(region4 + tib, 256 * mib)
        assert leaked_bytes(p) == left
