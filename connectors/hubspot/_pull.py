"""Incremental reads: contacts, companies and deals through the search endpoint, activities through events.

Objects are searched with ``<modified> GTE (cursor − overlap)`` sorted ascending, following
``paging.next.after``. Search refuses to page past ``search_cap`` (10,000) results per query, so before
``after`` would get there the walk starts a new search from the last modified timestamp it saw, skipping
the ids it already yielded at exactly that timestamp. If a whole search window shares one timestamp
(a bulk import can do that), the walk pages through that instant by ``hs_object_id`` and then carries on
with ``GT``.

A deal's company is not a deal property: after each page of deals, one v4 associations ``batch/read``
(deals → companies, 100 ids a call) names the companies of the whole page; a deal with none is yielded
without an account.

Cursors are opaque JSON: ``{"modified_ms": <epoch ms>}`` for objects and ``{"<event type>": <epoch ms>}``
for activities. The cursor of a page is the greatest timestamp seen so far: with an ascending sort,
everything strictly older has been yielded, and the next pull re-reads from it minus the overlap.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from connectors.base import GiveUp, Opportunity, Page, Quarantined, Record
from connectors.http import Classify, HttpLayer, Observe

from ._config import SEARCH_BUDGET, HubSpotConfig
from ._errors import read_json
from ._mapping import (
    COMPANY_MODIFIED,
    CONTACT_MODIFIED,
    DEAL_MODIFIED,
    DEAL_PROPERTIES,
    BadRow,
    company_record,
    contact_records,
    deal_record,
    epoch_ms,
    event_record,
    parse_datetime,
    quarantine,
)

NAME = "hubspot"
BATCH_READ_LIMIT = 100  # inputs per batch/read (without propertiesWithHistory); more is a 400
ASSOCIATION_READ_LIMIT = 100  # inputs per v4 associations batch/read
PRIMARY_COMPANY = 5  # deal -> company "primary" association type id; 341 is the unlabelled one
Mapper = Callable[[Mapping[str, Any]], list[Record]]


@dataclass(frozen=True, slots=True)
class _ObjectSpec:
    stream: str
    object_type: str
    modified: str
    properties: list[str]
    mapper: Mapper


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def decode_cursor(stream: str, cursor: str | None) -> dict[str, int]:
    """The cursor's JSON object of name → epoch ms; ``{}`` for ``None``."""
    if cursor is None:
        return {}
    try:
        data = json.loads(cursor)
        if not isinstance(data, dict):
            raise TypeError
        return {str(k): int(v) for k, v in data.items()}
    except (ValueError, TypeError):
        reason = f"unreadable {stream} cursor {cursor!r}; reset it to pull again"
        raise GiveUp(reason, connector=NAME) from None


