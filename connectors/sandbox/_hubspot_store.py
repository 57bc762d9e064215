"""The HubSpot sandbox's state: objects, property schema, unique-value and modified-date indexes,
associations, owners and events, with HubSpot's write validation.

The HTTP layer (:mod:`connectors.sandbox.hubspot`) turns requests into calls on this state; tests reach
the same state directly (``sandbox.objects["contacts"][id]``, ``sandbox.create(...)``) to arrange and check.
"""

from __future__ import annotations

import base64
import gc
import json
import math
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from connectors.sandbox._hubspot_schema import (
    ASSOCIATION_TYPES,
    CLOSED_DEAL_STAGES,
    CREATED_PROPERTY,
    MODIFIED_PROPERTY,
    OBJECT_TYPES,
    REVERSE_ASSOCIATION,
    SINGULAR,
    default_schema,
)
from connectors.sandbox._hubspot_search import ModifiedIndex
from connectors.sandbox._wire import HubSpotError, iso_ms, parse_time, standard_error, to_ms, validation_error

Clock = Callable[[], datetime]
HubSpotObject = dict[str, Any]

EVENTS_MAX_LIMIT = 1000


def _utcnow() -> datetime:
    return datetime.now(UTC)


class InputError(Exception):
    """One batch input failed; carries the ``StandardError`` entry for the batch response."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


def _invalid(problems: list[dict[str, str]], context: dict[str, list[str]]) -> InputError:
    detail = [
        {
            "isValid": False,
            "message": p["message"],
            "error": p["error"],
            "name": p["name"],
            "localizedErrorMessage": p["message"],
        }
        for p in problems
    ]
    return InputError(
        standard_error(
            "VALIDATION_ERROR",
            f"Property values were not valid: {json.dumps(detail)}",
            context,
        )
    )


class HubSpotState:
    """Everything a HubSpot portal holds that the sandbox serves."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or _utcnow
        self.schema = default_schema()
        self.objects: dict[str, dict[str, HubSpotObject]] = {kind: {} for kind in OBJECT_TYPES}
        self.owners: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        # (from type, from id, to type) -> {to id: {association type ids}}
        self.associations: dict[tuple[str, str, str], dict[str, set[int]]] = {}
        self._next_id = 1
        self._modified = {kind: ModifiedIndex() for kind in OBJECT_TYPES}
        self._ids: dict[str, list[int]] = {kind: [] for kind in OBJECT_TYPES}  # live + archived, sorted
        self._ids_sorted = dict.fromkeys(OBJECT_TYPES, True)
        self._unique: dict[str, dict[str, dict[str, str]]] = {kind: {} for kind in OBJECT_TYPES}
        self._event_ms: list[int] = []
        self._events_by_object: dict[tuple[str, str], list[int]] | None = None  # built on first use
        self._events_dirty = False
        for kind in OBJECT_TYPES:
            self._refresh_unique(kind)

    # ------------------------------------------------------------------------------------------------
    # Helpers tests call directly

    def now_ms(self) -> int:
        return to_ms(self.clock())

    def create(self, object_type: str, properties: Mapping[str, str]) -> str:
        """Create an object as the API would (validated, stamped with the clock) and return its id."""
        obj = self.create_object(object_type, properties)
        return str(obj["id"])

    def update(self, object_type: str, object_id: str, properties: Mapping[str, str]) -> None:
        """Update an object as the API would; its modified date becomes the clock's now."""
        self.update_object(object_type, object_id, properties)

    def add_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Add events shaped like the events API's results (``occurredAt`` ISO or epoch ms)."""
        for event in events:
            occurred = event["occurredAt"]
            ms = parse_time(occurred)
            if ms is None:
                raise ValueError(f"event {event.get('id')!r} has no valid occurredAt")
            if not isinstance(event, dict) or not isinstance(occurred, str) or iso_ms(ms) != occurred:
                event = {**event, "occurredAt": iso_ms(ms)}  # served in HubSpot's one timestamp layout
            self.events.append(event)
            self._event_ms.append(ms)
        self._events_dirty = True
        self._events_by_object = None

    def load(self, dataset: Any) -> None:
        """Load a :class:`~connectors.sandbox.generator.Dataset` (or anything with the same attributes).

        Objects are copied (the sandbox mutates its own copies); events are shared, never mutated.
        """
        # Loading allocates millions of small acyclic objects; cyclic GC passes over them only cost time.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._load(dataset)
        finally:
            if was_enabled:
                gc.enable()

    def _load(self, dataset: Any) -> None:
        self.owners.extend(dict(o) for o in dataset.owners)
        for kind, rows in (("companies", dataset.companies), ("contacts", dataset.contacts)):
            for row in rows:
                self.put_object(kind, row)
        for contact in dataset.contacts:
            company = contact["properties"].get("associatedcompanyid")
            if company and company in self.objects["companies"]:
                self.associate("contacts", str(contact["id"]), "companies", str(company), 279)
        # Deals (older datasets have none) and their companies and contacts, as deal -> object type ids.
        for row in getattr(dataset, "deals", ()):
            self.put_object("deals", row)
        for deal_id, kind, object_id, type_id in getattr(dataset, "deal_associations", ()):
            if str(object_id) in self.objects[kind]:
                self.associate("deals", str(deal_id), kind, str(object_id), type_id)
        self.add_events(dataset.events)

    def put_object(self, kind: str, row: Mapping[str, Any]) -> None:
        """Store an object exactly as given (no validation: datasets may be malformed on purpose)."""
        object_id = str(row["id"])
        props = dict(row.get("properties") or {})
        props["hs_object_id"] = object_id
        modified = MODIFIED_PROPERTY[kind]
        created_ms = parse_time(row.get("createdAt") or props.get(CREATED_PROPERTY[kind]))
        modified_ms = parse_time(row.get("updatedAt") or props.get(modified)) or self.now_ms()
        if created_ms is None:
            created_ms = modified_ms
        props.setdefault(modified, iso_ms(modified_ms))
        obj = {
            "id": object_id,
            "properties": props,
            "createdAt": iso_ms(created_ms),
            "updatedAt": iso_ms(modified_ms),
            "archived": bool(row.get("archived", False)),
        }
        self._insert(kind, obj, modified_ms, loaded=True)

    # ------------------------------------------------------------------------------------------------
    # Objects

    def _insert(self, kind: str, obj: HubSpotObject, modified_ms: int, *, loaded: bool = False) -> None:
        object_id = obj["id"]
        numeric = int(object_id)
        self.objects[kind][object_id] = obj
        ids = self._ids[kind]
        if ids and numeric < ids[-1]:
            self._ids_sorted[kind] = False
        ids.append(numeric)
        self._next_id = max(self._next_id, numeric + 1)
        if not obj["archived"]:
            self._modified[kind].set(numeric, modified_ms, loaded=loaded)
            for prop, index in self._unique[kind].items():
                value = obj["properties"].get(prop)
                if value:
                    index[value.lower()] = object_id

    def sorted_ids(self, kind: str) -> list[int]:
        if not self._ids_sorted[kind]:
            self._ids[kind].sort()
            self._ids_sorted[kind] = True
        return self._ids[kind]

    def find(self, kind: str, object_id: str, id_property: str | None = None) -> HubSpotObject | None:
        """A live object by id or by a unique property's value."""
        if id_property and id_property != "hs_object_id":
            found = self._unique[kind].get(id_property, {}).get(str(object_id).lower())
            obj = self.objects[kind].get(found) if found else None
        else:
            obj = self.objects[kind].get(str(object_id))
        return obj if obj is not None and not obj["archived"] else None

    def check_id_property(self, kind: str, id_property: str | None) -> None:
        if id_property and id_property != "hs_object_id" and id_property not in self._unique[kind]:
            raise validation_error(
                f"Property {id_property} is not a unique identifier property for {SINGULAR[kind]} objects"
            )

    def create_object(
        self, kind: str, properties: Mapping[str, Any], *, context: dict[str, list[str]] | None = None
    ) -> HubSpotObject:
        clean = self.validate(kind, properties, None, context=context)
        now = self.now_ms()
        object_id = str(self._next_id)
        created_prop = CREATED_PROPERTY[kind]
        created_ms = parse_time(clean[created_prop]) if clean.get(created_prop) else now
        props = {k: v for k, v in clean.items() if v != ""}
        props.update({"hs_object_id": object_id, MODIFIED_PROPERTY[kind]: iso_ms(now)})
        props.setdefault(created_prop, iso_ms(created_ms or now))
        if kind == "companies":
            props["hs_createdate"] = iso_ms(now)
        self._stamp_lifecycle(kind, props, clean, now)
        obj = {
            "id": object_id,
            "properties": props,
            "createdAt": iso_ms(created_ms or now),
            "updatedAt": iso_ms(now),
            "archived": False,
        }
        self._insert(kind, obj, now)
        return obj

    def update_object(
        self, kind: str, object_id: str, properties: Mapping[str, Any], id_property: str | None = None
    ) -> HubSpotObject:
        obj = self.find(kind, object_id, id_property)
        if obj is None:
            raise InputError(
                standard_error(
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {SINGULAR[kind].upper()} objects, they may be deleted or not exist. "
                    "Check that ids are valid.",
                    {"ids": [str(object_id)]},
                )
            )
        clean = self.validate(kind, properties, obj["id"])
        now = self.now_ms()
        props = obj["properties"]
        unique = self._unique[kind]
        for name, value in clean.items():
            if name in unique:
                old = props.get(name)
                if old:
                    unique[name].pop(old.lower(), None)
                if value:
                    unique[name][value.lower()] = obj["id"]
            if value == "":
                props.pop(name, None)  # an empty string clears the value
            else:
                props[name] = value
        self._stamp_lifecycle(kind, props, clean, now)
        stamp = iso_ms(now)
        props[MODIFIED_PROPERTY[kind]] = stamp
        obj["updatedAt"] = stamp
        self._modified[kind].set(int(obj["id"]), now)
        return obj

    def archive_object(self, kind: str, object_id: str) -> bool:
        obj = self.objects[kind].get(str(object_id))
        if obj is None or obj["archived"]:
            return False
        obj["archived"] = True
        obj["archivedAt"] = iso_ms(self.now_ms())
        self._modified[kind].remove(int(obj["id"]))
        for prop, index in self._unique[kind].items():
            value = obj["properties"].get(prop)
            if value and index.get(value.lower()) == obj["id"]:
                del index[value.lower()]
        return True

    def _stamp_lifecycle(self, kind: str, props: dict[str, str], clean: Mapping[str, str], now: int) -> None:
        # HubSpot records when a record entered each lifecycle stage; scoring labels are built from it.
        stage = clean.get("lifecyclestage")
        if stage and kind == "contacts":
            props.setdefault(f"hs_lifecyclestage_{stage}_date", iso_ms(now))
        deal_stage = clean.get("dealstage")
        if deal_stage and kind == "deals":
            # HubSpot calculates these from the stage; closing a deal without a close date stamps one.
            won = CLOSED_DEAL_STAGES.get(deal_stage)
            props["hs_is_closed"] = "true" if won is not None else "false"
            props["hs_is_closed_won"] = "true" if won else "false"
            if won is not None and not props.get("closedate"):
                props["closedate"] = iso_ms(now)

    def validate(
        self,
        kind: str,
        properties: Mapping[str, Any],
        object_id: str | None,
        *,
        context: dict[str, list[str]] | None = None,
    ) -> dict[str, str]:
        """HubSpot's per-property checks; returns the values as HubSpot stores them or raises InputError."""
        if not isinstance(properties, Mapping):
            raise InputError(
                standard_error("VALIDATION_ERROR", "properties must be an object", context or {})
            )
        schema = self.schema[kind]
        clean: dict[str, str] = {}
        problems: list[dict[str, str]] = []
        owners = {o["id"] for o in self.owners}
        for name, raw in properties.items():
            definition = schema.get(name)
            if definition is None:
                problems.append(
                    {
                        "name": name,
                        "error": "PROPERTY_DOESNT_EXIST",
                        "message": f'Property "{name}" does not exist',
                    }
                )
                continue
            if definition["modificationMetadata"]["readOnlyValue"]:
                problems.append(
                    {
                        "name": name,
                        "error": "READ_ONLY_VALUE",
                        "message": f'"{name}" is a read only property; its value cannot be set.',
                    }
                )
                continue
            value = "" if raw is None else (str(raw).lower() if isinstance(raw, bool) else str(raw))
            normal, problem = self._check_value(definition, value, owners)
            if problem:
                problems.append(
                    {
                        "name": name,
                        "error": problem,
                        "message": f"{value!r} was not a valid {definition['type']} for {name}",
                    }
                )
                continue
            unique = self._unique[kind].get(name)
            if unique is not None and normal:
                holder = unique.get(normal.lower())
                if holder is not None and holder != object_id:
                    raise InputError(
                        standard_error(
                            "CONFLICT",
                            f"A {SINGULAR[kind]} with {name} {normal} already exists. Existing ID: {holder}",
                            context or ({"ids": [object_id]} if object_id else {name: [normal]}),
                        )
                    )
            clean[name] = normal
        if problems:
            raise _invalid(
                problems,
                context
                or ({"ids": [object_id]} if object_id else {"propertyName": [p["name"] for p in problems]}),
            )
        return clean

    @staticmethod
    def _check_value(definition: Mapping[str, Any], value: str, owners: set[str]) -> tuple[str, str | None]:
        if value == "":
            return value, None
        kind, name = definition["type"], definition["name"]
        if kind == "number":
            try:
                number = float(value)
            except ValueError:
                return value, "INVALID_INTEGER" if name.endswith("id") else "INVALID_FLOAT"
            return (value, None) if math.isfinite(number) else (value, "INVALID_FLOAT")
        if kind in ("datetime", "date"):
            ms = parse_time(value)
            return (iso_ms(ms), None) if ms is not None else (value, "INVALID_DATE")
        if kind == "bool":
            return (value.lower(), None) if value.lower() in ("true", "false") else (value, "INVALID_OPTION")
        if kind == "enumeration":
            if name == "hubspot_owner_id":
                return (value, None) if value in owners else (value, "INVALID_OWNER_ID")
            options = {o["value"] for o in definition["options"]}
            return (value, None) if value in options else (value, "INVALID_OPTION")
        return value, None

    def add_property(self, kind: str, definition: Mapping[str, Any]) -> dict[str, Any]:
        from connectors.sandbox._hubspot_schema import _prop  # the one place definitions are shaped

        name = definition.get("name")
        if not isinstance(name, str) or not name:
            raise validation_error("A property needs a name")
        if name in self.schema[kind]:
            raise HubSpotError(409, "OBJECT_ALREADY_EXISTS", f"Property {name} already exists")
        prop = _prop(
            name,
            str(definition.get("label", name)),
            str(definition.get("type", "string")),
            str(definition.get("fieldType", "text")),
            unique=bool(definition.get("hasUniqueValue", False)),
            options=tuple(o["value"] for o in definition.get("options") or []),
            custom=True,
        )
        self.schema[kind][name] = prop
        self._refresh_unique(kind)
        return prop

    def _refresh_unique(self, kind: str) -> None:
        for name, definition in self.schema[kind].items():
            if definition["hasUniqueValue"] and name not in self._unique[kind]:
                self._unique[kind][name] = {
                    obj["properties"][name].lower(): obj["id"]
                    for obj in self.objects[kind].values()
                    if obj["properties"].get(name) and not obj["archived"]
                }

    # ------------------------------------------------------------------------------------------------
    # Associations

    def associate(self, from_kind: str, from_id: str, to_kind: str, to_id: str, type_id: int) -> None:
        self.associations.setdefault((from_kind, from_id, to_kind), {}).setdefault(to_id, set()).add(type_id)
        reverse = REVERSE_ASSOCIATION.get(type_id, type_id)
        self.associations.setdefault((to_kind, to_id, from_kind), {}).setdefault(from_id, set()).add(reverse)

    def check_association(self, from_kind: str, to_kind: str, to_id: str, type_id: object) -> str | None:
        """Why an association cannot be made, or None."""
        if not isinstance(type_id, int) or ASSOCIATION_TYPES.get(type_id) != (from_kind, to_kind):
            return f"{type_id!r} is not a valid association type id from {from_kind} to {to_kind}"
        if self.find(to_kind, to_id) is None:
            return f"No {SINGULAR[to_kind]} with id {to_id} exists"
        return None

    # ------------------------------------------------------------------------------------------------
    # Events

    def _index_events(self) -> None:
        if not self._events_dirty:
            return
        ms = self._event_ms
        if not all(map(operator.le, ms, islice(ms, 1, None))):  # generated datasets arrive sorted
            import numpy as np  # a stable argsort over millions of timestamps

            order = np.argsort(np.asarray(ms, dtype=np.int64), kind="stable").tolist()
            self.events = [self.events[i] for i in order]
            self._event_ms = [ms[i] for i in order]
        self._events_dirty = False

    def _events_of(self, object_type: str, object_id: str) -> list[int]:
        if self._events_by_object is None:
            # only objectId queries need this map; whole-stream pulls never pay for it
            by_object: dict[tuple[str, str], list[int]] = {}
            for position, event in enumerate(self.events):
                by_object.setdefault((event["objectType"], str(event["objectId"])), []).append(position)
            self._events_by_object = by_object
        return self._events_by_object.get((object_type, object_id), [])

    def query_events(
        self,
        *,
        object_type: str,
        object_id: str | None,
        event_type: str | None,
        after_ms: int | None,
        before_ms: int | None,
        descending: bool,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of events and the cursor of the next page (``None`` on the last page).

        ``occurredAfter``/``occurredBefore`` are exclusive bounds. The cursor is an opaque position in
        the time-ordered candidate list, so paging with filters never rescans earlier pages.
        """
        self._index_events()
        ms = self._event_ms
        if object_id is not None:
            positions: list[int] | range = self._events_of(object_type, object_id)
            start = bisect_right(positions, after_ms, key=ms.__getitem__) if after_ms is not None else 0
            stop = (
                bisect_left(positions, before_ms, key=ms.__getitem__)
                if before_ms is not None
                else len(positions)
            )
        else:
            positions = range(len(ms))
            start = bisect_right(ms, after_ms) if after_ms is not None else 0
            stop = bisect_left(ms, before_ms) if before_ms is not None else len(ms)
        order = range(stop - 1, start - 1, -1) if descending else range(start, stop)
        offset = _decode_cursor(cursor)
        events = self.events
        page: list[dict[str, Any]] = []
        for n in range(offset, len(order)):
            event = events[positions[order[n]]]
            if event["objectType"] != object_type or (event_type and event["eventType"] != event_type):
                continue
            if len(page) == limit:
                return page, _encode_cursor(n)
            page.append(event)
        return page, None


def _encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(text[1:]) if text.startswith("p") else int("x")
    except ValueError:
        raise validation_error(f"Invalid paging cursor: {cursor}") from None
