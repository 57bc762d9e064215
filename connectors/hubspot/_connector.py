"""The HubSpot connector: declarations, and the thin methods that hand work to the pull and write rooms."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from connectors.base import (
    Budget,
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

from ._config import SEARCH_BUDGET, HubSpotConfig
from ._errors import Classifier, observe, read_json
from ._pull import Puller
from ._write import MAX_BATCH, Writer


def _utcnow() -> datetime:
    return datetime.now(UTC)


class HubSpotConnector(Connector):
    """Contacts, companies, deals and web/email events in; scores, owners, follow-up tasks and account scores out."""

    name: ClassVar[str] = "hubspot"
    config_model: ClassVar[type[ConnectorConfig]] = HubSpotConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        streams=("accounts", "opportunities", "leads", "activities"),
        # batch/read by id; events have no batch read by contact
        fetchable=("accounts", "opportunities", "leads"),
        operations={
            "update_lead": OperationSpec(max_batch_size=MAX_BATCH, idempotent=True, per_record_results=True),
            "create_task": OperationSpec(max_batch_size=MAX_BATCH, idempotent=False, per_record_results=True),
            # Declared last: operations are delivered in this order, so a company property missing in the portal
            # (a FixConfiguration that ends the run's delivery) never holds back the contacts' writes.
            "update_account": OperationSpec(max_batch_size=MAX_BATCH, idempotent=True, per_record_results=True),
        },
        # Free/Starter private app (config can raise it): 100 per 10 s, search 5 per second, 250k a day.
        rate_limit=RateLimit(100, 10, daily=250_000, budgets=(Budget(SEARCH_BUDGET, 5, 1.0),)),
    )

    config: HubSpotConfig

    def __init__(
        self, config: ConnectorConfig, http: HttpLayer, *, now: Callable[[], datetime] = _utcnow
    ) -> None:
        if not isinstance(config, HubSpotConfig):
            raise TypeError(f"HubSpotConnector needs a HubSpotConfig, got {type(config).__name__}")
        super().__init__(config, http)
        self.classify = Classifier(
            secret=config.token.get_secret_value(), reset_zone=config.daily_reset_timezone, now=now
        )
        self._puller = Puller(http, config, self.classify, observe)
        self._writer = Writer(http, config, self.classify, observe)

    @classmethod
    def client_headers(cls, config: ConnectorConfig) -> dict[str, str]:
        """Headers for the framework's client: the token lives there and nowhere else."""
        token = cast(HubSpotConfig, config).token.get_secret_value()
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    @classmethod
    def rate_limit_for(cls, config: ConnectorConfig) -> RateLimit:
        """The budget of this portal's tier (``capabilities.rate_limit`` is the smallest tier)."""
        return cast(HubSpotConfig, config).rate_limit()

    async def check(self) -> None:
        await self.http.request("GET", "/crm/v3/owners", classify=self.classify, observe=observe,
                                params={"limit": 1})

    async def pull(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:  # type: ignore[override]
        if stream in ("leads", "accounts"):
            pages = self._puller.objects(stream, cursor)
        elif stream == "opportunities":
            pages = self._puller.deals(cursor)
        elif stream == "activities":
            pages = self._puller.events(cursor)
        else:
            known = ", ".join(self.capabilities.streams)
            raise GiveUp(f"unknown stream {stream!r}; streams: {known}", connector=self.name)
        async for page in pages:
            yield page

    async def fetch(self, stream: str, keys: Sequence[str]) -> AsyncIterator[Page]:  # type: ignore[override]
        if stream not in self.capabilities.fetchable:
            known = ", ".join(self.capabilities.fetchable)
            raise GiveUp(f"cannot read {stream!r} by id; by id: {known}", connector=self.name)
        pages = self._puller.deals(None, keys) if stream == "opportunities" else self._puller.by_ids(stream, keys)
        async for page in pages:
            yield page

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if operation not in self.capabilities.operations:
            raise GiveUp(f"unknown operation {operation!r}", connector=self.name)
        if not records:
            return []
        if operation == "update_lead":
            return await self._writer.update_leads(records)
        if operation == "update_account":
            return await self._writer.update_accounts(records)
        return await self._writer.create_tasks(records)

    def payload_keys(self, operation: str) -> frozenset[str] | None:
        """update_account writes the keys ``account_score_properties`` maps (none: nothing is planned)."""
        if operation == "update_account":
            return frozenset(self.config.account_score_properties)
        return None

    async def lookup(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if operation == "create_task" and records:
            return await self._writer.lookup_tasks(records)
        return await super().lookup(operation, records)

    async def list_owners(self) -> list[dict[str, Any]]:
        """Every active owner (``id, email, firstName, lastName, userId, teams…``), all pages."""
        owners: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if after is not None:
                params["after"] = after
            response = await self.http.request(
                "GET", "/crm/v3/owners", classify=self.classify, observe=observe, params=params
            )
            data = read_json(response)
            if not isinstance(data, dict):
                data = {}
            owners.extend(row for row in data.get("results") or () if isinstance(row, dict))
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return owners


__all__ = ["HubSpotConnector"]
