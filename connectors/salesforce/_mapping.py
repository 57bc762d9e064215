"""Salesforce rows to canonical records, or to quarantine with a reason that names the field and value.

Salesforce's JSON is typed: numbers are numbers, booleans booleans, datetimes ``2024-05-01T12:00:00.000+0000``
and dates ``2024-05-01``. A value of the wrong kind (employees as text, a bad e-mail, no ``SystemModstamp``)
breaks the data contract: the row becomes one :class:`Quarantined` entry and the rest of the page flows on.
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
    ConsentStatus,
    Lead,
    Opportunity,
    Quarantined,
    Record,
    Scalar,
)

MODSTAMP = "SystemModstamp"
# What an Opportunity is read with (IsClosed/IsWon are Salesforce's own, derived from the stage).
OPPORTUNITY_FIELDS = ("Id", "AccountId", "Name", "StageName", "Amount", "CreatedDate", "CloseDate", "IsClosed",
                      "IsWon", MODSTAMP)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOMAIN_PREFIX = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:www\.)?")


class BadRow(ValueError):
    """One field of a row breaks the contract; the message is the quarantine reason."""


def text(value: Any) -> str | None:
    if value is None:
        return None
    out = str(value).strip()
    return out or None


def parse_datetime(name: str, value: Any) -> datetime | None:
    """A Salesforce datetime (``+0000``, ``Z`` or ``+00:00``) or date (midnight UTC), as aware UTC."""
    raw = text(value)
    if raw is None:
        return None
    if not isinstance(value, str):
        raise BadRow(f"{name}: {raw!r} is not a date")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRow(f"{name}: {raw!r} is not a date") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_number(name: str, value: Any, *, whole: bool) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise BadRow(f"{name}: {value!r} is not a {'whole ' if whole else ''}number")
    if whole:
        if not float(value).is_integer():
            raise BadRow(f"{name}: {value!r} is not a whole number")
        return int(value)
    return float(value)


def parse_bool(name: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise BadRow(f"{name}: {value!r} is not true or false")


def parse_email(name: str, value: Any) -> str | None:
    raw = text(value)
    if raw is not None and not _EMAIL.match(raw):
        raise BadRow(f"{name}: {raw!r} is not a valid email")
    return raw


def normalise_domain(value: Any) -> str | None:
    """``https://www.Example.com/about`` → ``example.com``: the form lead-to-account matching uses."""
    raw = text(value)
    if raw is None:
        return None
    host = _DOMAIN_PREFIX.sub("", raw.lower()).split("/", 1)[0].split(":", 1)[0]
    return host.strip(".") or None


def row_id(row: Mapping[str, Any]) -> str:
    key = text(row.get("Id"))
    if key is None:
        raise BadRow("Id: missing")
    return key


def modstamp(row: Mapping[str, Any]) -> datetime:
    moment = parse_datetime(MODSTAMP, row.get(MODSTAMP))
    if moment is None:
        raise BadRow(f"{MODSTAMP}: missing")
    return moment


def _scalar(value: Any) -> Scalar:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def person_records(row: Mapping[str, Any], fields: Mapping[str, str], extra: list[str],
                   conversion_field: str | None, read_only_field: str | None = None) -> list[Record]:
    """One Lead or Contact → its :class:`Lead`, plus a CONVERSION activity when converted. A true
    ``read_only_field`` (a Lead's ``IsConverted``: Salesforce refuses every write to a converted Lead with
    ``CANNOT_UPDATE_CONVERTED_LEAD``) makes the lead :attr:`Lead.read_only`."""
    key = row_id(row)
    values: dict[str, Any] = {}
    if read_only_field:
        values["read_only"] = bool(parse_bool(read_only_field, row.get(read_only_field)))
    for name, api in fields.items():
        raw = row.get(api)
        if name == "email":
            values[name] = parse_email(api, raw)
        elif name == "created_at":
            values[name] = parse_datetime(api, raw)
        else:
            values[name] = text(raw)
    attributes = {api: _scalar(row.get(api)) for api in extra}
    records: list[Record] = [Lead(key=key, updated_at=modstamp(row), attributes=attributes, **values)]
    if conversion_field:
        converted = parse_datetime(conversion_field, row.get(conversion_field))
        if converted is not None:
            records.append(Activity(f"{key}:conversion", key, ActivityType.CONVERSION, converted,
                                    {"source_field": conversion_field}))
    return records


def account_record(row: Mapping[str, Any], fields: Mapping[str, str]) -> Account:
    key = row_id(row)
    values: dict[str, Any] = {}
    for name, api in fields.items():
        raw = row.get(api)
        if name == "employees":
            values[name] = parse_number(api, raw, whole=True)
        elif name == "annual_revenue":
            values[name] = parse_number(api, raw, whole=False)
        elif name == "domain":
            values[name] = normalise_domain(raw)
        else:
            values[name] = text(raw)
    return Account(key=key, updated_at=modstamp(row), **values)


