"""Logging: JSON lines for machines, a short human format for terminals, secrets and personal data
redacted from every line.

``configure_logging("json")`` writes one JSON object per line: ``ts``, ``level``, ``logger``, ``message``,
and ``run_id``, ``operation`` and ``pipeline`` when known — set for a block with :func:`log_context`
(contextvars, so concurrent cycles in one process keep theirs apart) or per call with ``extra={...}``; an
exception adds ``error``. ``configure_logging("human")`` writes ``time level [pipeline #run] message``.

The root handler carries a :class:`RedactingFilter`: every configured secret (each ``SecretStr`` of the
settings, the store URL's password, the alerts webhook URL, webhook secrets — see :func:`settings_secrets`)
is replaced by ``[redacted]`` wherever it appears — message, arguments, exception text, extra fields — and
e-mail addresses are masked (``j•••@acme.com``) as in reports.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Literal

from pydantic import BaseModel, SecretStr

from sync.masking import scrub_text

Format = Literal["json", "human"]
REDACTED = "[redacted]"
CONTEXT_FIELDS = ("pipeline", "run_id", "operation")
_MIN_SECRET = 4  # shorter values would redact ordinary words; no real credential is that short

_context: dict[str, ContextVar[Any]] = {name: ContextVar(f"leadrelay_{name}", default=None)
                                        for name in CONTEXT_FIELDS}
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Within the block, every log line carries these fields (``pipeline``, ``run_id``, ``operation``)."""
    unknown = set(values) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    tokens = [(_context[k], _context[k].set(v)) for k, v in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's context fields (``extra`` wins over :func:`log_context`) and any other ``extra``."""
    out: dict[str, Any] = {}
    for key in CONTEXT_FIELDS:
        value = getattr(record, key, None)
        if value is None:
            value = _context[key].get()
        if value is not None:
            out[key] = value
    out.update({k: v for k, v in vars(record).items()
                if k not in _STANDARD and k not in CONTEXT_FIELDS and not k.startswith("_")})
    return out


# --------------------------------------------------------------------------------------------------
# Redaction


class Redactor:
    """Replaces known secret values in text; the set can grow once settings are loaded."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        fresh = {s for s in secrets if isinstance(s, str) and len(s) >= _MIN_SECRET} - set(self._secrets)
        # Longest first: a secret that contains another is replaced whole.
        self._secrets = sorted({*self._secrets, *fresh}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return scrub_text(text)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """Renders each record's message and exception text, then removes secrets and masks e-mail addresses."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.redactor(str(message)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and not key.startswith("_"):
                setattr(record, key, self.redactor.value(value))
        return True


def settings_secrets(settings: Any) -> list[str]:
    """Every secret value in loaded settings: each ``SecretStr`` anywhere in them (connection tokens, webhook
    secrets, the alerts URL), and the password of the store URL."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name, None))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set):
            for item in value:
                walk(item)

    walk(settings)
    url = getattr(getattr(settings, "store", None), "url", None)
    if isinstance(url, str):
        from sqlalchemy.engine import make_url

        with contextlib.suppress(Exception):
            password = make_url(url).password
            if password:
                found.append(str(password))
    return found


# --------------------------------------------------------------------------------------------------
# Formats


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["error"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        where = " ".join(filter(None, [str(fields.pop("pipeline", "") or ""),
                                       f"#{fields.pop('run_id')}" if "run_id" in fields else "",
                                       f"op {fields.pop('operation')}" if "operation" in fields else ""]))
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        text = f"{stamp} {record.levelname:<7} {f'[{where}] ' if where else ''}{record.getMessage()}"
        if fields:
            text += "  " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (a test runner may swap it between commands)."""

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


_HANDLER_NAME = "leadrelay"
REDACTOR = Redactor()


def configure_logging(fmt: Format = "human", level: str | int = "INFO", *, secrets: Iterable[str] = (),
                      stream: IO[str] | None = None) -> logging.Handler:
    """Install leadrelay's handler on the root logger (replacing one installed before), with redaction.

    ``secrets`` adds values to redact; :func:`add_secrets` adds more later (once the settings are loaded).
    """
    if fmt not in ("json", "human"):
        raise ValueError(f"log format must be 'json' or 'human', got {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    REDACTOR.add(secrets)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    handler.addFilter(RedactingFilter(REDACTOR))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # The HTTP client logs every request's full URL at info level (some APIs carry credentials in the query
    # string: redaction removes known secrets anyway) and alembic logs each step: below debug, noise.
    quiet = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "httpcore", "alembic"):
        logging.getLogger(name).setLevel(quiet)
    return handler


def add_secrets(values: Iterable[str]) -> None:
    """Redact these values too, from now on, in every line leadrelay's handler writes."""
    REDACTOR.add(values)


def redact(text: str) -> str:
    """``text`` with every known secret removed and e-mail addresses masked (for reports and errors)."""
    return REDACTOR(text)


__all__ = ["CONTEXT_FIELDS", "REDACTED", "HumanFormatter", "JsonFormatter", "RedactingFilter", "Redactor",
           "add_secrets", "configure_logging", "log_context", "redact", "settings_secrets"]
