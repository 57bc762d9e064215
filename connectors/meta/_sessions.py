"""Upload sessions: the client-chosen session id, and the match rate Meta reports for a session.

A write batch is sent to each audience as one session of up to ``rows_per_request`` rows per request
(``batch_seq`` 1…n, ``last_batch_flag`` on the last). The session id is derived from the batch itself, so
the same batch sent again (after a dropped connection, or by the next run) reuses the same id and batch
numbers, and Meta's per-session counts describe the upload instead of adding up every attempt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.meta._errors import as_int

# Graph ids travel as JSON numbers; keeping them within 2**53 keeps them exact in every JSON parser.
_SESSION_ID_BITS = 53


def session_id_for(operation: str, audience_id: str, keys: Iterable[str], rows_per_request: int) -> int:
    """A positive id, stable for the same operation, audience, record keys (in any order) and request size."""
    text = "\x1f".join([operation, audience_id, str(rows_per_request), *sorted(keys)])
    number = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - _SESSION_ID_BITS)
    return number or 1


@dataclass(frozen=True, slots=True)
class MatchRate:
    """Meta's counts for one upload session and the match rate they give.

    ``rate`` is matched ÷ received, where received counts every row of the session, invalid ones included
    (expectations.md 16): a file full of unusable rows shows as a poor match, not a good one.
    Meta fills these in as it processes the session, which can take hours; ``stage`` and ``progress``
    say how far it got.
    """

    audience_id: str
    session_id: int
    received: int
    matched: int
    invalid: int
    stage: str | None = None
    progress: str | None = None

    @property
    def rate(self) -> float | None:
        """matched ÷ received (``None`` until Meta has counted any row)."""
        return self.matched / self.received if self.received else None

    @classmethod
    def from_graph(cls, audience_id: str, session_id: int, entry: Mapping[str, Any]) -> MatchRate:
        """From one entry of ``GET /{audience_id}/sessions`` (counts arrive as numeric strings)."""
        stage, progress = entry.get("stage"), entry.get("progress")
        return cls(
            audience_id=audience_id,
            session_id=session_id,
            received=as_int(entry.get("num_received")) or 0,
            matched=as_int(entry.get("num_matched")) or 0,
            invalid=as_int(entry.get("num_invalid_entries")) or 0,
            stage=str(stage) if stage is not None else None,
            progress=str(progress) if progress is not None else None,
        )


__all__ = ["MatchRate", "session_id_for"]
