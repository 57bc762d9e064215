"""The Google Ads connector: declarations, authenticated calls, the credential check and audience writes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorConfig,
    GiveUp,
    OperationSpec,
    RateLimit,
    RecordOutcome,
    WriteRecord,
)
from connectors.http import HttpLayer, Sleep

from ._auth import AccessTokens
from ._config import GoogleAdsConfig
from ._errors import NAME, Classifier, TokenRejected, json_object
from ._jobs import MAX_BATCH, OPERATIONS, JobStatus, JobWriter


class GoogleAdsConnector(Connector):
    """Google Ads Customer Match as a destination: people added to and removed from CRM-based user lists
    through the REST form of OfflineUserDataJobService.

    Each record's ``target`` is the person's key; its payload carries ``audience_id`` (the user list id),
    ``consent`` (``ad_user_data``/``ad_personalization``: GRANTED, DENIED or UNSPECIFIED) and the person's
    identifiers, which :mod:`connectors.google_ads.hashing` normalises and hashes before anything leaves
    the process. ``sleep`` (default: the HTTP layer's) is what job polling waits through.
    """

    name: ClassVar[str] = NAME
    config_model: ClassVar[type[ConnectorConfig]] = GoogleAdsConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations={
            # Set semantics make a repeated upload harmless; partial failure names each refused person.
            operation: OperationSpec(max_batch_size=MAX_BATCH, idempotent=True, per_record_results=True)
            for operation in OPERATIONS
        },
        rate_limit=RateLimit(10, 1.0, daily=15_000, daily_reset_timezone="America/Los_Angeles"),
    )

    config: GoogleAdsConfig

    def __init__(self, config: ConnectorConfig, http: HttpLayer, *, sleep: Sleep | None = None) -> None:
        if not isinstance(config, GoogleAdsConfig):
            raise TypeError(f"GoogleAdsConnector needs a GoogleAdsConfig, got {type(config).__name__}")
        super().__init__(config, http)
        self.classify = Classifier(secrets=config.secrets(), max_inline_wait=config.max_inline_wait_seconds)
        self.tokens = AccessTokens(http, config, self.classify)
        # Polling waits through the framework's sleep, so tests and the daemon's clock see every wait.
        self._sleep: Sleep = sleep or getattr(http, "sleep", None) or getattr(http, "_sleep", asyncio.sleep)
        self._jobs = JobWriter(config, self._call, self._sleep)

    @classmethod
    def client_headers(cls, config: ConnectorConfig) -> dict[str, str]:
        """The developer token and the manager account go on every request; the OAuth token changes hourly
        and is set per request."""
        cfg = cast(GoogleAdsConfig, config)
        headers = {"developer-token": cfg.developer_token.get_secret_value(), "Accept": "application/json"}
        if cfg.login_customer_id:
            headers["login-customer-id"] = cfg.login_customer_id
        return headers

    @classmethod
    def rate_limit_for(cls, config: ConnectorConfig) -> RateLimit:
        return cast(GoogleAdsConfig, config).rate_limit()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One API call with a current access token; a refused token is refreshed and the call sent once more."""
        url = f"/{self.config.api_version}{path}"
        token = await self.tokens.get()
        for last in (False, True):
            try:
                response = await self.http.request(method, url, classify=self.classify,
                                                   headers={"Authorization": f"Bearer {token}"}, **kwargs)
            except TokenRejected:
                if last:
                    raise
                token = await self.tokens.rejected(token)
                continue
            return json_object(response) or {}
        raise AssertionError("unreachable")  # pragma: no cover

    async def check(self) -> None:
        """Read the customer: bad credentials, developer token or manager link raise FixConfiguration."""
        query = "SELECT customer.id, customer.descriptive_name FROM customer LIMIT 1"
        await self._call("POST", f"/customers/{self.config.customer_id}/googleAds:search", json={"query": query})

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if operation not in OPERATIONS:
            raise GiveUp(f"unknown operation {operation!r}; operations: {', '.join(OPERATIONS)}", connector=NAME)
        if not records:
            return []
        return await self._jobs.write(operation, records)

    async def job_status(self, resource_name: str) -> JobStatus:
        """A job's state (the ``remote_id`` of the records it carried), e.g. to read its match-rate range."""
        return await self._jobs.status(resource_name)


__all__ = ["GoogleAdsConnector"]
