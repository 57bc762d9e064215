"""`leadrelay sandbox serve --vendor`: each fake starts on its own loopback port, and the [connections.*]
table it prints reaches it — every connector's check() passes against it with those very settings."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tomllib
from datetime import UTC, datetime

import httpx
import pytest
from click.testing import CliRunner

from connectors.http import RetrySettings
from sync import config
from sync.cli import main
from sync.demo import SANDBOX_VENDORS, serve_forever, serve_sandboxes
from sync.pipeline import build_connector

pytestmark = pytest.mark.anyio


async def test_every_vendor_answers_the_connection_settings_it_prints() -> None:
    """All six fakes serve on distinct ports, and a config made of their printed tables passes each
    connector's credential check over the loopback socket."""
    with serve_sandboxes(SANDBOX_VENDORS, port=0, contacts=20, seed=3, token="serve-test-token") as served:
        assert [s.vendor for s in served] == list(SANDBOX_VENDORS)
        assert len({s.base_url for s in served}) == len(served)
        tables = tomllib.loads("\n".join(s.toml() for s in served))["connections"]
        settings = config.parse({"store": {"url": "sqlite://"}, "connections": tables,
                                 "pipelines": {"main": {"source": "hubspot", "destination": "hubspot"}}}, env={})
        for one in served:
            connector = build_connector(settings.connections[one.vendor], one.vendor, RetrySettings(attempts=1))
            try:
                await connector.check()
            finally:
                await connector.http.client.aclose()
        people = {s.vendor: s.sandbox for s in served}
        assert len(people["hubspot"].objects["contacts"]) == 20
        assert len(people["salesforce"].records["Lead"]) == 20
        assert len(people["marketo"].state.leads) == 20


def test_serve_forever_prints_urls_and_stops_when_told() -> None:
    """serve_forever prints one table per fake with its URL (`all`: six), answers HTTP while running, and
    returns once stopped."""
    lines: list[str] = []
    ready, stop = threading.Event(), threading.Event()

    def echo(text: str) -> None:
        lines.append(text)
        if text.startswith("Serving until"):
            ready.set()

    thread = threading.Thread(target=serve_forever, kwargs={"port": 0, "contacts": 10, "seed": 1, "token": "tok",
                                                            "vendor": "all", "echo": echo, "stop": stop})
    thread.start()
    try:
        assert ready.wait(60), lines
        tables = [line for line in lines if line.startswith("# ")]
        assert [t.split()[1] for t in tables] == list(SANDBOX_VENDORS)
        hub_url = tables[0].split(" on ")[1].splitlines()[0]
        answer = httpx.get(f"{hub_url}/crm/v3/objects/contacts", params={"limit": 2},
                           headers={"Authorization": "Bearer tok"})
        assert answer.status_code == 200
        assert len(answer.json()["results"]) == 2
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_the_cli_refuses_an_unknown_vendor_and_documents_the_option() -> None:
    """--vendor takes the six fakes or `all`; anything else is refused naming the option."""
    runner = CliRunner()
    refused = runner.invoke(main, ["sandbox", "serve", "--vendor", "zoho"])
    assert refused.exit_code == 2
    assert "--vendor" in refused.output
    helped = runner.invoke(main, ["sandbox", "serve", "--help"])
    assert "google_ads" in helped.output
    assert "all" in helped.output


def test_the_command_starts_in_a_process_and_answers() -> None:
    """`leadrelay sandbox serve --vendor linkedin --port 0` prints its table; the fake answers a segment
    listing with the printed token; the process ends on SIGTERM."""
    process = subprocess.Popen([sys.executable, "-m", "sync.cli", "sandbox", "serve", "--vendor", "linkedin",
                                "--port", "0", "--contacts", "5"], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        printed = []
        deadline = datetime.now(UTC).timestamp() + 60
        for line in process.stdout:  # blocks until the server has printed, never a fixed sleep
            printed.append(line)
            if line.startswith("Serving until") or datetime.now(UTC).timestamp() > deadline:
                break
        table = tomllib.loads("".join(line for line in printed if not line.startswith(("Serving", "# "))))
        linkedin = table["connections"]["linkedin"]
        answer = httpx.get(f"{linkedin['base_url']}/dmpSegments",
                           params={"q": "account", "account": f"urn:li:sponsoredAccount:{linkedin['ad_account_id']}"},
                           headers={"Authorization": f"Bearer {linkedin['access_token']}", "LinkedIn-Version": "202610",
                                    "X-Restli-Protocol-Version": "2.0.0"})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["elements"]) == 1
    finally:
        process.terminate()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
