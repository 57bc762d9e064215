"""End-to-end sync throughput: N sandbox contacts pulled, scored and pushed back, rate limits off.

Each transport runs in its own subprocess (so peak RSS is that run's own), side by side in one go:
  in-process  httpx.ASGITransport straight into the sandbox app (the sandbox shares the agent's process,
              CPU and memory)
  loopback    real sockets to the sandbox served by uvicorn in a separate process on 127.0.0.1 (the
              agent's RSS is its own)

    python bench/bench_sync.py --contacts 100000

Prints a table: leads/s for the whole cycle and per phase, write calls, and peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from _serve import serving

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TOKEN = "bench-token"


def _settings(base_url: str, work: Path) -> object:
    from sync import config

    raw = {
        "store": {"url": f"sqlite:///{work / 'store.db'}"},
        "scoring": {"model_dir": str(work / "model")},
        "connections": {"hubspot": {"type": "hubspot", "token": TOKEN, "base_url": base_url,
                                    "rate_limit_requests": 10_000_000, "daily_limit": None}},
        "pipelines": {"bench": {"source": "hubspot", "destination": "hubspot"}},
    }
    return config.parse(raw, env={})


def train_model(work: Path) -> None:
    """A model from a small history, trained once and shared by both runs."""
    import httpx

    from connectors.sandbox import HubSpotSandbox, generate_dataset
    from sync.pipeline import run_cycle_sync
    from sync.store import Store
    from sync.training import train_from_store

    sandbox = HubSpotSandbox(token=TOKEN, clock=lambda: NOW)
    sandbox.load(generate_dataset(seed=1, contacts=4000, now=NOW))
    settings = _settings("http://sandbox", work)
    store = Store(settings.store.url)  # type: ignore[attr-defined]
    store.create_all()
    transport = httpx.ASGITransport(app=sandbox.app)
    run_cycle_sync(settings, "bench", store, clock=lambda: NOW, transports={"hubspot": transport})
    train_from_store(settings, "bench", store, now=NOW)  # type: ignore[arg-type]
    store.close()
    (work / "store.db").unlink()


def one_run(mode: str, contacts: int, work: Path) -> dict[str, object]:
    import httpx

    from connectors.sandbox import HubSpotSandbox, generate_dataset
    from sync.pipeline import load_model, run_cycle_sync
    from sync.store import Store

    t0 = time.perf_counter()
    sandbox = HubSpotSandbox(token=TOKEN, clock=lambda: NOW)
    if mode == "in-process":
        sandbox.load(generate_dataset(seed=2, contacts=contacts, now=NOW))
    seed_s = time.perf_counter() - t0
    db = work / f"store-{mode}.db"
    db.unlink(missing_ok=True)

    def run(base_url: str, transports: dict[str, httpx.AsyncBaseTransport],
            writes: Callable[[], int]) -> dict[str, object]:
        settings = _settings(base_url, work)
        settings = settings.model_copy(update={"store": settings.store.model_copy(  # type: ignore[attr-defined]
            update={"url": f"sqlite:///{db}"})})
        store = Store(settings.store.url)
        store.create_all()
        model = load_model(settings)  # type: ignore[arg-type]
        start = time.perf_counter()
        report = run_cycle_sync(settings, "bench", store, clock=lambda: NOW, transports=transports,
                                model=model)
        elapsed = time.perf_counter() - start
        writes_before = writes()
        again = run_cycle_sync(settings, "bench", store, clock=lambda: NOW, transports=transports, model=model)
        store.close()
        return {"elapsed": elapsed, "phases": report.seconds, "read": dict(report.read), "scored": report.scored,
                "delivered": report.delivery[0]["outcomes"] if report.delivery else {},
                "batches": report.delivery[0]["batches"] if report.delivery else 0,
                "errors": report.errors + again.errors,
                "rerun_writes": writes() - writes_before}

    if mode == "in-process":
        result = run("http://sandbox", {"hubspot": httpx.ASGITransport(app=sandbox.app)},
                     lambda: int(sandbox.stats.write_calls))
    else:
        with _sandbox_process(contacts) as (base_url, writes):
            result = run(base_url, {}, writes)
    result["seed_s"] = seed_s
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


SERVER = """
import sys, uvicorn
from datetime import datetime
from connectors.sandbox import HubSpotSandbox, generate_dataset
now = datetime.fromisoformat(sys.argv[3])
sandbox = HubSpotSandbox(token=sys.argv[4], clock=lambda: now)
sandbox.load(generate_dataset(seed=2, contacts=int(sys.argv[2]), now=now))
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
async def stats(request):
    return JSONResponse({"write_calls": sandbox.stats.write_calls})
app = Starlette(routes=[Route("/_bench/stats", stats), Mount("/", app=sandbox.app)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@contextlib.contextmanager
def _sandbox_process(contacts: int) -> Iterator[tuple[str, Callable[[], int]]]:
    """The sandbox in its own process, so the agent's CPU and memory are measured alone."""
    import httpx

    with serving(SERVER, str(contacts), NOW.isoformat(), TOKEN, wait=300) as base_url:
        def writes() -> int:
            return int(httpx.get(f"{base_url}/_bench/stats").json()["write_calls"])

        yield base_url, writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--mode", choices=["in-process", "loopback"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(one_run(args.mode, args.contacts, Path(args.work))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_model(work)
        rows = []
        for mode in ("in-process", "loopback"):
            out = subprocess.run([sys.executable, __file__, "--contacts", str(args.contacts), "--mode", mode,
                                  "--work", str(work)], check=True, capture_output=True, text=True)
            rows.append((mode, json.loads(out.stdout.strip().splitlines()[-1])))
    print(f"\nEnd-to-end sync of {args.contacts:,} sandbox contacts (pull + store + score + plan + push), "
          "rate limits off, SQLite store\n")
    print("| transport | cycle s | leads/s | scored | pushed (acked) | write batches | re-run writes | "
          "peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, r in rows:
        acked = r["delivered"].get("acknowledged", 0)  # type: ignore[union-attr]
        print(f"| {mode} | {r['elapsed']:.1f} | {args.contacts / r['elapsed']:,.0f} | {r['scored']:,} | "
              f"{acked:,} | {r['batches']} | {r['rerun_writes']} | {r['peak_rss_mb']:.0f} |")
    print("\n| transport | " + " | ".join(f"{p} s" for p in ("pull", "score", "plan", "deliver")) + " |")
    print("|---|---|---|---|---|")
    for mode, r in rows:
        phases = r["phases"]
        print(f"| {mode} | " + " | ".join(f"{phases.get(p, 0):.1f}" for p in ("pull", "score", "plan", "deliver"))
              + " |")
    for mode, r in rows:
        if r["errors"]:
            print(f"{mode} errors: {r['errors']}")
    base = rows[0][1]["elapsed"]
    print(f"\nloopback / in-process time ratio: {rows[1][1]['elapsed'] / base:.2f}")  # type: ignore[operator]


if __name__ == "__main__":
    main()
