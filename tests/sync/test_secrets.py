"""A planted secret never leaks: through `leadrelay sync` (a real cycle against the sandbox on loopback), a dry
run and a failing call (the sandbox refuses the token with 401), no log line, no JSON report and no text
in any table of the store (SQLite and PostgreSQL) carries it. Logs are JSON lines with run ids."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.sandbox import HubSpotSandbox, generate_dataset, serve_on_loopback
from sync.cli import main
from sync.logs import REDACTED, configure_logging, log_context
from tests.sync import pgdb

empty_url = pgdb.empty_url  # the fixture: SQLite, and a PostgreSQL database of its own

SECRET = "pat-eu1-PLANTED-7f3a9c2e-b41d-4e0a-9d55-c0ffee123456"
ALERT_SECRET = "https://hooks.example.invalid/services/PLANTED-ALERT-PATH"


@pytest.fixture
def quiet_root() -> Iterator[None]:
    """Restores the root logger as it was (the CLI installs leadrelay's handler on it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def write_config(path: Path, store_url: str, base_url: str, model_dir: Path) -> Path:
    path.write_text(f"""
[store]
url = "{store_url}"

[scoring]
model_dir = "{model_dir}"

[alerts]
webhook_url = "${{ALERT_HOOK}}"

[connections.hubspot]
type = "hubspot"
token = "${{HUBSPOT_TOKEN}}"
base_url = "{base_url}"
rate_limit_requests = 100000

[pipelines.main]
source = "hubspot"
destination = "hubspot"
""")
    return path


def store_text(url: str) -> str:
    """Every row of every table of the store, as text."""
    engine = sa.create_engine(url)
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()  # noqa: S608 - names from the catalog
            out.append(f"{table}: {rows!r}")
    engine.dispose()
    return "\n".join(out)


@pytest.mark.usefixtures("quiet_root")
def test_planted_secret_is_in_no_log_report_or_table(empty_url: str, tmp_path: Path, model_dir: Path) -> None:
    """A sync, a dry run and a sync whose token the CRM refuses leave the planted token and alert URL in no
    log line, report or stored text; the logs are JSON lines carrying the pipeline and the run id."""
    env = {"HUBSPOT_TOKEN": SECRET, "ALERT_HOOK": ALERT_SECRET}
    good = HubSpotSandbox(token=SECRET)
    good.load(generate_dataset(seed=3, contacts=120, now=datetime.now(UTC)))
    refusing = HubSpotSandbox(token="a-different-token")
    refusing.load(generate_dataset(seed=3, contacts=20, now=datetime.now(UTC)))
    runner = CliRunner()
    outputs = []
    with contextlib.ExitStack() as servers:
        good_url = servers.enter_context(serve_on_loopback(good.app))
        refusing_url = servers.enter_context(serve_on_loopback(refusing.app))
        config = write_config(tmp_path / "ok.toml", empty_url, good_url, model_dir)
        failing = write_config(tmp_path / "bad.toml", empty_url, refusing_url, model_dir)
        for args in (["-c", str(config), "sync", "--json"], ["-c", str(config), "sync", "--dry-run", "--json"],
                     ["-c", str(failing), "sync", "--json"]):
            result = runner.invoke(main, ["--log-format", "json", "--log-level", "debug", *args], env=env)
            outputs.append(result)
    real, dry, refused = outputs
    assert real.exit_code == 0, real.output
    assert dry.exit_code == 0, dry.output
    assert refused.exit_code == 4, refused.output
    report = json.loads(real.stdout)
    assert report["status"] == "succeeded"
    assert report["scored"] > 0
    assert json.loads(refused.stdout)["status"] == "failed"
    logs = [line for r in outputs for line in r.stderr.splitlines() if line.startswith("{")]
    cycle_lines = [json.loads(line) for line in logs if "leadrelay.pipeline" in line]
    assert {(x["pipeline"], x["run_id"]) for x in cycle_lines} >= {("main", report["run_id"])}
    assert any("401" in x["message"] or "token" in x["message"].lower() for x in cycle_lines
               if x["level"] == "warning"), logs
    everything = "\n".join([*(r.output for r in outputs), *(r.stderr for r in outputs), store_text(empty_url)])
    assert good.stats.requests  # the secret really went over the wire
    assert SECRET not in everything
    assert "PLANTED" not in everything
    assert "pipeline failing" in refused.stderr  # the alert line went out (and carries no secret)


def test_redaction_covers_messages_arguments_exceptions_and_extra(quiet_root: None) -> None:
    """A secret in a message, in an argument, in an exception's text or in an extra field is replaced; e-mail
    addresses are masked; context fields come from log_context."""
    buffer = io.StringIO()
    configure_logging("json", "INFO", secrets=["s3cr3t-value-xyz"], stream=buffer)
    log = logging.getLogger("leadrelay.test")
    with log_context(pipeline="main", run_id=12):
        log.info("token %s for jane.doe@acme.com", "s3cr3t-value-xyz", extra={"operation": "op-1",
                                                                              "url": "https://x/?k=s3cr3t-value-xyz"})
        try:
            raise RuntimeError("refused s3cr3t-value-xyz")
        except RuntimeError:
            log.exception("call failed")
    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert first["message"] == f"token {REDACTED} for j•••@acme.com"
    assert (first["pipeline"], first["run_id"], first["operation"]) == ("main", 12, "op-1")
    assert first["url"] == f"https://x/?k={REDACTED}"
    assert "s3cr3t" not in second["error"]
    assert "RuntimeError" in second["error"]


def test_human_format_reads_well(quiet_root: None) -> None:
    """The terminal format: time, level, [pipeline #run op], message, then other fields."""
    buffer = io.StringIO()
    configure_logging("human", "INFO", stream=buffer)
    with log_context(pipeline="main", run_id=3):
        logging.getLogger("leadrelay.test").warning("slow page", extra={"operation": "k9", "page": 4})
    line = buffer.getvalue().strip()
    assert line.endswith("WARNING [main #3 op k9] slow page  page=4")
