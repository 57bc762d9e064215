"""Prometheus metrics of one agent (served on /metrics by ``sync.server``).

Counters come from the run reports as cycles finish; gauges that describe the store (outbox depth, dead
letters) are read from it when scraped, so they are true for the whole store, whichever agent wrote it.
Each daemon has its own registry (tests run several in one process).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sync.store import OPEN_STATUSES, Store

# Trigger-to-delivery: the goal is seconds, so the buckets are fine below 5 s.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter("leadrelay_runs", "Cycles finished, by pipeline and outcome", ["pipeline", "outcome"],
                            registry=r)
        self.records_read = Counter("leadrelay_records_read", "Records read from sources", ["pipeline", "stream"],
                                    registry=r)
        self.quarantined = Counter("leadrelay_records_quarantined", "Records that broke the data contract",
                                   ["pipeline"], registry=r)
        self.scored = Counter("leadrelay_leads_scored", "Leads scored", ["pipeline"], registry=r)
        self.operations = Counter("leadrelay_operations", "Delivered operations by destination and outcome",
                                  ["pipeline", "destination", "outcome"], registry=r)
        self.outbox_depth = Gauge("leadrelay_outbox_depth", "Open operations in the outbox, by status", ["status"],
                                  registry=r)
        self.dead_letters = Gauge("leadrelay_dead_letters", "Operations a destination rejected (dead letters)",
                                  registry=r)
        self.rate_used = Gauge("leadrelay_rate_budget_used_ratio",
                               "Share of each connector account's main rate window spent right now",
                               ["connector", "account"], registry=r)
        self.rate_waited = Gauge("leadrelay_rate_budget_waited_seconds",
                                 "Seconds requests waited for rate budget since start", ["connector", "account"],
                                 registry=r)
        self.drift = Gauge("leadrelay_score_drift_psi", "Score PSI against the training reference (last run), by "
                           "model: entity lead or account", ["pipeline", "entity"], registry=r)
        self.latency = Histogram("leadrelay_trigger_to_delivery_seconds",
                                 "From webhook receipt to the end of delivery of the cycle it caused",
                                 ["pipeline"], buckets=LATENCY_BUCKETS, registry=r)
        self.cycle_seconds = Histogram("leadrelay_cycle_seconds", "Wall time of a cycle", ["pipeline", "reason"],
                                       buckets=CYCLE_BUCKETS, registry=r)
        self.phase_seconds = Histogram("leadrelay_cycle_phase_seconds", "Wall time of each phase of a cycle",
                                       ["pipeline", "phase"], buckets=CYCLE_BUCKETS, registry=r)
        self.triggers = Counter("leadrelay_triggers", "Webhook triggers received, by connection", ["connection"],
                                registry=r)
        self.leased = Gauge("leadrelay_pipeline_leased", "1 if this agent holds the pipeline's lease", ["pipeline"],
                            registry=r)
        self.last_run = Gauge("leadrelay_last_run_timestamp_seconds", "When the pipeline's last cycle finished",
                              ["pipeline"], registry=r)

    def record_report(self, report: Any, reason: str, seconds: float) -> None:
        """Count what one finished cycle did (a ``sync.pipeline.CycleReport``)."""
        name = report.pipeline
        self.runs.labels(name, report.status).inc()
        self.cycle_seconds.labels(name, reason).observe(seconds)
        for phase, spent in report.seconds.items():
            self.phase_seconds.labels(name, phase).observe(spent)
        for stream, n in report.read.items():
            self.records_read.labels(name, stream).inc(n)
        if report.quarantined:
            self.quarantined.labels(name).inc(report.quarantined)
        if report.scored:
            self.scored.labels(name).inc(report.scored)
        for delivery in report.delivery:
            for outcome, n in delivery.get("outcomes", {}).items():
                self.operations.labels(name, delivery["destination"], outcome).inc(n)
        account = getattr(report, "account", None) or {}
        for entity, drift in (("lead", getattr(report, "drift", None)), ("account", account.get("drift"))):
            if isinstance(drift, Mapping) and isinstance(drift.get("score_psi"), int | float):
                self.drift.labels(name, entity).set(float(drift["score_psi"]))
        if report.finished_at is not None:
            self.last_run.labels(name).set(report.finished_at.timestamp())

    def refresh_store(self, store: Store) -> None:
        """Read the outbox gauges from the store (blocking: call from a worker thread)."""
        with store.unit(dry_run=True) as unit:
            counts = unit.outbox_counts()
        for status in OPEN_STATUSES:
            self.outbox_depth.labels(status).set(counts.get(status, 0))
        self.dead_letters.set(counts.get("rejected", 0))

    def refresh_rate_budgets(self) -> None:
        for row in rate_budget_use():
            self.rate_used.labels(row["connector"], row["account"]).set(row["used"])
            self.rate_waited.labels(row["connector"], row["account"]).set(row["waited_seconds"])

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def rate_budget_use() -> list[dict[str, Any]]:
    """Each shared rate limiter of this process: connector, account (a keyed hash, never the token), the
    share of its main window spent, and seconds waited (``RateBudgets.usage``)."""
    from connectors.http import RATE_BUDGETS

    return RATE_BUDGETS.usage()


__all__ = ["LATENCY_BUCKETS", "Metrics", "rate_budget_use"]
