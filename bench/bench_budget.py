"""Rate budget use: a large push of changed leads against a HubSpot sandbox that enforces a rolling window.

The sandbox runs in its own process on loopback (so its timing is not bent by the agent's), with a burst
budget of 100 requests per 4 s (HubSpot's is per 10 s; the shorter window keeps the run under a minute,
and a 4 s window leaves the sandbox time to answer a whole window's burst even on a busy two-core machine).
The agent is the HubSpot connector on the framework's HTTP layer and rate limiter, configured with the
Free tier's defaults (100 per 10 s): the answers' X-HubSpot-RateLimit-* headers correct it. Batches of 100
score updates go out four at a time, as the outbox sends them.

    python bench/bench_budget.py [--changed 40000] [--burst 100] [--window-ms 4000]

Scenarios:
  honest           the sandbox's headers count every request
  shared, honest   another app tries to spend 30 % of the window, steadily; the headers count it
  under-reported   the same other app; the headers leave it out (they report more room than there is)

Columns:
  budget used   requests the window admitted (ours that were not refused, plus the other app's) divided by
                the most a rolling window admits between the push's first and last request:
                burst x (floor(span / window) + 1); a last window the push only partly needs lowers it
  429s          refusals the agent received (each waited out, none lost)
  calls         requests the agent made, against the minimum ceil(changed / 100)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from _serve import serving

TOKEN = "bench-token"
BATCH = 100
CONCURRENCY = 4

SERVER = """
import json, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from connectors.sandbox import FaultSettings, HubSpotLimits, HubSpotSandbox
port, spec = int(sys.argv[1]), json.loads(sys.argv[2])
faults = FaultSettings(**spec["faults"]) if spec["faults"] else None
sandbox = HubSpotSandbox(token=spec["token"], limits=HubSpotLimits(**spec["limits"]), faults=faults,
                         shuffle_batch_results=False)
for n in range(spec["contacts"]):
    sandbox.create("contacts", {"email": f"lead{n}@example.com"})
async def stats(request):
    s = sandbox.stats
    return JSONResponse({"status_codes": {str(k): v for k, v in s.status_codes.items()},
                         "other_app_requests": s.other_app_requests,
                         "written": s.records_written["contacts"]})
app = Starlette(routes=[Route("/_bench/stats", stats), Mount("/", app=sandbox.app)])
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    faults: dict[str, Any]


SCENARIOS = (
    Scenario("honest", {}),
    Scenario("shared, honest", {"other_app_share": 0.3}),
    Scenario("under-reported", {"other_app_share": 0.3, "other_app_hidden": True}),
)


def sandbox_process(spec: dict[str, Any]) -> contextlib.AbstractContextManager[str]:
    """The sandbox in its own process; its base URL once it answers."""
    return serving(SERVER, json.dumps(spec))


async def push(base_url: str, changed: int) -> dict[str, Any]:
    """Send every lead's new score through the connector; what the agent saw."""
    import httpx

    from connectors.base import WriteRecord
    from connectors.http import HttpLayer, RateLimiter, RetrySettings, build_client
    from connectors.hubspot import HubSpotConfig, HubSpotConnector

    config = HubSpotConfig(token=TOKEN, base_url=base_url, daily_limit=None)  # Free tier: 100 per 10 s
    client = build_client(base_url, headers=HubSpotConnector.client_headers(config),
                          max_connections=CONCURRENCY)
    sent: list[float] = []

    async def stamp(request: httpx.Request) -> None:
        sent.append(time.monotonic())

    client.event_hooks["request"].append(stamp)
    limiter = RateLimiter(config.rate_limit(), name="hubspot")
    http = HttpLayer(client, name="hubspot", retry=RetrySettings(), limiter=limiter)
    hub = HubSpotConnector(config, http)
    gate = asyncio.Semaphore(CONCURRENCY)
    acked = 0

    async def one(start: int) -> None:
        nonlocal acked
        batch = [WriteRecord(str(n), f"score:{n}", {"score": n % 99 + 1, "band": "B"})
                 for n in range(start + 1, min(start + BATCH, changed) + 1)]
        async with gate:
            outcomes = await hub.write_batch("update_lead", batch)
        acked += sum(1 for o in outcomes if o.ok)

    began = time.monotonic()
    await asyncio.gather(*(one(start) for start in range(0, changed, BATCH)))
    ended = time.monotonic()
    await client.aclose()
    return {"calls": http.requests, "rate_limited": http.rate_limited, "acked": acked, "seconds": ended - began,
            "span": sent[-1] - sent[0], "window": limiter.window()}


def run(scenario: Scenario, changed: int, burst: int, window_ms: int) -> dict[str, Any]:
    import httpx

    spec = {"token": TOKEN, "contacts": changed, "faults": scenario.faults,
            "limits": {"burst": burst, "window_ms": window_ms, "daily": 100_000_000}}
    with sandbox_process(spec) as base_url:
        seen = asyncio.run(push(base_url, changed))
        stats = httpx.get(f"{base_url}/_bench/stats").json()
    window = window_ms / 1000
    allowed = burst * (math.floor(seen["span"] / window) + 1)
    refused = stats["status_codes"].get("429", 0)
    admitted = seen["calls"] - refused + stats["other_app_requests"]
    return {**seen, "refused": refused, "other": stats["other_app_requests"], "written": stats["written"],
            "allowed": allowed, "used": admitted / allowed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changed", type=int, default=40_000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--window-ms", type=int, default=4000)
    args = parser.parse_args()
    minimum = math.ceil(args.changed / BATCH)
    print(f"\nPush of {args.changed:,} changed leads (update_lead, batches of {BATCH}, {CONCURRENCY} in flight) "
          f"against a sandbox burst budget of {args.burst} per {args.window_ms} ms\n")
    print("| headers | push s | calls (min) | 429s | other app's requests | budget used | acked | "
          "limiter's window |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario in SCENARIOS:
        r = run(scenario, args.changed, args.burst, args.window_ms)
        limit, seconds = r["window"]
        print(f"| {scenario.name} | {r['seconds']:.1f} | {r['calls']} ({minimum}) | {r['rate_limited']} | "
              f"{r['other']} | {r['used']:.1%} | {r['acked']:,} of {args.changed:,} | "
              f"{limit} per {seconds:g} s |")
    print("\nbudget used = requests the window admitted (ours + the other app's) / "
          "burst x (floor(span / window) + 1), span = first to last request of the push.\n"
          "The honest push is whole windows; in the shared rows the push's last window is only partly needed, "
          "which lowers the share without any budget being wasted.")


if __name__ == "__main__":
    main()
