"""The kit's clock: one injected time source for the fake, the connector and the HTTP layer's waits.

Every wait the connector asks for goes through :meth:`KitClock.sleep`, which moves the clock instead of
sleeping and records the wait, so a check can say "the retry came 0.5 s after a 429 that asked for 7 s"
without a test ever sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class KitClock:
    """A wall clock that only moves when something waits on it (or a check moves it).

    It starts at the real time rounded down to the second, so a connector that reads the real clock to
    turn a ``Retry-After`` HTTP date into seconds is off by well under a second, not by years.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def timestamp(self) -> float:
        """Seconds since the epoch, for code that wants a float clock."""
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        """The HTTP layer's ``sleep``: record the wait and move the clock by it."""
        self.waits.append(seconds)
        self.advance(max(seconds, 0.0))


__all__ = ["KitClock"]
