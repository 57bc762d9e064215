"""Checks every connector must pass: config validation, secret redaction, ``check()``, no real network."""

from __future__ import annotations

import traceback
from typing import Any

from pydantic import SecretStr, ValidationError

from connectors.base import ConnectorConfig, FixConfiguration, WriteRecord

from ._failures import ConformanceFailure, NotApplicable, redact
from ._rig import Rig
from ._spec import ConnectorKit, DestinationKit

_UNKNOWN_KEY = "no_such_option_conformance"
_CREDENTIAL_WORDS = ("token", "secret", "password", "api_key", "apikey", "private_key", "signing_key")


def _looks_like_credential(name: str) -> bool:
    """A field named like a credential; ``token_url``, ``login_uri`` and their kin name endpoints instead."""
    lowered = name.lower()
    if lowered.endswith(("_url", "_uri")):
        return False
    return any(word in lowered for word in _CREDENTIAL_WORDS)


def secrets_of(config: ConnectorConfig) -> dict[str, str]:
    """The config's secret values by field name (``SecretStr`` fields that are set)."""
    found: dict[str, str] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found[name] = value.get_secret_value()
    return found


def _error_text(exc: BaseException) -> str:
    """Everything an exception can show: str, repr, args, its chain and its formatted traceback."""
    parts = [str(exc), repr(exc), *(repr(a) for a in exc.args)]
    parts += traceback.format_exception(exc)
    return "\n".join(parts)


async def config_validation(kit: ConnectorKit) -> None:
    """Unknown keys are refused naming the key; a missing required field is named; credentials are secret."""
    async with Rig(kit) as rig:
        model = kit.connector.config_model
        valid = rig.config_dict()
        try:
            model.model_validate({**valid, _UNKNOWN_KEY: 1})
        except ValidationError as exc:
            if _UNKNOWN_KEY not in str(exc):
                raise ConformanceFailure(
                    f"the error for an unknown config key does not name it: {str(exc)[:200]!r}"
                ) from None
        else:
            raise ConformanceFailure(
                f"config_model accepted an unknown key {_UNKNOWN_KEY!r}: a typo in a user's config must be an "
                "error; derive the model from connectors.base.ConnectorConfig (extra='forbid')"
            )
        for name, field in model.model_fields.items():
            if not field.is_required():
                continue
            partial = {k: v for k, v in valid.items() if k != name}
            try:
                model.model_validate(partial)
            except ValidationError as exc:
                if name not in str(exc):
                    raise ConformanceFailure(
                        f"the error for a missing required field {name!r} does not name it"
                    ) from None
            else:
                raise ConformanceFailure(f"config_model accepted a config without the required field {name!r}")
        config = rig.validated()
        for name in model.model_fields:
            value = getattr(config, name)
            if _looks_like_credential(name) and isinstance(value, str):
                raise ConformanceFailure(
                    f"config field {name!r} looks like a credential but is a plain str: type it SecretStr so "
                    "that it never shows in reprs, logs or errors"
                )


