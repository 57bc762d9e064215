"""Marketo connector settings: the instance, the custom service's credentials, field mappings, the
activity-type map and the instance's budgets.

``base_url`` is the instance root (``https://<munchkin-id>.mktorest.com``): REST calls go to ``/rest`` and
the identity service to ``/identity`` below it. Field mappings (``lead_fields``, ``attribute_fields``,
``score_fields``) are merged over the defaults; ``activity_types`` replaces the default map, because every
ten configured types cost a paging walk on every pull.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from connectors.base import MAPPABLE_LEAD_FIELDS, OPTIONAL_SCORE_KEYS, ActivityType, ConnectorConfig, RateLimit

DEFAULT_LEAD_FIELDS: dict[str, str] = {
    "email": "email",
    "first_name": "firstName",
    "last_name": "lastName",
    "title": "title",
    "country": "country",
    "lifecycle_stage": "leadStatus",
    "created_at": "createdAt",
}

# Lead attributes scoring reads as fit (scoring.features): Marketo lead records carry the company's
# firmographics themselves.
DEFAULT_ATTRIBUTE_FIELDS: dict[str, str] = {
    "industry": "industry",
    "employees": "numberOfEmployees",
    "annual_revenue": "annualRevenue",
}

# Marketo's standard activity type ids (GET /rest/v1/activities/types.json). Webinars, meetings and
# downloads are program statuses or custom activity types that differ per instance: map them in config.
DEFAULT_ACTIVITY_TYPES: dict[int, ActivityType] = {
    1: ActivityType.PAGE_VIEW,      # Visit Webpage
    2: ActivityType.FORM_SUBMIT,    # Fill Out Form
    10: ActivityType.EMAIL_OPEN,    # Open Email
    11: ActivityType.EMAIL_CLICK,   # Click Email
}

DEFAULT_SCORE_FIELDS: dict[str, str] = {
    "score": "leadrelayScore",
    "band": "leadrelayBand",
    "reasons": "leadrelayReasons",
    "model_version": "leadrelayModelVersion",
    "scored_at": "leadrelayScoredAt",
}

_TARGET = "Marketo field"  # REST API names


class MarketoConfig(ConnectorConfig):
    """Settings of one Marketo instance, read through one custom service (Admin › LaunchPoint)."""

    base_url: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    lead_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_LEAD_FIELDS))
    attribute_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ATTRIBUTE_FIELDS))
    # A datetime lead field set when the lead converted (e.g. an "Opportunity Date" custom field): each set
    # value becomes a CONVERSION activity. None: conversions come from activities only.
    conversion_date_field: str | None = None
    activity_types: dict[int, ActivityType] = Field(default_factory=lambda: dict(DEFAULT_ACTIVITY_TYPES))
    pricing_url_contains: list[str] = Field(default_factory=lambda: ["/pricing"])
    # Where a first pull starts: start_date, else history_days before now. Marketo keeps most activity
    # types for 90 days (longer with a data retention add-on); New Lead and data value changes last longer.
    start_date: datetime | None = None
    history_days: int = Field(365, ge=1)
    consent_field: str = Field("unsubscribed", min_length=1)  # boolean lead field: true = email opt-out
    # Further boolean lead fields that, when true, make the lead unreachable by e-mail (Marketo sends no
    # marketing e-mail to an invalid or suspended address). With ``consent_field`` they are read with every
    # pulled lead, which then carries its current e-mail consent (an opt-out from before the first pull's
    # start date included).
    email_blocking_fields: list[str] = Field(default_factory=lambda: ["emailInvalid", "marketingSuspended"])
    score_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SCORE_FIELDS))
    page_size: int = Field(300, ge=1, le=300)
    # Marketo refuses an 11th call in flight (615) across every integration of the instance and suggests
    # no more than 5 per integration.
    max_concurrent_calls: int = Field(5, ge=1, le=10)
    # 100 calls per 20 s per instance, shared by all integrations (Marketo suggests ≤ 50 per integration).
    rate_limit_calls: int = Field(100, ge=1)
    rate_limit_window_seconds: float = Field(20, gt=0)
    daily_limit: int | None = Field(50_000, ge=1)  # the subscription's daily quota (typically 50,000)
    daily_reset_timezone: str = "America/Chicago"  # Marketo resets the quota at 12:00 AM US Central
    max_url_bytes: int = Field(8 * 1024, ge=256)  # a longer GET goes as POST with _method=GET

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = cls.http_base_url(value)
        for suffix in ("/rest", "/identity"):
            url = url.removesuffix(suffix)
        return url

    @field_validator("lead_fields", mode="before")
    @classmethod
    def _lead_fields(cls, value: Any) -> dict[str, str]:
        return cls.field_map(DEFAULT_LEAD_FIELDS, value, MAPPABLE_LEAD_FIELDS, what="Lead", target=_TARGET)

    @field_validator("attribute_fields", mode="before")
    @classmethod
    def _attribute_fields(cls, value: Any) -> dict[str, str]:
        return cls.field_map(DEFAULT_ATTRIBUTE_FIELDS, value, None, what="attribute", target=_TARGET)

    @field_validator("score_fields", mode="before")
    @classmethod
    def _score_fields(cls, value: Any) -> dict[str, str]:
        # account_score/account_band (the account model's) are sent only when mapped here.
        return cls.field_map(DEFAULT_SCORE_FIELDS, value, frozenset(DEFAULT_SCORE_FIELDS) | OPTIONAL_SCORE_KEYS,
                             what="score", target=_TARGET)

    @field_validator("email_blocking_fields")
    @classmethod
    def _blocking(cls, value: list[str]) -> list[str]:
        for name in value:
            if not isinstance(name, str) or not name.strip():
                raise ValueError("each entry must be a boolean Marketo lead field name (REST API name)")
        return list(dict.fromkeys(name.strip() for name in value))

    def email_consent_fields(self) -> list[str]:
        """The lead fields whose current values say whether the lead may get e-mail (any true: denied)."""
        return list(dict.fromkeys([self.consent_field, *self.email_blocking_fields]))

    @field_validator("activity_types")
    @classmethod
    def _some_types(cls, value: dict[int, ActivityType]) -> dict[int, ActivityType]:
        if not value:
            raise ValueError("map at least one Marketo activity type id to an activity type")
        if any(type_id < 1 for type_id in value):
            raise ValueError("activity type ids are positive integers")
        return value

    @field_validator("daily_reset_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value

    def rate_limit(self) -> RateLimit:
        """The instance's budgets as this integration may spend them."""
        return RateLimit(self.rate_limit_calls, self.rate_limit_window_seconds, daily=self.daily_limit,
                         daily_reset_timezone=self.daily_reset_timezone)


__all__ = [
    "DEFAULT_ACTIVITY_TYPES",
    "DEFAULT_ATTRIBUTE_FIELDS",
    "DEFAULT_LEAD_FIELDS",
    "DEFAULT_SCORE_FIELDS",
    "MarketoConfig",
]
