"""Google Ads connector settings: OAuth client and refresh token, developer token, the customer (and the
manager it is reached through), request sizes, job polling and the rate budget."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors.base import ConnectorConfig, RateLimit
from connectors.google_ads.hashing import normalize_country

MAX_IDENTIFIERS_PER_REQUEST = 100_000  # across all UserData of one addOperations request (apis.md §5.4)
RECOMMENDED_IDENTIFIERS_PER_REQUEST = 10_000  # what the Google Ads API team recommends per call


def _customer_id(value: str) -> str:
    digits = value.strip().replace("-", "")
    if not digits.isdigit():
        raise ValueError("must be a Google Ads customer id: 10 digits, dashes allowed (123-456-7890)")
    return digits


class GoogleAdsConfig(ConnectorConfig):
    """Settings of one Google Ads customer (the account that owns the Customer Match lists).

    ``login_customer_id`` is the manager (MCC) account the credentials act through; leave it unset when the
    OAuth user has direct access to ``customer_id``.
    """

    developer_token: SecretStr
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    refresh_token: SecretStr
    customer_id: str
    login_customer_id: str | None = None
    base_url: str = "https://googleads.googleapis.com"
    # The REST shapes used here are the same from v15 on; bump as Google sunsets versions (about a year each).
    api_version: str = Field("v21", pattern=r"^v\d+$")
    token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - an endpoint, not a secret
    # CONTACT_INFO lists take hashed e-mails, phones and addresses; CRM_ID lists take the external id only.
    upload_key_type: Literal["CONTACT_INFO", "CRM_ID"] = "CONTACT_INFO"
    identifiers_per_request: int = Field(RECOMMENDED_IDENTIFIERS_PER_REQUEST, ge=1, le=MAX_IDENTIFIERS_PER_REQUEST)
    # Country (alpha-2 or a name) assumed for people without one: gives national phone numbers their calling
    # code and addresses their country_code. None: such phones and addresses are left out.
    default_country: str | None = None
    # After :run, how often and how long write_batch watches the job. Google takes minutes to many hours;
    # a job still running when the wait ends counts as accepted (see connectors.google_ads._jobs).
    poll_interval_seconds: float = Field(30.0, gt=0)
    max_poll_seconds: float = Field(300.0, ge=0)
    # Google publishes no per-second limit for this service; a gentle pace leaves room for other tools
    # on the same developer token. Basic access allows 15,000 operations a day (one request = one).
    rate_limit_requests: int = Field(10, ge=1)
    rate_limit_window_seconds: float = Field(1.0, gt=0)
    daily_limit: int | None = Field(15_000, ge=1)
    # A RESOURCE_EXHAUSTED whose retryDelay is longer than this ends the run (QuotaExhausted) instead of
    # holding the request open; the next run resumes after Google's delay.
    max_inline_wait_seconds: float = Field(300.0, ge=0)

    @field_validator("base_url", "token_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return cls.http_base_url(value)

    @field_validator("customer_id")
    @classmethod
    def _customer(cls, value: str) -> str:
        return _customer_id(value)

    @field_validator("login_customer_id")
    @classmethod
    def _login_customer(cls, value: str | None) -> str | None:
        return _customer_id(value) if value is not None else None

    @field_validator("default_country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = normalize_country(value)
        if code is None:
            raise ValueError(f"{value!r} is not a country this connector knows (use an ISO 3166 code)")
        return code

    def rate_limit(self) -> RateLimit:
        """The request budget of this developer token's access level."""
        return RateLimit(self.rate_limit_requests, self.rate_limit_window_seconds, daily=self.daily_limit,
                         daily_reset_timezone="America/Los_Angeles")  # Google resets daily quotas at Pacific midnight

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing messages."""
        return tuple(s.get_secret_value() for s in (self.developer_token, self.client_secret, self.refresh_token))


__all__ = ["MAX_IDENTIFIERS_PER_REQUEST", "RECOMMENDED_IDENTIFIERS_PER_REQUEST", "GoogleAdsConfig"]
