"""Several agents on one PostgreSQL store: each pipeline runs on exactly one agent at a time, a killed
agent's pipelines are taken over within the lease time, and no operation reaches a CRM twice."""

from __future__ import annotations

import itertools
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from sync.leases import lease_table
from sync.store import RunRow, Store, utc
from tests.daemon.agents import Agent, sandboxes, wait_for, write_config
from tests.sync.rig import destination_state

PIPELINES = ["p0", "p1", "p2", "p3"]
LEASE = 3.0


def _runs(store: Store) -> list[dict]:
    t = RunRow.__table__
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(t).where(t.c.dry_run.is_(False)).order_by(t.c.id))]
    for r in rows:
        r["started_at"], r["finished_at"] = utc(r["started_at"]), utc(r["finished_at"])
    return rows


def _holders(store: Store) -> dict[str, str | None]:
    now = datetime.now(UTC)
    return {p: (lease.holder if lease.live(now) else None) for p, lease in lease_table(store).items()}


def test_three_agents_share_pipelines_and_take_over_from_a_killed_one(tmp_path: Path, model_dir: Path,
                                                                      pg_database: str) -> None:
    """Three agents split four pipelines; after SIGKILL of one, the others take its pipelines within the
    lease time; runs of a pipeline never overlap across agents; no task key is created twice in any CRM."""
    with sandboxes([f"s{i}" for i in range(len(PIPELINES))], contacts=100) as boxes:
        cfg = write_config(
            tmp_path / "leadrelay.toml", store_url=pg_database, model_dir=model_dir,
            connections={name: url for name, (_, url) in boxes.items()},
            pipelines={p: {"source": f"s{i}", "destination": f"s{i}", "cron": "* * * * * *",
                           "follow_up": {"min_score": 4}} for i, p in enumerate(PIPELINES)},
            daemon={"host": "127.0.0.1", "port": 0, "lease_seconds": LEASE})
        agents = {name: Agent(cfg, tmp_path / f"{name}.log", name) for name in ("a1", "a2", "a3")}
        store = Store(pg_database)
        try:
            for agent in agents.values():
                agent.url()
            # every pipeline held and run; the work spread over all three agents
            wait_for(lambda: len({h for h in _holders(store).values() if h}) == 3
                     and all(_holders(store).get(p) for p in PIPELINES), "leases spread over three agents",
                     timeout=90)
            wait_for(lambda: {r["pipeline"] for r in _runs(store) if r["status"] == "succeeded"} == set(PIPELINES),
                     "a finished cycle of every pipeline", timeout=60)
            holders = _holders(store)
            victim = next(a for a in ("a1", "a2", "a3") if list(holders.values()).count(a) >= 1)
            orphaned = sorted(p for p, h in holders.items() if h == victim)
            agents[victim].kill()
            killed_at = datetime.now(UTC)
            killed_mono = time.monotonic()

            def taken_over() -> bool:
                h = _holders(store)
                return all(h.get(p) not in (None, victim) for p in orphaned)

            wait_for(taken_over, f"{victim}'s pipelines {orphaned} to be taken over", timeout=4 * LEASE)
            takeover = time.monotonic() - killed_mono
            # every pipeline keeps running: a finished cycle of each after the kill
            wait_for(lambda: {r["pipeline"] for r in _runs(store)
                              if r["status"] == "succeeded" and r["started_at"] > killed_at} == set(PIPELINES),
                     "cycles of every pipeline after the kill", timeout=60)
            for name, agent in agents.items():
                if name != victim:
                    agent.proc.send_signal(signal.SIGTERM)
            for name, agent in agents.items():
                if name != victim:
                    assert agent.wait(timeout=60) == 0, agent.text()
        finally:
            for agent in agents.values():
                agent.kill()
            runs = _runs(store)
            store.close()
        # the lease time, plus one heartbeat to notice, plus scheduling slack
        assert takeover <= LEASE + LEASE / 4 + 1.5, takeover
        assert all(r["agent"] in agents for r in runs)
        assert not [r for r in runs if r["status"] == "running"]
        for pipeline in PIPELINES:
            mine = sorted((r for r in runs if r["pipeline"] == pipeline and r["status"] != "skipped"),
                          key=lambda r: r["started_at"])
            for before, after in itertools.pairwise(mine):
                assert after["started_at"] >= before["finished_at"], (pipeline, before, after)
            assert len({r["agent"] for r in mine}) >= 1
        taken = [r for r in runs if r["pipeline"] in orphaned and r["started_at"] > killed_at]
        assert taken
        assert victim not in {r["agent"] for r in taken}
        for name, (sandbox, _) in boxes.items():
            state = destination_state(sandbox)
            assert state.duplicate_task_keys() == [], name
            assert all(n == 1 for n in state.tasks_per_contact().values()), name
            assert sum(len(t) for t in state.tasks.values()) > 0, name  # tasks were created: the check has teeth
