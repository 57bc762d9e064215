"""The OAuth 2.0 refresh-token flow and every authenticated request.

Salesforce's token answer carries no ``expires_in`` (the lifetime is the org's session timeout), so the
access token is kept until the API refuses it: on 401 ``INVALID_SESSION_ID`` the session is refreshed once
and the request sent again; a refusal of the fresh token is a :class:`FixConfiguration`. Concurrent
requests that meet the same expiry share one refresh. The token answer names the org's instance URL, and
API calls go there from then on. Secrets stay here: they travel in the form body and the
``Authorization`` header only, and are scrubbed from every message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from connectors.base import FixConfiguration, RetryLater
from connectors.http import HttpLayer

from ._config import SalesforceConfig
from ._errors import NAME, Classifier, Scrubber, SessionExpired, oauth_classify, observe, read_json


class Session:
    """One org's access token and instance URL, refreshed on demand."""

    def __init__(self, http: HttpLayer, config: SalesforceConfig, classify: Classifier, scrub: Scrubber) -> None:
        self._http = http
        self._config = config
        self._classify = classify
        self._scrub = scrub
        self._token: str | None = None
        self._lock = asyncio.Lock()
        self.instance_url = config.instance_url or config.login_url
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"Session(instance_url={self.instance_url!r}, token={'***' if self._token else None})"

    async def token(self) -> str:
        return self._token if self._token is not None else await self.refresh(None)

    async def refresh(self, stale: str | None) -> str:
        """A fresh access token; when another request already replaced ``stale``, that one is used."""
        async with self._lock:
            if self._token is not None and self._token != stale:
                return self._token
            cfg = self._config
            form = {"grant_type": "refresh_token", "client_id": cfg.client_id,
                    "client_secret": cfg.client_secret.get_secret_value(),
                    "refresh_token": cfg.refresh_token.get_secret_value()}
            response = await self._http.request(
                "POST", f"{cfg.login_url}/services/oauth2/token", classify=oauth_classify(self._scrub),
                data=form, headers={"Accept": "application/json"},
            )
            data = read_json(response)
            token = data.get("access_token") if isinstance(data, Mapping) else None
            if not isinstance(token, str) or not token:
                raise RetryLater("token endpoint answered without an access_token", connector=NAME,
                                 status=response.status_code)
            self._scrub.add(token)
            instance = data.get("instance_url")
            if isinstance(instance, str) and instance.startswith(("https://", "http://")):
                self.instance_url = instance.rstrip("/")
            self._token = token
            self.refreshes += 1
            return token

    def url(self, path: str) -> str:
        """An absolute URL on the instance (``nextRecordsUrl`` values are instance-relative paths)."""
        if path.startswith(("https://", "http://")):
            return path
        if not path.startswith("/services/"):
            path = f"{self._config.api_root()}{path}"
        return f"{self.instance_url}{path}"

    async def request(self, method: str, path: str, *, idempotent: bool = True,
                      headers: Mapping[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """Send with the current token; on an expired session refresh once and send again."""
        token = await self.token()
        for attempt in (1, 2):
            sent = {**(headers or {}), "Authorization": f"Bearer {token}"}
            try:
                return await self._http.request(method, self.url(path), classify=self._classify, observe=observe,
                                                idempotent=idempotent, headers=sent, **kwargs)
            except SessionExpired as exc:
                if attempt == 2:
                    raise FixConfiguration(
                        f"Salesforce refused a freshly refreshed session ({exc.message}) — check the connected "
                        "app's policies and the integration user's API access", connector=NAME, status=exc.status,
                    ) from None
                token = await self.refresh(token)
        raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["Session"]
