"""The subset of SOQL the Salesforce sandbox understands, parsed and compiled against an object's schema.

::

    SELECT field, … FROM Object
      [WHERE cond AND cond …]     cond: field (= | != | <> | < | <= | > | >=) literal | field [NOT] IN (literal, …)
      [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], …]
      [LIMIT n]

Literals are typed as in SOQL: strings in single quotes (backslash escapes), datetimes unquoted
(``2024-01-01T00:00:00Z``, milliseconds and offsets allowed), dates (``2024-01-01``), numbers, ``true``,
``false`` and ``null``. Keywords and field names are case-insensitive. A literal of the wrong type for its
field is refused the way Salesforce refuses it (400 ``INVALID_FIELD``: a quoted datetime is the classic).
Anything outside the subset is a 400 ``MALFORMED_QUERY``, so a connector cannot rely on more than this.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.sandbox._salesforce_schema import ObjectSchema
from connectors.sandbox._salesforce_wire import (
    invalid_field,
    invalid_type,
    malformed_query,
    parse_date_literal,
    parse_datetime_literal,
)

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')"
    r"|(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))"
    r"|(?P<date>\d{4}-\d{2}-\d{2})(?![\w:])"
    r"|(?P<number>-?\d+(?:\.\d+)?)(?![\w.])"
    r"|(?P<op><=|>=|!=|<>|=|<|>)"
    r"|(?P<punct>[(),])"
    r"|(?P<word>[A-Za-z_][\w.]*))"
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a is not None and b is not None and a < b,
    "<=": lambda a, b: a is not None and b is not None and a <= b,
    ">": lambda a, b: a is not None and b is not None and a > b,
    ">=": lambda a, b: a is not None and b is not None and a >= b,
}


@dataclass(frozen=True, slots=True)
class Literal:
    kind: str  # "string", "datetime", "date", "number", "boolean", "null"
    value: Any


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str  # one of _COMPARE, "IN" or "NOT IN"
    values: tuple[Literal, ...]


@dataclass(frozen=True, slots=True)
class Query:
    fields: tuple[str, ...]
    sobject: str
    where: tuple[Condition, ...]
    order: tuple[tuple[str, bool, bool], ...]  # field, descending, nulls last
    limit: int | None


class _Tokens:
    def __init__(self, text: str) -> None:
        self.items: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            found = _TOKEN.match(text, pos)
            if found is None or found.end() == pos:
                raise malformed_query(f"unexpected token: '{text[pos:].split()[0]}'")
            kind = found.lastgroup or ""
            self.items.append((kind, found.group(kind)))
            pos = found.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def next(self, what: str) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise malformed_query(f"unexpected end of query, expected {what}")
        self.pos += 1
        return token

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].upper() in words:
            self.pos += 1
            return True
        return False

    def expect(self, word: str) -> None:
        kind, value = self.next(word)
        if kind != "word" or value.upper() != word:
            raise malformed_query(f"unexpected token: '{value}', expected {word}")

    def name(self, what: str) -> str:
        kind, value = self.next(what)
        if kind != "word":
            raise malformed_query(f"unexpected token: '{value}', expected {what}")
        return value


def _literal(tokens: _Tokens) -> Literal:
    kind, text = tokens.next("a value")
    if kind == "string":
        return Literal("string", re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1]))
    if kind == "datetime":
        return Literal("datetime", parse_datetime_literal(text))
    if kind == "date":
        value = parse_date_literal(text)
        if value is None:
            raise malformed_query(f"invalid date: {text}")
        return Literal("date", value)
    if kind == "number":
        return Literal("number", float(text) if "." in text else int(text))
    if kind == "word" and text.lower() in ("true", "false"):
        return Literal("boolean", text.lower() == "true")
    if kind == "word" and text.lower() == "null":
        return Literal("null", None)
    raise malformed_query(f"unexpected token: '{text}'")


def parse(text: str) -> Query:
    """Parse one SOQL statement of the subset above."""
    tokens = _Tokens(text)
    tokens.expect("SELECT")
    fields = [tokens.name("a field")]
    while tokens.peek() == ("punct", ","):
        tokens.pos += 1
        fields.append(tokens.name("a field"))
    tokens.expect("FROM")
    sobject = tokens.name("an object")
    where: list[Condition] = []
    if tokens.keyword("WHERE"):
        while True:
            where.append(_condition(tokens))
            if not tokens.keyword("AND"):
                break
        if tokens.peek() is not None and tokens.peek()[1].upper() == "OR":  # type: ignore[index]
            raise malformed_query("the sandbox supports AND-joined conditions only: unexpected token: 'OR'")
    order: list[tuple[str, bool, bool]] = []
    if tokens.keyword("ORDER"):
        tokens.expect("BY")
        while True:
            name = tokens.name("a field")
            descending = tokens.keyword("DESC")
            if not descending:
                tokens.keyword("ASC")
            nulls_last = descending  # Salesforce's default: NULLS FIRST ascending, NULLS LAST descending
            if tokens.keyword("NULLS"):
                nulls_last = tokens.keyword("LAST")
                if not nulls_last:
                    tokens.expect("FIRST")
            order.append((name, descending, nulls_last))
            if tokens.peek() != ("punct", ","):
                break
            tokens.pos += 1
    limit = None
    if tokens.keyword("LIMIT"):
        kind, value = tokens.next("a number")
        if kind != "number" or not value.isdigit():
            raise malformed_query(f"unexpected token: '{value}', expected a row limit")
        limit = int(value)
    leftover = tokens.peek()
    if leftover is not None:
        raise malformed_query(f"unexpected token: '{leftover[1]}'")
    return Query(tuple(fields), sobject, tuple(where), tuple(order), limit)


def _condition(tokens: _Tokens) -> Condition:
    name = tokens.name("a field")
    negated = tokens.keyword("NOT")
    if tokens.keyword("IN"):
        if tokens.next("(") != ("punct", "("):
            raise malformed_query("expected '(' after IN")
        values = [_literal(tokens)]
        while tokens.peek() == ("punct", ","):
            tokens.pos += 1
            values.append(_literal(tokens))
        if tokens.next(")") != ("punct", ")"):
            raise malformed_query("expected ')' closing the IN list")
        return Condition(name, "NOT IN" if negated else "IN", tuple(values))
    if negated:
        raise malformed_query("unexpected token: 'NOT'")
    kind, op = tokens.next("an operator")
    if kind != "op":
        raise malformed_query(f"unexpected token: '{op}', expected an operator")
    return Condition(name, "!=" if op == "<>" else op, (_literal(tokens),))


# --------------------------------------------------------------------------------------------------
# Compiling against a schema

_LITERAL_FOR = {"datetime": "datetime", "date": "date", "boolean": "boolean", "int": "number",
                "double": "number"}
_TYPE_NAMES = {"datetime": "dateTime", "date": "date", "boolean": "boolean", "int": "int", "double": "double"}


@dataclass(frozen=True, slots=True)
class Compiled:
    """A parsed query bound to an object: the selected fields, a row filter and a sort key."""

    schema: ObjectSchema
    fields: tuple[str, ...]
    matches: Callable[[Mapping[str, Any]], bool]
    order: tuple[tuple[str, bool, bool], ...]
    limit: int | None


def _field(schema: ObjectSchema, name: str) -> str:
    found = schema.resolve(name)
    if found is None:
        raise invalid_field(
            f"No such column '{name}' on entity '{schema.name}'. If you are attempting to use a custom field, "
            "be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
            "describe call for the appropriate names."
        )
    return found


def _check(schema: ObjectSchema, name: str, literal: Literal) -> Any:
    kind = schema.fields[name]
    wanted = _LITERAL_FOR.get(kind, "string")
    if literal.kind == "null" or literal.kind == wanted:
        return literal.value
    if wanted in ("datetime", "date"):
        detail = "should not be enclosed in quotes" if literal.kind == "string" else "is not valid"
        raise invalid_field(f"value of filter criterion for field '{name}' must be of type "
                            f"{_TYPE_NAMES[kind]} and {detail}")
    raise invalid_field(f"value of filter criterion for field '{name}' must be of type "
                        f"{_TYPE_NAMES.get(kind, 'string')}")


def compile_query(query: Query, schemas: Mapping[str, ObjectSchema]) -> Compiled:
    schema = next((s for n, s in schemas.items() if n.lower() == query.sobject.lower()), None)
    if schema is None:
        raise invalid_type(query.sobject)
    fields = tuple(dict.fromkeys(_field(schema, name) for name in query.fields))
    tests: list[Callable[[Mapping[str, Any]], bool]] = []
    for cond in query.where:
        name = _field(schema, cond.field)
        values = [_check(schema, name, literal) for literal in cond.values]
        tests.append(_test(name, cond.op, values))
    order = tuple((_field(schema, name), desc, last) for name, desc, last in query.order)
    return Compiled(schema, fields, lambda row: all(test(row) for test in tests), order, query.limit)


def _test(name: str, op: str, values: list[Any]) -> Callable[[Mapping[str, Any]], bool]:
    if op in ("IN", "NOT IN"):
        wanted = set(values)
        inside = op == "IN"
        return lambda row: (row.get(name) in wanted) is inside
    compare, value = _COMPARE[op], values[0]
    return lambda row: compare(row.get(name), value)


def sort_key(order: tuple[tuple[str, bool, bool], ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A key for ``sorted`` honouring each field's direction and null placement (values of one field
    share a type, so each part compares within its own kind)."""

    def key(row: Mapping[str, Any]) -> tuple[Any, ...]:
        parts: list[Any] = []
        for name, descending, nulls_last in order:
            value = row.get(name)
            missing = value is None
            parts.append(missing if nulls_last else not missing)  # False sorts first
            parts.append(_Desc(value) if descending else _Asc(value))
        return tuple(parts)

    return key


class _Asc:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Asc) -> bool:
        if self.value is None or other.value is None:
            return False
        try:
            return bool(self.value < other.value)
        except TypeError:
            return str(self.value) < str(other.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Asc) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


class _Desc(_Asc):
    def __lt__(self, other: _Asc) -> bool:
        return _Asc(other.value) < _Asc(self.value)


__all__ = ["Compiled", "Condition", "Literal", "Query", "compile_query", "parse", "sort_key"]
