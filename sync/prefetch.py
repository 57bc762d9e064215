"""Read ahead of an async source, so the vendor works on the next page while we store this one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_END = object()


async def prefetch(source: AsyncIterator[T], depth: int = 2) -> AsyncIterator[T]:
    """Yield ``source``'s items in order while a task fetches up to ``depth`` items ahead.

    An error from the source arrives after the items fetched before it, exactly where it happened, so the
    caller stores everything it was given before it sees the failure. Leaving early cancels the read-ahead.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=depth)

    async def read() -> None:
        try:
            async for item in source:
                await queue.put(item)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            await queue.put(_Failed(exc))
            return
        await queue.put(_END)

    reader = asyncio.create_task(read())
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


__all__ = ["prefetch"]
