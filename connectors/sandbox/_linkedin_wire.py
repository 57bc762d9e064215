"""Wire-level helpers of the LinkedIn sandbox: LinkedIn's error body, its well-known errors and the rules
for one element of a DMP segment users BATCH_CREATE (reference/apis.md §6).

Errors are ``{"status": <HTTP status>, "serviceErrorCode": <int>?, "code": "<NAME>", "message": "…"}``;
a failed element inside a 200 batch answer is ``{"status": 400, "error": {<the same body>}}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ID_PATTERNS = {
    "SHA256_EMAIL": re.compile(r"[0-9a-f]{64}"),
    "SHA512_EMAIL": re.compile(r"[0-9a-f]{128}"),
    "GOOGLE_AID": re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
}
NAME_LIMIT, TEXT_LIMIT = 35, 50  # firstName/lastName; title/company
_COUNTRY = re.compile(r"[A-Z]{2}")


class LinkedInError(Exception):
    """A whole-request error with LinkedIn's body; 429s carry no headers at all (apis.md §6.3)."""

    def __init__(self, status: int, code: str, message: str, service_code: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.service_code = status, code, message, service_code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.service_code is not None:
            body["serviceErrorCode"] = self.service_code
        return body


def invalid_token() -> LinkedInError:
    return LinkedInError(401, "INVALID_ACCESS_TOKEN", "Invalid access token", 65600)


def expired_token() -> LinkedInError:
    return LinkedInError(401, "EXPIRED_ACCESS_TOKEN", "The token used in the request has expired", 65601)


def version_missing() -> LinkedInError:
    return LinkedInError(400, "VERSION_MISSING", "A version must be present. Please specify a version by adding the "
                                                 "LinkedIn-Version header.")


def version_inactive(version: str) -> LinkedInError:
    return LinkedInError(426, "NONEXISTENT_VERSION", f"Requested version {version} is not active")


def protocol_required() -> LinkedInError:
    return LinkedInError(400, "ILLEGAL_ARGUMENT", "This endpoint requires Rest.li protocol version 2.0.0 "
                                                  "(X-Restli-Protocol-Version: 2.0.0)")


def access_denied(resource: str) -> LinkedInError:
    return LinkedInError(403, "ACCESS_DENIED", f"Not enough permissions to access: {resource}", 100)


def not_found() -> LinkedInError:
    return LinkedInError(404, "NOT_FOUND", "Not Found")


def throttled() -> LinkedInError:
    return LinkedInError(429, "TOO_MANY_REQUESTS",
                         "Resource level throttle limit for calls to this resource is reached.", 101)


def invalid(message: str) -> LinkedInError:
    return LinkedInError(400, "ILLEGAL_ARGUMENT", message)


def server_error(status: int) -> LinkedInError:
    names = {500: "INTERNAL_SERVER_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}
    return LinkedInError(status, names.get(status, "INTERNAL_SERVER_ERROR"), "Internal Server Error")


def element_error(status: int, message: str, code: str = "ILLEGAL_ARGUMENT") -> dict[str, Any]:
    return {"status": status, "error": {"status": status, "code": code, "message": message}}


def check_element(element: Any) -> tuple[str, list[tuple[str, str]]] | str:
    """(action, identity keys) for a valid element, else why LinkedIn refuses it."""
    if not isinstance(element, Mapping):
        return "Input field validation failure, reason: ERROR :: / :: element must be a record"
    action = element.get("action")
    if action not in ("ADD", "REMOVE"):
        return "Input field validation failure, reason: ERROR :: /action :: must be ADD or REMOVE"
    keys: list[tuple[str, str]] = []
    for position, user_id in enumerate(element.get("userIds") or []):
        kind = user_id.get("idType") if isinstance(user_id, Mapping) else None
        value = user_id.get("idValue") if isinstance(user_id, Mapping) else None
        pattern = ID_PATTERNS.get(str(kind))
        if pattern is None:
            return f"Input field validation failure, reason: ERROR :: /userIds/{position}/idType :: unsupported"
        if not isinstance(value, str) or not pattern.fullmatch(value):
            return f"Invalid idValue for idType {kind} at /userIds/{position}"
        keys.append((str(kind), value))
    first, last = element.get("firstName"), element.get("lastName")
    for name, value, limit in (("firstName", first, NAME_LIMIT), ("lastName", last, NAME_LIMIT),
                               ("title", element.get("title"), TEXT_LIMIT),
                               ("company", element.get("company"), TEXT_LIMIT)):
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            return f"Input field validation failure, reason: ERROR :: /{name} :: length must be at most {limit}"
    country = element.get("country")
    if country is not None and (not isinstance(country, str) or not _COUNTRY.fullmatch(country)):
        return "Input field validation failure, reason: ERROR :: /country :: must be an ISO 3166-1 alpha-2 code"
    if not keys:
        if not (isinstance(first, str) and first and isinstance(last, str) and last):
            return "firstName and lastName are required when no userIds are given"
        keys.append(("NAME", "|".join((first.lower(), last.lower(), str(country or "")))))
    return str(action), keys


__all__ = [
    "ID_PATTERNS",
    "LinkedInError",
    "access_denied",
    "check_element",
    "element_error",
    "expired_token",
    "invalid",
    "invalid_token",
    "not_found",
    "protocol_required",
    "server_error",
    "throttled",
    "version_inactive",
    "version_missing",
]
