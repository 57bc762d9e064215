"""Wire-level helpers of the Google Ads sandbox: the google.rpc.Status envelope, GoogleAdsFailure details
and the well-known errors (reference/apis.md §5.5).

Every error is ``{"error": {"code": <HTTP status>, "message", "status": <RPC code name>, "details": [...]}}``
whose details hold a ``GoogleAdsFailure`` (``errors[]`` with ``errorCode`` — one category key such as
``offlineUserDataJobError`` — ``message``, ``location.fieldPathElements`` and, for quota errors,
``details.quotaErrorDetails.retryDelay``) and a ``requestId``. Proto-JSON parse errors carry a
``google.rpc.BadRequest`` instead, as Google's front end answers them before the Ads backend sees the
request. Partial failures put the same Status (RPC code 3) into a 200 answer's ``partialFailureError``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

_RPC_CODES = {"INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
              "INTERNAL": 13, "UNAVAILABLE": 14, "UNAUTHENTICATED": 16}


def request_id() -> str:
    return uuid.uuid4().hex[:22]


@dataclass(frozen=True, slots=True)
class Failure:
    """One GoogleAdsError: ``errorCode`` {category: code}, message, field path, extra ``details``."""

    category: str
    code: str
    message: str
    path: tuple[tuple[str, int | None], ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def at_operation(self, index: int) -> Failure:
        """The same error located under ``operations[index]``."""
        return Failure(self.category, self.code, self.message, (("operations", index), *self.path), self.details)

    def json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"errorCode": {self.category: self.code}, "message": self.message}
        if self.path:
            error["location"] = {"fieldPathElements": [
                {"fieldName": name, **({"index": index} if index is not None else {})} for name, index in self.path]}
        if self.details:
            error["details"] = self.details
        return error


def ads_failure(version: str, failures: list[Failure]) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/google.ads.googleads.{version}.errors.GoogleAdsFailure",
            "errors": [f.json() for f in failures], "requestId": request_id()}


class AdsError(Exception):
    """A whole-request error, rendered as a google.rpc.Status envelope with HTTP ``status``."""

    def __init__(self, status: int, rpc: str, message: str, failures: list[Failure] | None = None, *,
                 extra_details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
                 html: bool = False) -> None:
        super().__init__(message)
        self.status, self.rpc, self.message = status, rpc, message
        self.failures = failures or []
        self.extra_details = extra_details or []
        self.headers = headers or {}
        self.html = html

    def body(self, version: str) -> dict[str, Any]:
        details = list(self.extra_details)
        if self.failures:
            details.append(ads_failure(version, self.failures))
        error: dict[str, Any] = {"code": self.status, "message": self.message, "status": self.rpc}
        if details:
            error["details"] = details
        return {"error": error}


def partial_failure_status(version: str, failures: list[Failure]) -> dict[str, Any]:
    """The ``partialFailureError`` of a 200 answer: RPC code 3 and each failing operation's errors."""
    text = ", ".join(f"{f.message} at operations[{f.path[0][1]}]" for f in failures if f.path)
    return {"code": _RPC_CODES["INVALID_ARGUMENT"], "message": f"Multiple errors in 'details'. {text}"[:1000],
            "details": [ads_failure(version, failures)]}


def invalid_argument(*failures: Failure) -> AdsError:
    return AdsError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", list(failures))


def job_error(code: str, message: str, path: tuple[tuple[str, int | None], ...] = ()) -> Failure:
    return Failure("offlineUserDataJobError", code, message, path)


def unauthenticated(code: str, message: str) -> AdsError:
    return AdsError(401, "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                    "or other valid authentication credential.", [Failure("authenticationError", code, message)])


def permission_denied(code: str, message: str) -> AdsError:
    return AdsError(403, "PERMISSION_DENIED", "The caller does not have permission", [
        Failure("authorizationError", code, message)])


def not_found(what: str) -> AdsError:
    return AdsError(404, "NOT_FOUND", f"Requested entity was not found: {what}")


def parse_error(path: str, value: Any, enum: str) -> AdsError:
    """What Google's proto-JSON parser answers for a bad enum value: no GoogleAdsFailure, a BadRequest."""
    message = f"Invalid value at '{path}' ({enum}), \"{value}\""
    return AdsError(400, "INVALID_ARGUMENT", message, extra_details=[
        {"@type": "type.googleapis.com/google.rpc.BadRequest",
         "fieldViolations": [{"field": path, "description": message}]}])


def quota_error(code: str, message: str, retry_delay_seconds: float, rate_name: str) -> AdsError:
    """A 429 RESOURCE_EXHAUSTED with ``quotaErrorDetails.retryDelay`` (what clients must wait)."""
    delay = f"{retry_delay_seconds:g}s"
    details = {"quotaErrorDetails": {"rateScope": "DEVELOPER", "rateName": rate_name, "retryDelay": delay}}
    return AdsError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).",
                    [Failure("quotaError", code, message, details=details)])


def server_error(status: int) -> AdsError:
    if status == 500:
        return AdsError(500, "INTERNAL", "Internal error encountered.",
                        [Failure("internalError", "INTERNAL_ERROR", "An internal error has occurred.")])
    if status == 503:
        return AdsError(503, "UNAVAILABLE", "The service is currently unavailable.")
    return AdsError(status, "UNAVAILABLE", "edge error", html=True)


def html_page(status: int) -> bytes:
    """The kind of page Google's front end serves for a 502/504: no JSON at all."""
    return (f"<!DOCTYPE html><html lang=en><meta charset=utf-8><title>Error {status} (Server Error)!!1</title>"
            f"<p><b>{status}.</b> <ins>That's an error.</ins><p>The server encountered a temporary error and "
            "could not complete your request.<p>Please try again in 30 seconds. <ins>That's all we know.</ins>"
            ).encode()


__all__ = [
    "AdsError",
    "Failure",
    "ads_failure",
    "html_page",
    "invalid_argument",
    "job_error",
    "not_found",
    "parse_error",
    "partial_failure_status",
    "permission_denied",
    "quota_error",
    "request_id",
    "server_error",
    "unauthenticated",
]
