"""The Meta connector: declarations, the credential check, audience writes and the match-rate read."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorConfig,
    FixConfiguration,
    GiveUp,
    OperationSpec,
    RateLimit,
    RecordOutcome,
    WriteRecord,
)
from connectors.http import HttpLayer

from ._config import MetaConfig
from ._errors import AudienceUnavailable, Classifier, as_int, json_object, make_observe
from ._sessions import MatchRate
from ._write import MAX_BATCH, METHODS, Writer

# account_status values that mean no audience of the account can be used (1 = active).
_DEAD_ACCOUNT = {2: "disabled", 101: "closed"}
CUSTOMER_FILE_SOURCES = ("USER_PROVIDED_ONLY", "PARTNER_PROVIDED_ONLY", "BOTH_USER_AND_PARTNER_PROVIDED")


def appsecret_proof(token: str, app_secret: str) -> str:
    """HMAC-SHA256 of the token keyed with the app secret, lowercase hex (Graph's ``appsecret_proof``)."""
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


class MetaConnector(Connector):
    """Meta Custom Audiences as a destination: people added to and removed from customer-file audiences.

    Each record's ``target`` is the person's key; its payload carries ``audience_id`` and the person's
    identifiers (``email``, ``phone``, ``first_name``, ``last_name``, ``city``, ``state``, ``zip``,
    ``country``, ``external_id``), which are normalised and hashed by :mod:`connectors.meta.hashing`
    before anything leaves the process.
    """

    name: ClassVar[str] = "meta"
    config_model: ClassVar[type[ConnectorConfig]] = MetaConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations={
            # Set semantics make resending harmless; Meta reports counts, not one result per row.
            operation: OperationSpec(max_batch_size=MAX_BATCH, idempotent=True, per_record_results=False)
            for operation in METHODS
        },
        rate_limit=RateLimit(83, 60),  # Limited access (5,000 an hour) paced per minute; see MetaConfig
    )

    config: MetaConfig

    def __init__(self, config: ConnectorConfig, http: HttpLayer) -> None:
        if not isinstance(config, MetaConfig):
            raise TypeError(f"MetaConnector needs a MetaConfig, got {type(config).__name__}")
        super().__init__(config, http)
        token = config.access_token.get_secret_value()
        secret = config.app_secret.get_secret_value() if config.app_secret is not None else None
        self._proof = appsecret_proof(token, secret) if secret else None
        self.classify = Classifier(secrets=(token, secret or "", self._proof or ""),
                                   max_inline_wait=config.max_inline_wait_seconds)
        self.observe = make_observe(config.rate_limit())
        self._writer = Writer(http, config, self.classify, self.observe, proof=self._proof)

    @classmethod
    def client_headers(cls, config: ConnectorConfig) -> dict[str, str]:
        """The token travels in a header, never in a URL (URLs end up in logs)."""
        token = cast(MetaConfig, config).access_token.get_secret_value()
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    @classmethod
    def rate_limit_for(cls, config: ConnectorConfig) -> RateLimit:
        return cast(MetaConfig, config).rate_limit()

    def _params(self, **params: str) -> dict[str, str]:
        if self._proof is not None:
            params["appsecret_proof"] = self._proof
        return params

    async def _get(self, path: str, **params: str) -> dict[str, Any]:
        response = await self.http.request("GET", path, classify=self.classify, observe=self.observe,
                                           params=self._params(**params))
        return json_object(response) or {}

    async def check(self) -> None:
        """Read the ad account: a bad token raises FixConfiguration (190), as does an unusable account."""
        account = f"act_{self.config.ad_account_id}"
        try:
            data = await self._get(f"/{account}", fields="id,name,account_status")
        except AudienceUnavailable as exc:
            raise FixConfiguration(f"ad account {account} does not exist or this token cannot use it: {exc.message}",
                                   connector=self.name, status=exc.status) from None
        dead = _DEAD_ACCOUNT.get(as_int(data.get("account_status")) or 1)
        if dead is not None:
            raise FixConfiguration(f"ad account {account} is {dead}", connector=self.name)

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if operation not in METHODS:
            raise GiveUp(f"unknown operation {operation!r}; operations: {', '.join(METHODS)}", connector=self.name)
        if not records:
            return []
        return await self._writer.write(operation, records)

    async def match_rate(self, audience_id: str, session_id: int | str) -> MatchRate:
        """Meta's counts for one upload session (the ``remote_id`` of the records it acknowledged)."""
        wanted = int(session_id)
        data = await self._get(f"/{audience_id}/sessions", session_id=str(wanted))
        entries = data.get("data") if isinstance(data.get("data"), list) else [data]
        for entry in entries:
            if isinstance(entry, dict) and str(entry.get("session_id")) == str(wanted):
                return MatchRate.from_graph(audience_id, wanted, entry)
        raise GiveUp(f"Meta reports no session {wanted} on audience {audience_id}", connector=self.name)

    async def create_audience(
        self, name: str, *, description: str = "", customer_file_source: str = "USER_PROVIDED_ONLY"
    ) -> str:
        """Create an empty customer-file audience in the ad account; returns its id.

        Not idempotent: a dropped connection raises OutcomeUnknown rather than risking a second audience.
        """
        if customer_file_source not in CUSTOMER_FILE_SOURCES:
            raise GiveUp(f"customer_file_source must be one of {CUSTOMER_FILE_SOURCES}", connector=self.name)
        form = self._params(name=name, subtype="CUSTOM", description=description,
                            customer_file_source=customer_file_source)
        response = await self.http.request(
            "POST", f"/act_{self.config.ad_account_id}/customaudiences", classify=self.classify,
            observe=self.observe, idempotent=False, data=form)
        return str((json_object(response) or {}).get("id"))


__all__ = ["CUSTOMER_FILE_SOURCES", "MetaConnector", "appsecret_proof"]
