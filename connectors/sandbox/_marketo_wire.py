"""Wire-level pieces of the Marketo sandbox: the response envelope, Marketo's error codes, timestamps,
paging tokens and request parameters (reference/apis.md §3.2).

Marketo answers almost everything with HTTP 200: a failed request is ``{"requestId", "success": false,
"errors": [{"code": "<quoted int>", "message"}]}``; only an oversized body (413), an overlong URL (414) and
bad client credentials on the identity endpoint (401) are HTTP-level. Timestamps are ISO-8601 UTC to the
second with a ``Z`` (``2024-05-01T12:00:00Z``).
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

# Response-level codes the sandbox answers, with Marketo's messages (apis.md §3.2).
MESSAGES: dict[int, str] = {
    600: "Access token not specified",
    601: "Access token invalid",
    602: "Access token expired",
    603: "Access denied",
    605: "HTTP Method not supported",
    606: "Max rate limit '100' exceeded with in '20' secs",
    607: "Daily quota reached",
    609: "Invalid JSON",
    610: "Requested resource not found",
    611: "System error",
    612: "Invalid Content Type",
    615: "Concurrent access limit reached",
    701: "cannot be blank",
    704: "Invalid date",
    1003: "Invalid data",
    1004: "Lead not found",
    1006: "Field not found",
    1013: "Object not found",
    1015: "Lead not in list",
}



class MarketoError(Exception):
    """A response-level failure: HTTP 200 with ``success: false`` and one error."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or MESSAGES.get(code, "Error"))
        self.code = code
        self.message = message or MESSAGES.get(code, "Error")

    def body(self, request_id: str) -> dict[str, Any]:
        return {"requestId": request_id, "success": False,
                "errors": [{"code": str(self.code), "message": self.message}]}


class HttpError(Exception):
    """An HTTP-level failure (413, 414, 401 on identity, 5xx from the edge): status and a body."""

    def __init__(self, status: int, body: dict[str, Any] | None = None, *, html: bool = False) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.html = html


def reason(code: int, message: str | None = None) -> dict[str, str]:
    """One entry of a record's ``reasons``."""
    return {"code": str(code), "message": message or MESSAGES.get(code, "Error")}


def iso_s(ms: int) -> str:
    """Marketo's timestamp layout (``2024-05-01T12:00:00Z``) for epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime_ms(text: str) -> int | None:
    """Epoch ms from ISO-8601 with ``Z`` or an offset (a bare date or naive time is UTC); None if unreadable."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def encode_token(position: int) -> str:
    """An opaque paging token for a position in the activity log (base32 like Marketo's, no padding)."""
    return base64.b32encode(f"pos:{position:012d}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int | None:
    try:
        text = base64.b32decode(token + "=" * (-len(token) % 8)).decode()
    except ValueError:
        return None
    if not text.startswith("pos:") or not text[4:].isdigit():
        return None
    return int(text[4:])


def encode_offset(offset: int) -> str:
    """A position-based token for Get Leads by Filter and list members (a cursor into one result set)."""
    return base64.b32encode(f"off:{offset:09d}".encode()).decode().rstrip("=")


def decode_offset(token: str) -> int | None:
    try:
        text = base64.b32decode(token + "=" * (-len(token) % 8)).decode()
    except ValueError:
        return None
    return int(text[4:]) if text.startswith("off:") and text[4:].isdigit() else None


def request_id(rng: random.Random) -> str:
    """``e42b#14272d07d78``: Marketo's request ids are two hex parts joined by ``#``."""
    return f"{rng.getrandbits(16):x}#{rng.getrandbits(44):x}"


class Params:
    """Request parameters: the query string, plus a form body when a POST says ``_method=GET``.

    Repeated keys are kept (``id=1&id=2``); :meth:`values` also splits comma-separated lists.
    """

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str) -> str | None:
        for key, value in self.pairs:
            if key == name:
                return value
        return None

    def values(self, name: str) -> list[str]:
        found: list[str] = []
        for key, value in self.pairs:
            if key == name:
                found.extend(part.strip() for part in value.split(",") if part.strip())
        return found


async def read_params(request: Request, body: bytes) -> tuple[Params, Any, str]:
    """(parameters, JSON body or None, effective method). A POST with ``_method=GET`` in its form body is a
    GET whose query moved into the body (Marketo's answer to 414)."""
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    method = request.method
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    payload: Any = None
    if body and kind == "application/x-www-form-urlencoded":
        form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        pairs.extend(form)
        if method == "POST" and any(k == "_method" and v.upper() == "GET" for k, v in form):
            method = "GET"
    elif body and kind == "application/json":
        try:
            payload = json.loads(body)
        except ValueError:
            raise MarketoError(609) from None
    elif body and method == "POST":
        raise MarketoError(612)
    return Params(pairs), payload, method


def html_page(status: int) -> bytes:
    title = {502: "502 Bad Gateway", 503: "503 Service Unavailable", 504: "504 Gateway Time-out",
             413: "413 Request Entity Too Large", 414: "414 Request-URI Too Large"}.get(status, str(status))
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>".encode()


__all__ = [
    "MESSAGES",
    "HttpError",
    "MarketoError",
    "Params",
    "decode_offset",
    "decode_token",
    "encode_offset",
    "encode_token",
    "html_page",
    "iso_s",
    "parse_datetime_ms",
    "read_params",
    "reason",
    "request_id",
]
