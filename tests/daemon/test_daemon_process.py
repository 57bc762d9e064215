"""`leadrelay run` as a real process against the sandbox over loopback: scheduled cycles, a signed webhook
whose score lands, /metrics, refused unsigned webhooks, and a clean SIGTERM that loses nothing in flight."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from sync import config
from sync.leases import lease_table
from sync.pipeline import run_cycle_sync
from sync.store import OPEN_STATUSES, RunRow, Store
from sync.webhooks import sign_generic, sign_hubspot_v3
from tests.daemon.agents import ROOT, SECRET_ENV, Agent, sandboxes, wait_for, write_config
from tests.sync.rig import destination_state, ledger_mismatches

SECRET = "whsec-test-0123456789"


def _runs(store: Store) -> list[dict]:
    t = RunRow.__table__
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(t.c.id))]


def _score(sandbox, contact_id: str) -> str | None:
    rec = sandbox.objects["contacts"].get(contact_id)
    return rec["properties"].get("leadrelay_score") if rec else None


def _hubspot_webhook(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/webhooks/hubspot", content=body,
                      headers={"content-type": "application/json", **headers}, timeout=10)


def test_daemon_runs_schedules_webhooks_metrics_and_stops_cleanly(tmp_path: Path, model_dir: Path) -> None:
    """Scheduled cycles run, a signed webhook's new contact gets its score, bad signatures get 401, /metrics
    counts it all, and SIGTERM exits 0 with no run left open and every operation delivered or still queued."""
    with sandboxes(["hubspot"]) as boxes:
        sandbox, base_url = boxes["hubspot"]
        store_url = f"sqlite:///{tmp_path / 'store.db'}"
        cfg = write_config(
            tmp_path / "leadrelay.toml", store_url=store_url, model_dir=model_dir,
            connections={"hubspot": base_url},
            pipelines={"main": {"source": "hubspot", "destination": "hubspot", "cron": "*/3 * * * * *",
                                "follow_up": {"min_score": 4}}},
            daemon={"host": "127.0.0.1", "port": 0, "lease_seconds": 4,
                    "webhook_secrets": {"hubspot": f"${{{SECRET_ENV}}}"}})
        agent = Agent(cfg, tmp_path / "agent.log", "solo", env={SECRET_ENV: SECRET})
        try:
            url = agent.url()
            store = Store(store_url)
            # the lease's catch-up cycle, then at least one cycle from the schedule
            wait_for(lambda: sum(r["status"] == "succeeded" for r in _runs(store)) >= 2, "two finished cycles")
            assert all(r["agent"] == "solo" for r in _runs(store))
            assert sum(1 for cid in sandbox.objects["contacts"] if _score(sandbox, cid)) > 50
            assert httpx.get(f"{url}/livez").status_code == 200
            ready = httpx.get(f"{url}/readyz", timeout=30)
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"store": "ok", "source:hubspot": "ok"}

            # a new contact in the CRM, then HubSpot's signed notification about it
            created = httpx.post(f"{base_url}/crm/v3/objects/contacts", headers={"authorization": "Bearer test-token"},
                                 json={"properties": {"email": "new.lead@example.com", "firstname": "New",
                                                      "lastname": "Lead", "jobtitle": "VP Marketing"}})
            assert created.status_code == 201, created.text
            contact = created.json()["id"]
            body = json.dumps([{"subscriptionType": "contact.creation", "objectId": int(contact),
                                "eventId": 1, "portalId": 1, "occurredAt": int(time.time() * 1000)}]).encode()
            now_ms = int(time.time() * 1000)
            unsigned = _hubspot_webhook(url, body, {})
            wrong = _hubspot_webhook(url, body, sign_hubspot_v3("not-the-secret", "POST", f"{url}/webhooks/hubspot",
                                                               body, now_ms))
            generic_wrong = httpx.post(f"{url}/webhooks/hubspot", content=b'{"ids": ["1"]}',
                                       headers=sign_generic("nope", b'{"ids": ["1"]}', int(time.time())))
            assert (unsigned.status_code, wrong.status_code, generic_wrong.status_code) == (401, 401, 401)
            sent = time.monotonic()
            ok = _hubspot_webhook(url, body, sign_hubspot_v3(SECRET, "POST", f"{url}/webhooks/hubspot", body, now_ms))
            assert ok.status_code == 202, ok.text
            wait_for(lambda: _score(sandbox, contact), "the new contact's score to land", timeout=20)
            landed = time.monotonic() - sent

            # The score is visible once delivered; the cycle records its trigger latency when it has finished.
            def latency_recorded() -> str | None:
                text = httpx.get(f"{url}/metrics").text
                return text if 'leadrelay_trigger_to_delivery_seconds_count{pipeline="main"}' in text else None

            metrics = wait_for(latency_recorded, "the trigger's cycle to finish", timeout=20)
            assert 'leadrelay_runs_total{outcome="succeeded",pipeline="main"}' in metrics
            assert 'leadrelay_triggers_total{connection="hubspot"} 1.0' in metrics
            count = next(line for line in metrics.splitlines()
                         if line.startswith('leadrelay_trigger_to_delivery_seconds_count{pipeline="main"}'))
            assert float(count.split()[-1]) >= 1
            assert 'leadrelay_outbox_depth{status="pending"}' in metrics
            assert "leadrelay_dead_letters 0.0" in metrics
            assert 'leadrelay_records_read_total{pipeline="main",stream="leads"}' in metrics
            assert 'leadrelay_operations_total{destination="hubspot",outcome="acknowledged",pipeline="main"}' in metrics

            # another change and its webhook, then SIGTERM while that cycle is (likely) in flight
            second = httpx.post(f"{base_url}/crm/v3/objects/contacts", headers={"authorization": "Bearer test-token"},
                                json={"properties": {"email": "late.lead@example.com", "firstname": "Late"}}
                                ).json()["id"]
            body2 = json.dumps([{"subscriptionType": "contact.creation", "objectId": int(second)}]).encode()
            assert _hubspot_webhook(url, body2, sign_hubspot_v3(SECRET, "POST", f"{url}/webhooks/hubspot", body2,
                                                               int(time.time() * 1000))).status_code == 202
            agent.proc.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=60) == 0, agent.text()
        finally:
            agent.kill()
        log = agent.text()
        assert "stop requested" in log
        assert "leases released" in log
        assert SECRET not in log
        runs = _runs(store)
        assert not [r for r in runs if r["status"] == "running"], runs[-3:]
        assert lease_table(store)["main"].holder is None  # released at once, not left to expire
        # nothing in flight was lost: what was acknowledged is in the CRM, and one more cycle delivers the rest
        assert ledger_mismatches(store, sandbox) == []
        settings = config.load(cfg, env={SECRET_ENV: SECRET})
        report = run_cycle_sync(settings, "main", store)
        assert report.status == "succeeded", report.errors
        with store.unit(dry_run=True) as unit:
            open_left = sum(unit.outbox_counts().get(s, 0) for s in OPEN_STATUSES)
        assert open_left == 0
        assert ledger_mismatches(store, sandbox) == []
        assert destination_state(sandbox).duplicate_task_keys() == []
        assert _score(sandbox, second)
        store.close()
    assert landed < 20


def test_config_error_at_start_up_is_a_clear_message_and_nonzero_exit(tmp_path: Path) -> None:
    """A wrong cron expression and an unknown [daemon] key stop `leadrelay run` before anything starts."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[daemon]\nport = 0\nlisten = "x"\n[connections.h]\ntype = "hubspot"\ntoken = "t"\n'
                   '[pipelines.p]\nsource = "h"\ndestination = "h"\ncron = "61 * * * *"\n')
    done = subprocess.run([sys.executable, "-m", "sync.cli", "-c", str(cfg), "run"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "daemon.listen: unknown key" in done.stderr
    assert "pipelines.p.cron" in done.stderr
    assert "61" in done.stderr
    assert "listening" not in done.stderr + done.stdout


def test_taken_port_is_a_clear_message_and_nonzero_exit(tmp_path: Path) -> None:
    """When the endpoint's port is taken the agent says so and exits non-zero, leaving no lease behind."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        store_url = f"sqlite:///{tmp_path / 'store.db'}"
        cfg = write_config(tmp_path / "c.toml", store_url=store_url, model_dir=tmp_path / "none",
                           connections={"h": "http://127.0.0.1:9"},
                           pipelines={"p": {"source": "h", "destination": "h"}},
                           daemon={"port": port})
        done = subprocess.run([sys.executable, "-m", "sync.cli", "-c", str(cfg), "run"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"daemon.host/daemon.port: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert lease_table(Store(store_url)) == {}
