"""The daemon's near-real-time path and its idle cost, over real loopback sockets.

`leadrelay run` runs as its own process against a seeded HubSpot sandbox (served by this process on
127.0.0.1). For each of N triggers a contact is created in the sandbox and HubSpot's v3-signed
notification about it is posted to the agent's webhook; the latency is from sending the webhook to the
contact's score being visible in the sandbox (what a sales rep would see). Then the agent is left idle
and its CPU and resident memory are read from /proc.

    python bench/bench_daemon.py --contacts 500 --triggers 30 --idle-seconds 20

Prints a table: trigger-to-delivery p50/p95/p99 (goal p95 <= 2 s), where a trigger cycle spends its
time (from the agent's own /metrics), and the idle agent's CPU% and RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"
SECRET = "bench-webhook-secret"


def train_model(work: Path, contacts: int) -> Path:
    """A model from a sandbox history (in-process transport, to keep it quick)."""
    import httpx

    from connectors.sandbox import HubSpotSandbox, generate_dataset
    from sync import config
    from sync.pipeline import run_cycle_sync
    from sync.store import Store
    from sync.training import train_from_store

    now = datetime.now(UTC)
    sandbox = HubSpotSandbox(token=TOKEN, clock=lambda: now)
    sandbox.load(generate_dataset(seed=11, contacts=contacts, now=now))
    settings = config.parse({
        "store": {"url": f"sqlite:///{work / 'train.db'}"}, "scoring": {"model_dir": str(work / "model")},
        "connections": {"hubspot": {"type": "hubspot", "token": TOKEN, "base_url": "http://sandbox"}},
        "pipelines": {"train": {"source": "hubspot", "destination": "hubspot"}}}, env={})
    store = Store(settings.store.url)
    store.create_all()
    run_cycle_sync(settings, "train", store, clock=lambda: now,
                   transports={"hubspot": httpx.ASGITransport(sandbox.app)})
    train_from_store(settings, "train", store, now=now)
    store.close()
    return work / "model"


def write_config(path: Path, work: Path, model: Path, base_url: str, store_url: str | None,
                 overlap: float | None, trigger_max_ids: int | None = None) -> None:
    path.write_text(f"""
