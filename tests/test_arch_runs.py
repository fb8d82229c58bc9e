"""Geometry presets, unsigned arithmetic and the run maps under the tree."""

import random

import pytest

from freepgt.arch import PRESETS, Geometry, Level, get_arch
from freepgt.runs import RunMap


def test_x86_64_sizes():
    g = get_arch("x86_64")
    assert (g.PMD_SIZE, g.PUD_SIZE, g.PGDIR_SIZE) == (2 << 20, 1 << 30, 512 << 30)
    assert [lv.name for lv in g.table_levels] == ["pud", "pmd", "pte"]
    assert g.level("p4d").folded and g.P4D_SIZE == g.PGDIR_SIZE
    assert g.table_span("pte") == 2 << 20 and g.table_span("pud") == 512 << 30
    assert g.task_size == 0x7FFFFFFFF000


def test_i386_folds_pud_and_pmd():
    g = get_arch("i386")
    assert [lv.name for lv in g.real_levels] == ["pgd", "pte"]
    assert g.PMD_SIZE == g.PUD_SIZE == g.PGDIR_SIZE == 4 << 20
    assert g.level("pte").table_bytes == 4096 and g.mask == 0xFFFFFFFF


def test_i386_pae_and_la57():
    pae = get_arch("i386-pae")
    assert [lv.name for lv in pae.real_levels] == ["pgd", "pmd", "pte"]
    assert pae.level("pmd").preallocated and pae.PMD_SIZE == 2 << 20 and pae.PGDIR_SIZE == 1 << 30
    la57 = get_arch("x86_64-la57")
    assert len(la57.real_levels) == 5 and la57.PGDIR_SIZE == 1 << 48


def test_addr_end_wraps_like_the_kernel():
    g = get_arch("i386")
    # the boundary after the last 4 MiB slot wraps to 0, which means "top"
    assert g.addr_end(0xFFC00000, 0, g.PMD_SIZE) == 0
    assert g.addr_end(0xFFC01000, 0, g.PMD_SIZE) == 0
    assert g.addr_end(0x00400000, 0x00900000, g.PMD_SIZE) == 0x00800000
    assert g.addr_end(0x00800000, 0x00900000, g.PMD_SIZE) == 0x00900000
    assert g.u(0 - 1) == 0xFFFFFFFF


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError):
        Geometry("bad", 64, 12, (Level("pgd", 39, 512, 8), Level("p4d", 39, 1, 8, True),
                                  Level("pud", 30, 512, 8), Level("pmd", 21, 512, 8),
                                  Level("pte", 12, 256, 8)), task_size=1 << 47)
    with pytest.raises(ValueError, match="unknown architecture"):
        get_arch("vax")


def test_presets_listed():
    assert {"x86_64", "x86_64-la57", "i386", "i386-pae"} <= set(PRESETS)


def test_runmap_against_a_dict():
    rnd = random.Random(7)
    for _ in range(200):
        m, ref = RunMap(), {}
        for _ in range(40):
            a = rnd.randrange(0, 80)
            b = a + rnd.randrange(0, 16)
            v = rnd.choice("xyz")
            op = rnd.random()
            if op < 0.45:
                m.set(a, b, v)
                ref.update({i: v for i in range(a, b)})
            elif op < 0.7:
                new = m.add(a, b, v)
                assert new == sum(1 for i in range(a, b) if i not in ref)
                for i in range(a, b):
                    ref.setdefault(i, v)
            else:
                gone = m.remove(a, b)
                assert sum(y - x for x, y, _ in gone) == sum(1 for i in range(a, b) if i in ref)
                for i in range(a, b):
                    ref.pop(i, None)
            got = {i: v for x, y, v in m.runs() for i in range(x, y)}
            assert got == ref
            totals = {}
            for v in ref.values():
                totals[v] = totals.get(v, 0) + 1
            assert m.totals == totals
            assert list(m.gaps(0, 100)) == _gaps(ref, 0, 100)


def _gaps(ref, lo, hi):
    out, start = [], None
    for i in range(lo, hi):
        if i not in ref and start is None:
            start = i
        if i in ref and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, hi))
    return out


def test_runmap_coalesces_equal_neighbours():
    m = RunMap()
    m.set(0, 4, 1)
    m.set(4, 8, 1)
    m.set(8, 9, 2)
    assert list(m.runs()) == [(0, 8, 1), (8, 9, 2)]
    m.remove(2, 3)
    assert list(m.runs()) == [(0, 2, 1), (3, 8, 1), (8, 9, 2)]
    assert m.count(0, 100) == 8 and m.next_covered(2) == 3 and m.last() == 8
