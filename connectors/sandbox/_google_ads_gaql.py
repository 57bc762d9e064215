"""The sliver of GAQL (Google Ads Query Language) the sandbox answers through ``googleAds:search``.

``SELECT <resource.field, …> FROM <resource> [WHERE <resource>.<resource_name|id> = <'text'|number>]
[LIMIT n]`` over ``customer``, ``user_list`` and ``offline_user_data_job``. Rows are returned as Google
returns them: ``{"results": [{"<resourceInCamelCase>": {<only the selected fields, camelCase>}}],
"fieldMask": "…"}``, every resource's ``resourceName`` included. Anything else is a ``queryError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from connectors.sandbox._google_ads_wire import AdsError, Failure, invalid_argument

_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<resource>[a-z_]+)"
    r"(?:\s+WHERE\s+(?P<where>[a-z_.]+)\s*=\s*(?P<value>'[^']*'|\d+))?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$", re.IGNORECASE | re.DOTALL)

Rows = Callable[[str], Iterable[Mapping[str, Any]]]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _query_error(code: str, message: str) -> AdsError:
    return invalid_argument(Failure("queryError", code, message))


def _pick(row: Mapping[str, Any], path: list[str]) -> Any:
    value: Any = row
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _put(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def search(query: str, rows: Rows, resources: Iterable[str]) -> dict[str, Any]:
    """Answer ``query`` over ``rows(resource)`` (full resources in proto JSON)."""
    found = _QUERY.match(query or "")
    if found is None:
        raise _query_error("UNEXPECTED_INPUT", "Error in query: the sandbox understands SELECT … FROM … "
                                               "[WHERE x.resource_name|id = …] [LIMIT n].")
    resource = found.group("resource").lower()
    if resource not in resources:
        raise _query_error("INVALID_RESOURCE_NAME", f"Error in query: unrecognized resource '{resource}'.")
    fields = [f.strip() for f in found.group("fields").split(",")]
    paths = []
    for name in fields:
        owner, _, rest = name.partition(".")
        if owner != resource or not rest:
            raise _query_error("UNRECOGNIZED_FIELD", f"Error in query: unrecognized field '{name}'.")
        paths.append([camel(p) for p in rest.split(".")])
    selected = list(rows(resource))
    where = found.group("where")
    if where is not None:
        owner, _, column = where.partition(".")
        if owner != resource or column not in ("resource_name", "id"):
            raise _query_error("UNRECOGNIZED_FIELD", f"Error in query: cannot filter on '{where}' here.")
        wanted = found.group("value").strip("'")
        selected = [row for row in selected if str(row.get(camel(column))) == wanted]
    if found.group("limit") is not None:
        selected = selected[: int(found.group("limit"))]
    results = []
    for row in selected:
        picked: dict[str, Any] = {"resourceName": row["resourceName"]}
        for path in paths:
            value = _pick(row, path)
            if value is not None:
                _put(picked, path, value)
        results.append({camel(resource): picked})
    mask = ",".join(f"{camel(resource)}.{'.'.join(path)}" for path in paths)
    return {"results": results, "fieldMask": mask} if results else {"fieldMask": mask}


__all__ = ["camel", "search"]