[store]
url = "{store_url or f'sqlite:///{work / "store.db"}'}"
[scoring]
model_dir = "{model}"
[daemon]
host = "127.0.0.1"
port = 0
lease_seconds = 10
webhook_secrets = {{ hubspot = "${{BENCH_WEBHOOK_SECRET}}" }}
{f"trigger_max_ids = {trigger_max_ids}" if trigger_max_ids is not None else ""}
[connections.hubspot]
type = "hubspot"
token = "{TOKEN}"
base_url = "{base_url}"
rate_limit_requests = 100000
{f"overlap_seconds = {overlap}" if overlap is not None else ""}
[pipelines.main]
source = "hubspot"
destination = "hubspot"
interval_seconds = 3600
""")


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds used, resident bytes) of a Linux process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = next(int(line.split()[1]) * 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return cpu, rss


def wait_for(condition, what: str, timeout: float, every: float = 0.005):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)
    return value


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def metric_sums(text: str, name: str) -> dict[str, tuple[float, float]]:
    """label set -> (sum, count) of a histogram in Prometheus text."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(rf"{name}_(sum|count)\{{(.*)\}} (\S+)", line)
        if match:
            (sums if match.group(1) == "sum" else counts)[match.group(2)] = float(match.group(3))
    return {k: (sums[k], counts.get(k, 0.0)) for k in sums}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=500, help="contacts in the sandbox the agent syncs")
    parser.add_argument("--triggers", type=int, default=30, help="webhook triggers to time, one after another")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--model", type=Path, help="a trained model folder (default: train one first)")
    parser.add_argument("--store-url", help="store URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--overlap-seconds", type=float,
                        help="the HubSpot connection's re-read window (default: the connector's, 300 s)")
    parser.add_argument("--incremental", action="store_true",
                        help="webhook cycles pull incrementally (trigger_max_ids = 0) instead of by id")
    args = parser.parse_args()

    import httpx

    from connectors.sandbox import HubSpotSandbox, generate_dataset, serve_on_loopback
    from sync.webhooks import sign_hubspot_v3

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model or train_model(work, 1500)
        sandbox = HubSpotSandbox(token=TOKEN)
        sandbox.load(generate_dataset(seed=5, contacts=args.contacts, now=datetime.now(UTC)))
        with serve_on_loopback(sandbox.app) as base_url:
            cfg = work / "leadrelay.toml"
            write_config(cfg, work, model, base_url, args.store_url, args.overlap_seconds,
                         0 if args.incremental else None)
            log = (work / "agent.log").open("wb")
            agent = subprocess.Popen([sys.executable, "-m", "sync.cli", "-c", str(cfg), "run", "--agent-id", "bench"],
                                     cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_WEBHOOK_SECRET": SECRET})
            try:
                url = wait_for(lambda: (m := re.search(r"listening on (http://\S+)", (work / "agent.log").read_text()))
                               and m.group(1), "the agent to listen", 120, 0.05)
                scored = lambda: sum(1 for c in sandbox.objects["contacts"].values()  # noqa: E731
                                     if c["properties"].get("leadrelay_score"))
                started = time.monotonic()
                wait_for(lambda: scored() >= args.contacts * 0.9, "the first full cycle", 600, 0.1)
                first_cycle = time.monotonic() - started
                wait_for(lambda: 'leadrelay_runs_total{outcome="succeeded"' in httpx.get(f"{url}/metrics").text,
                         "the first cycle to finish", 120, 0.05)
                client = httpx.Client(timeout=30)
                hook = f"{url}/webhooks/hubspot"
                latencies: list[float] = []
                for i in range(args.triggers):
                    created = client.post(f"{base_url}/crm/v3/objects/contacts",
                                          headers={"authorization": f"Bearer {TOKEN}"},
                                          json={"properties": {"email": f"bench{i}@example.com", "firstname": "B"}})
                    contact = created.json()["id"]
                    body = json.dumps([{"subscriptionType": "contact.creation", "objectId": int(contact)}]).encode()
                    sent = time.monotonic()
                    answer = client.post(hook, content=body, headers={
                        "content-type": "application/json",
                        **sign_hubspot_v3(SECRET, "POST", hook, body, int(time.time() * 1000))})
                    assert answer.status_code == 202, answer.text
                    wait_for(lambda c=contact: sandbox.objects["contacts"][c]["properties"].get("leadrelay_score"),
                             "a score", 60)
                    latencies.append(time.monotonic() - sent)
                metrics = client.get(f"{url}/metrics").text
                phases = metric_sums(metrics, "leadrelay_cycle_phase_seconds")
                server_side = metric_sums(metrics, "leadrelay_trigger_to_delivery_seconds")
                # idle: nothing scheduled for an hour, no triggers
                cpu0, _ = proc_usage(agent.pid)
                wall0 = time.monotonic()
                time.sleep(args.idle_seconds)
                cpu1, rss = proc_usage(agent.pid)
                idle_cpu = (cpu1 - cpu0) / (time.monotonic() - wall0) * 100
                agent.send_signal(signal.SIGTERM)
                code = agent.wait(timeout=120)
            finally:
                if agent.poll() is None:
                    agent.kill()
                log.close()

    overlap = f"{args.overlap_seconds:g} s" if args.overlap_seconds is not None else "default"
    mode = "incremental pull" if args.incremental else "read by id"
    print(f"\nleadrelay run — {args.contacts} contacts, {args.triggers} webhook triggers ({mode}) over loopback, "
          f"overlap {overlap} (first full cycle {first_cycle:.1f} s; exit code on SIGTERM {code}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n")
    print("| trigger → score visible in the CRM | p50 | p95 | p99 | max | mean |")
    print("|---|---|---|---|---|---|")
    print(f"| seconds | {percentile(latencies, 50):.3f} | {percentile(latencies, 95):.3f} | "
          f"{percentile(latencies, 99):.3f} | {max(latencies):.3f} | {statistics.fmean(latencies):.3f} |")
    for labels, (total, count) in server_side.items():
        print(f"\nagent's own histogram ({labels}): mean {total / max(count, 1):.3f} s over {count:.0f} trigger(s)")
    print("\n| phase (all cycles, from /metrics) | cycles | mean seconds |")
    print("|---|---|---|")
    for labels, (total, count) in sorted(phases.items()):
        phase = re.search(r'phase="([^"]+)"', labels)
        print(f"| {phase.group(1) if phase else labels} | {count:.0f} | {total / max(count, 1):.3f} |")
    print(f"\n| idle agent | CPU % | RSS MiB |\n|---|---|---|\n| {args.idle_seconds:.0f} s | {idle_cpu:.2f} | "
          f"{rss / 2**20:.1f} |")
    print(f"\ngoal p95 <= 2 s: {'met' if percentile(latencies, 95) <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
