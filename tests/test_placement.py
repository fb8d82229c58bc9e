"""mmap placement: hints, and top-down search below mmap_base."""

import errno
import random

import pytest

from freepgt import Process

B = 0x100000000000


def brute_topdown(vmas, low, high, length):
    """Highest start s with [s, s+length) free inside [low, high), by walking gaps."""
    best = None
    edges = [(low, low)] + sorted((s, e) for s, e, _ in vmas) + [(high, high)]
    for (s0, e0), (s1, e1) in zip(edges, edges[1:]):
        lo, hi = max(e0, low), min(s1, high)
        if hi - lo >= length:
            best = hi - length
    return best


def test_hint_used_when_free_and_rounded_down():
    p = Process()
    assert p.mmap(B + 0x123, 0x1000, "r--", "private,anon") == B
    # occupied: the hint is not used, placement is top-down below mmap_base
    a = p.mmap(B, 0x1000, "r--", "private,anon")
    assert a == p.mm.mmap_base - 0x1000


def test_fixed_noreplace_refuses_overlap():
    p = Process()
    p.mmap(B, 0x2000, "rw-", "private,anon,fixed")
    with pytest.raises(OSError) as e:
        p.mmap(B + 0x1000, 0x1000, "rw-", "private,anon,fixed_noreplace")
    assert e.value.errno == errno.EEXIST
    # 2.6.12 did not know the flag: the address is a hint, and it is taken
    old = Process(era="linux-2.6.12")
    old.mmap(B, 0x2000, "rw-", "private,anon,fixed")
    assert old.mmap(B + 0x1000, 0x1000, "rw-", "private,anon,fixed_noreplace") != B + 0x1000


@pytest.mark.parametrize("seed", range(5))
def test_topdown_matches_brute_force(seed):
    rnd = random.Random(seed)
    p = Process()
    low, high = 16 * 4096, p.mm.mmap_base
    live = []
    for _ in range(400):
        length = rnd.choice([0x1000, 0x3000, 0x8000, 0x20000])
        expect = brute_topdown(p.vmas(), low, high, length)
        got = p.mmap(0, length, rnd.choice(["rw-", "r--"]), "private,anon")
        assert got == expect
        live.append((got, length))
        if rnd.random() < 0.3:
            a, n = live.pop(rnd.randrange(len(live)))
            p.munmap(a, n)
