"""Pipeline leases: several agents share one store, and each pipeline runs on exactly one of them.

A lease row says which agent holds a pipeline until when. Taking one is a single conditional statement
(an UPDATE that only matches a free, expired or own lease, else an INSERT that only lands if no row
exists), so two agents can never both believe they won — on PostgreSQL and on SQLite alike. The holder
renews well inside the lease time; an agent that dies stops renewing and its pipelines are free once the
lease runs out. Every change of holder increments the fencing token, so a run started under an old token
can be told apart from the new holder's. The per-run ``pipeline_lock`` (an advisory lock that dies with
its connection) stays the second guard: even an agent whose lease lapsed unnoticed cannot overlap a run.

Agents also announce themselves (the ``lease_agent`` table): each takes a fair share of the pipelines,
``ceil(pipelines / live agents)``, and gives back what is over its share between runs, so work spreads
when agents join and is taken over when one goes.

Times come from the injected clock (tests move it; production uses the wall clock): agents' clocks must
agree within a small part of the lease time, which NTP gives.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from sync.store import Store, utc

Clock = Callable[[], datetime]


class LeaseRow(SQLModel, table=True):
    __tablename__ = "lease"
    pipeline: str = Field(primary_key=True)
    holder: str | None = None
    expires_at: datetime = Field(sa_type=sa.DateTime())
    token: int = 0  # fencing token: incremented whenever the lease changes hands
    acquired_at: datetime | None = Field(default=None, sa_type=sa.DateTime())


class AgentRow(SQLModel, table=True):
    __tablename__ = "lease_agent"
    agent: str = Field(primary_key=True)
    seen_at: datetime = Field(sa_type=sa.DateTime())
    started_at: datetime = Field(sa_type=sa.DateTime())


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Lease:
    pipeline: str
    holder: str | None
    expires_at: datetime
    token: int

    def live(self, now: datetime) -> bool:
        return self.holder is not None and self.expires_at > now


def ensure_tables(store: Store) -> None:
    """Create the lease tables if missing (cheap; safe to call from every agent at start-up)."""
    for table in (LeaseRow.__table__, AgentRow.__table__):
        table.create(store.engine, checkfirst=True)  # type: ignore[attr-defined]


class Leases:
    """One agent's view of the lease table."""

    def __init__(self, store: Store, agent: str, lease_seconds: float, *, clock: Clock) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.store = store
        self.agent = agent
        self.seconds = lease_seconds
        self.clock = clock
        self.tokens: dict[str, int] = {}  # what this agent holds, with the token it holds it under

    @property
    def held(self) -> set[str]:
        return set(self.tokens)

    # -- single leases ------------------------------------------------------------------------------

    def acquire(self, pipeline: str) -> bool:
        """Take (or renew) ``pipeline``'s lease if it is free, expired or already ours; True if we hold it."""
        now = self.clock()
        t = LeaseRow.__table__
        until, at = _naive(now + timedelta(seconds=self.seconds)), _naive(now)
        mine = t.c.holder == self.agent
        with self.store.engine.begin() as conn:
            updated = conn.execute(
                t.update()
                .where(t.c.pipeline == pipeline, sa.or_(mine, t.c.holder.is_(None), t.c.expires_at <= at))
                .values(token=sa.case((mine, t.c.token), else_=t.c.token + 1),
                        acquired_at=sa.case((mine, t.c.acquired_at), else_=at),
                        holder=self.agent, expires_at=until)
                .returning(t.c.token)).scalar_one_or_none()
            if updated is None:
                insert = _insert(self.store.dialect, t).values(
                    pipeline=pipeline, holder=self.agent, expires_at=until, token=1, acquired_at=at
                ).on_conflict_do_nothing(index_elements=["pipeline"]).returning(t.c.token)
                updated = conn.execute(insert).scalar_one_or_none()
        if updated is None:
            self.tokens.pop(pipeline, None)
            return False
        self.tokens[pipeline] = int(updated)
        return True

    def renew(self) -> set[str]:
        """Extend every lease this agent holds under its token; returns the pipelines lost (taken over
        after our lease ran out, e.g. while this process was paused)."""
        now = self.clock()
        t = LeaseRow.__table__
        until = _naive(now + timedelta(seconds=self.seconds))
        lost = set()
        with self.store.engine.begin() as conn:
            for pipeline, token in sorted(self.tokens.items()):
                done = conn.execute(t.update().where(
                    t.c.pipeline == pipeline, t.c.holder == self.agent, t.c.token == token
                ).values(expires_at=until)).rowcount
                if not done:
                    lost.add(pipeline)
        for pipeline in lost:
            self.tokens.pop(pipeline, None)
        return lost

    def still_holds(self, pipeline: str) -> bool:
        """Whether our lease on ``pipeline`` is unexpired under our token (asked before each run)."""
        token = self.tokens.get(pipeline)
        if token is None:
            return False
        lease = self.get(pipeline)
        ok = lease is not None and lease.holder == self.agent and lease.token == token \
            and lease.expires_at > self.clock()
        if not ok:
            self.tokens.pop(pipeline, None)
        return ok

    def release(self, pipelines: Iterable[str] | None = None) -> None:
        """Give leases back at once (clean exit, or over our fair share): others need not wait them out."""
        names = sorted(self.tokens if pipelines is None else set(pipelines) & set(self.tokens))
        if not names:
            return
        t = LeaseRow.__table__
        at = _naive(self.clock())
        with self.store.engine.begin() as conn:
            for pipeline in names:
                conn.execute(t.update().where(t.c.pipeline == pipeline, t.c.holder == self.agent,
                                              t.c.token == self.tokens[pipeline]).values(holder=None, expires_at=at))
        for pipeline in names:
            self.tokens.pop(pipeline, None)

    def get(self, pipeline: str) -> Lease | None:
        t = LeaseRow.__table__
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.pipeline == pipeline)).one_or_none()
        return None if row is None else Lease(row.pipeline, row.holder, utc(row.expires_at), row.token)  # type: ignore[arg-type]

    # -- agents and fair shares ---------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Say this agent is alive (its share of the pipelines depends on how many are)."""
        now = _naive(self.clock())
        t = AgentRow.__table__
        with self.store.engine.begin() as conn:
            done = conn.execute(t.update().where(t.c.agent == self.agent).values(seen_at=now)).rowcount
            if not done:
                conn.execute(_insert(self.store.dialect, t).values(agent=self.agent, seen_at=now, started_at=now)
                             .on_conflict_do_nothing(index_elements=["agent"]))

    def live_agents(self) -> list[str]:
        t = AgentRow.__table__
        since = _naive(self.clock() - timedelta(seconds=self.seconds))
        with self.store.engine.connect() as conn:
            found = set(conn.execute(sa.select(t.c.agent).where(t.c.seen_at > since)).scalars())
        return sorted(found | {self.agent})

    def leave(self) -> None:
        """Clean exit: release every lease and forget this agent."""
        self.release()
        t = AgentRow.__table__
        with self.store.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.agent == self.agent))

    def balance(self, pipelines: Sequence[str], *, busy: Collection[str] = (),
                guard: AbstractContextManager[Any] | None = None) -> tuple[set[str], set[str]]:
        """One heartbeat: renew, give back what is over our fair share (never a pipeline in ``busy``, whose
        run is in flight; ``guard`` is held while choosing and releasing, and by whoever adds to ``busy``),
        take free pipelines up to it. Returns (gained, lost).

        Shares: every live agent should hold at least ``floor(P / N)`` and at most ``ceil(P / N)``. An agent
        over the upper bound gives back the excess; while some agent is under the lower bound, the agents
        holding the most (ties broken by name, so all agents agree) each give back one.
        """
        self.heartbeat()
        lost = self.renew()
        agents = self.live_agents()
        low, high = len(pipelines) // len(agents), math.ceil(len(pipelines) / len(agents))
        now = self.clock()
        counts = dict.fromkeys(agents, 0)
        for lease in self.table().values():
            if lease.pipeline in pipelines and lease.live(now) and lease.holder in counts:
                counts[lease.holder] += 1
        counts[self.agent] = len(self.tokens)
        over = len(self.tokens) - high
        short = sum(max(low - n, 0) for n in counts.values())
        if over <= 0 and short:
            donors = sorted((a for a, n in counts.items() if n > low), key=lambda a: (-counts[a], a))[:short]
            over = 1 if self.agent in donors else 0
        if over > 0:
            with guard or contextlib.nullcontext():
                spare = [p for p in sorted(self.tokens, reverse=True) if p not in busy][:over]
                self.release(spare)
            lost |= set(spare)
        target = high if not short or len(self.tokens) < low else max(low, len(self.tokens))
        gained = set()
        for pipeline in pipelines:
            if len(self.tokens) >= target:
                break
            if pipeline in self.tokens:
                continue
            lease = self.get(pipeline)
            if lease is not None and lease.live(self.clock()):
                continue
            if self.acquire(pipeline):
                gained.add(pipeline)
        return gained, lost

    def table(self) -> dict[str, Lease]:
        """Every pipeline's lease (for `leadrelay status`)."""
        t = LeaseRow.__table__
        with self.store.engine.connect() as conn:
            return {r.pipeline: Lease(r.pipeline, r.holder, utc(r.expires_at), r.token)  # type: ignore[arg-type]
                    for r in conn.execute(sa.select(t))}


def lease_table(store: Store) -> dict[str, Lease]:
    """Every lease in the store (empty if no agent ever ran against it)."""
    if not sa.inspect(store.engine).has_table(LeaseRow.__tablename__):
        return {}
    return Leases(store, "", 1, clock=lambda: datetime.now(UTC)).table()


def _insert(dialect: str, table: sa.Table) -> sa.Insert:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)  # type: ignore[return-value]


__all__ = ["AgentRow", "Lease", "LeaseRow", "Leases", "ensure_tables", "lease_table"]
