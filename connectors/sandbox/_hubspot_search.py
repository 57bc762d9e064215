"""Search for the HubSpot sandbox: filter compilation, HubSpot's limits, and the modified-date index.

The connector's incremental pull is ``GTE`` on the modified-date property sorted ascending, page after page,
re-seeded from the last seen timestamp. :class:`ModifiedIndex` answers that query in O(log n) per page —
counting ``total`` included — so a 100k-contact sync does not pay a full scan per request. Any other
query falls back to a scan, which is what the sandbox's smaller users (tests, the demo) need.
"""

from __future__ import annotations

import fnmatch
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.sandbox._wire import parse_time, validation_error

Predicate = Callable[[Mapping[str, str]], bool]

OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
_RANGE_OPERATORS = frozenset({"EQ", "LT", "LTE", "GT", "GTE", "BETWEEN"})
_TOKEN_SPLIT = re.compile(r"[\s@.,;:/_\-]+")
MAX_QUERY_LENGTH = 3000
SEARCH_RESULT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class FilterLimits:
    """HubSpot's filter-count limits; the docs and the changelog disagree (apis.md 1.4), so configurable."""

    groups: int = 5
    per_group: int = 6
    total: int = 18


def _key_function(prop_type: str) -> Callable[[object], Any]:
    if prop_type == "datetime" or prop_type == "date":
        return parse_time
    if prop_type == "number":

        def number(value: object) -> float | None:
            try:
                return float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return None

        return number

    def text(value: object) -> str | None:
        return None if value is None else str(value).lower()

    return text


def _compile_filter(raw: Mapping[str, Any], types: Mapping[str, str]) -> Predicate:
    name = raw.get("propertyName")
    operator = raw.get("operator")
    if not isinstance(name, str) or operator not in OPERATORS:
        raise validation_error(f"Invalid filter: propertyName and a valid operator are required, got {raw!r}")
    key = _key_function(types.get(name, "string"))

    def value_of(field: str) -> Any:
        if field not in raw:
            raise validation_error(f"Filter on {name} with operator {operator} requires '{field}'")
        return key(raw[field])

    if operator == "HAS_PROPERTY":
        return lambda p: p.get(name) not in (None, "")
    if operator == "NOT_HAS_PROPERTY":
        return lambda p: p.get(name) in (None, "")
    if operator in ("IN", "NOT_IN"):
        values = raw.get("values")
        if not isinstance(values, list):
            raise validation_error(f"Filter on {name} with operator {operator} requires 'values'")
        wanted = {key(v) for v in values}
        if operator == "IN":
            return lambda p: key(p.get(name)) in wanted
        return lambda p: key(p.get(name)) not in wanted
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        needle = str(raw.get("value", "")).lower()

        def contains(p: Mapping[str, str]) -> bool:
            value = p.get(name)
            if not value:
                return False
            if "*" in needle:
                return fnmatch.fnmatchcase(value.lower(), needle)
            return needle in _TOKEN_SPLIT.split(value.lower()) or needle == value.lower()

        if operator == "CONTAINS_TOKEN":
            return contains
        return lambda p: not contains(p)

    low = value_of("value")
    if low is None:
        raise validation_error(f"Invalid value for {name}: {raw.get('value')!r}")
    if operator == "BETWEEN":
        high = value_of("highValue")
        if high is None:
            raise validation_error(f"Invalid highValue for {name}: {raw.get('highValue')!r}")

        def between(p: Mapping[str, str]) -> bool:
            v = key(p.get(name))
            return v is not None and low <= v <= high

        return between
    if operator == "NEQ":
        return lambda p: key(p.get(name)) != low
    compare: Callable[[Any], bool] = {
        "EQ": lambda v: v == low,
        "LT": lambda v: v < low,
        "LTE": lambda v: v <= low,
        "GT": lambda v: v > low,
        "GTE": lambda v: v >= low,
    }[operator]

    def ordered(p: Mapping[str, str]) -> bool:
        v = key(p.get(name))
        return v is not None and compare(v)

    return ordered


@dataclass(slots=True)
class CompiledSearch:
    """A validated search request: OR of groups, each an AND of predicates, plus index hints."""

    groups: list[list[Predicate]]
    # For a single group: the bounds the modified-date filters put on the index, and the other filters.
    index_range: tuple[int, int] | None
    residual: list[Predicate]
    sorts: list[tuple[str, bool]]  # (property, descending)
    limit: int
    after: int
    properties: list[str] | None

    def matches(self, props: Mapping[str, str]) -> bool:
        if not self.groups:
            return True
        return any(all(f(props) for f in group) for group in self.groups)


