"""The pytest face of the kit: subclass, fill in the spec, and pytest collects the checks as tests.

Each test runs one check function (also callable on its own, see :data:`SOURCE_CHECKS` and
:data:`DESTINATION_CHECKS`); a check that does not apply is skipped with its reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest

from . import _checks_common as common
from . import _checks_destination as dest
from . import _checks_source as source
from ._failures import NotApplicable
from ._spec import ConnectorKit, DestinationKit, SourceKit

SOURCE_CHECKS: dict[str, Callable[[Any, str], Awaitable[None]]] = {
    "canonical_records": source.canonical_records,
    "paging_to_the_end": source.paging_to_the_end,
    "incremental_cursor": source.incremental_cursor,
    "resume_after_failure": source.resume_after_failure,
    "late_rows_in_overlap": source.late_rows_in_overlap,
}
DESTINATION_CHECKS: dict[str, Callable[[Any, str], Awaitable[None]]] = {
    "one_batch": dest.one_batch,
    "batch_limits": dest.batch_limits,
    "empty_batch": dest.empty_batch,
    "retry_after_seconds": dest.retry_after_seconds,
    "retry_after_http_date": dest.retry_after_http_date,
    "server_error_then_success": dest.server_error_then_success,
    "partial_batch": dest.partial_batch,
    "safe_replay": dest.safe_replay,
    "idempotency_key_lookup": dest.idempotency_key_lookup,
}
COMMON_CHECKS: dict[str, Callable[[Any], Awaitable[None]]] = {
    "config_validation": common.config_validation,
    "secret_redaction": common.secret_redaction,
    "check_credentials": common.check_credentials,
    "no_real_network": common.no_real_network,
}


async def run_check(check: Awaitable[None]) -> None:
    """Await a check; a check that does not apply becomes a pytest skip."""
    try:
        await check
    except NotApplicable as exc:
        pytest.skip(str(exc))


class _Common(ConnectorKit):
    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    async def test_config_validation(self) -> None:
        """Unknown config keys are refused and errors name the field; credentials are SecretStr."""
        await run_check(common.config_validation(self))

    async def test_secret_redaction(self) -> None:
        """Planted secrets never show in reprs, errors, outcomes or logs."""
        await run_check(common.secret_redaction(self))

    async def test_check_credentials(self) -> None:
        """check() passes with good credentials and raises FixConfiguration with bad ones."""
        await run_check(common.check_credentials(self))

    async def test_no_real_network(self) -> None:
        """The connector reaches only the fake, never the network."""
        await run_check(common.no_real_network(self))


class SourceConformance(_Common, SourceKit):
    """Subclass as ``TestMySource(SourceConformance)``, set ``connector``, implement the hooks."""

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        _parametrize(self, metafunc)

    async def test_canonical_records(self, stream: str) -> None:
        """Pulled records are the stream's canonical records, with keys and timezone-aware times."""
        await run_check(source.canonical_records(self, stream))

    async def test_paging_to_the_end(self, stream: str) -> None:
        """A pull from scratch yields every row exactly once across pages and ends with a cursor."""
        await run_check(source.paging_to_the_end(self, stream))

    async def test_incremental_cursor(self, stream: str) -> None:
        """A pull from the stored cursor yields the changes and not the old rows."""
        await run_check(source.incremental_cursor(self, stream))

    async def test_resume_after_failure(self, stream: str) -> None:
        """A pull that fails mid-stream resumes from the stored cursor without losing a row."""
        await run_check(source.resume_after_failure(self, stream))

    async def test_late_rows_in_overlap(self, stream: str) -> None:
        """Rows arriving late inside the overlap window are read by the next pull."""
        await run_check(source.late_rows_in_overlap(self, stream))


class DestinationConformance(_Common, DestinationKit):
    """Subclass as ``TestMyDestination(DestinationConformance)``, set ``connector``, implement the hooks."""

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        _parametrize(self, metafunc)

    async def test_one_batch(self, operation: str) -> None:
        """A small batch is acknowledged and applied once per record."""
        await run_check(dest.one_batch(self, operation))

    async def test_batch_limits(self, operation: str) -> None:
        """A full batch lands whole and no request exceeds the vendor's per-request cap."""
        await run_check(dest.batch_limits(self, operation))

    async def test_empty_batch(self, operation: str) -> None:
        """An empty batch makes no call."""
        await run_check(dest.empty_batch(self, operation))

    async def test_retry_after_seconds(self, operation: str) -> None:
        """Retry-After in seconds is honoured."""
        await run_check(dest.retry_after_seconds(self, operation))

    async def test_retry_after_http_date(self, operation: str) -> None:
        """Retry-After as an HTTP date is honoured."""
        await run_check(dest.retry_after_http_date(self, operation))

    async def test_server_error_then_success(self, operation: str) -> None:
        """A 5xx is retried and the batch lands once."""
        await run_check(dest.server_error_then_success(self, operation))

    async def test_partial_batch(self, operation: str) -> None:
        """One refused record is REJECTED with a reason; its neighbours are acknowledged, in input order."""
        await run_check(dest.partial_batch(self, operation))

    async def test_safe_replay(self, operation: str) -> None:
        """An idempotent operation resent takes effect once."""
        await run_check(dest.safe_replay(self, operation))

    async def test_idempotency_key_lookup(self, operation: str) -> None:
        """A non-idempotent write with a lost answer is found by lookup() and not duplicated."""
        await run_check(dest.idempotency_key_lookup(self, operation))


class ConnectorConformance(SourceConformance, DestinationConformance):
    """For a connector that is both a source and a destination: every check of both."""

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        _parametrize(self, metafunc)


def _parametrize(kit: Any, metafunc: pytest.Metafunc) -> None:
    if "stream" in metafunc.fixturenames:
        metafunc.parametrize("stream", kit.streams())
    if "operation" in metafunc.fixturenames:
        operations = kit.operations()
        specs = kit.connector.capabilities.operations
        # Replay is for idempotent operations, look-up for the others: each test lists only its own.
        if metafunc.function.__name__ == "test_safe_replay":
            operations = [op for op in operations if specs[op].idempotent]
        elif metafunc.function.__name__ == "test_idempotency_key_lookup":
            operations = [op for op in operations if not specs[op].idempotent]
        metafunc.parametrize("operation", operations)


__all__ = [
    "COMMON_CHECKS",
    "DESTINATION_CHECKS",
    "SOURCE_CHECKS",
    "ConnectorConformance",
    "DestinationConformance",
    "SourceConformance",
    "run_check",
]
