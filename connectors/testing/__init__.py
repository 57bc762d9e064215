"""The connector conformance kit: the checks every leadrelay connector must pass, as a pytest plugin.

A plugin author subclasses :class:`SourceConformance`, :class:`DestinationConformance` or (for both)
:class:`ConnectorConformance` in a test module, names the connector class, and implements a few hooks: a
fresh fake of the vendor (an ASGI app), a valid config pointing at it, credentials that are bad, and — for
sources — how to put a row into the fake, for destinations how to make records, which record the fake
refuses and how many times a record took effect. pytest then runs every check against that fake, served
on a loopback socket behind the kit's fault-injecting middleware, with an injected clock (no real sleeps)
and the real network switched off. A failing check says what to fix. ``docs/writing-a-connector.md``
walks through a complete example (``examples/webhook-destination``).

Each check is also a plain coroutine function (``SOURCE_CHECKS``, ``DESTINATION_CHECKS``,
``COMMON_CHECKS``) taking a kit instance, for running the kit outside pytest's collection.
"""

from __future__ import annotations

from ._clock import KitClock
from ._failures import ConformanceFailure, NotApplicable
from ._faults import FakeResponse, FaultPlan, FaultyApp, RecordedCall
from ._network import NetworkGuard, NetworkRefused
from ._rig import Rig
from ._spec import ConnectorKit, DestinationKit, SourceKit
from ._suites import (
    COMMON_CHECKS,
    DESTINATION_CHECKS,
    SOURCE_CHECKS,
    ConnectorConformance,
    DestinationConformance,
    SourceConformance,
    run_check,
)

__all__ = [
    "COMMON_CHECKS",
    "DESTINATION_CHECKS",
    "SOURCE_CHECKS",
    "ConformanceFailure",
    "ConnectorConformance",
    "ConnectorKit",
    "DestinationConformance",
    "DestinationKit",
    "FakeResponse",
    "FaultPlan",
    "FaultyApp",
    "KitClock",
    "NetworkGuard",
    "NetworkRefused",
    "NotApplicable",
    "RecordedCall",
    "Rig",
    "SourceConformance",
    "SourceKit",
    "run_check",
]