def encode_cursor(values: Mapping[str, int]) -> str:
    return json.dumps(dict(values), sort_keys=True, separators=(",", ":"))


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(max(ms, 0) / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _next_after(data: Mapping[str, Any]) -> str | None:
    paging = data.get("paging")
    nxt = paging.get("next") if isinstance(paging, Mapping) else None
    after = nxt.get("after") if isinstance(nxt, Mapping) else None
    return str(after) if after not in (None, "") else None


def _results(data: Any) -> list[Any]:
    results = data.get("results") if isinstance(data, Mapping) else None
    return results if isinstance(results, list) else []


class _Boundary:
    """The greatest modified timestamp seen in this pull and the ids yielded at exactly that instant."""

    def __init__(self, start_ms: int | None) -> None:
        self.high = start_ms
        self.ts: int | None = None
        self.ids: set[str] = set()

    def seen(self, row_id: str, ts: int) -> bool:
        """Record a row; ``True`` when it was already yielded at this instant (a re-seed overlap)."""
        if self.ts is None or ts > self.ts:
            self.ts, self.ids = ts, {row_id}
        elif ts == self.ts:
            if row_id in self.ids:
                return True
            self.ids.add(row_id)
        self.high = ts if self.high is None else max(self.high, ts)
        return False


class Puller:
    """Reads the three streams through one connector's HTTP layer."""

    def __init__(self, http: HttpLayer, config: HubSpotConfig, classify: Classify, observe: Observe) -> None:
        self._http = http
        self._config = config
        self._classify = classify
        self._observe = observe

    def _spec(self, stream: str) -> _ObjectSpec:
        cfg = self._config
        if stream == "leads":
            props = [*cfg.contact_fields.values(), *cfg.extra_contact_properties, CONTACT_MODIFIED,
                     *(c.property for c in cfg.consent.values())]
            if cfg.conversion_date_property:
                props.append(cfg.conversion_date_property)
            if cfg.lawful_basis_property:
                props.append(cfg.lawful_basis_property)
            return _ObjectSpec(
                stream, "contacts", CONTACT_MODIFIED, _unique(props),
                lambda row: contact_records(
                    row, cfg.contact_fields, cfg.extra_contact_properties, cfg.conversion_date_property,
                    cfg.consent, cfg.lawful_basis_property,
                ),
            )
        if stream == "opportunities":
            extra = cfg.extra_deal_properties
            return _ObjectSpec(stream, "deals", DEAL_MODIFIED, _unique([*DEAL_PROPERTIES, *extra]),
                               lambda row: [deal_record(row, extra)])
        props = [*cfg.company_fields.values(), COMPANY_MODIFIED]
        return _ObjectSpec(
            stream, "companies", COMPANY_MODIFIED, _unique(props),
            lambda row: [company_record(row, cfg.company_fields)],
        )

    async def _search(
        self, spec: _ObjectSpec, filters: list[dict[str, str]], sort: str, after: str | None
    ) -> Mapping[str, Any]:
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}] if filters else [],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": spec.properties,
            "limit": self._config.page_size,
        }
        if after is not None:
            body["after"] = after
        response = await self._http.request(
            "POST", f"/crm/v3/objects/{spec.object_type}/search",
            classify=self._classify, observe=self._observe, budgets=(SEARCH_BUDGET,), json=body,
        )
        data = read_json(response)
        return data if isinstance(data, Mapping) else {}

    def _page(self, spec: _ObjectSpec, rows: list[Any], boundary: _Boundary) -> Page | None:
        records: list[Record] = []
        bad: list[Quarantined] = []
        for row in rows:
            if not isinstance(row, Mapping):
                bad.append(quarantine(spec.stream, row, "row: not an object"))
                continue
            row_id = str(row.get("id") or "")
            ts = _row_ms(row, spec.modified)
            if row_id and ts is not None and boundary.seen(row_id, ts):
                continue
            try:
                records.extend(spec.mapper(row))
            except BadRow as exc:
                bad.append(quarantine(spec.stream, row, str(exc)))
        if not records and not bad:
            return None
        cursor = encode_cursor({"modified_ms": boundary.high}) if boundary.high is not None else None
        return Page(records, cursor, bad)

    async def _window(
        self, spec: _ObjectSpec, filters: list[dict[str, str]], sort: str, boundary: _Boundary
    ) -> AsyncIterator[tuple[Page | None, bool, str | None]]:
        """One search query paged by ``after``: each page, whether the cap cut the query short (re-seed
        needed), and the id of the page's last row."""
        after: str | None = None
        fetched = 0
        while True:
            data = await self._search(spec, filters, sort, after)
            rows = _results(data)
            fetched += len(rows)
            after = _next_after(data)
            capped = after is not None and fetched + self._config.page_size > self._config.search_cap
            last = rows[-1].get("id") if rows and isinstance(rows[-1], Mapping) else None
            yield self._page(spec, rows, boundary), capped, str(last) if last is not None else None
            if after is None or capped or not rows:
                return

    async def objects(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        spec = self._spec(stream)
        start = decode_cursor(stream, cursor).get("modified_ms")
        overlap_ms = int(self._config.overlap_seconds * 1000)
        floor = max(start - overlap_ms, 0) if start is not None else 0
        operator = "GTE"
        boundary = _Boundary(start)
        while True:
            capped = False
            # A first pull has no lower bound: no filter at all (every object has a modified date anyway).
            filters = [] if floor == 0 and operator == "GTE" else [
                {"propertyName": spec.modified, "operator": operator, "value": str(floor)}
            ]
            async for page, window_capped, _ in self._window(spec, filters, spec.modified, boundary):
                capped = window_capped
                if page is not None:
                    yield page
            if not capped:
                return
            if boundary.ts is None:
                reason = f"{spec.object_type} search returned no readable {spec.modified}"
                raise GiveUp(reason, connector=NAME)
            if boundary.ts > floor:
                floor, operator = boundary.ts, "GTE"
                continue
            # A whole window at one instant: walk that instant by object id, then move past it.
            async for page in self._same_instant(spec, floor, boundary):
                yield page
            operator = "GT"

    async def _same_instant(self, spec: _ObjectSpec, ts: int, boundary: _Boundary) -> AsyncIterator[Page]:
        last_id = "0"
        while True:
            filters = [
                {"propertyName": spec.modified, "operator": "EQ", "value": str(ts)},
                {"propertyName": "hs_object_id", "operator": "GT", "value": last_id},
            ]
            capped, window_last = False, None
            async for page, window_capped, row_id in self._window(spec, filters, "hs_object_id", boundary):
                capped = window_capped
                window_last = row_id or window_last
                if page is not None:
                    yield page
            if not capped or window_last is None or window_last == last_id:
                return
            last_id = window_last

    async def by_ids(self, stream: str, keys: Sequence[str]) -> AsyncIterator[Page]:
        """The named objects, ``BATCH_READ_LIMIT`` ids per ``batch/read`` call; one page per call, no cursor.

        HubSpot answers 207 with an ``OBJECT_NOT_FOUND`` error listing the ids it does not have (deleted,
        merged): those are left out. Ids are deduplicated first (HubSpot refuses a batch repeating one)."""
        spec = self._spec(stream)
        ids = _unique([str(k).strip() for k in keys])
        for start in range(0, len(ids), BATCH_READ_LIMIT):
            chunk = ids[start:start + BATCH_READ_LIMIT]
            body = {"properties": spec.properties, "inputs": [{"id": i} for i in chunk]}
            response = await self._http.request(
                "POST", f"/crm/v3/objects/{spec.object_type}/batch/read",
                classify=self._classify, observe=self._observe, json=body,
            )
            data = read_json(response)
            page = self._page(spec, _results(data), _Boundary(None))
            if page is not None:
                yield Page(page.records, None, page.quarantined)

    async def deals(self, cursor: str | None, keys: Sequence[str] | None = None) -> AsyncIterator[Page]:
        """Deals (incrementally, or the named ones by id), each page's with their companies filled in."""
        pages = self.objects("opportunities", cursor) if keys is None else self.by_ids("opportunities", keys)
        async for page in pages:
            yield await self._with_companies(page)

    async def _with_companies(self, page: Page) -> Page:
        deals = [r for r in page.records if isinstance(r, Opportunity)]
        companies = await self._companies_of([d.key for d in deals])
        records: list[Record] = [replace(r, account_key=companies.get(r.key)) if isinstance(r, Opportunity) else r
                                 for r in page.records]
        return Page(records, page.cursor, page.quarantined)

    async def _companies_of(self, deal_ids: Sequence[str]) -> dict[str, str]:
        """Deal id -> its company (the primary one, else the lowest id), by v4 associations batch/read.
        HubSpot answers 207 with an ``OBJECT_NOT_FOUND`` error for deals without a company: those stay out."""
        out: dict[str, str] = {}
        ids = _unique(list(deal_ids))
        for start in range(0, len(ids), ASSOCIATION_READ_LIMIT):
            body = {"inputs": [{"id": i} for i in ids[start:start + ASSOCIATION_READ_LIMIT]]}
            response = await self._http.request(
                "POST", "/crm/v4/associations/deals/companies/batch/read",
                classify=self._classify, observe=self._observe, json=body,
            )
            for result in _results(read_json(response)):
                company = _company(result)
                if company is not None:
                    out[company[0]] = company[1]
        return out

    async def events(self, cursor: str | None) -> AsyncIterator[Page]:
        state = decode_cursor("activities", cursor)
        overlap_ms = int(self._config.overlap_seconds * 1000)
        for event_type in self._config.event_types:
            since = state.get(event_type)
            after: str | None = None
            while True:
                params: dict[str, str | int] = {
                    "objectType": "contact",
                    "eventType": event_type,
                    "occurredAfter": _iso(since - overlap_ms if since is not None else 0),
                    "sort": "occurredAt",
                    "limit": self._config.events_page_size,
                }
                if after is not None:
                    params["after"] = after
                response = await self._http.request(
                    "GET", self._config.events_path,
                    classify=self._classify, observe=self._observe, params=params,
                )
                data = read_json(response)
                rows = _results(data)
                page = self._event_page(rows, event_type, state)
                if page is not None:
                    yield page
                after = _next_after(data) if isinstance(data, Mapping) else None
                if after is None or not rows:
                    break

    def _event_page(self, rows: list[Any], event_type: str, state: dict[str, int]) -> Page | None:
        records: list[Record] = []
        bad: list[Quarantined] = []
        cfg = self._config
        for row in rows:
            if not isinstance(row, Mapping):
                bad.append(quarantine("activities", row, "row: not an object"))
                continue
            try:
                activity = event_record(row, cfg.event_types, cfg.pricing_url_contains)
            except BadRow as exc:
                bad.append(quarantine("activities", row, str(exc)))
                continue
            records.append(activity)
            ts = epoch_ms(activity.occurred_at)
            state[event_type] = max(state.get(event_type, ts), ts)
        if not records and not bad:
            return None
        return Page(records, encode_cursor(state), bad)


def _company(result: Any) -> tuple[str, str] | None:
    """(deal id, company id) of one associations batch/read result: the primary company, else the lowest id."""
    if not isinstance(result, Mapping):
        return None
    source = result.get("from")
    deal = source.get("id") if isinstance(source, Mapping) else None
    found: list[tuple[bool, int, str]] = []
    for item in result.get("to") or ():
        if not isinstance(item, Mapping) or item.get("toObjectId") in (None, ""):
            continue
        types = item.get("associationTypes") or ()
        primary = any(isinstance(t, Mapping) and t.get("typeId") == PRIMARY_COMPANY for t in types)
        company = str(item["toObjectId"])
        found.append((not primary, int(company) if company.isdigit() else 0, company))
    if deal in (None, "") or not found:
        return None
    return str(deal), min(found)[2]


def _row_ms(row: Mapping[str, Any], modified: str) -> int | None:
    props = row.get("properties")
    raw = props.get(modified) if isinstance(props, Mapping) else None
    try:
        moment = parse_datetime(modified, raw if raw is not None else row.get("updatedAt"))
    except BadRow:
        return None
    return epoch_ms(moment) if moment is not None else None


__all__ = ["Puller", "decode_cursor", "encode_cursor"]
