"""Faithful fake servers of the vendor APIs leadrelay talks to, as ASGI apps.

The sandbox is public product code, not a test helper tucked away: the demo runs against it, our own
tests and benchmarks use it, and plugin authors can use it exactly as we do. Each fake follows its
vendor's real wire formats, limits and error shapes (see ``reference/apis.md``), so a connector that
passes against the fake works against the real service.

* :class:`HubSpotSandbox` — HubSpot CRM v3 objects, search, batches, properties, owners, v4 associations
  and the events API; :class:`HubSpotLimits` sets its rate budgets.
* :class:`MetaSandbox` — Meta Marketing API custom-audience users (add/remove with sessions, hashed-row
  validation, matching against known people, per-ad-account throttling); :class:`MetaLimits` sets its budget.
* :class:`FaultSettings` — deterministic outages, 429 storms (and their length), latency and slow tails,
  dropped connections and resets before or after the effect, per-record failures, whole-batch rejections,
  a daily quota and another app sharing the budget; applied by every sandbox (the HubSpot one honours them
  all, the Meta one the outage, storm, latency and drop knobs).
* :func:`generate_dataset` / :class:`Dataset` — seeded, realistic portals with a learnable conversion signal.
* :func:`serve_on_loopback` — run any sandbox app on a real 127.0.0.1 socket.

Typical use::

    sandbox = HubSpotSandbox(clock=lambda: now)
    sandbox.load(generate_dataset(seed=1, contacts=1_000, now=now))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app), base_url="https://api.hubapi.com")
"""

from __future__ import annotations

from connectors.sandbox.faults import FaultSettings
from connectors.sandbox.generator import Dataset, generate_dataset
from connectors.sandbox.hubspot import HubSpotLimits, HubSpotSandbox
from connectors.sandbox.meta import MetaLimits, MetaSandbox
from connectors.sandbox.server import serve_on_loopback

__all__ = [
    "Dataset",
    "FaultSettings",
    "HubSpotLimits",
    "HubSpotSandbox",
    "MetaLimits",
    "MetaSandbox",
    "generate_dataset",
    "serve_on_loopback",
]
