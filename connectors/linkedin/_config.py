"""LinkedIn connector settings: the member's token, the ad account, API version, request sizes and pacing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors.base import ConnectorConfig, RateLimit

# LinkedIn documents no cap on elements in one BATCH_CREATE to /dmpSegments/{id}/users; 5,000 is the
# figure commonly cited (apis.md §6.2, [U]), so it is both the default and the ceiling here.
MAX_ELEMENTS_PER_REQUEST = 5_000


class LinkedInConfig(ConnectorConfig):
    """Settings of one LinkedIn ad account's matched audiences, acting as one member (the token's owner,
    who needs the ``rw_dmp_segments`` permission and a role other than VIEWER on the account)."""

    access_token: SecretStr
    ad_account_id: str  # digits; "urn:li:sponsoredAccount:…" is accepted and reduced to them
    base_url: str = "https://api.linkedin.com/rest"
    # Monthly versions are sunset about a year after release: keep this within the last twelve months.
    linkedin_version: str = Field("202610", pattern=r"^\d{6}(\.\d{2})?$")
    elements_per_request: int = Field(MAX_ELEMENTS_PER_REQUEST, ge=1, le=MAX_ELEMENTS_PER_REQUEST)
    email_hash: Literal["SHA256", "SHA512"] = "SHA256"
    # Names travel in clear text (LinkedIn does not take them hashed); off by default, so only e-mail hashes
    # leave. On, a person without a usable e-mail is still sent by first and last name (and country).
    send_names: bool = False
    # /dmpSegments/{id}/users allows 600 requests a minute per member; daily limits are not published.
    rate_limit_requests: int = Field(600, ge=1)
    rate_limit_window_seconds: float = Field(60.0, gt=0)
    daily_limit: int | None = Field(None, ge=1)
    # LinkedIn's 429 says neither why nor for how long. The connector waits this long after the first one,
    # twice as long after each further one in a row, and once the next wait would take the streak past
    # max_inline_wait_seconds it takes the daily limit to be spent: the run ends (QuotaExhausted) and
    # resumes after midnight UTC, when LinkedIn resets daily limits.
    throttle_backoff_seconds: float = Field(60.0, gt=0)
    max_inline_wait_seconds: float = Field(300.0, ge=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return cls.http_base_url(value)

    @field_validator("ad_account_id")
    @classmethod
    def _account(cls, value: str) -> str:
        digits = value.strip().removeprefix("urn:li:sponsoredAccount:")
        if not digits.isdigit():
            raise ValueError("must be the numeric ad account id (or urn:li:sponsoredAccount:N)")
        return digits

    def rate_limit(self) -> RateLimit:
        return RateLimit(self.rate_limit_requests, self.rate_limit_window_seconds, daily=self.daily_limit)


__all__ = ["MAX_ELEMENTS_PER_REQUEST", "LinkedInConfig"]
