"""Run-length maps over integers: the storage under the page-table tree.

A page table is sparse, and so is everything the model keeps per page: a
terabyte faulted in is one run, not 2**28 entries.  ``RunMap`` stores
disjoint half-open runs ``[start, end)`` each carrying a value, coalescing
neighbours with equal values, so every operation costs in proportion to the
runs it meets (plus a logarithmic search), never to the length of a range.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Iterator


class RunMap:
    """Disjoint runs ``[start, end) -> value`` kept sorted, with per-value totals."""

    __slots__ = ("_s", "_e", "_v", "totals")

    def __init__(self) -> None:
        self._s: list[int] = []
        self._e: list[int] = []
        self._v: list[object] = []
        #: value -> number of integers carrying it
        self.totals: dict[object, int] = {}

    # --- inspection ---------------------------------------------------------
    def __len__(self) -> int:
        """Number of integers covered (not runs)."""
        return sum(self.totals.values())

    def __bool__(self) -> bool:
        return bool(self._s)

    @property
    def nruns(self) -> int:
        return len(self._s)

    def runs(self, lo: int | None = None, hi: int | None = None) -> Iterator[tuple[int, int, object]]:
        """Runs overlapping ``[lo, hi)``, clipped to it (all runs when unbounded)."""
        s, e, v = self._s, self._e, self._v
        if lo is None:
            yield from zip(list(s), list(e), list(v))
            return
        i = bisect_right(e, lo)
        j = len(s) if hi is None else bisect_left(s, hi)
        for k in range(i, j):
            a = s[k] if s[k] > lo else lo
            b = e[k] if hi is None or e[k] < hi else hi
            yield a, b, v[k]

    def spans(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The (start, end) of runs overlapping [lo, hi), unclipped: the fast path."""
        i = bisect_right(self._e, lo)
        j = bisect_left(self._s, hi)
        return list(zip(self._s[i:j], self._e[i:j]))

    def covers(self, lo: int, hi: int) -> bool:
        """Is every integer of [lo, hi) covered?"""
        i = bisect_right(self._e, lo)
        return i < len(self._s) and self._s[i] <= lo and self._e[i] >= hi

    def count(self, lo: int, hi: int) -> int:
        """How many integers of ``[lo, hi)`` are covered."""
        return sum(b - a for a, b, _ in self.runs(lo, hi))

    def get(self, x: int, default: object = None) -> object:
        i = bisect_right(self._s, x) - 1
        if i >= 0 and self._e[i] > x:
            return self._v[i]
        return default

    def __contains__(self, x: int) -> bool:
        i = bisect_right(self._s, x) - 1
        return i >= 0 and self._e[i] > x

    def gaps(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """Sub-ranges of ``[lo, hi)`` that no run covers."""
        pos = lo
        for a, b, _ in self.runs(lo, hi):
            if a > pos:
                yield pos, a
            pos = b
        if pos < hi:
            yield pos, hi

    def next_covered(self, x: int) -> int | None:
        """The smallest covered integer >= x, or None."""
        i = bisect_right(self._e, x)
        if i == len(self._s):
            return None
        return max(self._s[i], x)

    def last(self) -> int | None:
        """The largest covered integer, or None."""
        return self._e[-1] - 1 if self._e else None

    # --- changes --------------------------------------------------------------
    def _cut(self, lo: int, hi: int) -> tuple[list[tuple[int, int, object]], int]:
        """Remove ``[lo, hi)``; return the removed pieces and where a run at lo goes."""
        s, e, v, totals = self._s, self._e, self._v, self.totals
        i = bisect_right(e, lo)
        j = bisect_left(s, hi)
        if i >= j:
            return [], i
        removed = []
        for k in range(i, j):
            a = s[k] if s[k] > lo else lo
            b = e[k] if e[k] < hi else hi
            removed.append((a, b, v[k]))
            left = totals[v[k]] - (b - a)
            if left:
                totals[v[k]] = left
            else:
                del totals[v[k]]
        ns: list[int] = []
        ne: list[int] = []
        nv: list[object] = []
        if s[i] < lo:
            ns.append(s[i]); ne.append(lo); nv.append(v[i])
        pos = i + len(ns)
        if e[j - 1] > hi:
            ns.append(hi); ne.append(e[j - 1]); nv.append(v[j - 1])
        s[i:j] = ns
        e[i:j] = ne
        v[i:j] = nv
        return removed, pos

    def remove(self, lo: int, hi: int) -> list[tuple[int, int, object]]:
        """Uncover ``[lo, hi)``; return the pieces that were covered."""
        if lo >= hi:
            return []
        return self._cut(lo, hi)[0]

    def set(self, lo: int, hi: int, value: object = True) -> list[tuple[int, int, object]]:
        """Cover ``[lo, hi)`` with ``value``; return the pieces it replaced."""
        if lo >= hi:
            return []
        removed, i = self._cut(lo, hi)
        s, e, v = self._s, self._e, self._v
        self.totals[value] = self.totals.get(value, 0) + (hi - lo)
        # coalesce with equal neighbours (their lengths are already counted)
        if i > 0 and e[i - 1] == lo and v[i - 1] == value:
            i -= 1
            lo = s[i]
            del s[i], e[i], v[i]
        if i < len(s) and s[i] == hi and v[i] == value:
            hi = e[i]
            del s[i], e[i], v[i]
        s.insert(i, lo)
        e.insert(i, hi)
        v.insert(i, value)
        return removed

    def add(self, lo: int, hi: int, value: object = True) -> int:
        """Cover the uncovered parts of ``[lo, hi)`` with value; return how many were new."""
        new = 0
        for a, b in list(self.gaps(lo, hi)):
            self.set(a, b, value)
            new += b - a
        return new

    def clear(self) -> None:
        self._s.clear(); self._e.clear(); self._v.clear(); self.totals.clear()
