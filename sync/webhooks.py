"""Webhook receiver: CRM change notifications that trigger a near-real-time cycle.

A CRM calls these routes when records change; each verified call hands the changed record ids to
``on_trigger(connection, ids)``, which scores the affected leads and delivers their operations through the
same planner and outbox as a scheduled cycle (the daemon wires it). Two forms are accepted:

* **HubSpot** — ``POST /webhooks/hubspot/{connection}`` (or ``POST /webhooks/hubspot`` when one
  connection is configured). HubSpot's v3 request signature is verified: ``X-HubSpot-Signature-v3`` is
  ``base64(HMAC-SHA256(app secret, method + URI + body + X-HubSpot-Request-Timestamp))``, where URI is the
  full URL HubSpot called with the characters ``: / ? @ ! $ ' ( ) * , ;`` URL-decoded; a timestamp (ms)
  more than five minutes away is refused. The body is HubSpot's array of events; contact events
  (``contact.creation``, ``contact.propertyChange``, ``contact.merge`` …, or ``object.*`` with
  ``objectTypeId`` ``0-1``) give their ``objectId``; other objects' events are acknowledged and ignored.
* **Generic** (any system that can sign with HMAC) — ``POST /webhooks/{connection}`` with
  ``X-Leadrelay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`` (several ``v1=``
  entries are allowed while a secret is rotated) and a JSON body ``{"ids": ["123", ...]}``.

Answers: 202 accepted, 400 malformed body (naming the field), 401 missing/wrong signature or stale
timestamp, 404 unknown connection, 413 body over the size limit. Secrets are compared in constant time and
never logged or echoed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger(__name__)

OnTrigger = Callable[[str, list[str]], Awaitable[None] | None]
MAX_BODY_BYTES = 1_000_000
HUBSPOT_SIGNATURE = "X-HubSpot-Signature-v3"
HUBSPOT_TIMESTAMP = "X-HubSpot-Request-Timestamp"
GENERIC_SIGNATURE = "X-Leadrelay-Signature"
# HubSpot signs the URI with these characters decoded (its "Validating requests" guide lists them).
_HUBSPOT_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
                   "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_CONTACT_TYPE_ID = "0-1"


class WebhookRefused(Exception):
    """A notification refused, with the HTTP status to answer and why (never the secret)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------------
# Signing (the receiver's checks, and what tests and the bench send)