def compile_search(
    body: Mapping[str, Any], types: Mapping[str, str], modified: str, limits: FilterLimits
) -> CompiledSearch:
    """Validate a search body against HubSpot's limits and compile it (400 VALIDATION_ERROR otherwise)."""
    raw_groups = body.get("filterGroups") or []
    if not isinstance(raw_groups, list):
        raise validation_error("filterGroups must be a list")
    if len(raw_groups) > limits.groups:
        raise validation_error(f"Too many filter groups: {len(raw_groups)}; the maximum is {limits.groups}")
    total = 0
    groups: list[list[Predicate]] = []
    for group in raw_groups:
        filters = group.get("filters") or [] if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise validation_error("Each filter group needs a list of filters")
        if len(filters) > limits.per_group:
            raise validation_error(
                f"Too many filters in a filter group: {len(filters)}; the maximum is {limits.per_group}"
            )
        total += len(filters)
        groups.append([_compile_filter(f, types) for f in filters])
    if total > limits.total:
        raise validation_error(f"Too many filters: {total}; the maximum is {limits.total}")

    query = body.get("query")
    if query is not None:
        if len(str(query)) > MAX_QUERY_LENGTH:
            raise validation_error(f"query is longer than {MAX_QUERY_LENGTH} characters")
        groups = [[*g, _query_predicate(str(query))] for g in (groups or [[]])]

    sorts: list[tuple[str, bool]] = []
    for sort in body.get("sorts") or []:
        if isinstance(sort, str):  # the docs also show sorts as bare property names
            sorts.append((sort.lstrip("-"), sort.startswith("-")))
        elif isinstance(sort, dict) and isinstance(sort.get("propertyName"), str):
            sorts.append(
                (sort["propertyName"], str(sort.get("direction", "ASCENDING")).upper() == "DESCENDING")
            )
        else:
            raise validation_error(f"Invalid sort: {sort!r}")

    limit = _int(body.get("limit", 10), "limit")
    if not 1 <= limit <= 200:
        raise validation_error(f"limit must be between 1 and 200, got {limit}")
    after = _int(body.get("after") or 0, "after")
    if after < 0:
        raise validation_error("after must not be negative")
    if after >= SEARCH_RESULT_CAP:
        # HubSpot refuses to page a search beyond 10,000 results; clients must re-seed the filter instead.
        raise validation_error(
            f"Search results are limited to {SEARCH_RESULT_CAP} per query; 'after' ({after}) must be below "
            f"{SEARCH_RESULT_CAP}. Narrow the filters instead of paging further."
        )
    properties = body.get("properties")
    if properties is not None and not isinstance(properties, list):
        raise validation_error("properties must be a list of property names")

    index_range: tuple[int, int] | None = None
    residual: list[Predicate] = []
    if len(raw_groups) <= 1 and query is None and sorts in ([], [(modified, False)]):
        filters = raw_groups[0].get("filters") or [] if raw_groups else []
        index_range, residual = _index_plan(filters, groups[0] if groups else [], modified)
        if index_range is not None and not sorts:
            index_range = None  # unsorted searches page by id, which the index does not give
    return CompiledSearch(groups, index_range, residual, sorts, limit, after, properties)


def _int(value: object, name: str) -> int:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        raise validation_error(f"{name} must be an integer, got {value!r}") from None


def _query_predicate(query: str) -> Predicate:
    needle = query.lower().strip()
    fields = ("email", "firstname", "lastname", "phone", "company", "name", "domain", "hs_task_subject")

    def match(p: Mapping[str, str]) -> bool:
        return any(needle in (p.get(f) or "").lower() for f in fields)

    return match


def _index_plan(
    filters: list[dict[str, Any]], predicates: list[Predicate], modified: str
) -> tuple[tuple[int, int] | None, list[Predicate]]:
    lo, hi = -(2**62), 2**62  # inclusive bounds in epoch ms
    residual: list[Predicate] = []
    for raw, predicate in zip(filters, predicates, strict=True):
        op = raw.get("operator")
        if raw.get("propertyName") != modified or op not in _RANGE_OPERATORS:
            residual.append(predicate)
            continue
        low = parse_time(raw.get("value"))
        if low is None:
            residual.append(predicate)
            continue
        if op in ("GTE", "EQ", "BETWEEN"):
            lo = max(lo, low)
        if op == "GT":
            lo = max(lo, low + 1)
        if op in ("LTE", "EQ"):
            hi = min(hi, low)
        if op == "LT":
            hi = min(hi, low - 1)
        if op == "BETWEEN":
            high = parse_time(raw.get("highValue"))
            if high is None:
                return None, predicates
            hi = min(hi, high)
    # No bound on the modified date still walks the index (its whole range): a first pull sorted by modified
    # date must not sort every object again for each page.
    return (lo, hi), residual


