"""The Marketo sandbox's state: leads with Marketo's field names, the activity log, static lists, and
loading a generated :class:`~connectors.sandbox.generator.Dataset` into them.

The activity log is append-only and in time order, as Marketo's is: a paging token is a position in it, so
a token from ``pagingtoken.json`` (a date) and one from a previous page (a position) are the same thing.
Lead creates and updates append ``New Lead`` (12) and ``Change Data Value`` (13) activities, which is what
``activities/leadchanges.json`` reads.
"""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass, field
from typing import Any

from connectors.sandbox._marketo_wire import iso_s, parse_datetime_ms

NEW_LEAD = 12
CHANGE_DATA_VALUE = 13

# Marketo's standard activity types the sandbox uses (id → name, primary attribute). Downloads have no
# standard type in Marketo; the sandbox records them as a custom activity type, as instances do.
ACTIVITY_TYPES: dict[int, tuple[str, str]] = {
    1: ("Visit Webpage", "Webpage ID"),
    2: ("Fill Out Form", "Webform ID"),
    3: ("Click Link", "Link ID"),
    9: ("Unsubscribe Email", "Mailing ID"),
    10: ("Open Email", "Mailing ID"),
    11: ("Click Email", "Mailing ID"),
    NEW_LEAD: ("New Lead", "Lead ID"),
    CHANGE_DATA_VALUE: ("Change Data Value", "Attribute Name"),
    104: ("Change Status in Progression", "Program ID"),
    100_001: ("Downloaded Content", "Asset Name"),
}

# What the generator's HubSpot event types become in Marketo.
EVENT_TYPE_IDS: dict[str, int] = {
    "e_visited_page": 1,
    "e_submitted_form": 2,
    "e_opened_email": 10,
    "e_clicked_email": 11,
    "e_attended_webinar": 104,
    "e_downloaded_content": 100_001,
}

# Lead fields (REST API names) the sandbox describes; tests add more with ``MarketoSandbox.add_field``.
STANDARD_FIELDS: dict[str, str] = {
    "id": "integer", "email": "email", "firstName": "string", "lastName": "string", "title": "string",
    "company": "string", "country": "string", "industry": "string", "numberOfEmployees": "integer",
    "annualRevenue": "currency", "website": "url", "leadStatus": "string", "leadSource": "string",
    "unsubscribed": "boolean", "emailInvalid": "boolean", "marketingSuspended": "boolean",
    "createdAt": "datetime", "updatedAt": "datetime",
    "opportunityDate": "datetime", "leadrelayScore": "integer", "leadrelayBand": "string",
    "leadrelayReasons": "text", "leadrelayModelVersion": "string", "leadrelayScoredAt": "datetime",
}
READ_ONLY = frozenset({"id", "createdAt", "updatedAt"})
DEFAULT_FIELDS = ("id", "email", "updatedAt", "createdAt", "firstName", "lastName")

# HubSpot contact property → Marketo lead field, for loading a generated dataset.
_CONTACT_FIELDS = {
    "email": "email", "firstname": "firstName", "lastname": "lastName", "jobtitle": "title",
    "country": "country", "company": "company", "lifecyclestage": "leadStatus",
    "hs_lifecyclestage_opportunity_date": "opportunityDate",
}
_COMPANY_FIELDS = {"industry": "industry", "numberofemployees": "numberOfEmployees",
                   "annualrevenue": "annualRevenue", "domain": "website"}


@dataclass(slots=True)
class ActivityRow:
    """One activity as stored; ``seq`` is its position in the log."""

    seq: int
    lead_id: int
    at_ms: int
    type_id: int
    primary_id: int | None = None
    primary: str | None = None
    attributes: list[dict[str, Any]] = field(default_factory=list)
    fields: list[dict[str, Any]] = field(default_factory=list)  # Change Data Value: what changed

    @property
    def guid(self) -> str:
        return str(1_000_000 + self.seq)


