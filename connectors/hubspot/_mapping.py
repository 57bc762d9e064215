"""HubSpot rows to canonical records, or to quarantine with a reason that names the field and value.

HubSpot sends every property value as a string (or null): datetimes as ISO 8601 or epoch milliseconds,
date properties as ``YYYY-MM-DD`` or midnight-UTC milliseconds, numbers as decimal text. A row that
breaks the data contract becomes one :class:`Quarantined` entry; the rest of its page flows on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.base import (
    Account,
    Activity,
    ActivityType,
    ConsentChange,
    Lead,
    Opportunity,
    Quarantined,
    Record,
    Scalar,
)

from ._config import ConsentProperty

CONTACT_MODIFIED = "lastmodifieddate"
COMPANY_MODIFIED = "hs_lastmodifieddate"
DEAL_MODIFIED = "hs_lastmodifieddate"
# What a deal is read with (the company comes from the v4 associations API, not from a property).
DEAL_PROPERTIES = ("dealname", "dealstage", "pipeline", "amount", "createdate", "closedate", "hs_is_closed",
                   "hs_is_closed_won", DEAL_MODIFIED)

# Deliberately loose: one @, a dot in the domain, no spaces. HubSpot validates further on its side.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOMAIN_PREFIX = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:www\.)?")


class BadRow(ValueError):
    """One field of a row breaks the contract; the message is the quarantine reason."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_datetime(field: str, value: Any) -> datetime | None:
    """ISO 8601 (``Z`` or offset; a bare date is midnight UTC) or epoch milliseconds, as aware UTC."""
    text = _text(value)
    if text is None:
        return None
    try:
        if text.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise BadRow(f"{field}: {text!r} is not a date") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_float(field: str, value: Any) -> float | None:
    text = _text(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        raise BadRow(f"{field}: {text!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise BadRow(f"{field}: {text!r} is not a number")
    return number


def parse_int(field: str, value: Any) -> int | None:
    number = parse_float(field, value)
    if number is None:
        return None
    if not number.is_integer():
        raise BadRow(f"{field}: {_text(value)!r} is not a whole number")
    return int(number)


def parse_flag(field: str, value: Any) -> bool | None:
    """HubSpot's booleans are the text ``"true"``/``"false"``."""
    text = _text(value)
    if text is None:
        return None
    folded = text.casefold()
    if folded not in ("true", "false"):
        raise BadRow(f"{field}: {text!r} is not true or false")
    return folded == "true"


def parse_email(field: str, value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if not _EMAIL.match(text):
        raise BadRow(f"{field}: {text!r} is not a valid email")
    return text


def normalise_domain(value: Any) -> str | None:
    """``https://www.Example.com/about`` → ``example.com``: the form lead-to-account matching uses."""
    text = _text(value)
    if text is None:
        return None
    host = _DOMAIN_PREFIX.sub("", text.lower()).split("/", 1)[0].split(":", 1)[0]
    return host.strip(".") or None


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _id(row: Mapping[str, Any]) -> str:
    key = _text(row.get("id"))
    if key is None:
        raise BadRow("id: missing")
    return key


def _updated_at(row: Mapping[str, Any], props: Mapping[str, Any], modified: str) -> datetime:
    # The modified property is what the search filters and sorts on; ``updatedAt`` mirrors it.
    raw = props.get(modified) if props.get(modified) is not None else row.get("updatedAt")
    moment = parse_datetime(modified, raw)
    if moment is None:
        raise BadRow(f"{modified}: missing")
    return moment


def _props(row: Mapping[str, Any]) -> Mapping[str, Any]:
    props = row.get("properties")
    return props if isinstance(props, Mapping) else {}


def contact_records(
    row: Mapping[str, Any],
    fields: Mapping[str, str],
    extra: list[str],
    conversion_property: str | None,
    consent: Mapping[str, ConsentProperty] | None = None,
    basis_property: str | None = None,
) -> list[Record]:
    """One contact → its Lead, a CONVERSION activity when the conversion date is set, and the consent its
    properties record (one change per channel, effective at the contact's last modification)."""
    key = _id(row)
    props = _props(row)
    values: dict[str, Any] = {}
    for name, prop in fields.items():
        raw = props.get(prop)
        if name == "email":
            values[name] = parse_email(prop, raw)
        elif name == "created_at":
            values[name] = parse_datetime(prop, raw)
        else:
            values[name] = _text(raw)
    attributes: dict[str, Scalar] = {prop: _text(props.get(prop)) for prop in extra}
    records: list[Record] = [
        Lead(key=key, updated_at=_updated_at(row, props, CONTACT_MODIFIED), attributes=attributes, **values)
    ]
    if conversion_property:
        converted = parse_datetime(conversion_property, props.get(conversion_property))
        if converted is not None:
            records.append(Activity(f"{key}:conversion", key, ActivityType.CONVERSION, converted))
    if consent:
        records.extend(consent_changes(key, props, records[0].updated_at, consent, basis_property))
    return records


# hs_legal_basis option labels -> the canonical lawful bases (GDPR Art. 6); other text passes through.
_BASES = (("consent", "consent"), ("legitimate interest", "legitimate_interest"), ("contract", "contract"))


def hubspot_basis(label: str | None) -> str | None:
    """``"Legitimate interest – prospect/lead"`` → ``legitimate_interest``; ``"Not applicable"`` → ``None``."""
    if not label or label.strip().casefold() == "not applicable":
        return None
    folded = label.casefold()
    return next((basis for words, basis in _BASES if words in folded), label)


def consent_changes(key: str, props: Mapping[str, Any], at: datetime, consent: Mapping[str, ConsentProperty],
                    basis_property: str | None) -> list[ConsentChange]:
    """The consent a contact's properties state; the change key names the status and time, so a re-read of
    the same state is the same change."""
    basis = hubspot_basis(_text(props.get(basis_property))) if basis_property else None
    out = []
    for channel, mapping in consent.items():
        raw = _text(props.get(mapping.property))
        status = mapping.values.get(raw.strip().casefold()) if raw else None
        if status is None:
            continue
        stamp = at.isoformat(timespec="milliseconds")
        out.append(ConsentChange(f"{key}:{channel}:{status.value}:{stamp}", key, channel, status, at,
                                 basis, f"hubspot:{mapping.property}"))
    return out


def company_record(row: Mapping[str, Any], fields: Mapping[str, str]) -> Account:
    key = _id(row)
    props = _props(row)
    values: dict[str, Any] = {}
    for name, prop in fields.items():
        raw = props.get(prop)
        if name == "employees":
            values[name] = parse_int(prop, raw)
        elif name == "annual_revenue":
            values[name] = parse_float(prop, raw)
        elif name == "domain":
            values[name] = normalise_domain(raw)
        else:
            values[name] = _text(raw)
    return Account(key=key, updated_at=_updated_at(row, props, COMPANY_MODIFIED), **values)


def deal_record(row: Mapping[str, Any], extra: list[str], account_key: str | None = None) -> Opportunity:
    """One deal -> an :class:`Opportunity` (its company, from the associations API, is filled in after).
    Open deals have ``is_won`` and ``closed_at`` ``None``: their ``closedate`` is only the expected close."""
    key = _id(row)
    props = _props(row)
    raw_created = props.get("createdate") if props.get("createdate") is not None else row.get("createdAt")
    created = parse_datetime("createdate", raw_created)
    if created is None:
        raise BadRow("createdate: missing")
    won = parse_flag("hs_is_closed_won", props.get("hs_is_closed_won"))
    closed = parse_flag("hs_is_closed", props.get("hs_is_closed"))
    if closed is None:
        closed = won is True  # a portal without hs_is_closed: a won deal is closed all the same
    if won and not closed:
        raise BadRow(f"hs_is_closed: {props.get('hs_is_closed')!r} for a deal that is closed won")
    close_date = parse_datetime("closedate", props.get("closedate"))
    attributes: dict[str, Scalar] = {"pipeline": _text(props.get("pipeline"))}
    attributes.update({prop: _text(props.get(prop)) for prop in extra})
    return Opportunity(
        key=key, updated_at=_updated_at(row, props, DEAL_MODIFIED), created_at=created, account_key=account_key,
        name=_text(props.get("dealname")), stage=_text(props.get("dealstage")),
        amount=parse_float("amount", props.get("amount")), closed_at=close_date if closed else None,
        is_won=bool(won) if closed else None, attributes=attributes,
    )


# HubSpot event properties -> the canonical activity attributes scoring reads (scoring.features: "url" and
# "path" for pricing pages, "content_id"/"title" for content depth). Other properties keep their own names.
EVENT_ATTRIBUTES: dict[str, str] = {
    "hs_url": "url",
    "hs_page_title": "title",
    "hs_form_title": "title",
    "hs_asset_name": "content_id",
    "hs_form_id": "form_id",
    "hs_email_campaign_id": "campaign_id",
}


def event_record(
    row: Mapping[str, Any], types: Mapping[str, ActivityType], pricing_url_contains: list[str]
) -> Activity:
    """One event row -> an :class:`Activity`. This runs a million times in a large pull: keep it lean."""
    key = _id(row)
    lead_key = _text(row.get("objectId"))
    if lead_key is None:
        raise BadRow("objectId: missing")
    event_type = _text(row.get("eventType"))
    if event_type not in types:
        raise BadRow(f"eventType: {event_type!r} is not a configured event type")
    occurred = _event_time(row.get("occurredAt"))
    props = _props(row)
    kind = types[event_type]
    attributes: dict[str, Scalar] = {"event_type": event_type}
    for name, value in props.items():
        text = value.strip() if type(value) is str else _text(value)
        attributes[EVENT_ATTRIBUTES.get(name, name)] = text or None
    if kind is ActivityType.PAGE_VIEW:
        url = attributes.get("url")
        if isinstance(url, str) and any(part in url for part in pricing_url_contains):
            kind = ActivityType.PRICING_PAGE
    return Activity(key=key, lead_key=lead_key, type=kind, occurred_at=occurred, attributes=attributes)


def _event_time(value: Any) -> datetime:
    # The events API answers ISO 8601 with a Z; Python 3.11 reads that directly. Anything else goes the
    # general way (epoch ms, offsets, a bare date) with its error naming the field.
    if type(value) is str and value.endswith("Z"):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    occurred = parse_datetime("occurredAt", value)
    if occurred is None:
        raise BadRow("occurredAt: missing")
    return occurred


def quarantine(stream: str, row: Any, reason: str) -> Quarantined:
    raw: Mapping[str, Any] = row if isinstance(row, Mapping) else {"row": row}
    return Quarantined(stream=stream, key=_text(raw.get("id")), reason=reason, raw=raw)


__all__ = [
    "COMPANY_MODIFIED",
    "CONTACT_MODIFIED",
    "DEAL_MODIFIED",
    "DEAL_PROPERTIES",
    "EVENT_ATTRIBUTES",
    "BadRow",
    "company_record",
    "contact_records",
    "deal_record",
    "epoch_ms",
    "event_record",
    "normalise_domain",
    "parse_datetime",
    "parse_email",
    "parse_flag",
    "parse_float",
    "parse_int",
    "quarantine",
]
