"""HubSpot connector settings: the token, paging, the field mappings and the rate budget.

Field mappings (``contact_fields``, ``company_fields``, ``score_properties``) are merged over the defaults,
so a portal that keeps job titles in a custom property overrides only ``title``. ``event_types`` replaces
the default set, because every configured event type costs requests on every pull.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.base import (
    ACCOUNT_SCORE_KEYS,
    MAPPABLE_ACCOUNT_FIELDS,
    MAPPABLE_LEAD_FIELDS,
    OPTIONAL_SCORE_KEYS,
    ActivityType,
    Budget,
    ConnectorConfig,
    ConsentStatus,
    RateLimit,
)

DEFAULT_CONTACT_FIELDS: dict[str, str] = {
    "email": "email",
    "first_name": "firstname",
    "last_name": "lastname",
    "account_key": "associatedcompanyid",
    "owner_id": "hubspot_owner_id",
    "country": "country",
    "title": "jobtitle",
    "lifecycle_stage": "lifecyclestage",
    "created_at": "createdate",
}

DEFAULT_COMPANY_FIELDS: dict[str, str] = {
    "name": "name",
    "domain": "domain",
    "industry": "industry",
    "employees": "numberofemployees",
    "country": "country",
    "annual_revenue": "annualrevenue",
}

# Search has its own per-account limit beside the burst window (apis.md 1.4): search requests name this budget.
SEARCH_BUDGET = "search"

DEFAULT_EVENT_TYPES: dict[str, ActivityType] = {
    "e_visited_page": ActivityType.PAGE_VIEW,
    "e_submitted_form": ActivityType.FORM_SUBMIT,
    "e_opened_email": ActivityType.EMAIL_OPEN,
    "e_clicked_email": ActivityType.EMAIL_CLICK,
    "e_attended_webinar": ActivityType.WEBINAR,
    "e_downloaded_content": ActivityType.CONTENT_DOWNLOAD,
}

DEFAULT_SCORE_PROPERTIES: dict[str, str] = {
    "score": "leadrelay_score",
    "band": "leadrelay_band",
    "reasons": "leadrelay_reasons",
    "model_version": "leadrelay_model_version",
    "scored_at": "leadrelay_scored_at",
}

# Where update_account writes the account model's score: company properties named like the contact ones.
DEFAULT_ACCOUNT_SCORE_PROPERTIES: dict[str, str] = {
    "account_score": "leadrelay_account_score",
    "account_band": "leadrelay_account_band",
    "model_version": "leadrelay_account_model_version",
}


class ConsentProperty(BaseModel):
    """A contact property that records one consent channel, and what its values mean.

    ``values`` maps the property's text (compared case-insensitively) to ``granted``, ``denied`` or
    ``unknown``; an empty or unlisted value yields no change. HubSpot keeps no per-property time in search
    results, so a change takes effect at the contact's last modification.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    property: str = Field(min_length=1)
    values: dict[str, ConsentStatus]

    @field_validator("values")
    @classmethod
    def _folded(cls, value: dict[str, ConsentStatus]) -> dict[str, ConsentStatus]:
        if not value:
            raise ValueError("must map at least one property value to granted, denied or unknown")
        return {k.strip().casefold(): v for k, v in value.items()}


# hs_email_optout is HubSpot's own "unsubscribed from all email"; the ads and sales channels have no standard
# property, so the defaults name portal properties leadrelay documents (create them, or map your own).
DEFAULT_CONSENT: dict[str, ConsentProperty] = {
    "email": ConsentProperty(property="hs_email_optout", values={"true": ConsentStatus.DENIED}),
    "ads": ConsentProperty(property="leadrelay_ads_consent",
                           values={"granted": ConsentStatus.GRANTED, "denied": ConsentStatus.DENIED}),
    "sales_outreach": ConsentProperty(property="leadrelay_sales_consent",
                                      values={"granted": ConsentStatus.GRANTED, "denied": ConsentStatus.DENIED}),
}

# ``key`` and ``updated_at`` come from the object id and the modified-date property, never from a mapping.
_TARGET = "HubSpot property"


def _property_or_empty(name: str, value: Any) -> None:
    if not isinstance(value, str) or (value and not value.strip()):
        raise ValueError(f'{name!r} must map to a HubSpot property name (or "" to leave it unwritten)')


