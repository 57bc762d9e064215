"""Fault injection: deterministic by seed, and each knob does what faults.py documents."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.sandbox import FaultSettings, HubSpotSandbox
from connectors.sandbox.faults import InjectedDisconnect

pytestmark = pytest.mark.anyio

LIST = "/crm/v3/objects/contacts"


async def _statuses(
    make_sandbox: Any, make_client: Any, faults: FaultSettings, seed: int, n: int = 60
) -> list[int]:
    sandbox = make_sandbox(faults=faults, seed=seed)
    async with make_client(sandbox) as client:
        return [(await client.get(LIST)).status_code for _ in range(n)]


async def test_same_seed_same_faults(make_sandbox: Any, make_client: Any) -> None:
    """The same seed gives the same sequence of answers; another seed a different one."""
    faults = FaultSettings(error_rate=0.2, storm_429=0.1)
    first = await _statuses(make_sandbox, make_client, faults, seed=5)
    again = await _statuses(make_sandbox, make_client, faults, seed=5)
    other = await _statuses(make_sandbox, make_client, faults, seed=6)
    assert first == again
    assert first != other
    assert {500, 502, 503, 504} & set(first)
    assert 429 in first


async def test_storm_429_carries_retry_after_and_policy(make_sandbox: Any, make_client: Any) -> None:
    """Injected 429s look like HubSpot's burst 429 and carry the configured Retry-After."""
    sandbox = make_sandbox(faults=FaultSettings(storm_429=1.0, retry_after="3"))
    async with make_client(sandbox) as client:
        response = await client.get(LIST)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["policyName"] == "TEN_SECONDLY_ROLLING"


async def test_latency_uses_the_injected_sleep(make_sandbox: Any, make_client: Any) -> None:
    """Latency is awaited through the sandbox's sleep, so tests never wait for real."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    sandbox = make_sandbox(faults=FaultSettings(latency_seconds=2.5), sleep=sleep)
    async with make_client(sandbox) as client:
        await client.get(LIST)
        await client.get(LIST)
    assert slept == [2.5, 2.5]


async def test_partial_failures_are_207_entries(make_sandbox: Any, make_client: Any) -> None:
    """partial_failure_rate fails single inputs with a 207 INTERNAL_ERROR naming their ids."""
    sandbox: HubSpotSandbox = make_sandbox(faults=FaultSettings(partial_failure_rate=0.5), seed=3)
    ids = [sandbox.create("contacts", {"email": f"f{i}@example.com"}) for i in range(40)]
    inputs = [{"id": i, "properties": {"leadrelay_band": "A"}} for i in ids]
    async with make_client(sandbox) as client:
        body = (await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})).json()
    failed = [i for e in body["errors"] for i in e["context"]["ids"]]
    assert 5 < body["numErrors"] < 35
    assert {e["category"] for e in body["errors"]} == {"INTERNAL_ERROR"}
    assert sorted(failed + [r["id"] for r in body["results"]]) == sorted(ids)


async def test_timeout_drops_the_connection_after_applying(make_sandbox: Any, make_client: Any) -> None:
    """A dropped request raises a transport error in the client; with applies_share=1 its write persists."""
    sandbox: HubSpotSandbox = make_sandbox(faults=FaultSettings(timeout_rate=1.0, timeout_applies_share=1.0))
    inputs = [{"properties": {"email": "t@example.com"}}]
    async with make_client(sandbox) as client:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await client.post("/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
    assert isinstance(caught.value, InjectedDisconnect)
    assert [o["properties"]["email"] for o in sandbox.objects["contacts"].values()] == ["t@example.com"]
    assert sandbox.stats.dropped_connections == 1


def test_settings_refuse_shares_outside_zero_one() -> None:
    """A share outside [0, 1] is a configuration error."""
    with pytest.raises(ValueError, match="error_rate"):
        FaultSettings(error_rate=1.5)


async def test_later_knobs_never_shift_the_earlier_knobs_draws(make_sandbox: Any, make_client: Any) -> None:
    """Turning on resets and slow answers leaves every 5xx and 429 of a seed where it was."""
    old = FaultSettings(error_rate=0.2, storm_429=0.1)
    more = FaultSettings(error_rate=0.2, storm_429=0.1, reset_rate=0.3, slow_rate=0.5, slow_seconds=0.0)
    before = await _statuses(make_sandbox, make_client, old, seed=5)
    sandbox = make_sandbox(faults=more, seed=5)
    after: list[int | None] = []
    async with make_client(sandbox) as client:
        for _ in range(60):
            try:
                after.append((await client.get(LIST)).status_code)
            except httpx.RemoteProtocolError:
                after.append(None)
    assert None in after
    assert [a for a, b in zip(after, before, strict=True) if b != 200] == [b for b in before if b != 200]


async def test_a_429_storm_lasts_its_configured_length(make_sandbox: Any, make_client: Any) -> None:
    """Once a storm starts, the next requests are 429 too, storm_429_length in all."""
    faults = FaultSettings(storm_429=0.05, storm_429_length=4)
    statuses = await _statuses(make_sandbox, make_client, faults, seed=2, n=300)
    runs, run = [], 0
    for status in [*statuses, 200]:
        if status == 429:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert runs
    assert all(length >= 4 for length in runs[:-1] if length)
    assert statuses == await _statuses(make_sandbox, make_client, faults, seed=2, n=300)


@pytest.mark.parametrize(("applies", "persisted"), [(0.0, []), (1.0, ["r@example.com"])])
async def test_reset_drops_at_once_before_or_after_the_effect(
    make_sandbox: Any, make_client: Any, applies: float, persisted: list[str]
) -> None:
    """A reset drops the connection without the timeout's stall; reset_applies_share picks before or after."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    faults = FaultSettings(reset_rate=1.0, reset_applies_share=applies, timeout_stall_seconds=30.0)
    sandbox: HubSpotSandbox = make_sandbox(faults=faults, sleep=sleep)
    inputs = [{"properties": {"email": "r@example.com"}}]
    async with make_client(sandbox) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
    assert [o["properties"]["email"] for o in sandbox.objects["contacts"].values()] == persisted
    assert slept == []
    assert sandbox.stats.dropped_connections == 1


