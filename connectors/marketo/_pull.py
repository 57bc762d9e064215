"""Incremental reads through Marketo's activity log and its paging tokens (apis.md §3.5, §3.7).

Get Leads by Filter has no ``updatedAt`` filter, so the real incremental mechanism is the activity log:
``activities/pagingtoken.json?sinceDatetime=`` turns a date into a position, and every page of
``activities/leadchanges.json`` (New Lead and Change Data Value activities) or ``activities.json`` answers
the position after it (``nextPageToken``) and whether the log goes on (``moreResult``; a page may be short
and still have more). The position after the last page is where the next pull resumes, so it is the cursor.

* ``leads``: lead changes on the mapped fields → the changed leads, fetched by id (300 per call), each with
  its current e-mail consent from the opt-out fields (so an opt-out older than the start date is known).
* ``activities``: the configured activity type ids, at most 10 per walk, each group with its own position.
* ``consent``: lead changes of the opt-out field (``unsubscribed``) → email ConsentChanges.

Cursors are JSON: ``{"token": "…"}`` for leads and consent, ``{"tokens": {"1,2,10,11": "…"}}`` for activities.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import GiveUp, Lead, Page, Quarantined, Record

from ._api import MarketoApi
from ._config import MarketoConfig
from ._errors import NAME
from ._mapping import BadRow, activity_record, consent_records, lead_records, parse_datetime, quarantine

MAX_TYPE_IDS = 10
LEAD_BATCH = 300
_NOT_CHANGES = frozenset({"id", "createdAt", "updatedAt"})  # never reported as data value changes


def decode_cursor(stream: str, cursor: str | None) -> dict[str, Any]:
    if cursor is None:
        return {}
    try:
        data = json.loads(cursor)
        if not isinstance(data, dict):
            raise TypeError
    except (ValueError, TypeError):
        raise GiveUp(f"unreadable {stream} cursor; reset it to pull again", connector=NAME) from None
    return data


def encode_cursor(data: Mapping[str, Any]) -> str:
    return json.dumps(dict(data), sort_keys=True, separators=(",", ":"))


def _rows(body: Mapping[str, Any]) -> list[Any]:
    rows = body.get("result")
    return rows if isinstance(rows, list) else []


def _stale(rows: list[Any], fetched: Mapping[str, datetime]) -> list[str]:
    """Lead ids of a page of changes, less those this pull already read in a state that includes the
    change (their ``updatedAt`` is newer): a lead changed in many pages is not fetched again and again."""
    latest: dict[str, datetime | None] = {}
    for row in rows:
        if not isinstance(row, Mapping) or row.get("leadId") is None:
            continue
        lead_id = str(row["leadId"])
        try:
            when = parse_datetime("activityDate", row.get("activityDate"))
        except BadRow:
            when = None
        previous = latest.get(lead_id, when)
        latest[lead_id] = None if when is None or previous is None else max(previous, when)
    # Marketo's times are to the second: a change in the same second as what was read may have come after
    # the read, so only strictly older changes are skipped.
    return [lead_id for lead_id, when in latest.items()
            if lead_id not in fetched or when is None or when >= fetched[lead_id]]


class Puller:
    """Reads the three streams through one connector's :class:`MarketoApi`."""

    def __init__(self, api: MarketoApi, config: MarketoConfig, now: Callable[[], datetime]) -> None:
        self._api = api
        self._config = config
        self._now = now

    def _since(self) -> str:
        cfg = self._config
        start = cfg.start_date or self._now() - timedelta(days=cfg.history_days)
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        return start.strftime("%Y-%m-%dT%H:%M:%SZ")

    async def _first_token(self) -> str:
        body = await self._api.call("GET", "/rest/v1/activities/pagingtoken.json",
                                    params={"sinceDatetime": self._since()})
        token = body.get("nextPageToken")
        if not isinstance(token, str) or not token:
            raise GiveUp("Marketo answered a paging token request without a token", connector=NAME)
        return token

    async def _walk(self, path: str, token: str, params: dict[str, Any]) -> AsyncIterator[tuple[list[Any], str]]:
        """Each page's rows and the position after it, until ``moreResult`` is false."""
        while True:
            body = await self._api.call("GET", path, params={**params, "nextPageToken": token,
                                                             "batchSize": self._config.page_size})
            after = body.get("nextPageToken")
            after = after if isinstance(after, str) and after else token
            yield _rows(body), after
            if body.get("moreResult") is not True or after == token:
                return
            token = after

    def tracked_fields(self) -> list[str]:
        cfg = self._config
        names = [*cfg.lead_fields.values(), *cfg.attribute_fields.values(), *cfg.email_consent_fields()]
        if cfg.conversion_date_field:
            names.append(cfg.conversion_date_field)
        return [n for n in dict.fromkeys(names) if n not in _NOT_CHANGES]

    async def leads(self, cursor: str | None) -> AsyncIterator[Page]:
        cfg = self._config
        token = decode_cursor("leads", cursor).get("token") or await self._first_token()
        read = list(dict.fromkeys(["id", "updatedAt", *cfg.lead_fields.values(), *cfg.attribute_fields.values(),
                                   *([cfg.conversion_date_field] if cfg.conversion_date_field else []),
                                   *cfg.email_consent_fields()]))
        changes = {"fields": ",".join(self.tracked_fields())}
        fetched: dict[str, datetime] = {}  # lead id → updatedAt of what this pull already yielded
        async for rows, after in self._walk("/rest/v1/activities/leadchanges.json", token, changes):
            ids = _stale(rows, fetched)
            records: list[Record] = []
            bad: list[Quarantined] = []
            for start in range(0, len(ids), LEAD_BATCH):
                chunk = ids[start:start + LEAD_BATCH]
                body = await self._api.call("GET", "/rest/v1/leads.json", params={
                    "filterType": "id", "filterValues": ",".join(chunk), "fields": ",".join(read),
                    "batchSize": LEAD_BATCH})
                for row in _rows(body):  # a lead deleted since its change is simply absent
                    if not isinstance(row, Mapping):
                        bad.append(quarantine("leads", row, "row: not an object"))
                        continue
                    try:
                        found = lead_records(row, cfg.lead_fields, cfg.attribute_fields, cfg.conversion_date_field,
                                             cfg.email_consent_fields())
                    except BadRow as exc:
                        bad.append(quarantine("leads", row, str(exc)))
                        continue
                    records.extend(found)
                    lead = found[0]
                    if isinstance(lead, Lead):
                        fetched[lead.key] = lead.updated_at
            yield Page(records, encode_cursor({"token": after}), bad)

    async def consent(self, cursor: str | None) -> AsyncIterator[Page]:
        field = self._config.consent_field
        token = decode_cursor("consent", cursor).get("token") or await self._first_token()
        async for rows, after in self._walk("/rest/v1/activities/leadchanges.json", token, {"fields": field}):
            records: list[Record] = []
            bad: list[Quarantined] = []
            for row in rows:
                if not isinstance(row, Mapping):
                    bad.append(quarantine("consent", row, "row: not an object"))
                    continue
                try:
                    records.extend(consent_records(row, field))
                except BadRow as exc:
                    bad.append(quarantine("consent", row, str(exc)))
            yield Page(records, encode_cursor({"token": after}), bad)

    def type_groups(self) -> list[str]:
        ids = sorted(self._config.activity_types)
        return [",".join(str(i) for i in ids[n:n + MAX_TYPE_IDS]) for n in range(0, len(ids), MAX_TYPE_IDS)]

    async def activities(self, cursor: str | None) -> AsyncIterator[Page]:
        cfg = self._config
        saved = decode_cursor("activities", cursor).get("tokens")
        state: dict[str, str] = dict(saved) if isinstance(saved, dict) else {}
        for group in self.type_groups():
            # A group not in the cursor (a newly mapped type) starts from the configured history.
            token = state.get(group) or await self._first_token()
            async for rows, after in self._walk("/rest/v1/activities.json", token, {"activityTypeIds": group}):
                records: list[Record] = []
                bad: list[Quarantined] = []
                for row in rows:
                    if not isinstance(row, Mapping):
                        bad.append(quarantine("activities", row, "row: not an object"))
                        continue
                    try:
                        records.append(activity_record(row, cfg.activity_types, cfg.pricing_url_contains))
                    except BadRow as exc:
                        bad.append(quarantine("activities", row, str(exc)))
                state[group] = after
                yield Page(records, encode_cursor({"tokens": state}), bad)


__all__ = ["Puller", "decode_cursor", "encode_cursor"]
