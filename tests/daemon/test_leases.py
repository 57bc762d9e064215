"""Pipeline leases on SQLite and PostgreSQL, with an injected clock: one holder, expiry, takeover, shares."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from sync.leases import Leases, ensure_tables
from sync.store import Store

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(any_store_url: str) -> Store:
    s = Store(any_store_url)
    s.create_all()
    ensure_tables(s)
    yield s
    s.close()


def test_one_holder_until_the_lease_runs_out(store: Store) -> None:
    """A held lease refuses another agent; once it expires unrenewed, the other takes it with a new token."""
    clock = Clock()
    a, b = Leases(store, "a", 10, clock=clock), Leases(store, "b", 10, clock=clock)
    assert a.acquire("p1")
    assert not b.acquire("p1")
    clock.advance(9)
    assert not b.acquire("p1")
    assert a.acquire("p1")  # renewing keeps the token
    assert a.tokens["p1"] == 1
    clock.advance(9)
    assert not b.acquire("p1")  # renewed at t=9: good until t=19
    clock.advance(1.5)
    assert b.acquire("p1")
    assert b.tokens["p1"] == 2
    assert a.renew() == {"p1"}  # the old holder finds out on its next heartbeat
    assert not a.still_holds("p1")
    assert b.still_holds("p1")
    assert store_lease(store, "p1") == ("b", 2)


def store_lease(store: Store, pipeline: str) -> tuple[str | None, int]:
    lease = Leases(store, "reader", 1, clock=lambda: T0).get(pipeline)
    assert lease is not None
    return lease.holder, lease.token


def test_release_frees_at_once(store: Store) -> None:
    """A clean exit gives its leases back: another agent takes them without waiting out the lease time."""
    clock = Clock()
    a, b = Leases(store, "a", 30, clock=clock), Leases(store, "b", 30, clock=clock)
    assert a.acquire("p1")
    assert a.acquire("p2")
    a.leave()
    assert b.acquire("p1")
    assert b.acquire("p2")
    assert b.tokens == {"p1": 2, "p2": 2}
    assert a.held == set()


def test_expired_holder_cannot_renew_after_takeover(store: Store) -> None:
    """A paused agent whose lease lapsed and was taken does not get it back by renewing under its old token."""
    clock = Clock()
    a, b = Leases(store, "a", 5, clock=clock), Leases(store, "b", 5, clock=clock)
    a.acquire("p")
    clock.advance(6)
    assert b.acquire("p")
    assert a.renew() == {"p"}
    assert store_lease(store, "p") == ("b", 2)


def test_fair_shares_and_takeover_of_a_dead_agent(store: Store) -> None:
    """Agents split the pipelines evenly; when one stops heartbeating its share moves to the others."""
    clock = Clock()
    pipes = [f"p{i}" for i in range(6)]
    agents = {n: Leases(store, n, 10, clock=clock) for n in ("a", "b", "c")}
    for n in agents:
        agents[n].heartbeat()
    for _ in range(2):
        for n in agents:
            agents[n].balance(pipes)
    held = {n: agents[n].held for n in agents}
    assert sorted(len(h) for h in held.values()) == [2, 2, 2]
    assert set().union(*held.values()) == set(pipes)
    # c dies: a and b keep heartbeating every 3 s; after the lease time they split c's pipelines
    for _ in range(4):
        clock.advance(3)
        for n in ("a", "b"):
            agents[n].balance(pipes)
    held = {n: agents[n].held for n in ("a", "b")}
    assert sorted(len(h) for h in held.values()) == [3, 3]
    assert held["a"].isdisjoint(held["b"])
    assert held["a"] | held["b"] == set(pipes)


def test_busy_pipelines_are_not_given_back(store: Store) -> None:
    """An agent over its share keeps a pipeline whose run is in flight and gives back an idle one."""
    clock = Clock()
    a, b = Leases(store, "a", 10, clock=clock), Leases(store, "b", 10, clock=clock)
    a.balance(["p1", "p2"])
    assert a.held == {"p1", "p2"}
    b.heartbeat()
    _, lost = a.balance(["p1", "p2"], busy={"p2"})
    assert lost == {"p1"}
    assert a.held == {"p2"}
    gained, _ = b.balance(["p1", "p2"])
    assert gained == {"p1"}


def test_concurrent_acquire_has_one_winner(store: Store) -> None:
    """Eight agents racing for one free lease from eight threads: exactly one gets it."""
    clock = Clock()
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def race(name: str) -> None:
        leases = Leases(store, name, 10, clock=clock)
        barrier.wait()
        if leases.acquire("contested"):
            wins.append(name)

    threads = [threading.Thread(target=race, args=(f"agent{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store_lease(store, "contested") == (wins[0], 1)


def test_an_agent_left_with_nothing_gets_a_share(store: Store) -> None:
    """Four pipelines held 2/2 by two agents: a third agent joining gets one, given up by exactly one donor."""
    clock = Clock()
    pipes = ["p0", "p1", "p2", "p3"]
    a, b, c = (Leases(store, n, 10, clock=clock) for n in ("a", "b", "c"))
    a.heartbeat()
    b.heartbeat()
    a.balance(pipes)
    b.balance(pipes)
    assert (len(a.held), len(b.held)) == (2, 2)
    c.heartbeat()
    for _ in range(2):
        for agent in (a, b, c):
            agent.balance(pipes)
    assert sorted(len(x.held) for x in (a, b, c)) == [1, 1, 2]
    assert len(a.held) == 1  # the donor: most held, first by name
    assert len(c.held) >= 1
    assert a.held | b.held | c.held == set(pipes)