class ModifiedIndex:
    """Live ``(modified_ms, id)`` keys in sorted order, with O(log n) counts and offset seeks.

    Writes stamp the clock's now, which is never earlier than the newest key, so an update appends and
    marks the old key dead instead of shifting a 100k-element list. A Fenwick tree over the alive flags
    turns "how many live keys from here" and "the k-th live key from here" into O(log n). A key that
    does not sort last (a loaded dataset, a clock moved backwards) marks the index for a rebuild.
    """

    def __init__(self) -> None:
        # id -> (modified ms, write sequence); the sequence orders writes within one millisecond, so a
        # write always sorts last and appends (loaded rows get sequence 0 and sort by id within a ms)
        self._current: dict[int, tuple[int, int]] = {}
        self._seq = 0
        self._keys: list[tuple[int, int, int]] = []
        self._pos: dict[int, int] = {}
        self._alive = bytearray()
        self._tree: list[int] = [0]
        self._dirty = False

    def __len__(self) -> int:
        return len(self._current)

    def set(self, object_id: int, ms: int, *, loaded: bool = False) -> None:
        old = self._current.get(object_id)
        if old is not None and old[0] == ms:
            return
        self._seq += 1
        stamp = (ms, 0 if loaded else self._seq)
        self._current[object_id] = stamp
        if self._dirty:
            return
        if old is not None:
            self._kill(self._pos[object_id])
        key = (*stamp, object_id)
        if (self._keys and key < self._keys[-1]) or len(self._keys) >= len(self._tree) - 1:
            self._dirty = True
            return
        self._pos[object_id] = len(self._keys)
        self._keys.append(key)
        self._alive.append(1)
        self._add(len(self._keys) - 1, 1)

    def remove(self, object_id: int) -> None:
        if self._current.pop(object_id, None) is not None and not self._dirty:
            self._kill(self._pos.pop(object_id))

    def count(self, lo: int, hi: int) -> int:
        """Live keys with ``lo <= ms <= hi``."""
        self._fresh()
        start, stop = self._bounds(lo, hi)
        return self._prefix(stop) - self._prefix(start)

    def scan(self, lo: int, hi: int, skip: int = 0) -> Iterator[int]:
        """Ids of live keys with ``lo <= ms <= hi`` in key order, after skipping ``skip`` of them."""
        self._fresh()
        start, stop = self._bounds(lo, hi)
        target = self._prefix(start) + skip
        if target >= self._prefix(stop):
            return
        pos = self._find(target + 1)
        keys, alive = self._keys, self._alive
        while pos < stop:
            if alive[pos]:
                yield keys[pos][2]
            pos += 1

    def _bounds(self, lo: int, hi: int) -> tuple[int, int]:
        start = bisect_left(self._keys, (lo, -1, -1))
        return start, max(start, bisect_left(self._keys, (hi + 1, -1, -1)))

    def _kill(self, pos: int) -> None:
        if self._alive[pos]:
            self._alive[pos] = 0
            self._add(pos, -1)

    def _fresh(self) -> None:
        if not self._dirty:
            return
        self._keys = sorted((ms, seq, i) for i, (ms, seq) in self._current.items())
        self._pos = {i: n for n, (_, _, i) in enumerate(self._keys)}
        self._alive = bytearray(b"\x01" * len(self._keys))
        size = 2 * len(self._keys) + 1024
        tree = [0] * (size + 1)
        tree[1 : len(self._keys) + 1] = [1] * len(self._keys)
        for j in range(1, size + 1):
            parent = j + (j & -j)
            if parent <= size:
                tree[parent] += tree[j]
        self._tree = tree
        self._dirty = False

    def _add(self, pos: int, delta: int) -> None:
        tree, size, j = self._tree, len(self._tree) - 1, pos + 1
        while j <= size:
            tree[j] += delta
            j += j & -j

    def _prefix(self, pos: int) -> int:
        tree, total, j = self._tree, 0, pos
        while j > 0:
            total += tree[j]
            j -= j & -j
        return total

    def _find(self, k: int) -> int:
        """Position of the k-th (1-based) live key."""
        tree, size = self._tree, len(self._tree) - 1
        pos, step = 0, 1 << size.bit_length()
        while step:
            nxt = pos + step
            if nxt <= size and tree[nxt] < k:
                pos = nxt
                k -= tree[nxt]
            step >>= 1
        return pos
