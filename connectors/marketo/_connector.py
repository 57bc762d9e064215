"""The Marketo connector: declarations, the credential check, and thin methods that hand work to the
pull and write rooms. Every call goes through :class:`~connectors.marketo._api.MarketoApi`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import ClassVar, cast

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorConfig,
    GiveUp,
    OperationSpec,
    Page,
    RateLimit,
    RecordOutcome,
    WriteRecord,
)
from connectors.http import HttpLayer

from ._api import MarketoApi
from ._config import MarketoConfig
from ._errors import Classifier
from ._pull import Puller
from ._write import AUDIENCE_OPERATIONS, MAX_BATCH, Writer, check_batch


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MarketoConnector(Connector):
    """Marketo Engage: leads, activities and email opt-outs in; scores and static-list membership out.

    ``update_lead`` targets a lead id; ``audience_add``/``audience_remove`` target a lead id with the static
    list's id as the payload's ``audience_id``.
    """

    name: ClassVar[str] = "marketo"
    config_model: ClassVar[type[ConnectorConfig]] = MarketoConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        streams=("leads", "activities", "consent"),
        operations={
            # updateOnly by id and list membership are idempotent; Marketo answers per record, in order.
            operation: OperationSpec(max_batch_size=MAX_BATCH, idempotent=True, per_record_results=True)
            for operation in ("update_lead", *AUDIENCE_OPERATIONS)
        },
        # Per instance, shared by every integration: 100 calls / 20 s; 50,000 a day reset at midnight Central.
        rate_limit=RateLimit(100, 20, daily=50_000, daily_reset_timezone="America/Chicago"),
    )

    config: MarketoConfig

    def __init__(self, config: ConnectorConfig, http: HttpLayer, *, now: Callable[[], datetime] = _utcnow) -> None:
        if not isinstance(config, MarketoConfig):
            raise TypeError(f"MarketoConnector needs a MarketoConfig, got {type(config).__name__}")
        super().__init__(config, http)
        secret = config.client_secret.get_secret_value()
        self.classify = Classifier(secrets=lambda: (secret, self.api.token_value or ""),
                                   reset_zone=config.daily_reset_timezone, now=now)
        self.api = MarketoApi(http, config, self.classify, now)
        self._puller = Puller(self.api, config, now)
        self._writer = Writer(self.api, config)

    @classmethod
    def client_headers(cls, config: ConnectorConfig) -> dict[str, str]:
        """No credentials here: the token is fetched at run time and sent per request. The instance (the base
        URL) is what Marketo's limits are counted by, so it alone names the rate budget."""
        return {"Accept": "application/json"}

    @classmethod
    def rate_limit_for(cls, config: ConnectorConfig) -> RateLimit:
        return cast(MarketoConfig, config).rate_limit()

    async def check(self) -> None:
        """A fresh token (bad credentials: FixConfiguration) and one cheap authenticated read."""
        await self.api.token(renew=True)
        await self.api.call("GET", "/rest/v1/activities/types.json")

    async def pull(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:  # type: ignore[override]
        if stream == "leads":
            pages = self._puller.leads(cursor)
        elif stream == "activities":
            pages = self._puller.activities(cursor)
        elif stream == "consent":
            pages = self._puller.consent(cursor)
        else:
            known = ", ".join(self.capabilities.streams)
            raise GiveUp(f"unknown stream {stream!r}; streams: {known}", connector=self.name)
        async for page in pages:
            yield page

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if operation not in self.capabilities.operations:
            known = ", ".join(self.capabilities.operations)
            raise GiveUp(f"unknown operation {operation!r}; operations: {known}", connector=self.name)
        if not records:
            return []
        check_batch(records)
        if operation == "update_lead":
            return await self._writer.update_leads(records)
        return await self._writer.membership(operation, records)


__all__ = ["MarketoConnector"]
