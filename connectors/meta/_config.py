"""Meta connector settings: the token, the ad account, request sizes and the rate budget."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from connectors.base import ConnectorConfig, RateLimit
from connectors.meta.hashing import normalize_country

MAX_ROWS_PER_REQUEST = 10_000  # Meta's documented cap on rows in one /users request (apis.md §4.3)


class MetaConfig(ConnectorConfig):
    """Settings of one Meta ad account. The token is typically a system user's; ``app_secret`` turns on
    ``appsecret_proof`` (required when the app enforces it)."""

    access_token: SecretStr
    ad_account_id: str = Field(min_length=1)  # digits; a leading "act_" is accepted and dropped
    base_url: str = "https://graph.facebook.com/v25.0"
    app_secret: SecretStr | None = None
    rows_per_request: int = Field(MAX_ROWS_PER_REQUEST, ge=1, le=MAX_ROWS_PER_REQUEST)
    # Country (alpha-2 or name) assumed for rows without one, to give national phone numbers their calling
    # code and to read US ZIP and state codes. None: such rows are sent as written.
    default_country: str | None = None
    # Meta's custom_audience budget is per ad account and hour: 5,000 calls on Limited access, 190,000 + 40
    # per active audience on Full access (apis.md §4.5). It is paced here per minute, 1/60 of the hour's
    # budget (defaults: the Limited tier), because after a throttle the framework holds back a whole window:
    # a minute, where an hourly window would cost an hour.
    rate_limit_requests: int = Field(83, ge=1)
    rate_limit_window_seconds: float = Field(60, gt=0)
    daily_limit: int | None = Field(None, ge=1)
    # A throttle that Meta says lasts longer than this ends the run (QuotaExhausted) instead of holding a
    # request open; the next run resumes after Meta's estimate.
    max_inline_wait_seconds: float = Field(300, ge=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return cls.http_base_url(value)

    @field_validator("ad_account_id")
    @classmethod
    def _account(cls, value: str) -> str:
        digits = value.strip().removeprefix("act_")
        if not digits.isdigit():
            raise ValueError("must be the numeric ad account id (with or without 'act_')")
        return digits

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
        """The request budget this account's access tier allows."""
        return RateLimit(self.rate_limit_requests, self.rate_limit_window_seconds, daily=self.daily_limit)


__all__ = ["MAX_ROWS_PER_REQUEST", "MetaConfig"]
