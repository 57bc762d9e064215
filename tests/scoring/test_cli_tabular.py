"""`leadrelay train --csv`, `leadrelay score` and `leadrelay model ...` end to end through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sync.cli import main
from tests.scoring._tables import write_export


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("cli")
    export = write_export(work / "leads.csv", leak=True)
    runner = CliRunner()
    refused = runner.invoke(main, ["train", "--csv", str(export), "--label", "converted", "--out", str(work / "m")])
    assert refused.exit_code == 5
    assert "'days_to_close' alone reaches ROC-AUC" in refused.output
    for version in ("v1", "v2"):
        result = runner.invoke(main, ["train", "--csv", str(export), "--label", "converted", "--drop",
                                      "lead_id,days_to_close", "--out", str(work / "m"), "--version", version])
        assert result.exit_code == 0, result.output
    return work / "m", export


def test_train_prints_the_comparison_and_serves_the_model(trained: tuple[Path, Path]) -> None:
    """The second training becomes the champion; both versions keep their cards and reports."""
    folder, _ = trained
    assert json.loads((folder / "card.json").read_text())["version"] == "v2"
    assert (folder / "versions" / "v1" / "report.md").exists()
    listing = CliRunner().invoke(main, ["model", "list", "--dir", str(folder)])
    assert listing.exit_code == 0
    assert "v1" in listing.output
    assert "champion" in listing.output.splitlines()[1]


def test_score_writes_the_scored_file(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """`leadrelay score` writes every row back with its score and prints bands and drift."""
    folder, export = trained
    out = tmp_path / "scored.csv"
    result = CliRunner().invoke(main, ["score", "--csv", str(export), "--model", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "900 rows scored" in result.output
    assert "drift: score PSI" in result.output
    assert out.read_text().splitlines()[0].endswith(";leadrelay_band")


def test_promote_rollback_and_status(trained: tuple[Path, Path]) -> None:
    """Rollback serves v1 again, promote serves v2, status shows version, age and drift."""
    folder, export = trained
    runner = CliRunner()
    assert "v1 is the champion" in runner.invoke(main, ["model", "rollback", "--dir", str(folder)]).output
    assert json.loads((folder / "card.json").read_text())["version"] == "v1"
    assert runner.invoke(main, ["model", "promote", "v2", "--dir", str(folder)]).exit_code == 0
    status = runner.invoke(main, ["model", "status", "--dir", str(folder), "--csv", str(export), "--json"])
    assert status.exit_code == 0, status.output
    data = json.loads(status.output)
    assert data["champion"] == "v2"
    assert data["age_days"] >= 0
    assert data["drift"]["status"] == "ok"
    assert data["live"]["rows"] == 900
    bad = runner.invoke(main, ["model", "promote", "v9", "--dir", str(folder)])
    assert bad.exit_code == 5
    assert "no version 'v9'" in bad.output


def test_cli_import_stays_light() -> None:
    """Importing the CLI (with the model commands) loads neither scikit-learn, onnxruntime nor matplotlib."""
    code = ("import sys, sync.cli; heavy = [m for m in ('sklearn', 'onnxruntime', 'matplotlib', 'skl2onnx') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd())
    assert out.stdout.strip() == "[]"
