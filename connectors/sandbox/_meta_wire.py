"""Wire-level helpers of the Meta sandbox: Graph's error envelope, its well-known errors, and parameters.

Graph answers every error as ``{"error": {"message", "type", "code", "error_subcode"?, "error_user_title"?,
"error_user_msg"?, "is_transient"?, "fbtrace_id"}}`` with HTTP 400 for most of them, whatever the cause
(reference/apis.md §4.5): clients must key on ``code``, not on the status. Parameters arrive in the query
string, as form fields holding JSON text (what the SDKs send) or as a JSON body; all three are accepted.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

GRAPH_DOCS = "https://developers.facebook.com/docs/graph-api"
_RATE_DOCS = "https://developers.facebook.com/docs/graph-api/overview/rate-limiting"


class GraphError(Exception):
    """A whole-request error, rendered as Graph's error envelope with ``status`` (400 unless said)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: int = 400,
        kind: str = "OAuthException",
        subcode: int | None = None,
        user_title: str | None = None,
        user_msg: str | None = None,
        is_transient: bool | None = None,
        headers: dict[str, str] | None = None,
        html: bool = False,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.kind = code, message, status, kind
        self.subcode, self.user_title, self.user_msg = subcode, user_title, user_msg
        self.is_transient = is_transient
        self.headers = headers or {}
        self.html = html  # Meta's edge answers some failures with an HTML page instead of JSON

    def body(self, trace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.kind, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.is_transient is not None:
            error["is_transient"] = self.is_transient
        if self.user_title is not None:
            error["error_user_title"] = self.user_title
        if self.user_msg is not None:
            error["error_user_msg"] = self.user_msg
        error["fbtrace_id"] = trace_id
        return {"error": error}


def html_page(status: int) -> bytes:
    """The kind of page Meta's edge serves for a 502/504: no JSON at all."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\" id=\"facebook\"><head><title>Facebook | Error</title>"
        f"<meta charset=\"utf-8\"></head><body><h1>Sorry, something went wrong.</h1><p>HTTP {status}</p>"
        "</body></html>"
    ).encode()


def missing_token() -> GraphError:
    return GraphError(104, "An access token is required to request this resource.")


def invalid_token() -> GraphError:
    message = "Invalid OAuth access token - Cannot parse access token"
    return GraphError(190, message, headers={
        "WWW-Authenticate": f'OAuth "Facebook Platform" "invalid_token" "{message}"'})


def expired_token(expired_at: datetime, now: datetime) -> GraphError:
    stamp = "%A, %d-%b-%y %H:%M:%S UTC"
    message = (f"Error validating access token: Session has expired on {expired_at.strftime(stamp)}. "
               f"The current time is {now.strftime(stamp)}.")
    return GraphError(190, message, subcode=463, headers={
        "WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_token" "Error validating access token"'})


def proof_missing() -> GraphError:
    return GraphError(100, "API calls from the server require an appsecret_proof argument", kind="GraphMethodException")


def proof_invalid() -> GraphError:
    return GraphError(100, "Invalid appsecret_proof provided in the API argument", kind="GraphMethodException")


def no_such_object(method: str, object_id: str) -> GraphError:
    return GraphError(
        100,
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be loaded "
        f"due to missing permissions, or does not support this operation. Please read the Graph API "
        f"documentation at {GRAPH_DOCS}",
        kind="GraphMethodException",
        subcode=33,
    )


def unknown_path(path: str) -> GraphError:
    return GraphError(2500, f"Unknown path components: {path}")


def invalid_parameter(detail: str) -> GraphError:
    return GraphError(100, f"(#100) {detail}")


def audience_blocked() -> GraphError:
    """The documented answer to edits of a flagged audience (operation_status 471), apis.md §4.3."""
    return GraphError(
        100,
        "Invalid parameter",
        subcode=1713230,
        user_title="Audience Upload Blocked",
        user_msg=("Before updating user memberships, you must resolve integrity restrictions on this Data File "
                  "Custom Audience. Go to Audience Manager to appeal the restrictions or create a new audience "
                  "with updated data"),
    )


def throttled(code: int, headers: dict[str, str], status: int = 400) -> GraphError:
    """A rate-limit answer: 613 (the ad account's custom audience limit) or a Business Use Case code."""
    if code == 613:
        return GraphError(613, "(#613) Calls to this api have exceeded the rate limit.", status=status,
                          subcode=1487742, is_transient=True, user_title="Too many calls",
                          user_msg="There have been too many calls from this ad-account. Please wait a bit and "
                                   "try again.", headers=headers)
    return GraphError(code, f"(#{code}) There have been too many calls to this ad-account. Wait a bit and try "
                            f"again. For more info, please refer to {_RATE_DOCS}#custom-audience.",
                      status=status, is_transient=True, headers=headers)


def server_error(status: int) -> GraphError:
    if status == 500:
        return GraphError(1, "An unknown error occurred", status=500, subcode=99, is_transient=True)
    if status == 503:
        return GraphError(2, "An unexpected error has occurred. Please retry your request later.", status=503,
                          is_transient=True)
    return GraphError(1, "edge error", status=status, html=True)


async def read_params(request: Request) -> dict[str, Any]:
    """Query parameters, overlaid with the body's (form fields or a JSON object)."""
    params: dict[str, Any] = dict(request.query_params)
    raw = await request.body()
    if not raw:
        return params
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = json.loads(raw)
        except ValueError:
            raise invalid_parameter("The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise invalid_parameter("The request body must be a JSON object")
        params.update(body)
    elif kind in ("application/x-www-form-urlencoded", ""):
        params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    else:
        raise invalid_parameter(f"Unsupported content type {kind} (the sandbox takes form fields or JSON)")
    return params


def json_param(params: dict[str, Any], name: str, *, required: bool) -> Any:
    """A parameter that holds JSON: an object as given, or JSON text to decode."""
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise invalid_parameter(f"The parameter {name} is required")
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise invalid_parameter(f"Param {name} must be a JSON object") from None
    return value


__all__ = [
    "GraphError",
    "audience_blocked",
    "expired_token",
    "html_page",
    "invalid_parameter",
    "invalid_token",
    "json_param",
    "missing_token",
    "no_such_object",
    "proof_invalid",
    "proof_missing",
    "read_params",
    "server_error",
    "throttled",
    "unknown_path",
]
