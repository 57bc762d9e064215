"""What a plugin author tells the kit about a connector: a few attributes and hooks, nothing else.

:class:`ConnectorKit` holds what every check needs (the connector class, its fake, a valid config, bad
credentials); :class:`SourceKit` adds how to put a row into the fake, :class:`DestinationKit` how to make
write records, which record the fake refuses, and how to count a record's effect in the fake. The
pytest-facing classes (:mod:`connectors.testing._suites`) inherit these and add the tests.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from starlette.types import ASGIApp

from connectors.base import Connector, ConnectorConfig, WriteRecord
from connectors.http import HttpLayer, RetrySettings

from ._clock import KitClock
from ._faults import FakeResponse, RecordedCall


class ConnectorKit:
    """The part of a connector's kit spec every check reads."""

    #: The connector class under test.
    connector: ClassVar[type[Connector]]
    #: Config values that must make ``check()`` raise FixConfiguration (merged over :meth:`config`).
    #: Put a recognisable planted value in each secret: the redaction checks look for it everywhere.
    bad_credentials: ClassVar[Mapping[str, Any]] = {}
    #: "loopback": the fake is served on a real 127.0.0.1 socket; "asgi": in process (faster, no sockets).
    transport: ClassVar[str] = "loopback"
    #: The retry policy of the HTTP layer the kit builds (jitter off: waits are checked to the second).
    retry: ClassVar[RetrySettings] = RetrySettings(attempts=3, jitter=0.0)

    def make_fake(self, clock: KitClock) -> Any:
        """A fresh fake of the vendor for one check; give it ``clock`` (a callable returning UTC now)."""
        raise NotImplementedError("make_fake(clock) must return a fresh fake of the vendor's API")

    def fake_app(self, fake: Any) -> ASGIApp:
        """The fake's ASGI app (default: its ``app`` attribute)."""
        app: ASGIApp = fake.app
        return app

    def config(self, base_url: str) -> dict[str, Any]:
        """A valid config dict pointing at ``base_url`` (where the kit serves the fake), with planted secrets."""
        raise NotImplementedError("config(base_url) must return a valid config dict for the connector")

    def make_connector(self, config: ConnectorConfig, http: HttpLayer, clock: KitClock) -> Connector:
        """Build the connector (override to pass the kit's clock where the connector takes one)."""
        return self.connector(config, http)


class SourceKit(ConnectorKit):
    """What the source checks need besides :class:`ConnectorKit`."""

    #: The streams to check (default: every stream the connector declares).
    streams_under_test: ClassVar[Sequence[str]] = ()
    #: The connector's overlap window: rows modified this long before the cursor are re-read. 0: none.
    overlap_seconds: ClassVar[float] = 0.0
    #: Rows seeded for paging checks; with the page size in :meth:`config`, at least three pages.
    paging_rows: ClassVar[int] = 12

    def add_row(self, fake: Any, stream: str, index: int, modified_at: datetime) -> str:
        """Put one row of ``stream`` into the fake, last modified at ``modified_at``; return the key the
        connector will give its record (``Record.key``). ``index`` is unique within a check."""
        raise NotImplementedError("add_row(fake, stream, index, modified_at) must seed one row and return its key")

    def streams(self) -> list[str]:
        return list(self.streams_under_test or self.connector.capabilities.streams)


class DestinationKit(ConnectorKit):
    """What the destination checks need besides :class:`ConnectorKit`."""

    #: The operations to check (default: every operation the connector declares).
    operations_under_test: ClassVar[Sequence[str]] = ()
    #: The vendor's cap on records in one request, per operation (default: the operation's max_batch_size).
    max_records_per_request: ClassVar[Mapping[str, int]] = {}
    #: The largest batch the kit sends (a max_batch_size of 50,000 is checked with this many).
    batch_probe: ClassVar[int] = 250
    #: The forms of wait the vendor's rate-limit answer can carry ("seconds", "http-date"); a form the
    #: vendor never sends is not checked (Google's ``retryDelay`` is seconds only, say).
    retry_after_forms: ClassVar[Sequence[str]] = ("seconds", "http-date")

    def sample_records(self, fake: Any, operation: str, count: int) -> list[WriteRecord]:
        """``count`` records the fake accepts, with distinct idempotency keys (set up targets in the fake)."""
        raise NotImplementedError("sample_records(fake, operation, count) must return records the fake accepts")

    def rejected_record(self, fake: Any, operation: str) -> WriteRecord | None:
        """A record the fake refuses on its own (unknown target, invalid value); ``None``: there is none."""
        return None

    def effects(self, fake: Any, operation: str, records: Sequence[WriteRecord]) -> Mapping[str, int]:
        """How many times each record (by idempotency key) took effect in the fake: 0, 1, or more for a
        duplicate. This is how the kit sees lost and duplicated writes."""
        raise NotImplementedError("effects(fake, operation, records) must count each record's effect in the fake")

    def count_records(self, call: RecordedCall, operation: str) -> int | None:
        """How many records one vendor request carries (default: the longest list in its JSON body)."""
        return _longest_list(call.json_body())

    def is_write(self, call: RecordedCall) -> bool:
        """Whether a request writes (default: any method but GET/HEAD/OPTIONS)."""
        return call.method not in ("GET", "HEAD", "OPTIONS")

    def throttle_response(self, retry_after: str) -> FakeResponse:
        """The vendor's rate-limit answer carrying ``Retry-After: retry_after`` (default: a plain 429)."""
        return FakeResponse.json(429, {"status": "error", "message": "Too many requests (conformance kit)"},
                                 {"Retry-After": retry_after})

    def server_error_response(self) -> FakeResponse:
        """The vendor's transient server error (default: a plain 503)."""
        return FakeResponse.json(503, {"status": "error", "message": "Service unavailable (conformance kit)"})

    def operations(self) -> list[str]:
        return list(self.operations_under_test or self.connector.capabilities.operations)

    def request_cap(self, operation: str) -> int:
        spec = self.connector.capabilities.operations[operation]
        return int(self.max_records_per_request.get(operation, spec.max_batch_size))


def _longest_list(data: Any) -> int | None:
    best: int | None = None
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            best = max(best or 0, len(item))
            stack.extend(x for x in item if isinstance(x, dict))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, str) and item.startswith(("[", "{")):
            with contextlib.suppress(ValueError):
                stack.append(json.loads(item))  # a form field holding JSON text
    return best


__all__ = ["ConnectorKit", "DestinationKit", "SourceKit"]