class HubSpotConfig(ConnectorConfig):
    """Settings of one HubSpot portal. The token is a private-app or OAuth access token."""

    token: SecretStr
    base_url: str = "https://api.hubapi.com"
    page_size: int = Field(200, ge=1, le=200)  # the search endpoint's maximum
    # The events API does not document its page maximum; 1000 is what the sandbox allows. Lower it if a
    # portal refuses larger pages.
    events_page_size: int = Field(1000, ge=1, le=1000)
    overlap_seconds: float = Field(300, ge=0)  # re-read window: search lags writes by moments
    search_cap: int = Field(10_000, ge=1, le=10_000)  # HubSpot refuses paging past 10k per query
    contact_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CONTACT_FIELDS))
    extra_contact_properties: list[str] = Field(default_factory=list)
    # Deal properties kept in Opportunity.attributes beside the standard ones (stage, amount, dates, closed/won).
    extra_deal_properties: list[str] = Field(default_factory=list)
    company_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_COMPANY_FIELDS))
    event_types: dict[str, ActivityType] = Field(default_factory=lambda: dict(DEFAULT_EVENT_TYPES))
    # The v3 path needs objectId on the real service; the dated "/events/event-occurrences/2026-03" lists
    # a whole object type. Both take the same query and answer the same shape.
    events_path: str = "/events/v3/events"
    pricing_url_contains: list[str] = Field(default_factory=lambda: ["/pricing"])
    conversion_date_property: str | None = "hs_lifecyclestage_opportunity_date"
    score_properties: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SCORE_PROPERTIES))
    # Company properties update_account writes (merged over the defaults; "" leaves a key unwritten, and with
    # none mapped no account score is written to companies).
    account_score_properties: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ACCOUNT_SCORE_PROPERTIES))
    task_key_property: str = Field("leadrelay_operation_key", min_length=1)
    # Consent channels read from contact properties (channel -> property and value meanings); merged over the
    # defaults, so naming only `ads` keeps the e-mail opt-out. `lawful_basis_property` holds the GDPR basis.
    consent: dict[str, ConsentProperty] = Field(default_factory=lambda: dict(DEFAULT_CONSENT))
    lawful_basis_property: str | None = "hs_legal_basis"
    # The burst window per app (Free/Starter 100, Professional/Enterprise 190, the limit pack 250 per 10 s);
    # the X-HubSpot-RateLimit-Max and -Interval-Milliseconds headers correct it on the first answer.
    rate_limit_requests: int = Field(100, ge=1)
    rate_limit_window_seconds: float = Field(10, gt=0)
    # Search answers carry no rate headers, so this one is never corrected except by a SECONDLY 429.
    search_limit_per_second: int = Field(5, ge=1)
    daily_limit: int | None = Field(250_000, ge=1)
    # HubSpot resets the daily quota at midnight in the portal's time zone, which the API does not report.
    daily_reset_timezone: str = "UTC"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return cls.http_base_url(value)

    @field_validator("events_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must be a path starting with '/'")
        return value

    @field_validator("contact_fields", mode="before")
    @classmethod
    def _contact_fields(cls, value: Any) -> dict[str, str]:
        return cls.field_map(DEFAULT_CONTACT_FIELDS, value, MAPPABLE_LEAD_FIELDS, what="Lead", target=_TARGET)

    @field_validator("company_fields", mode="before")
    @classmethod
    def _company_fields(cls, value: Any) -> dict[str, str]:
        return cls.field_map(DEFAULT_COMPANY_FIELDS, value, MAPPABLE_ACCOUNT_FIELDS, what="Account",
                             target=_TARGET)

    @field_validator("score_properties", mode="before")
    @classmethod
    def _score_properties(cls, value: Any) -> dict[str, str]:
        # account_score/account_band (the account model's) are sent only when mapped here, e.g.
        # score_properties = { account_score = "leadrelay_account_score" }.
        return cls.field_map(DEFAULT_SCORE_PROPERTIES, value, frozenset(DEFAULT_SCORE_PROPERTIES) | OPTIONAL_SCORE_KEYS,
                             what="score", target=_TARGET)

    @field_validator("account_score_properties", mode="before")
    @classmethod
    def _account_score_properties(cls, value: Any) -> dict[str, str]:
        merged = cls.field_map(DEFAULT_ACCOUNT_SCORE_PROPERTIES, value, ACCOUNT_SCORE_KEYS, what="account score",
                               target=_TARGET, check=_property_or_empty)
        return {key: name for key, name in merged.items() if name}

    @field_validator("consent", mode="before")
    @classmethod
    def _consent(cls, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError("must be a table of channel = { property = ..., values = {...} }")
        return {**DEFAULT_CONSENT, **value}

    @field_validator("event_types")
    @classmethod
    def _some_event_types(cls, value: dict[str, ActivityType]) -> dict[str, ActivityType]:
        if not all(name.strip() for name in value):
            raise ValueError("event type names must not be empty")
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
        """The budgets this portal's tier allows (the class-level capability is the Free/Starter tier)."""
        return RateLimit(
            self.rate_limit_requests,
            self.rate_limit_window_seconds,
            daily=self.daily_limit,
            budgets=(Budget(SEARCH_BUDGET, self.search_limit_per_second, 1.0),),
            daily_reset_timezone=self.daily_reset_timezone,
        )


__all__ = [
    "DEFAULT_ACCOUNT_SCORE_PROPERTIES",
    "DEFAULT_COMPANY_FIELDS",
    "DEFAULT_CONTACT_FIELDS",
    "DEFAULT_EVENT_TYPES",
    "DEFAULT_SCORE_PROPERTIES",
    "SEARCH_BUDGET",
    "HubSpotConfig",
]
