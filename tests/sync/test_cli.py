"""The CLI: light to start, one clear line for expected failures, secrets never printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from sync.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_does_not_import_heavy_modules() -> None:
    """`leadrelay --help` imports neither onnxruntime, scikit-learn nor the sandbox."""
    code = ("import sys; from click.testing import CliRunner; from sync.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('onnxruntime', 'sklearn', 'skl2onnx', 'connectors.sandbox', 'uvicorn') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_connectors_list_shows_the_builtin_with_its_package() -> None:
    """`connectors list --json` names each connector, its package and version, and what it can do."""
    result = CliRunner().invoke(main, ["connectors", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["hubspot"]["ok"] is True
    assert rows["hubspot"]["package"] == "leadrelay"
    assert "update_lead" in rows["hubspot"]["operations"]


def test_bad_config_is_one_line_and_exit_code_two(tmp_path: Path) -> None:
    """A config error prints the key path, no traceback, and exits with 2."""
    path = tmp_path / "c.toml"
    path.write_text('[connections.crm]\ntype = "hubspot"\ntoken = "t"\npage_size = 0\n'
                    '[pipelines.p]\nsource = "crm"\ndestination = "crm"\n')
    result = CliRunner().invoke(main, ["-c", str(path), "config", "check"])
    assert result.exit_code == 2
    assert "connections.crm.page_size" in result.output
    assert "Traceback" not in result.output


def test_config_check_never_prints_the_secret(tmp_path: Path) -> None:
    """A valid config's check output does not contain the token."""
    path = tmp_path / "c.toml"
    path.write_text('[connections.crm]\ntype = "hubspot"\ntoken = "${TOK}"\n'
                    '[pipelines.p]\nsource = "crm"\ndestination = "crm"\n')
    result = CliRunner().invoke(main, ["-c", str(path), "config", "check"], env={"TOK": "pat-na1-TOPSECRET"})
    assert result.exit_code == 0, result.output
    assert "TOPSECRET" not in result.output


def test_dry_run_without_a_store_creates_nothing(tmp_path: Path) -> None:
    """A dry run against a store that does not exist yet plans in memory and leaves no file behind."""
    from connectors.sandbox import HubSpotSandbox, serve_on_loopback

    sandbox = HubSpotSandbox(token="t")
    db = tmp_path / "store" / "leadrelay.db"
    path = tmp_path / "c.toml"
    with serve_on_loopback(sandbox.app) as url:
        path.write_text(f'[store]\nurl = "sqlite:///{db}"\n[scoring]\nmodel_dir = "{tmp_path / "m"}"\n'
                        f'[connections.crm]\ntype = "hubspot"\ntoken = "t"\nbase_url = "{url}"\n'
                        '[pipelines.p]\nsource = "crm"\ndestination = "crm"\n')
        result = CliRunner().invoke(main, ["-c", str(path), "sync", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dry_run"] is True
    assert not db.exists()
    assert not db.parent.exists()
    assert sandbox.stats.write_calls == 0