async def test_slow_answers_wait_their_extra_seconds(make_sandbox: Any, make_client: Any) -> None:
    """slow_rate of the requests are answered slow_seconds late, through the injected sleep, and still succeed."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    sandbox = make_sandbox(faults=FaultSettings(slow_rate=0.5, slow_seconds=4.0), sleep=sleep, seed=1)
    async with make_client(sandbox) as client:
        statuses = [(await client.get(LIST)).status_code for _ in range(40)]
    assert statuses == [200] * 40
    assert set(slept) == {4.0}
    assert 5 < len(slept) < 35


async def test_poisoned_input_refuses_the_whole_batch_in_hubspots_shape(
    make_sandbox: Any, make_client: Any
) -> None:
    """A batch holding a poisoned input is a 400 VALIDATION_ERROR naming it by position and id; nothing is
    written, and halving the batch until the bad inputs stand alone writes all the others."""
    sandbox: HubSpotSandbox = make_sandbox(faults=FaultSettings(batch_rejection_share=0.05), seed=4)
    ids = [sandbox.create("contacts", {"email": f"p{i}@example.com"}) for i in range(100)]
    injector = sandbox._injector
    assert injector is not None
    poisoned = [i for i in ids if injector.poisoned(i)]
    assert 0 < len(poisoned) < 15
    refused: list[str] = []

    async def send(client: httpx.AsyncClient, batch: list[str]) -> None:
        inputs = [{"id": i, "properties": {"leadrelay_band": "B"}} for i in batch]
        response = await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})
        if response.status_code == 200:
            return
        body = response.json()
        assert response.status_code == 400
        assert body["category"] == "VALIDATION_ERROR"
        assert body["message"].startswith("Property values were not valid: ")
        named = body["context"]["ids"][0]
        assert named in poisoned
        assert body["errors"][0]["in"] == f"inputs[{batch.index(named)}]"
        if len(batch) == 1:
            refused.append(named)
            return
        await send(client, batch[: len(batch) // 2])
        await send(client, batch[len(batch) // 2 :])

    async with make_client(sandbox) as client:
        await send(client, ids)
    assert refused == poisoned
    band = {i: sandbox.objects["contacts"][i]["properties"].get("leadrelay_band") for i in ids}
    assert {i for i, b in band.items() if b == "B"} == set(ids) - set(poisoned)
    assert sandbox.stats.rejected_batches > len(poisoned)


async def test_daily_quota_fault_applies_without_limits(make_sandbox: Any, make_client: Any, clock: Any) -> None:
    """daily_quota alone makes the sandbox answer 429 DAILY past the quota, and the next day is whole again."""
    sandbox = make_sandbox(faults=FaultSettings(daily_quota=3))
    async with make_client(sandbox) as client:
        first = [(await client.get(LIST)).status_code for _ in range(4)]
        spent = await client.get(LIST)
        clock.advance(days=1)
        next_day = await client.get(LIST)
    assert first == [200, 200, 200, 429]
    assert spent.json()["policyName"] == "DAILY"
    assert next_day.status_code == 200


@pytest.mark.parametrize("hidden", [False, True])
async def test_other_app_spends_the_window_and_headers_show_it_unless_hidden(
    make_sandbox: Any, make_client: Any, clock: Any, hidden: bool
) -> None:
    """Another app's steady use counts against the burst window; honest headers report it, hidden ones do not,
    and a client that spends what the headers promise then meets a 429."""
    from connectors.sandbox import HubSpotLimits

    faults = FaultSettings(other_app_share=0.5, other_app_hidden=hidden)
    sandbox = make_sandbox(limits=HubSpotLimits(burst=10, window_ms=10_000, daily=1000), faults=faults)
    async with make_client(sandbox) as client:
        clock.advance(seconds=0)
        await client.get(LIST)  # the other app starts with us
        clock.advance(seconds=8)
        seen = await client.get(LIST)
        promised = int(seen.headers["X-HubSpot-RateLimit-Remaining"])
        answers = [(await client.get(LIST)).status_code for _ in range(promised + 1)]
    assert sandbox.stats.other_app_requests == 5
    if hidden:
        assert promised == 8
        assert answers.count(429) > 1
    else:
        assert promised == 3
        assert answers == [200] * 3 + [429]


@pytest.mark.parametrize(
    ("bad", "name"),
    [({"reset_rate": 2.0}, "reset_rate"), ({"batch_rejection_share": -0.1}, "batch_rejection_share"),
     ({"storm_429_length": 0}, "storm_429_length"), ({"daily_quota": -1}, "daily_quota"),
     ({"other_app_share": 1.5}, "other_app_share"), ({"slow_seconds": -1.0}, "latencies")],
)
def test_new_settings_are_validated(bad: dict[str, Any], name: str) -> None:
    """Shares, lengths, quotas and latencies outside their range are refused, naming the knob."""
    with pytest.raises(ValueError, match=name):
        FaultSettings(**bad)
