"""OAuth access tokens for the Google Ads API: refreshed from the refresh token, reused until they expire.

Google issues access tokens for about an hour. One token is shared by every request of a connector; it is
refreshed shortly before it expires and whenever the API refuses it (OAUTH_TOKEN_EXPIRED/INVALID), under a
lock so that concurrent requests trigger one refresh, not one each. The token is a secret: it goes only
into the ``Authorization`` header and into the classifier's scrub list.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from connectors.base import RetryLater
from connectors.google_ads._config import GoogleAdsConfig
from connectors.google_ads._errors import NAME, Classifier, classify_token, json_object
from connectors.http import HttpLayer

TOKEN_BUDGET = "oauth"  # noqa: S105 - a budget name, not a secret; a budget the Google Ads limiter does not know: token calls spend no API window
_EARLY_REFRESH = 60.0  # seconds before expiry when a token is no longer handed out
_DEFAULT_LIFETIME = 3_600.0


class AccessTokens:
    """The connector's current access token, refreshed on demand."""

    def __init__(self, http: HttpLayer, config: GoogleAdsConfig, classifier: Classifier,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._config = config
        self._classifier = classifier
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0  # for metrics and tests

    async def get(self) -> str:
        """A token valid for at least another minute."""
        token = self._token
        if token is not None and self._clock() < self._expires - _EARLY_REFRESH:
            return token
        return await self._refresh(stale=token)

    async def rejected(self, token: str) -> str:
        """The API refused ``token``: a fresh one (refreshed once, however many requests saw the refusal)."""
        return await self._refresh(stale=token)

    async def _refresh(self, *, stale: str | None) -> str:
        async with self._lock:
            if self._token is not None and self._token != stale and self._clock() < self._expires - _EARLY_REFRESH:
                return self._token  # another request refreshed it while this one waited
            config = self._config
            form = {"grant_type": "refresh_token", "client_id": config.client_id,
                    "client_secret": config.client_secret.get_secret_value(),
                    "refresh_token": config.refresh_token.get_secret_value()}
            response = await self._http.request("POST", config.token_url, classify=classify_token(self._classifier),
                                                budgets=(TOKEN_BUDGET,), data=form)
            body = json_object(response) or {}
            token = body.get("access_token")
            if not isinstance(token, str) or not token:
                raise RetryLater("OAuth token endpoint answered without an access token", connector=NAME)
            lifetime = body.get("expires_in")
            seconds = float(lifetime) if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) else None
            self._classifier.scrub.add(token)
            self._token = token
            self._expires = self._clock() + (seconds if seconds is not None else _DEFAULT_LIFETIME)
            self.refreshes += 1
            return token


__all__ = ["TOKEN_BUDGET", "AccessTokens"]
