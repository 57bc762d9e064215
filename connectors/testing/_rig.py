"""One check's world: a fresh fake behind the fault middleware, served on loopback (or in process), a
connector built the way the framework builds it, the kit's clock, a log capture and the network guard."""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Mapping
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import httpx

from connectors.base import Connector, ConnectorConfig
from connectors.http import HttpLayer, build_client

from ._clock import KitClock
from ._failures import ConformanceFailure
from ._faults import FaultyApp
from ._host import HOST
from ._network import NetworkGuard
from ._spec import ConnectorKit

_ASGI_BASE = "http://fake.conformance.invalid"  # never resolved: the ASGI transport answers in process


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs a fifth of a second per client; the fake speaks plain HTTP anyway.
    return ssl.create_default_context()


def _loopback_transport() -> httpx.AsyncHTTPTransport:
    """What ``build_client`` would give the connector, minus a fresh TLS context per client."""
    return httpx.AsyncHTTPTransport(verify=_tls_context(), limits=httpx.Limits(max_connections=10))


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is still evidence
            self.lines.append(f"{record.name}: {record.msg!r} {record.args!r}")


class Rig:
    """``async with Rig(kit) as rig:`` — ``rig.connector``, ``rig.fake``, ``rig.app`` (calls, faults)."""

    def __init__(self, kit: ConnectorKit) -> None:
        self.kit = kit
        self.clock = KitClock()
        self.fake: Any = kit.make_fake(self.clock)
        self.app = FaultyApp(kit.fake_app(self.fake), self.clock)
        self.guard = NetworkGuard()
        self.logs = _Capture()
        self.base_url = _ASGI_BASE
        self._stack = ExitStack()
        self._http: list[HttpLayer] = []
        self._root_level = logging.NOTSET
        self.connector: Connector

    async def __aenter__(self) -> Rig:
        if self.kit.transport == "loopback":
            self.base_url, name = HOST.mount(self.app)
            self._stack.callback(HOST.unmount, name)
        elif self.kit.transport != "asgi":
            raise ValueError(f"transport must be 'loopback' or 'asgi', not {self.kit.transport!r}")
        self._stack.enter_context(self.guard.active())
        root = logging.getLogger()
        self._root_level = root.level
        root.setLevel(logging.DEBUG)
        self.logs.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        root.addHandler(self.logs)
        self.connector = self.connect()
        return self

    def config_dict(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**self.kit.config(self.base_url), **(overrides or {})}

    def validated(self, overrides: Mapping[str, Any] | None = None) -> ConnectorConfig:
        return self.kit.connector.config_model.model_validate(self.config_dict(overrides))

    def connect(self, overrides: Mapping[str, Any] | None = None) -> Connector:
        """A connector as the framework builds one: its config, its headers, the kit's HTTP layer."""
        cls = self.kit.connector
        config = self.validated(overrides)
        transport: httpx.AsyncBaseTransport = (
            httpx.ASGITransport(app=self.app) if self.kit.transport == "asgi" else _loopback_transport()
        )
        client = build_client(cls.client_base_url(config), headers=cls.client_headers(config), transport=transport)
        http = HttpLayer(client, name=cls.name, retry=self.kit.retry, sleep=self.clock.sleep)
        self._http.append(http)
        return self.kit.make_connector(config, http, self.clock)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        for http in self._http:
            await http.client.aclose()
        root = logging.getLogger()
        root.removeHandler(self.logs)
        root.setLevel(self._root_level)
        self._stack.close()
        if self.guard.refused:
            where = ", ".join(sorted(set(self.guard.refused)))
            raise ConformanceFailure(
                f"the connector tried to reach {where} over the network: every request must go through "
                "self.http (the client the framework hands the connector) to the configured base_url; "
                "do not build your own client or hard-code the vendor's host"
            ) from error


__all__ = ["Rig"]