def opportunity_record(row: Mapping[str, Any]) -> Opportunity:
    """An Opportunity → :class:`Opportunity`; open ones have ``is_won`` and ``closed_at`` ``None`` (their
    ``CloseDate`` is only the expected close)."""
    key = row_id(row)
    created = parse_datetime("CreatedDate", row.get("CreatedDate"))
    if created is None:
        raise BadRow("CreatedDate: missing")
    closed = bool(parse_bool("IsClosed", row.get("IsClosed")))
    won = parse_bool("IsWon", row.get("IsWon"))
    if won and not closed:
        raise BadRow("IsClosed: false for an opportunity that IsWon")
    close_date = parse_datetime("CloseDate", row.get("CloseDate"))
    return Opportunity(key=key, updated_at=modstamp(row), created_at=created, account_key=text(row.get("AccountId")),
                       name=text(row.get("Name")), stage=text(row.get("StageName")),
                       amount=parse_number("Amount", row.get("Amount"), whole=False),
                       closed_at=close_date if closed else None, is_won=bool(won) if closed else None)


def _occurred(row: Mapping[str, Any], name: str) -> datetime:
    moment = parse_datetime(name, row.get(name))
    if moment is None:
        raise BadRow(f"{name}: missing")
    return moment


def task_activity(row: Mapping[str, Any], type_field: str, types: Mapping[str, ActivityType],
                  default: ActivityType | None, pricing: list[str]) -> Activity | None:
    """A Task → an activity of its ``Type``; ``None`` for a type that is not mapped and no default."""
    key = row_id(row)
    lead_key = text(row.get("WhoId"))
    if lead_key is None:
        raise BadRow("WhoId: missing")
    kind_name = text(row.get(type_field))
    kind = types.get(kind_name or "", default)
    if kind is None:
        return None
    url = text(row.get("Description"))
    attributes: dict[str, Scalar] = {"task_type": kind_name, "title": text(row.get("Subject"))}
    if url is not None and url.startswith(("http://", "https://", "/")):
        attributes["url"] = url
        if kind is ActivityType.PAGE_VIEW and any(part in url for part in pricing):
            kind = ActivityType.PRICING_PAGE
    return Activity(key, lead_key, kind, _occurred(row, "CreatedDate"), attributes)


def event_activity(row: Mapping[str, Any], kind: ActivityType) -> Activity:
    key = row_id(row)
    lead_key = text(row.get("WhoId"))
    if lead_key is None:
        raise BadRow("WhoId: missing")
    return Activity(key, lead_key, kind, _occurred(row, "StartDateTime"),
                    {"title": text(row.get("Subject")), "event_type": text(row.get("Type"))})


def member_activity(row: Mapping[str, Any], statuses: Mapping[str, ActivityType]) -> Activity | None:
    """A CampaignMember → the activity its ``Status`` means; ``None`` for statuses that mean nothing."""
    key = row_id(row)
    lead_key = text(row.get("LeadId")) or text(row.get("ContactId"))
    if lead_key is None:
        raise BadRow("LeadId: missing (and no ContactId)")
    status = text(row.get("Status"))
    kind = statuses.get(status or "")
    if kind is None:
        return None
    return Activity(key, lead_key, kind, _occurred(row, "CreatedDate"),
                    {"campaign_id": text(row.get("CampaignId")), "content_id": text(row.get("CampaignId")),
                     "status": status})


def consent_changes(row: Mapping[str, Any], sobject: str, fields: Mapping[str, str]) -> list[ConsentChange]:
    """Opt-out flags (``HasOptedOutOfEmail``: true means denied) as consent on their channels, effective at
    the row's ``SystemModstamp`` (the latest the change can have happened)."""
    key = row_id(row)
    at = modstamp(row)
    changes = []
    for api, channel in fields.items():
        opted_out = parse_bool(api, row.get(api))
        if opted_out is None:
            continue
        status = ConsentStatus.DENIED if opted_out else ConsentStatus.GRANTED
        changes.append(ConsentChange(f"{key}:{channel}:{int(at.timestamp() * 1000)}", key, channel, status, at,
                                     source=f"salesforce:{sobject}.{api}"))
    return changes


def quarantine(stream: str, row: Any, reason: str) -> Quarantined:
    raw: Mapping[str, Any] = row if isinstance(row, Mapping) else {"row": row}
    return Quarantined(stream=stream, key=text(raw.get("Id")), reason=reason, raw=raw)


__all__ = [
    "MODSTAMP",
    "OPPORTUNITY_FIELDS",
    "BadRow",
    "account_record",
    "consent_changes",
    "event_activity",
    "member_activity",
    "modstamp",
    "normalise_domain",
    "opportunity_record",
    "parse_datetime",
    "person_records",
    "quarantine",
    "task_activity",
    "text",
]
