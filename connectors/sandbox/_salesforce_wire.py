"""Wire-level helpers of the Salesforce sandbox: error bodies, datetimes and record ids (apis.md §2).

Salesforce answers a whole-request error as a JSON **array** ``[{"message", "errorCode", "fields"?}]``;
per-record errors inside a collections answer use ``statusCode`` instead of ``errorCode``. Datetimes go
out as ``2024-05-01T12:00:00.000+0000`` and come in as SOQL literals (``2024-05-01T12:00:00Z``, with or
without milliseconds, ``Z`` or an offset). Record ids are 18 characters: a three-character key prefix
naming the object type, and a three-character suffix that makes the id case-insensitive.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?(Z|[+-]\d{2}:?\d{2})$"
)


class SalesforceError(Exception):
    """A whole-request error, rendered as Salesforce's JSON array with ``status``."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        *,
        fields: list[str] | None = None,
        headers: dict[str, str] | None = None,
        html: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields
        self.headers = headers or {}
        self.html = html  # the edge in front of Salesforce answers some gateway failures with a page

    def body(self) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            entry["fields"] = self.fields
        return [entry]


def record_error(status_code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    """One entry of a collections answer's per-record ``errors`` (note: ``statusCode``, not ``errorCode``)."""
    return {"statusCode": status_code, "message": message, "fields": fields or []}


def session_expired() -> SalesforceError:
    return SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def request_limit_exceeded(message: str = "TotalRequests Limit exceeded.") -> SalesforceError:
    return SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", message)


def malformed_query(message: str) -> SalesforceError:
    return SalesforceError(400, "MALFORMED_QUERY", message)


def invalid_field(message: str) -> SalesforceError:
    return SalesforceError(400, "INVALID_FIELD", message)


def invalid_type(sobject: str) -> SalesforceError:
    return SalesforceError(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.")


def not_found(message: str = "The requested resource does not exist") -> SalesforceError:
    return SalesforceError(404, "NOT_FOUND", message)


def html_page(status: int) -> bytes:
    return (f"<html><head><title>{status}</title></head><body><h1>Service temporarily unavailable</h1>"
            f"<p>HTTP {status}</p></body></html>").encode()


# --------------------------------------------------------------------------------------------------
# Time


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def sf_datetime(ms: int) -> str:
    """Salesforce's response format for a datetime: ``2024-05-01T12:00:00.000+0000``."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


def sf_date(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d")


def parse_datetime_literal(text: str) -> int | None:
    """Epoch ms of a SOQL datetime literal or a JSON datetime value, ``None`` if it is not one."""
    found = _DATETIME.match(text.strip())
    if found is None:
        return None
    day, hour, minute, second, millis, zone = found.groups()
    try:
        base = datetime.fromisoformat(f"{day}T{hour}:{minute}:{second}").replace(tzinfo=UTC)
    except ValueError:
        return None
    ms = to_ms(base) + int((millis or "0").ljust(3, "0"))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        ms -= sign * (int(digits[:2]) * 60 + int(digits[2:])) * 60_000
    return ms


def parse_date_literal(text: str) -> str | None:
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# Record ids


def _suffix(id15: str) -> str:
    """The three characters that make a 15-character id case-insensitive (one per five characters)."""
    out = ""
    for start in (0, 5, 10):
        bits = 0
        for i in range(5):
            if id15[start + i].isupper():
                bits |= 1 << i
        out += _SUFFIX[bits]
    return out


def make_id(prefix: str, number: int) -> str:
    """An 18-character record id: key prefix, a pod marker, the number in base 62, the suffix."""
    digits = ""
    n = number
    while n:
        n, rest = divmod(n, 62)
        digits = _BASE62[rest] + digits
    id15 = prefix + "5g" + digits.rjust(10, "0")
    return id15 + _suffix(id15)


def normalise_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character id (what Salesforce accepts), or ``None``."""
    text = value.strip()
    if len(text) == 15 and text.isalnum():
        return text + _suffix(text)
    if len(text) == 18 and text.isalnum() and _suffix(text[:15]) == text[15:].upper():
        return text[:15] + _suffix(text[:15])
    return None


__all__ = [
    "SalesforceError",
    "html_page",
    "invalid_field",
    "invalid_type",
    "make_id",
    "malformed_query",
    "normalise_id",
    "not_found",
    "parse_date_literal",
    "parse_datetime_literal",
    "record_error",
    "request_limit_exceeded",
    "session_expired",
    "sf_date",
    "sf_datetime",
    "to_ms",
]
