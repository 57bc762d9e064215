"""Settings of one webhook destination: where to post, the signing secret, how many records a request."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from connectors.base import ConnectorConfig

MAX_RECORDS_PER_REQUEST = 100  # what the protocol promises every receiver accepts


class WebhookConfig(ConnectorConfig):
    """``url`` is the receiver's base URL; ``signing_secret`` is shared with the receiver (a ``SecretStr``:
    it never shows in reprs, logs or errors)."""

    url: str
    signing_secret: SecretStr = Field(min_length=16)
    path: str = "/leadrelay/batch"
    records_per_request: int = Field(MAX_RECORDS_PER_REQUEST, ge=1, le=MAX_RECORDS_PER_REQUEST)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return cls.http_base_url(value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        return value


__all__ = ["MAX_RECORDS_PER_REQUEST", "WebhookConfig"]