class MarketoState:
    """Leads, activities and lists of one instance."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = dict(STANDARD_FIELDS)
        self.leads: dict[int, dict[str, Any]] = {}
        self.log: list[ActivityRow] = []
        self._dates: list[int] = []
        self.lists: dict[int, tuple[str, set[int]]] = {}
        self._next_lead = 1
        self._next_list = 1001

    # -- activities -----------------------------------------------------------------------------------

    def append(self, lead_id: int, at_ms: int, type_id: int, *, primary_id: int | None = None,
               primary: str | None = None, attributes: list[dict[str, Any]] | None = None,
               changed: list[dict[str, Any]] | None = None) -> ActivityRow:
        # The log stays in time order: a late arrival is stamped no earlier than the last entry.
        at_ms = max(at_ms, self._dates[-1]) if self._dates else at_ms
        row = ActivityRow(len(self.log), lead_id, at_ms, type_id, primary_id, primary,
                          attributes or [], changed or [])
        self.log.append(row)
        self._dates.append(at_ms)
        return row

    def position_at(self, since_ms: int) -> int:
        """The first log position at or after ``since_ms``."""
        return bisect.bisect_left(self._dates, since_ms)

    # -- leads ----------------------------------------------------------------------------------------

    def create_lead(self, values: dict[str, Any], now_ms: int, *, created_ms: int | None = None,
                    lead_id: int | None = None) -> int:
        new_id = lead_id if lead_id is not None else self._next_lead
        self._next_lead = max(self._next_lead, new_id + 1)
        created = created_ms if created_ms is not None else now_ms
        lead = {name: value for name, value in values.items() if name not in READ_ONLY}
        lead.update(id=new_id, createdAt=created, updatedAt=created)
        self.leads[new_id] = lead
        self.append(new_id, created, NEW_LEAD, primary_id=new_id,
                    attributes=[{"name": "Source Type", "value": "Web service API"}])
        return new_id

    def update_lead(self, lead_id: int, values: dict[str, Any], now_ms: int) -> bool:
        """Set fields; appends one Change Data Value per field that changed. Returns whether any did."""
        lead = self.leads[lead_id]
        changed = False
        for name, value in values.items():
            if name in READ_ONLY or lead.get(name) == value:
                continue
            old = lead.get(name)
            lead[name] = value
            changed = True
            self.append(lead_id, now_ms, CHANGE_DATA_VALUE, primary_id=None, primary=name,
                        attributes=[{"name": "Source", "value": "Web service API"}],
                        changed=[{"id": _field_id(name), "name": name,
                                  "newValue": _text(value), "oldValue": _text(old)}])
        if changed:
            lead["updatedAt"] = max(now_ms, lead["updatedAt"])
        return changed

    def find(self, field_name: str, value: str) -> list[int]:
        if field_name == "id":
            return [int(value)] if value.isdigit() and int(value) in self.leads else []
        wanted = value.lower() if field_name == "email" else value
        found = []
        for lead_id, lead in self.leads.items():
            have = lead.get(field_name)
            have_text = _text(have)
            if have_text is not None and (have_text.lower() if field_name == "email" else have_text) == wanted:
                found.append(lead_id)
        return found

    def create_list(self, name: str) -> int:
        list_id = self._next_list
        self._next_list += 1
        self.lists[list_id] = (name, set())
        return list_id

    # -- a generated dataset --------------------------------------------------------------------------

    def load(self, dataset: Any) -> dict[str, int]:
        """Contacts → leads (with their company's firmographics, as Marketo lead records carry them),
        events → activities with Marketo activity type ids. Returns HubSpot contact id → lead id."""
        companies = {str(c["id"]): c.get("properties") or {} for c in dataset.companies}
        ids: dict[str, int] = {}
        pending: list[tuple[int, int, dict[str, Any]]] = []
        for contact in dataset.contacts:
            props = contact.get("properties") or {}
            values: dict[str, Any] = {}
            for prop, name in _CONTACT_FIELDS.items():
                if props.get(prop) is not None:
                    values[name] = props[prop]
            company = companies.get(str(props.get("associatedcompanyid")), {})
            for prop, name in _COMPANY_FIELDS.items():
                raw = company.get(prop)
                if raw is not None:
                    values[name] = _number(raw) if name in ("numberOfEmployees", "annualRevenue") else raw
            if "opportunityDate" in values:
                values["opportunityDate"] = _normalise_time(values["opportunityDate"])
            created = parse_datetime_ms(str(props.get("createdate") or contact.get("createdAt") or ""))
            updated = parse_datetime_ms(str(contact.get("updatedAt") or props.get("lastmodifieddate") or ""))
            created = created if created is not None else (updated or 0)
            key = str(contact["id"])
            lead_id = int(key) if key.isdigit() else None
            pending.append((created, updated or created, {"key": key, "id": lead_id, "values": values}))
        events = [(parse_datetime_ms(str(e.get("occurredAt"))) or 0, e) for e in dataset.events]
        # One time-ordered log: lead creations, their last change, and the events, merged.
        timeline: list[tuple[int, int, Any]] = [(created, 0, p) for created, _, p in pending]
        timeline += [(max(updated, created), 1, p) for created, updated, p in pending if updated > created]
        timeline += [(at, 2, e) for at, e in events]
        timeline.sort(key=lambda item: (item[0], item[1]))
        for at, kind, item in timeline:
            if kind == 0:
                ids[item["key"]] = self.create_lead(item["values"], at, created_ms=at, lead_id=item["id"])
            elif kind == 1:
                lead = self.leads[ids[item["key"]]]
                lead["updatedAt"] = at
                self.append(lead["id"], at, CHANGE_DATA_VALUE, primary="leadStatus",
                            attributes=[{"name": "Source", "value": "Marketo Flow Action"}],
                            changed=[{"id": _field_id("leadStatus"), "name": "leadStatus",
                                      "newValue": _text(lead.get("leadStatus")), "oldValue": None}])
            else:
                lead_id = ids.get(str(item.get("objectId")))
                if lead_id is not None:
                    self._event(lead_id, at, item)
        return ids

    def _event(self, lead_id: int, at: int, event: dict[str, Any]) -> None:
        type_id = EVENT_TYPE_IDS.get(str(event.get("eventType")))
        if type_id is None:
            return
        props = event.get("properties") or {}
        url = props.get("hs_url")
        attributes: list[dict[str, Any]] = []
        primary = props.get("hs_page_title") or props.get("hs_form_title") or props.get("hs_email_subject")
        if type_id in (1, 2):
            attributes.append({"name": "Webpage URL", "value": url})
        elif type_id in (10, 11):
            attributes.append({"name": "Campaign Run ID", "value": props.get("hs_email_campaign_id")})
            if type_id == 11:
                attributes.append({"name": "Link", "value": url})
        elif type_id == 104:
            primary = props.get("hs_webinar_name")
            attributes += [{"name": "New Status", "value": "Webinar > Attended"},
                           {"name": "Old Status", "value": "Webinar > Registered"}]
        elif type_id == 100_001:
            primary = props.get("hs_asset_name")
            attributes.append({"name": "Asset URL", "value": url})
        self.append(lead_id, at, type_id, primary_id=zlib.crc32(primary.encode()) % 10_000 if primary else None,
                    primary=primary, attributes=[a for a in attributes if a["value"] is not None])


def _field_id(name: str) -> int:
    return 1 + sorted(STANDARD_FIELDS).index(name) if name in STANDARD_FIELDS else 1000 + len(name)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(raw: Any) -> Any:
    try:
        number = float(str(raw))
    except ValueError:
        return raw  # a malformed dataset value stays as it came: the connector must cope
    return int(number) if number.is_integer() else number


def _normalise_time(raw: Any) -> Any:
    ms = parse_datetime_ms(str(raw))
    return raw if ms is None else iso_s(ms)


__all__ = [
    "ACTIVITY_TYPES",
    "CHANGE_DATA_VALUE",
    "DEFAULT_FIELDS",
    "EVENT_TYPE_IDS",
    "NEW_LEAD",
    "READ_ONLY",
    "STANDARD_FIELDS",
    "ActivityRow",
    "MarketoState",
]