def hubspot_uri(uri: str) -> str:
    """The URI as HubSpot signs it: the listed percent-escapes decoded (either case), nothing else."""
    out, i = [], 0
    while i < len(uri):
        code = uri[i:i + 3].upper()
        if uri[i] == "%" and code in _HUBSPOT_DECODE:
            out.append(_HUBSPOT_DECODE[code])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def _hubspot_digest(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.upper().encode() + hubspot_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def sign_hubspot_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    """The headers HubSpot sends with a v3-signed request."""
    stamp = str(int(timestamp_ms))
    return {HUBSPOT_SIGNATURE: _hubspot_digest(secret, method, uri, body, stamp), HUBSPOT_TIMESTAMP: stamp}


def _generic_digest(secret: str, body: bytes, timestamp: str) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign_generic(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The ``X-Leadrelay-Signature`` header for ``body`` sent at ``timestamp`` (unix seconds)."""
    stamp = str(int(timestamp))
    return {GENERIC_SIGNATURE: f"t={stamp},v1={_generic_digest(secret, body, stamp)}"}


# --------------------------------------------------------------------------------------------------
# Verification


def _fresh(sent_at: float, now: float, max_age: float) -> None:
    if abs(now - sent_at) > max_age:
        raise WebhookRefused(401, f"stale request: timestamp is {now - sent_at:.0f} s away from now "
                            f"(at most {max_age:.0f} s accepted)")


def verify_hubspot(secret: str, method: str, uri: str, body: bytes, headers: Mapping[str, str], *,
                   now: float, max_age: float) -> None:
    signature, stamp = headers.get(HUBSPOT_SIGNATURE), headers.get(HUBSPOT_TIMESTAMP)
    if not signature or not stamp:
        raise WebhookRefused(401, f"missing {HUBSPOT_SIGNATURE} or {HUBSPOT_TIMESTAMP} header")
    if not stamp.isdigit():
        raise WebhookRefused(401, f"{HUBSPOT_TIMESTAMP} must be milliseconds since the epoch")
    _fresh(int(stamp) / 1000, now, max_age)
    expected = _hubspot_digest(secret, method, uri, body, stamp)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise WebhookRefused(401, "signature does not match (check the app's client secret and the public URL)")


def verify_generic(secret: str, body: bytes, headers: Mapping[str, str], *, now: float, max_age: float) -> None:
    header = headers.get(GENERIC_SIGNATURE)
    if not header:
        raise WebhookRefused(401, f"missing {GENERIC_SIGNATURE} header (t=<unix seconds>,v1=<hex hmac-sha256>)")
    stamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            stamp = value
        elif key == "v1":
            candidates.append(value)
    if stamp is None or not stamp.isdigit() or not candidates:
        raise WebhookRefused(401, f"{GENERIC_SIGNATURE} must read t=<unix seconds>,v1=<hex hmac-sha256>")
    _fresh(int(stamp), now, max_age)
    expected = _generic_digest(secret, body, stamp).encode()
    # Every candidate is compared (no early exit), so timing says nothing about which one matched.
    matched = [hmac.compare_digest(expected, c.encode()) for c in candidates]
    if not any(matched):
        raise WebhookRefused(401, "signature does not match")


# --------------------------------------------------------------------------------------------------
# Bodies


def hubspot_contact_ids(body: bytes) -> list[str]:
    """Contact ids named by a HubSpot notification body (an array of events), first-seen order, no repeats."""
    try:
        events = json.loads(body)
    except ValueError:
        raise WebhookRefused(400, "body: not valid JSON (HubSpot sends an array of events)") from None
    if not isinstance(events, list):
        raise WebhookRefused(400, "body: must be a JSON array of HubSpot events")
    ids: dict[str, None] = {}
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            raise WebhookRefused(400, f"[{i}]: must be an object")
        kind = event.get("subscriptionType")
        if not isinstance(kind, str):
            raise WebhookRefused(400, f"[{i}].subscriptionType: required (e.g. contact.propertyChange)")
        contact = kind.startswith("contact.") or (kind.startswith("object.")
                                                   and str(event.get("objectTypeId")) == _CONTACT_TYPE_ID)
        if not contact:
            continue
        object_id = event.get("objectId")
        if isinstance(object_id, bool) or not isinstance(object_id, int | str) or not str(object_id).isdigit():
            raise WebhookRefused(400, f"[{i}].objectId: must be a numeric record id, got {object_id!r}")
        ids[str(object_id)] = None
    return list(ids)


def generic_ids(body: bytes) -> list[str]:
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookRefused(400, 'body: not valid JSON (expected {"ids": [...]})') from None
    if not isinstance(data, dict) or "ids" not in data:
        raise WebhookRefused(400, 'ids: required (body is {"ids": ["123", ...]})')
    ids = data["ids"]
    if not isinstance(ids, list) or not ids:
        raise WebhookRefused(400, "ids: must be a non-empty list of record ids")
    out: dict[str, None] = {}
    for i, value in enumerate(ids):
        if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
            raise WebhookRefused(400, f"ids[{i}]: must be a non-empty string or integer, got {value!r}")
        out[str(value).strip()] = None
    return list(out)


# --------------------------------------------------------------------------------------------------
# Routes


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise WebhookRefused(413, f"body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookRefused(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _signed_uri(request: Request, public_url: str | None) -> str:
    """The URL the sender called: the raw path (as sent) and query, under ``public_url`` when the agent
    sits behind a proxy that changes scheme or host."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    base = public_url.rstrip("/") if public_url else f"{request.url.scheme}://{request.url.netloc}"
    return f"{base}{path}" + (f"?{query}" if query else "")


def webhook_routes(
    secrets: Mapping[str, str],
    on_trigger: OnTrigger,
    *,
    clock: Callable[[], float] = time.time,
    max_age_seconds: float = 300,
    max_body_bytes: int = MAX_BODY_BYTES,
    public_url: str | None = None,
) -> list[Route]:
    """Starlette routes receiving change notifications for the connections in ``secrets`` (name -> secret).

    ``on_trigger(connection, ids)`` (sync or async) is awaited before the 202 answer, so it should queue the
    work rather than run a cycle. ``clock`` gives unix seconds; ``public_url`` is the base URL senders
    call (``https://agent.example.com``) when a proxy sits in front, needed for HubSpot's signed URI.
    """
    known = dict(secrets)

    async def trigger(connection: str, ids: list[str]) -> None:
        if not ids:
            return
        result = on_trigger(connection, ids)
        if inspect.isawaitable(result):
            await result

    def refuse(exc: WebhookRefused, kind: str, connection: str | None) -> JSONResponse:
        log.warning("webhook %s for %s refused (%d): %s", kind, connection or "?", exc.status, exc.message)
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    def secret_of(connection: str) -> str:
        if connection not in known:
            raise WebhookRefused(404, f"no webhook connection named {connection!r}")
        return known[connection]

    async def generic(request: Request, connection: str) -> JSONResponse:
        try:
            secret = secret_of(connection)
            body = await _read_body(request, max_body_bytes)
            verify_generic(secret, body, request.headers, now=clock(), max_age=max_age_seconds)
            ids = generic_ids(body)
        except WebhookRefused as exc:
            return refuse(exc, "generic", connection)
        await trigger(connection, ids)
        log.info("webhook for %s accepted: %d id(s)", connection, len(ids))
        return JSONResponse({"connection": connection, "accepted": len(ids)}, status_code=202)

    async def hubspot(request: Request, connection: str) -> JSONResponse:
        try:
            secret = secret_of(connection)
            body = await _read_body(request, max_body_bytes)
            verify_hubspot(secret, request.method, _signed_uri(request, public_url), body, request.headers,
                           now=clock(), max_age=max_age_seconds)
            ids = hubspot_contact_ids(body)
        except WebhookRefused as exc:
            return refuse(exc, "hubspot", connection)
        await trigger(connection, ids)
        log.info("hubspot webhook for %s accepted: %d contact id(s)", connection, len(ids))
        return JSONResponse({"connection": connection, "accepted": len(ids)}, status_code=202)

    async def hubspot_named(request: Request) -> JSONResponse:
        return await hubspot(request, request.path_params["connection"])

    async def hubspot_only(request: Request) -> JSONResponse:
        # A connection may itself be called "hubspot": a generic-signed call to this path is for it.
        if GENERIC_SIGNATURE.lower() in request.headers and "hubspot" in known:
            return await generic(request, "hubspot")
        if len(known) != 1:
            return refuse(WebhookRefused(404, "several connections take webhooks: call /webhooks/hubspot/{connection}"),
                          "hubspot", None)
        return await hubspot(request, next(iter(known)))

    async def generic_named(request: Request) -> JSONResponse:
        return await generic(request, request.path_params["connection"])

    return [
        Route("/webhooks/hubspot", hubspot_only, methods=["POST"]),
        Route("/webhooks/hubspot/{connection}", hubspot_named, methods=["POST"]),
        Route("/webhooks/{connection}", generic_named, methods=["POST"]),
    ]


__all__ = [
    "GENERIC_SIGNATURE",
    "HUBSPOT_SIGNATURE",
    "HUBSPOT_TIMESTAMP",
    "MAX_BODY_BYTES",
    "WebhookRefused",
    "hubspot_contact_ids",
    "hubspot_uri",
    "sign_generic",
    "sign_hubspot_v3",
    "verify_generic",
    "verify_hubspot",
    "webhook_routes",
]
