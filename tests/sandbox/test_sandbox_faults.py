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