async def secret_redaction(kit: ConnectorKit) -> None:
    """Planted secrets never appear in reprs, validation errors, raised errors, outcomes or logs."""
    async with Rig(kit) as rig:
        config = rig.validated()
        secrets = secrets_of(config)
        bad: dict[str, str] = {}
        if kit.bad_credentials:
            bad = secrets_of(rig.validated(kit.bad_credentials))
        if not secrets:
            raise NotApplicable("the config holds no secret (no SecretStr field is set)")
        texts: list[tuple[str, str]] = [
            ("repr(config)", repr(config)), ("str(config)", str(config)),
            ("config.model_dump_json()", config.model_dump_json()),
            ("repr(connector)", repr(rig.connector)), ("str(connector)", str(rig.connector)),
        ]
        try:
            kit.connector.config_model.model_validate({**rig.config_dict(), _UNKNOWN_KEY: "x"})
        except ValidationError as exc:
            texts.append(("the ValidationError of a config with an unknown key", str(exc)))
        if kit.bad_credentials:
            try:
                await rig.connect(kit.bad_credentials).check()
            except Exception as exc:  # noqa: BLE001 - whatever it raises is inspected, not judged here
                texts.append(("the error check() raised for bad credentials", _error_text(exc)))
        rig.app.plan.echo(times=None)
        try:
            await rig.connector.check()
        except Exception as exc:  # noqa: BLE001
            texts.append(("the error check() raised when the answer echoed the request's headers",
                          _error_text(exc)))
        if isinstance(kit, DestinationKit):
            texts += await _write_texts(kit, rig)
        rig.app.plan.clear()
        texts.append(("the log records (DEBUG and up)", "\n".join(rig.logs.lines)))
    planted = {**secrets, **{f"{k} (bad credentials)": v for k, v in bad.items() if v not in secrets.values()}}
    for where, text in texts:
        for field, value in planted.items():
            if value in text:
                snippet = _around(text, value)
                raise ConformanceFailure(
                    f"the secret of config field {field!r} appears in {where}: …{redact(snippet, planted.values())}… "
                    "— keep secrets in SecretStr, send them only in headers (never in URLs, which are logged) and "
                    "scrub them from vendor messages before raising"
                )


async def _write_texts(kit: DestinationKit, rig: Rig) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    for operation in kit.operations():
        records: list[WriteRecord] = kit.sample_records(rig.fake, operation, 1)
        try:
            outcomes = await rig.connector.write_batch(operation, records)
        except Exception as exc:  # noqa: BLE001
            texts.append((f"the error write_batch({operation!r}) raised on an echoed answer", _error_text(exc)))
        else:
            texts.append((f"the outcomes of write_batch({operation!r}) on an echoed answer",
                          "\n".join(repr(o) for o in outcomes)))
    return texts


def _around(text: str, value: str, width: int = 40) -> str:
    at = text.find(value)
    return text[max(at - width, 0): at + len(value) + width].replace("\n", " ")


async def check_credentials(kit: ConnectorKit) -> None:
    """``check()`` passes with good credentials (making a call) and raises FixConfiguration with bad ones."""
    async with Rig(kit) as rig:
        await rig.connector.check()
        if not rig.app.calls:
            raise ConformanceFailure(
                "check() made no request: it must make one cheap authenticated call so that bad credentials "
                "show up before the first sync"
            )
        if not kit.bad_credentials:
            raise NotApplicable("bad_credentials is empty: the connector needs no credentials")
        bad = rig.connect(kit.bad_credentials)
        try:
            await bad.check()
        except FixConfiguration:
            return
        except Exception as exc:  # noqa: BLE001
            raise ConformanceFailure(
                f"check() with bad credentials raised {type(exc).__name__}, not FixConfiguration: classify the "
                "vendor's authentication answer (401/403, or its error code) as FixConfiguration so that a "
                f"person is told, instead of the run retrying (status {_last_status(rig)})"
            ) from None
        raise ConformanceFailure(
            f"check() with bad credentials returned normally (the fake answered {_last_status(rig)}): "
            "it must raise FixConfiguration"
        )


def _last_status(rig: Rig) -> Any:
    return rig.app.calls[-1].status if rig.app.calls else "nothing"


async def no_real_network(kit: ConnectorKit) -> None:
    """The connector reaches only the fake: its calls arrive there, and no socket goes anywhere else."""
    async with Rig(kit) as rig:
        try:
            await rig.connector.check()
        except Exception as exc:  # noqa: BLE001
            if not rig.guard.refused:
                raise ConformanceFailure(
                    f"check() failed against the fake with {type(exc).__name__}: {exc}"
                ) from None
        if not rig.app.calls and not rig.guard.refused:
            raise ConformanceFailure(
                "check() reached neither the fake nor the network: point requests at the config's base_url "
                "through self.http"
            )
    # Rig.__aexit__ turns any refused connection into a failure that says what to fix.


__all__ = ["check_credentials", "config_validation", "no_real_network", "secret_redaction", "secrets_of"]
