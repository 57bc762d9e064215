"""Incremental reads by SOQL on ``SystemModstamp``, one query per sObject of a stream, paged by
``nextRecordsUrl``.

Each object is read with ``SELECT … FROM <object> WHERE SystemModstamp >= <cursor − overlap> [AND …]
ORDER BY SystemModstamp, Id`` and the query's pages are followed to the end. The cursor is opaque JSON of
object → epoch ms: the greatest ``SystemModstamp`` seen, so that everything strictly older has been
yielded. It is handed out with each page and stored by the framework only after the page is; the next
pull re-reads from it minus the overlap (late-committing transactions). If the query locator expires
mid-walk (``INVALID_QUERY_LOCATOR``), the walk queries again from the greatest timestamp it has seen.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.base import ActivityType, GiveUp, Page, Quarantined, Record

from ._config import SalesforceConfig
from ._errors import NAME, LocatorExpired, read_json
from ._mapping import (
    MODSTAMP,
    OPPORTUNITY_FIELDS,
    BadRow,
    account_record,
    consent_changes,
    event_activity,
    member_activity,
    opportunity_record,
    parse_datetime,
    person_records,
    quarantine,
    task_activity,
)
from ._session import Session

Mapper = Callable[[Mapping[str, Any]], list[Record]]
# The flag that makes a person read-only (Salesforce refuses writes to a converted Lead, and Tasks naming it).
READ_ONLY_FIELDS: dict[str, str] = {"Lead": "IsConverted"}
_MAX_RESEEDS = 20  # locators expiring this often in one walk means something else is wrong


@dataclass(frozen=True, slots=True)
class _Spec:
    stream: str
    sobject: str
    fields: tuple[str, ...]
    filters: tuple[str, ...]
    mapper: Mapper


def decode_cursor(stream: str, cursor: str | None) -> dict[str, int]:
    if cursor is None:
        return {}
    try:
        data = json.loads(cursor)
        if not isinstance(data, dict):
            raise TypeError
        return {str(k): int(v) for k, v in data.items()}
    except (ValueError, TypeError):
        raise GiveUp(f"unreadable {stream} cursor {cursor!r}; reset it to pull again", connector=NAME) from None


def encode_cursor(values: Mapping[str, int]) -> str:
    return json.dumps(dict(values), sort_keys=True, separators=(",", ":"))


def soql_datetime(ms: int) -> str:
    """A SOQL datetime literal (unquoted, UTC, whole seconds rounded down: the overlap covers the rest)."""
    return datetime.fromtimestamp(max(ms, 0) // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unique(names: list[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for name in names:
        if name and name.lower() not in seen:
            seen[name.lower()] = name
    return tuple(seen.values())


class Puller:
    """Reads the five streams through one connector's session."""

    def __init__(self, session: Session, config: SalesforceConfig) -> None:
        self._session = session
        self._config = config

    def specs(self, stream: str) -> list[_Spec]:
        cfg = self._config
        if stream == "leads":
            return [self._person(sobject) for sobject in cfg.lead_objects]
        if stream == "accounts":
            return [_Spec(stream, "Account", _unique(["Id", *cfg.account_fields.values(), MODSTAMP]), (),
                          lambda row: [account_record(row, cfg.account_fields)])]
        if stream == "opportunities":
            return [_Spec(stream, "Opportunity", OPPORTUNITY_FIELDS, (), lambda row: [opportunity_record(row)])]
        if stream == "activities":
            return [self._activity(sobject) for sobject in cfg.activity_objects]
        if stream == "consent":
            return [_Spec(stream, sobject, _unique(["Id", *cfg.consent_fields, MODSTAMP]), (),
                          lambda row, s=sobject: list(consent_changes(row, s, cfg.consent_fields)))
                    for sobject in cfg.consent_objects]
        raise GiveUp(f"unknown stream {stream!r}; streams: accounts, opportunities, leads, activities, consent",
                     connector=NAME)

    def _person(self, sobject: str) -> _Spec:
        cfg = self._config
        fields = cfg.person_fields(sobject)
        extra = cfg.extra_fields(sobject)
        conversion = cfg.conversion_fields.get(sobject)
        read_only = READ_ONLY_FIELDS.get(sobject)
        names = _unique(["Id", *fields.values(), *extra, *([conversion] if conversion else []),
                         *([read_only] if read_only else []), MODSTAMP])
        return _Spec("leads", sobject, names, (),
                     lambda row: person_records(row, fields, extra, conversion, read_only))

    def _activity(self, sobject: str) -> _Spec:
        cfg = self._config
        if sobject == "Task":
            default = cfg.task_default_type or None
            names = _unique(["Id", "WhoId", cfg.task_type_field, "Subject", "Description", "CreatedDate", MODSTAMP])
            # Person-less tasks are not a lead's activity; the follow-ups leadrelay created are not either.
            filters = ("WhoId != null", f"{cfg.task_key_field} = null")
            return _Spec("activities", sobject, names, filters, lambda row: _some(task_activity(
                row, cfg.task_type_field, cfg.task_types, ActivityType(default) if default else None,
                cfg.pricing_url_contains)))
        if sobject == "Event":
            names = ("Id", "WhoId", "Subject", "Type", "StartDateTime", MODSTAMP)
            return _Spec("activities", sobject, names, ("WhoId != null",),
                         lambda row: [event_activity(row, cfg.event_type)])
        names = ("Id", "LeadId", "ContactId", "CampaignId", "Status", "CreatedDate", MODSTAMP)
        return _Spec("activities", sobject, names, (),
                     lambda row: _some(member_activity(row, cfg.campaign_member_statuses)))

    async def pull(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        specs = self.specs(stream)
        state = decode_cursor(stream, cursor)
        for spec in specs:
            async for page in self._walk(spec, state):
                yield page

    def _soql(self, spec: _Spec, since_ms: int | None) -> str:
        conditions = [f"{MODSTAMP} >= {soql_datetime(since_ms)}"] if since_ms is not None else []
        conditions += spec.filters
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        # Field and object names are validated API names; the only literal is a formatted datetime.
        return f"SELECT {', '.join(spec.fields)} FROM {spec.sobject}{where} ORDER BY {MODSTAMP}, Id"  # noqa: S608

    async def _walk(self, spec: _Spec, state: dict[str, int]) -> AsyncIterator[Page]:
        start = state.get(spec.sobject)
        since = max(start - int(self._config.overlap_seconds * 1000), 0) if start is not None else None
        headers = {"Sforce-Query-Options": f"batchSize={self._config.page_size}"}
        reseeds = 0
        path: str | None = None
        while True:
            try:
                if path is None:
                    response = await self._session.request("GET", "/query", headers=headers,
                                                           params={"q": self._soql(spec, since)})
                else:
                    response = await self._session.request("GET", path, headers=headers)
            except LocatorExpired:
                reseeds += 1
                if reseeds > _MAX_RESEEDS:
                    raise
                path, since = None, state.get(spec.sobject, since)  # query again from what was yielded
                continue
            data = read_json(response)
            if not isinstance(data, Mapping):
                data = {}
            rows = data.get("records") if isinstance(data.get("records"), list) else []
            page = self._page(spec, rows, state)
            if page is not None:
                yield page
            following = data.get("nextRecordsUrl")
            if data.get("done", True) or not isinstance(following, str) or not rows:
                return
            path = following

    def _page(self, spec: _Spec, rows: list[Any], state: dict[str, int]) -> Page | None:
        records: list[Record] = []
        bad: list[Quarantined] = []
        for row in rows:
            if not isinstance(row, Mapping):
                bad.append(quarantine(spec.stream, row, "row: not an object"))
                continue
            try:
                records.extend(spec.mapper(row))
            except BadRow as exc:
                bad.append(quarantine(spec.stream, row, f"{spec.sobject}.{exc}"))
            try:
                stamp = parse_datetime(MODSTAMP, row.get(MODSTAMP))
            except BadRow:
                stamp = None
            if stamp is not None:
                ms = int(stamp.timestamp() * 1000)
                state[spec.sobject] = max(state.get(spec.sobject, ms), ms)
        if not records and not bad and not rows:
            return None
        return Page(records, encode_cursor(state) if state else None, bad)


def _some(activity: Any) -> list[Record]:
    return [activity] if activity is not None else []


__all__ = ["Puller", "decode_cursor", "encode_cursor", "soql_datetime"]
