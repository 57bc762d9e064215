"""Salesforce connector settings: the connected app and its refresh token, field maps, streams, budget.

Field maps (``lead_fields``, ``contact_fields``, ``account_fields``, ``score_fields``,
``account_score_fields``) are merged over the
defaults, so an org that keeps the country elsewhere overrides only ``country``; mapping a canonical
field to ``""`` leaves it unmapped. Type maps (``task_types``, ``campaign_member_statuses``) replace the
defaults, because they say which vendor values count as which activity.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.base import (
    ACCOUNT_SCORE_KEYS,
    MAPPABLE_ACCOUNT_FIELDS,
    MAPPABLE_LEAD_FIELDS,
    OPTIONAL_SCORE_KEYS,
    ActivityType,
    ConnectorConfig,
    RateLimit,
)

DEFAULT_LEAD_FIELDS: dict[str, str] = {
    "email": "Email",
    "first_name": "FirstName",
    "last_name": "LastName",
    "account_key": "",  # Leads have no account lookup; orgs with a matched-account field map it here
    "owner_id": "OwnerId",
    "country": "Country",
    "title": "Title",
    "lifecycle_stage": "Status",
    "created_at": "CreatedDate",
}
DEFAULT_CONTACT_FIELDS: dict[str, str] = {
    "email": "Email",
    "first_name": "FirstName",
    "last_name": "LastName",
    "account_key": "AccountId",
    "owner_id": "OwnerId",
    "country": "MailingCountry",
    "title": "Title",
    "lifecycle_stage": "",
    "created_at": "CreatedDate",
}
DEFAULT_ACCOUNT_FIELDS: dict[str, str] = {
    "name": "Name",
    "domain": "Website",
    "industry": "Industry",
    "employees": "NumberOfEmployees",
    "country": "BillingCountry",
    "annual_revenue": "AnnualRevenue",
}
DEFAULT_SCORE_FIELDS: dict[str, str] = {
    "score": "Leadrelay_Score__c",
    "band": "Leadrelay_Band__c",
    "reasons": "Leadrelay_Reasons__c",
    "model_version": "Leadrelay_Model_Version__c",
    "scored_at": "Leadrelay_Scored_At__c",
}
# Where update_account writes the account model's score: Account fields named like the Lead ones.
DEFAULT_ACCOUNT_SCORE_FIELDS: dict[str, str] = {
    "account_score": "Leadrelay_Account_Score__c",
    "account_band": "Leadrelay_Account_Band__c",
    "model_version": "Leadrelay_Account_Model_Version__c",
}
DEFAULT_TASK_TYPES: dict[str, ActivityType] = {
    "Call": ActivityType.SALES_TOUCH,
    "Email": ActivityType.SALES_TOUCH,
    "Meeting": ActivityType.MEETING,
    "Web Visit": ActivityType.PAGE_VIEW,
    "Email Open": ActivityType.EMAIL_OPEN,
    "Email Click": ActivityType.EMAIL_CLICK,
}
DEFAULT_CAMPAIGN_MEMBER_STATUSES: dict[str, ActivityType] = {
    "Responded": ActivityType.FORM_SUBMIT,
    "Attended": ActivityType.WEBINAR,
    "Downloaded": ActivityType.CONTENT_DOWNLOAD,
}
DEFAULT_CONVERSION_FIELDS: dict[str, str] = {"Lead": "ConvertedDate"}
DEFAULT_PRIORITIES: dict[str, str] = {"LOW": "Low", "MEDIUM": "Normal", "HIGH": "High"}


PersonObject = Literal["Lead", "Contact"]
ActivityObject = Literal["Task", "Event", "CampaignMember"]


def _check_mapped(name: str, api_name: Any) -> None:
    if not isinstance(api_name, str):
        raise ValueError(f"{name!r} must map to a Salesforce field name (or \"\" to leave it unmapped)")
    _check_name(api_name, allow_empty=True)


def _merged(defaults: dict[str, str], given: Any, allowed: frozenset[str], what: str) -> dict[str, str]:
    return ConnectorConfig.field_map(defaults, given, allowed, what=what, target="Salesforce field",
                                     check=_check_mapped)


def _check_name(value: str, *, allow_empty: bool = False) -> str:
    # Field names end up inside SOQL: only API names (letters, digits, underscores) are let through.
    if (allow_empty and value == "") or (value and value.replace("_", "").isalnum() and value[0].isalpha()):
        return value
    raise ValueError(f"{value!r} is not a Salesforce API name")


class SalesforceConfig(ConnectorConfig):
    """Settings of one Salesforce org reached through a connected app with a refresh token."""

    client_id: str = Field(min_length=1)  # the connected app's consumer key (not a secret on its own)
    client_secret: SecretStr
    refresh_token: SecretStr
    login_url: str = "https://login.salesforce.com"  # test.salesforce.com for sandboxes, or the My Domain
    instance_url: str | None = None  # where API calls go until the token answer names the instance
    api_version: str = Field("60.0", pattern=r"^\d{2,3}\.0$")
    page_size: int = Field(2000, ge=200, le=2000)  # Sforce-Query-Options batchSize
    overlap_seconds: float = Field(300, ge=0)  # re-read window for late-arriving SystemModstamp values
    lead_objects: list[PersonObject] = Field(default_factory=lambda: ["Lead"], min_length=1)
    lead_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_LEAD_FIELDS))
    contact_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CONTACT_FIELDS))
    extra_lead_fields: list[str] = Field(default_factory=list)  # copied into Lead.attributes as they are
    extra_contact_fields: list[str] = Field(default_factory=list)
    conversion_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CONVERSION_FIELDS))
    account_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ACCOUNT_FIELDS))
    activity_objects: list[ActivityObject] = Field(default_factory=lambda: ["Task", "CampaignMember"])
    task_type_field: str = "Type"
    task_types: dict[str, ActivityType] = Field(default_factory=lambda: dict(DEFAULT_TASK_TYPES))
    task_default_type: ActivityType | Literal[""] = ActivityType.SALES_TOUCH  # "": skip unmapped types
    event_type: ActivityType = ActivityType.MEETING
    campaign_member_statuses: dict[str, ActivityType] = Field(
        default_factory=lambda: dict(DEFAULT_CAMPAIGN_MEMBER_STATUSES))
    pricing_url_contains: list[str] = Field(default_factory=lambda: ["/pricing"])
    consent_objects: list[PersonObject] = Field(default_factory=lambda: ["Lead"], min_length=1)
    consent_fields: dict[str, str] = Field(default_factory=lambda: {"HasOptedOutOfEmail": "email"})
    score_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SCORE_FIELDS))
    # Account fields update_account writes ("" leaves a key unwritten; none mapped: no account score is written).
    account_score_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ACCOUNT_SCORE_FIELDS))
    task_key_field: str = "Leadrelay_Operation_Key__c"  # a unique external-id text field on Task
    task_status: str = "Not Started"
    task_priorities: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    default_object: PersonObject = "Lead"  # for write targets whose id prefix names neither object
    # No short window is documented for REST; this paces bursts. The daily figure is corrected by every
    # answer's Sforce-Limit-Info header.
    rate_limit_requests: int = Field(25, ge=1)
    rate_limit_window_seconds: float = Field(1.0, gt=0)
    daily_limit: int | None = Field(100_000, ge=1)
    # The daily limit is a rolling 24 hours: after REQUEST_LIMIT_EXCEEDED, look again after this long.
    quota_retry_seconds: float = Field(3_600, gt=0)

    @field_validator("login_url", "instance_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return cls.http_base_url(value) if value is not None else None

    @field_validator("lead_fields", "contact_fields", mode="before")
    @classmethod
    def _person_fields(cls, value: Any, info: Any) -> dict[str, str]:
        defaults = DEFAULT_LEAD_FIELDS if info.field_name == "lead_fields" else DEFAULT_CONTACT_FIELDS
        return _merged(defaults, value, MAPPABLE_LEAD_FIELDS, "Lead")

    @field_validator("account_fields", mode="before")
    @classmethod
    def _account_fields(cls, value: Any) -> dict[str, str]:
        return _merged(DEFAULT_ACCOUNT_FIELDS, value, MAPPABLE_ACCOUNT_FIELDS, "Account")

    @field_validator("score_fields", mode="before")
    @classmethod
    def _score_fields(cls, value: Any) -> dict[str, str]:
        # account_score/account_band (the account model's) are sent only when mapped here.
        merged = _merged(DEFAULT_SCORE_FIELDS, value, frozenset(DEFAULT_SCORE_FIELDS) | OPTIONAL_SCORE_KEYS, "score")
        return {key: name for key, name in merged.items() if name}

    @field_validator("account_score_fields", mode="before")
    @classmethod
    def _account_score_fields(cls, value: Any) -> dict[str, str]:
        merged = _merged(DEFAULT_ACCOUNT_SCORE_FIELDS, value, ACCOUNT_SCORE_KEYS, "account score")
        return {key: name for key, name in merged.items() if name}

    @field_validator("extra_lead_fields", "extra_contact_fields")
    @classmethod
    def _extra(cls, value: list[str]) -> list[str]:
        return [_check_name(name) for name in value]

    @field_validator("task_key_field", "task_type_field")
    @classmethod
    def _api_name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("conversion_fields")
    @classmethod
    def _conversion(cls, value: dict[str, str]) -> dict[str, str]:
        for sobject, name in value.items():
            if sobject not in ("Lead", "Contact"):
                raise ValueError(f"{sobject!r}: conversion fields are per Lead or Contact")
            _check_name(name, allow_empty=True)
        return {sobject: name for sobject, name in value.items() if name}

    @model_validator(mode="before")
    @classmethod
    def _consent_of_every_person(cls, data: Any) -> Any:
        """Unless set, ``consent_objects`` follows ``lead_objects``: a Contact pulled as a lead has its opt-out
        read too (its current value on the first pull, whatever date it was set)."""
        if isinstance(data, dict) and "consent_objects" not in data and data.get("lead_objects"):
            return {**data, "consent_objects": data["lead_objects"]}
        return data

    @field_validator("consent_fields")
    @classmethod
    def _consent(cls, value: dict[str, str]) -> dict[str, str]:
        for name, channel in value.items():
            _check_name(name)
            if not channel.strip():
                raise ValueError(f"{name!r} must name a consent channel (email, ads, sales, ...)")
        return value

    @field_validator("task_priorities")
    @classmethod
    def _priorities(cls, value: dict[str, str]) -> dict[str, str]:
        missing = sorted({"LOW", "MEDIUM", "HIGH"} - set(value))
        if missing:
            raise ValueError(f"missing priorities {missing}")
        return value

    def person_fields(self, sobject: str) -> dict[str, str]:
        """The mapped fields of a Lead or Contact (unmapped ones left out)."""
        chosen = self.lead_fields if sobject == "Lead" else self.contact_fields
        return {name: api for name, api in chosen.items() if api}

    def extra_fields(self, sobject: str) -> list[str]:
        return self.extra_lead_fields if sobject == "Lead" else self.extra_contact_fields

    def rate_limit(self) -> RateLimit:
        return RateLimit(self.rate_limit_requests, self.rate_limit_window_seconds, daily=self.daily_limit)

    def api_root(self) -> str:
        return f"/services/data/v{self.api_version}"


__all__ = [
    "DEFAULT_ACCOUNT_FIELDS",
    "DEFAULT_ACCOUNT_SCORE_FIELDS",
    "DEFAULT_CAMPAIGN_MEMBER_STATUSES",
    "DEFAULT_CONTACT_FIELDS",
    "DEFAULT_LEAD_FIELDS",
    "DEFAULT_SCORE_FIELDS",
    "DEFAULT_TASK_TYPES",
    "SalesforceConfig",
]
