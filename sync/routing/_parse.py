"""``[routing.<name>]`` tables -> :class:`RoutingSpec`, every problem named by its key path."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sync.routing._spec import _T, Criteria, LeadFields, Rep, RoutingSpec, RoutingSpecError, Territory, Threshold, _text

# --------------------------------------------------------------------------------------------------
# Parsing the TOML table


def _table(value: Any, path: str, known: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RoutingSpecError(path, "must be a table")
    unknown = sorted(set(value) - set(known))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise RoutingSpecError(where, f"unknown key; expected one of {', '.join(sorted(known))}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise RoutingSpecError(path, "must be a list")
    return list(value)


_MATCH_KEYS = ("regions", "countries", "segments", "industries", "product_lines")


def _criteria(table: Mapping[str, Any], path: str) -> Criteria:
    values = {k: frozenset(_text(v, f"{path}.{k}[{i}]") for i, v in enumerate(_list(table[k], f"{path}.{k}")))
              for k in _MATCH_KEYS if k in table}
    return _build(Criteria, path, **values)


def _build(kind: Callable[..., _T], path: str, **values: Any) -> _T:
    try:
        return kind(**values)
    except RoutingSpecError as exc:
        raise exc.within(path) from None


def _parse_spec(data: Mapping[str, Any], name: str | None) -> RoutingSpec:
    fields = {f for f in RoutingSpec.__dataclass_fields__ if f != "name"} | ({"name"} if name is None else set())
    _table(data, "", fields)
    values = {k: v for k, v in data.items() if k not in ("reps", "territories", "thresholds", "fields")}
    if name is not None:
        values["name"] = name
    elif "name" not in data:
        raise RoutingSpecError("name", "required key is missing")
    reps = []
    for i, raw in enumerate(_list(data.get("reps", []), "reps")):
        path = f"reps[{i}]"
        _table(raw, path, Rep.__dataclass_fields__)
        for key in ("id", "daily_capacity"):
            if key not in raw:
                raise RoutingSpecError(f"{path}.{key}", "required key is missing")
        reps.append(_build(Rep, path, **raw))
    territories = []
    for i, raw in enumerate(_list(data.get("territories", []), "territories")):
        path = f"territories[{i}]"
        _table(raw, path, ("name", "reps", *_MATCH_KEYS))
        for key in ("name", "reps"):
            if key not in raw:
                raise RoutingSpecError(f"{path}.{key}", "required key is missing")
        territories.append(_build(Territory, path, name=raw["name"], reps=tuple(_list(raw["reps"], f"{path}.reps")),
                                  match=_criteria(raw, path)))
    thresholds = []
    for i, raw in enumerate(_list(data.get("thresholds", []), "thresholds")):
        path = f"thresholds[{i}]"
        _table(raw, path, ("min_score", *_MATCH_KEYS))
        if "min_score" not in raw:
            raise RoutingSpecError(f"{path}.min_score", "required key is missing")
        thresholds.append(_build(Threshold, path, min_score=raw["min_score"], match=_criteria(raw, path)))
    lead_fields = _table(data.get("fields", {}), "fields", LeadFields.__dataclass_fields__)
    if not isinstance(lead_fields.get("country_regions", {}), Mapping):
        raise RoutingSpecError("fields.country_regions", "must be a table of country = region")
    if "queue_owners" in values:
        values["queue_owners"] = frozenset(_list(values["queue_owners"], "queue_owners"))
    return _build(RoutingSpec, "", reps=tuple(reps), territories=tuple(territories), thresholds=tuple(thresholds),
                  fields=_build(LeadFields, "fields", **lead_fields), **values)
