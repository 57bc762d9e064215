"""One Marketo call, done right: a cached access token, at most ``max_concurrent_calls`` in flight, a new
token and one more try after 600/601/602, and overlong GETs sent as POST with ``_method=GET``.

The token comes from the identity service (client credentials, sent in a form body so the secret is never
in a URL) and is reused until shortly before its ``expires_in`` runs out: Marketo hands back the same token
until then anyway, and every identity call is a round trip. It travels in the ``Authorization`` header only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx

from connectors.base import FixConfiguration, RetryLater
from connectors.http import HttpLayer

from ._config import MarketoConfig
from ._errors import NAME, Classifier, TokenRejected, UriTooLong, classify_identity, envelope

IDENTITY_PATH = "/identity/oauth/token"
IDENTITY_BUDGET = "identity"  # identity calls do not spend the REST window (a budget the limiter lacks)
_MARGIN_SECONDS = 60.0  # renew this long before expiry so no call leaves with a token about to lapse


class MarketoApi:
    """Sends REST calls for one connector; every stream and write goes through :meth:`call`."""

    def __init__(self, http: HttpLayer, config: MarketoConfig, classify: Classifier,
                 now: Callable[[], datetime]) -> None:
        self._http = http
        self._config = config
        self._classify = classify
        self._now = now
        self._slots = asyncio.Semaphore(config.max_concurrent_calls)
        self._token: str | None = None
        self._expires_at: datetime | None = None
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0  # identity calls made, for metrics and tests

    @property
    def token_value(self) -> str | None:
        """The cached token (for scrubbing messages), never logged."""
        return self._token

    async def token(self, *, renew: bool = False) -> str:
        """A token valid for a while yet; fetched when there is none, it is about to expire, or ``renew``."""
        async with self._token_lock:  # concurrent callers share one identity call
            stale = self._expires_at is None or self._now() >= self._expires_at
            if self._token is None or stale or renew:
                await self._fetch_token()
            assert self._token is not None
            return self._token

    def forget(self, token: str) -> None:
        """Drop ``token`` if it is still the cached one (another call may have renewed it already)."""
        if self._token == token:
            self._token, self._expires_at = None, None

    async def _fetch_token(self) -> None:
        form = {"grant_type": "client_credentials", "client_id": self._config.client_id,
                "client_secret": self._config.client_secret.get_secret_value()}
        response = await self._http.request("POST", IDENTITY_PATH, classify=classify_identity,
                                            budgets=(IDENTITY_BUDGET,), data=form)
        self.token_fetches += 1
        body = envelope(response) or {}
        lifetime = float(body.get("expires_in") or 0)
        self._token = str(body["access_token"])
        margin = min(_MARGIN_SECONDS, lifetime / 10)
        self._expires_at = self._now() + timedelta(seconds=max(lifetime - margin, 0.0))

    async def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                   json: Any = None) -> dict[str, Any]:
        """One REST call; the success envelope. A token Marketo calls invalid or expired is replaced once;
        refused again, that is a configuration problem (the custom service lost its API role, say)."""
        for attempt in (1, 2):
            token = await self.token()
            try:
                return await self._send(method, path, params, json, token)
            except TokenRejected as exc:
                self.forget(token)
                if attempt == 2:
                    raise FixConfiguration(f"{exc.message} — a freshly issued token was refused too; check the "
                                           "custom service and its API role", connector=NAME) from None
        raise AssertionError("unreachable")

    async def _send(self, method: str, path: str, params: Mapping[str, Any] | None, json: Any,
                    token: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        query = httpx.QueryParams(params or {})
        if method == "GET" and self._too_long(path, query):
            return await self._as_post(path, query, headers)
        try:
            async with self._slots:
                response = await self._http.request(method, path, classify=self._classify, params=query,
                                                    json=json, headers=headers)
        except UriTooLong:
            if method != "GET":
                raise
            return await self._as_post(path, query, headers)
        return self._body(response)

    def _too_long(self, path: str, query: httpx.QueryParams) -> bool:
        url = self._http.client.base_url.join(path).copy_with(params=query)
        return len(str(url).encode()) > self._config.max_url_bytes

    async def _as_post(self, path: str, query: httpx.QueryParams, headers: dict[str, str]) -> dict[str, Any]:
        # Marketo's cure for 414: the same GET as a POST whose form body holds the query and _method=GET.
        form = str(httpx.QueryParams([*query.multi_items(), ("_method", "GET")])).encode()
        async with self._slots:
            response = await self._http.request(
                "POST", path, classify=self._classify, content=form,
                headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
        return self._body(response)

    @staticmethod
    def _body(response: httpx.Response) -> dict[str, Any]:
        body = envelope(response)
        if body is None:
            raise RetryLater("Marketo answered without a JSON object", connector=NAME, status=response.status_code)
        return body


__all__ = ["IDENTITY_PATH", "MarketoApi"]
