"""The Salesforce connector: declarations, the credential check, and the thin methods that hand work to
the session, pull and write rooms."""

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

from ._config import SalesforceConfig
from ._errors import Classifier, Scrubber
from ._pull import Puller
from ._session import Session
from ._write import MAX_BATCH, Writer


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SalesforceConnector(Connector):
    """Leads/Contacts, Accounts, Opportunities, Tasks/Events/CampaignMembers and opt-outs in; scores, owners,
    follow-up tasks and account scores out, through the REST API with a connected app's refresh token."""

    name: ClassVar[str] = "salesforce"
    config_model: ClassVar[type[ConnectorConfig]] = SalesforceConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        streams=("accounts", "opportunities", "leads", "activities", "consent"),
        operations={
            "update_lead": OperationSpec(max_batch_size=MAX_BATCH, idempotent=True, per_record_results=True),
            "assign_owner": OperationSpec(max_batch_size=MAX_BATCH, idempotent=True, per_record_results=True),
            "create_task": OperationSpec(max_batch_size=MAX_BATCH, idempotent=False, per_record_results=True),
            # Declared last: operations are delivered in this order, so an Account field missing in the org (a
            # FixConfiguration that ends the run's delivery) never holds back the people's writes.
            "update_account": OperationSpec(max_batch_size=MAX_BATCH, idempotent=True, per_record_results=True),
        },
        # Enterprise base (config can change it); Sforce-Limit-Info corrects the daily figure live.
        rate_limit=RateLimit(25, 1.0, daily=100_000),
    )

    config: SalesforceConfig

    def __init__(self, config: ConnectorConfig, http: HttpLayer, *, now: Callable[[], datetime] = _utcnow) -> None:
        if not isinstance(config, SalesforceConfig):
            raise TypeError(f"SalesforceConnector needs a SalesforceConfig, got {type(config).__name__}")
        super().__init__(config, http)
        scrub = Scrubber((config.client_secret.get_secret_value(), config.refresh_token.get_secret_value()))
        self.classify = Classifier(scrub=scrub, quota_retry_seconds=config.quota_retry_seconds, now=now)
        self.session = Session(http, config, self.classify, scrub)
        self._puller = Puller(self.session, config)
        self._writer = Writer(self.session, config)

    def __repr__(self) -> str:
        return f"SalesforceConnector(instance_url={self.session.instance_url!r})"

    @classmethod
    def client_base_url(cls, config: ConnectorConfig) -> str:
        cfg = cast(SalesforceConfig, config)
        return cfg.instance_url or cfg.login_url

    @classmethod
    def client_headers(cls, config: ConnectorConfig) -> dict[str, str]:
        """No credentials here: the access token changes on refresh and travels per request."""
        return {"Accept": "application/json"}

    @classmethod
    def rate_limit_for(cls, config: ConnectorConfig) -> RateLimit:
        return cast(SalesforceConfig, config).rate_limit()

    async def check(self) -> None:
        """Refresh the token (bad credentials: FixConfiguration) and read the org's limits with it."""
        await self.session.refresh(None)
        await self.session.request("GET", "/limits")

    async def pull(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:  # type: ignore[override]
        async for page in self._puller.pull(stream, cursor):
            yield page

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if operation not in self.capabilities.operations:
            raise GiveUp(f"unknown operation {operation!r}", connector=self.name)
        if not records:
            return []
        if operation == "update_lead":
            return await self._writer.update_leads(records)
        if operation == "assign_owner":
            return await self._writer.assign_owners(records)
        if operation == "update_account":
            return await self._writer.update_accounts(records)
        return await self._writer.create_tasks(records)

    def payload_keys(self, operation: str) -> frozenset[str] | None:
        """update_account writes the keys ``account_score_fields`` maps (none: nothing is planned)."""
        if operation == "update_account":
            return frozenset(self.config.account_score_fields)
        return None

    async def lookup(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if operation == "create_task" and records:
            return await self._writer.lookup_tasks(records)
        return await super().lookup(operation, records)


__all__ = ["SalesforceConnector"]
