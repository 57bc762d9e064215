"""The modified-date index agrees with a brute-force scan under any sequence of writes."""

from __future__ import annotations

from itertools import islice

from hypothesis import given
from hypothesis import strategies as st

from connectors.sandbox._hubspot_search import ModifiedIndex

_ops = st.lists(st.tuples(st.integers(1, 30), st.integers(0, 50), st.booleans()), max_size=120)


@given(ops=_ops, lo=st.integers(0, 50), hi=st.integers(0, 60), skip=st.integers(0, 40))
def test_index_matches_brute_force(ops: list[tuple[int, int, bool]], lo: int, hi: int, skip: int) -> None:
    """Counts and offset scans equal a sorted brute-force view after sets, moves and removals
    (ties within one millisecond in write order, as the index documents)."""
    index = ModifiedIndex()
    truth: dict[int, tuple[int, int]] = {}
    expected: list[int] = []
    for n, (object_id, ms, remove) in enumerate(ops):
        if remove:
            index.remove(object_id)
            truth.pop(object_id, None)
        else:
            index.set(object_id, ms)
            if object_id not in truth or truth[object_id][0] != ms:
                truth[object_id] = (ms, n)
        expected = [i for (ms_, _), i in sorted((m, i) for i, m in truth.items()) if lo <= ms_ <= hi]
        assert index.count(lo, hi) == len(expected)
    assert list(islice(index.scan(lo, hi, skip), 10)) == expected[skip : skip + 10]
