"""The webhook's signature: HMAC-SHA256 over ``"<timestamp>.<body>"``, sent with the timestamp.

The timestamp is inside the signed text so that a captured request cannot be replayed later: receivers
refuse signatures older than a few minutes. That is also why signing happens per attempt
(:class:`SigningAuth` is an ``httpx.Auth``, which httpx runs for every send): a retry after a long
``Retry-After`` wait carries a fresh timestamp instead of a stale one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator

import httpx

TIMESTAMP_HEADER = "X-Leadrelay-Timestamp"
SIGNATURE_HEADER = "X-Leadrelay-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex>``: the HMAC-SHA256 of ``b"<timestamp>." + body`` keyed with ``secret``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is the right one for this timestamp and body (constant-time comparison)."""
    try:
        expected = sign(secret, int(timestamp), body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, signature)


class SigningAuth(httpx.Auth):
    """Signs each attempt of a request with the current time."""

    def __init__(self, secret: str, now: Callable[[], float]) -> None:
        self._secret = secret
        self._now = now

    def __repr__(self) -> str:
        return "SigningAuth(secret=***)"  # never the secret, even in a debugger

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        timestamp = int(self._now())
        request.headers[TIMESTAMP_HEADER] = str(timestamp)
        request.headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, request.content)
        yield request


__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "SigningAuth", "sign", "verify"]
