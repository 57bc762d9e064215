"""Marketo rows to canonical records, or to quarantine with a reason that names the field and value.

Lead rows come from Get Leads by Filter with Marketo's REST field names and JSON types (numbers as
numbers, booleans as booleans, datetimes as ISO-8601 with ``Z``). Activity rows carry ``marketoGUID``,
``leadId``, ``activityDate``, ``activityTypeId``, ``primaryAttributeValue`` and ``attributes`` as a list of
``{name, value}``; lead changes add ``fields`` as ``{name, newValue, oldValue}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.base import (
    Activity,
    ActivityType,
    ConsentChange,
    ConsentStatus,
    Lead,
    Quarantined,
    Record,
    Scalar,
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Activity attributes → the canonical names scoring reads (scoring.features: "url"/"path" for pricing
# pages, "content_id"/"title" for content). Other attributes keep Marketo's names.
ACTIVITY_ATTRIBUTES: dict[str, str] = {
    "Webpage URL": "url",
    "Link": "url",
    "Asset URL": "url",
    "Campaign Run ID": "campaign_id",
}


class BadRow(ValueError):
    """One field of a row breaks the contract; the message is the quarantine reason."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_datetime(field: str, value: Any) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRow(f"{field}: {text!r} is not a date") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def lead_records(row: Mapping[str, Any], fields: Mapping[str, str], attributes: Mapping[str, str],
                 conversion_field: str | None, consent_fields: Sequence[str] = ()) -> list[Record]:
    """One lead row → its Lead, plus a CONVERSION activity when the conversion date is set, plus (with
    ``consent_fields``) its current e-mail consent (:func:`current_consent`)."""
    key = _text(row.get("id"))
    if key is None:
        raise BadRow("id: missing")
    updated = parse_datetime("updatedAt", row.get("updatedAt"))
    if updated is None:
        raise BadRow("updatedAt: missing")
    values: dict[str, Any] = {}
    for name, field_name in fields.items():
        raw = row.get(field_name)
        if name == "email":
            email = _text(raw)
            if email is not None and not _EMAIL.match(email):
                raise BadRow(f"{field_name}: {email!r} is not a valid email")
            values[name] = email
        elif name == "created_at":
            values[name] = parse_datetime(field_name, raw)
        else:
            values[name] = _text(raw)
    attrs = {name: _scalar(row.get(field_name)) for name, field_name in attributes.items()}
    records: list[Record] = [Lead(key=key, updated_at=updated, attributes=attrs, **values)]
    if conversion_field:
        converted = parse_datetime(conversion_field, row.get(conversion_field))
        if converted is not None:
            records.append(Activity(f"{key}:conversion", key, ActivityType.CONVERSION, converted))
    if consent_fields:
        records.append(current_consent(row, key, updated, consent_fields))
    return records


def current_consent(row: Mapping[str, Any], key: str, updated: datetime,
                    consent_fields: Sequence[str]) -> ConsentChange:
    """The lead's e-mail consent as its fields stand now, effective at its ``updatedAt``: denied when any
    of the fields (``unsubscribed``, ``emailInvalid``, ``marketingSuspended``) is true, else granted (as a
    Change Data Value back to false is). Activities only report changes inside the pulled window, so this is
    what carries an opt-out made before it; a later change still wins by its later time. A field Marketo
    leaves empty counts as false (its booleans default to false)."""
    blocking = []
    for name in consent_fields:
        value = _truthy(row.get(name))
        if value is None:
            raise BadRow(f"{name}: {row.get(name)!r} is not a boolean")
        if value:
            blocking.append(name)
    status = ConsentStatus.DENIED if blocking else ConsentStatus.GRANTED
    source = "marketo lead field" + (f": {', '.join(blocking)}" if blocking else "")
    # One key per lead state: pulling the same state again stores nothing new.
    stamp = updated.strftime("%Y-%m-%dT%H:%M:%SZ")
    return ConsentChange(key=f"lead:{key}@{stamp}", lead_key=key, channel="email", status=status,
                         effective_at=updated, source=source)


def activity_record(row: Mapping[str, Any], types: Mapping[int, ActivityType],
                    pricing_url_contains: list[str]) -> Activity:
    key = _text(row.get("marketoGUID")) or _text(row.get("id"))
    if key is None:
        raise BadRow("marketoGUID: missing")
    lead_key = _text(row.get("leadId"))
    if lead_key is None:
        raise BadRow("leadId: missing")
    type_id = row.get("activityTypeId")
    kind = types.get(type_id) if isinstance(type_id, int) else None
    if kind is None:
        raise BadRow(f"activityTypeId: {type_id!r} is not a configured activity type")
    occurred = parse_datetime("activityDate", row.get("activityDate"))
    if occurred is None:
        raise BadRow("activityDate: missing")
    attributes: dict[str, Scalar] = {"activity_type_id": type_id}
    primary = _text(row.get("primaryAttributeValue"))
    if primary is not None:
        attributes["title"] = primary
    for item in row.get("attributes") or ():
        if isinstance(item, Mapping) and _text(item.get("name")):
            name = str(item["name"])
            attributes[ACTIVITY_ATTRIBUTES.get(name, name)] = _scalar(item.get("value"))
    if kind is ActivityType.PAGE_VIEW:
        url = attributes.get("url")
        if isinstance(url, str) and any(part in url for part in pricing_url_contains):
            kind = ActivityType.PRICING_PAGE
    return Activity(key=key, lead_key=lead_key, type=kind, occurred_at=occurred, attributes=attributes)


def _truthy(value: Any) -> bool | None:
    text = (_text(value) or "").lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    return None


def consent_records(row: Mapping[str, Any], consent_field: str) -> list[ConsentChange]:
    """A Change Data Value of the opt-out field → one email ConsentChange (New Lead rows carry none)."""
    changes: list[ConsentChange] = []
    for item in row.get("fields") or ():
        if not isinstance(item, Mapping) or item.get("name") != consent_field:
            continue
        key, lead_key = _text(row.get("marketoGUID")), _text(row.get("leadId"))
        if key is None or lead_key is None:
            raise BadRow("marketoGUID or leadId: missing")
        opted_out = _truthy(item.get("newValue"))
        if opted_out is None:
            raise BadRow(f"{consent_field}: {item.get('newValue')!r} is not a boolean")
        when = parse_datetime("activityDate", row.get("activityDate"))
        if when is None:
            raise BadRow("activityDate: missing")
        status = ConsentStatus.DENIED if opted_out else ConsentStatus.GRANTED
        changes.append(ConsentChange(key=key, lead_key=lead_key, channel="email", status=status,
                                     effective_at=when, source=f"marketo:{consent_field}"))
    return changes


def quarantine(stream: str, row: Any, reason: str) -> Quarantined:
    raw: Mapping[str, Any] = row if isinstance(row, Mapping) else {"row": row}
    key = _text(raw.get("marketoGUID")) or _text(raw.get("id"))
    return Quarantined(stream=stream, key=key, reason=reason, raw=raw)


__all__ = ["ACTIVITY_ATTRIBUTES", "BadRow", "activity_record", "consent_records", "current_consent", "lead_records",
           "parse_datetime", "quarantine"]
