"""Read-ahead keeps order, delivers what came before a failure, and stops reading when the caller stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sync.prefetch import prefetch


class Source:
    """Counts how far it was read; fails at ``fail_at`` if given."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at, self.read, self.closed = n, fail_at, 0, False

    async def items(self) -> AsyncIterator[int]:
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise RuntimeError(f"broken at {i}")
                self.read += 1
                await asyncio.sleep(0)
                yield i
        finally:
            self.closed = True


async def _collect(source: AsyncIterator[int], depth: int) -> list[int]:
    return [x async for x in prefetch(source, depth)]


def test_items_arrive_in_order() -> None:
    """Every item arrives once, in the source's order, whatever the depth."""
    for depth in (1, 2, 5):
        assert asyncio.run(_collect(Source(20).items(), depth)) == list(range(20))


def test_failure_arrives_after_earlier_items() -> None:
    """A source error is raised only after the items read before it were handed over."""
    got: list[int] = []

    async def run() -> None:
        async for x in prefetch(Source(10, fail_at=4).items(), 3):
            got.append(x)

    with pytest.raises(RuntimeError, match="broken at 4"):
        asyncio.run(run())
    assert got == [0, 1, 2, 3]


def test_reads_ahead_while_the_caller_works() -> None:
    """While the caller holds an item, the source is read ahead by at most ``depth`` more (plus one waiting)."""
    source = Source(100)
    seen: list[int] = []

    async def run() -> None:
        async for x in prefetch(source.items(), 2):
            for _ in range(10):
                await asyncio.sleep(0)  # the caller "works" without blocking the loop
            seen.append(source.read - x - 1)
            if x == 5:
                break

    asyncio.run(run())
    assert max(seen) >= 2  # it really read ahead
    assert max(seen) <= 3  # but not without bound
    assert source.closed  # and leaving early closed the source


def test_depth_must_be_positive() -> None:
    """A depth below one is refused with a clear error."""
    with pytest.raises(ValueError, match="depth"):
        asyncio.run(_collect(Source(1).items(), 0))
