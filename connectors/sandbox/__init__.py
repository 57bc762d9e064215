"""Faithful fake servers of the vendor APIs leadrelay talks to, as ASGI apps.

The sandbox is public product code, not a test helper tucked away: the demo runs against it, our own
tests and benchmarks use it, and plugin authors can use it exactly as we do. Each fake follows its
vendor's real wire formats, limits and error shapes (see ``reference/apis.md``), so a connector that
passes against the fake works against the real service.

* :class:`HubSpotSandbox` — HubSpot CRM v3 objects, search, batches, properties, owners, v4 associations
  and the events API; :class:`HubSpotLimits` sets its rate budgets.
* :class:`MetaSandbox` — Meta Marketing API custom-audience users (add/remove with sessions, hashed-row
  validation, matching against known people, per-ad-account throttling); :class:`MetaLimits` sets its budget.
* :class:`SalesforceSandbox` — Salesforce REST: OAuth token endpoint (refresh-token and client-credentials grants,
  no ``expires_in``), a SOQL subset with ``nextRecordsUrl`` paging, sObject Collections with per-record results,
  single-record create/read/update, ``Sforce-Limit-Info`` and the daily API limit, session expiry on the clock,
  assignment rules and ``Sforce-Auto-Assign``; :class:`SalesforceLimits` sets the daily limit.
* :class:`GoogleAdsSandbox` — Google Ads Customer Match (OAuth token endpoint, offline user data jobs with their
  state machine, partial failure, RESOURCE_EXHAUSTED with retryDelay, GAQL job status); :class:`GoogleAdsLimits`.
* :class:`LinkedInSandbox` — LinkedIn DMP segment users (BATCH_CREATE, required headers, per-element statuses,
  bare 429s); :class:`LinkedInLimits`.
* :class:`MarketoSandbox` — Marketo REST: expiring identity tokens, leads, lead changes and activities by paging
  token, static-list membership, HTTP-200 ``success:false`` envelopes (601/602/606/607/615), 413/414;
  :class:`MarketoLimits`.
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
from connectors.sandbox.google_ads import GoogleAdsLimits, GoogleAdsSandbox
from connectors.sandbox.hubspot import HubSpotLimits, HubSpotSandbox
from connectors.sandbox.linkedin import LinkedInLimits, LinkedInSandbox
from connectors.sandbox.marketo import MarketoLimits, MarketoSandbox
from connectors.sandbox.meta import MetaLimits, MetaSandbox
from connectors.sandbox.salesforce import SalesforceLimits, SalesforceSandbox
from connectors.sandbox.server import serve_on_loopback

__all__ = [
    "Dataset",
    "FaultSettings",
    "GoogleAdsLimits",
    "GoogleAdsSandbox",
    "HubSpotLimits",
    "HubSpotSandbox",
    "LinkedInLimits",
    "LinkedInSandbox",
    "MarketoLimits",
    "MarketoSandbox",
    "MetaLimits",
    "MetaSandbox",
    "SalesforceLimits",
    "SalesforceSandbox",
    "generate_dataset",
    "serve_on_loopback",
]
