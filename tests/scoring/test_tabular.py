"""Tabular training and scoring: dialects, labels, the leakage guard, gates, the self-contained ONNX model."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from scoring._csv import TableError, read_csv
from scoring.card import CARD_FILE
from scoring.errors import FeatureSpecError, ModelMismatchError, ReleaseGateError
from scoring.tabular import prepare, single_column_auc, train_csv
from scoring.tabular_model import TabularModel, score_csv
from tests.scoring._tables import write_export

NOW = datetime(2025, 3, 1, tzinfo=UTC)
LR = ("logistic_regression",)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_export(tmp_path_factory.mktemp("data") / "leads.csv")


@pytest.fixture(scope="module")
def model_dir(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tabular")
    train_csv(export, folder, label="converted", drop=["lead_id"], version="t1", trained_at=NOW,
              min_examples=100, min_positives=20)
    return folder


def test_separator_and_quotes_are_detected(export: Path, tmp_path: Path) -> None:
    """A ';'-separated, fully quoted export and a plain ',' one read into the same columns and cells."""
    semi = read_csv(export)
    plain = read_csv(write_export(tmp_path / "plain.csv", sep=","))
    assert (semi.sep, semi.quote) == (";", '"')
    assert plain.sep == ","
    assert semi.columns == plain.columns
    assert semi.cells[1, 1] == "paid search"
    assert semi.cells[0, 3] == ""  # blank cell stays blank


def test_ragged_row_is_refused_with_its_line(tmp_path: Path) -> None:
    """A row with the wrong number of fields is refused, naming the line."""
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,yes\n1,2\n")
    with pytest.raises(TableError, match="line 3: 2 fields, the header has 3"):
        read_csv(path)


def test_positive_value_is_detected_or_asked_for(tmp_path: Path) -> None:
    """yes/no picks 'yes'; an unknown pair asks for --positive; a given value matches case-insensitively."""
    path = tmp_path / "t.csv"
    path.write_text("x,won\n1,Closed Won\n2,Closed Lost\n3,\n")
    table = read_csv(path)
    with pytest.raises(FeatureSpecError, match="cannot tell which of 'Closed Lost', 'Closed Won' is positive"):
        prepare(table, label="won")
    data = prepare(table, label="won", positive="closed won")
    assert data.positive == "Closed Won"
    assert data.y.tolist() == [1, 0]
    assert "1 rows without a 'won' value left out" in data.notes[0]


def test_leaky_column_is_refused_naming_it_and_its_auc(tmp_path: Path) -> None:
    """A column filled in only after conversion is flagged with its single-column AUC; nothing is written."""
    path = write_export(tmp_path / "leaky.csv", leak=True)
    with pytest.raises(ReleaseGateError, match=r"'days_to_close' alone reaches ROC-AUC 1\.000") as info:
        train_csv(path, tmp_path / "m", label="converted", drop=["lead_id"], version="x", trained_at=NOW,
                  min_examples=100, min_positives=20, candidates=LR)
    assert info.value.gate == "leakage"
    assert "--drop days_to_close" in str(info.value)
    assert "--allow-leaky days_to_close" in str(info.value)
    assert not (tmp_path / "m" / CARD_FILE).exists()


def test_leaky_column_trains_once_dropped_or_confirmed(tmp_path: Path) -> None:
    """--drop removes the flagged column; --allow-leaky keeps it and the card records the confirmation."""
    path = write_export(tmp_path / "leaky.csv", leak=True)
    common = {"label": "converted", "trained_at": NOW, "min_examples": 100, "min_positives": 20, "candidates": LR}
    dropped = train_csv(path, tmp_path / "a", drop=["lead_id", "days_to_close"], version="a", **common)
    assert "days_to_close" not in {c.name for c in dropped.columns}
    # Gradient boosting sees the leak through missingness; logistic regression's median imputation would not.
    common["candidates"] = ("hist_gradient_boosting",)
    kept = train_csv(path, tmp_path / "b", drop=["lead_id"], allow_leaky=["days_to_close"], version="b", **common)
    assert kept.leakage["allowed"] == ["days_to_close"]
    assert kept.metrics["roc_auc"] > dropped.metrics["roc_auc"]


def test_identifier_column_does_not_look_predictive(export: Path) -> None:
    """Out-of-fold target means keep a unique ID near AUC 0.5, while the real signal ranks well."""
    data = prepare(read_csv(export), label="converted")
    aucs = single_column_auc(data.frame, data.y)
    assert aucs["lead_id"] < 0.6
    assert aucs["pricing.visits"] > 0.65


def test_model_folder_is_self_contained(model_dir: Path, export: Path) -> None:
    """One raw input per column (sanitised names mapped in the card), a probability output, report files."""
    import onnxruntime as ort

    card = json.loads((model_dir / CARD_FILE).read_text())
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.type for i in session.get_inputs()}
    by_column = {c["name"]: c["input"] for c in card["columns"]}
    assert set(by_column) == {"Lead Source", "country", "visits", "pricing.visits"}
    assert inputs[by_column["visits"]] == "tensor(float)"
    assert inputs[by_column["Lead Source"]] == "tensor(string)"
    assert [o.name for o in session.get_outputs()] == ["probability"]
    # Raw values in: a blank category is "", a blank number NaN; an unseen category is allowed.
    feed = {by_column["Lead Source"]: np.array([["webinar"], ["never seen"]], dtype=object),
            by_column["country"]: np.array([[""], ["US"]], dtype=object),
            by_column["visits"]: np.array([[np.nan], [3.0]], dtype=np.float32),
            by_column["pricing.visits"]: np.array([[4.0], [0.0]], dtype=np.float32)}
    p = session.run(["probability"], feed)[0]
    assert p.shape == (2,)
    assert 0 < p[1] < p[0] < 1
    for name in ("report.md", "report.html", "reliability.png", "bands.png", "reference.json"):
        assert (model_dir / name).stat().st_size > 0
    report = (model_dir / "report.md").read_text()
    assert "| logistic_regression |" in report
    assert "| baseline |" in report
    assert "top 15 %" in report


def test_onnx_scores_equal_sklearn_on_raw_rows(export: Path, tmp_path: Path) -> None:
    """The exported pipeline and scikit-learn agree within 1e-4 on rows with blanks and unseen values."""
    from threadpoolctl import threadpool_limits

    from scoring.tabular import _export, _fit, _split

    data = prepare(read_csv(export), label="converted", drop=["lead_id"])
    fit_rows, check_rows = _split(data.y, "random", 0.3, 1)
    with threadpool_limits(limits=1):  # OpenMP oversubscription on a busy machine costs 10x here
        fitted = _fit("hist_gradient_boosting", data.frame.take(fit_rows), data.y[fit_rows],
                      data.frame.take(check_rows), data.y[check_rows], 1)

    check = data.frame.take(check_rows)
    check.categorical[:5, 0] = "brand new source"
    _, inputs, diff = _export(fitted.pipeline, check)
    assert diff <= 1e-4
    assert len(inputs) == len(check.names)


def test_scoring_a_file_writes_scores_and_low_drift(model_dir: Path, export: Path, tmp_path: Path) -> None:
    """score_csv appends probability, score 1-99 and band to every row; the training file shows no drift."""
    out = tmp_path / "scored.csv"
    result = score_csv(model_dir, export, out=out)
    with out.open() as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert rows[0][-3:] == ["leadrelay_probability", "leadrelay_score", "leadrelay_band"]
    assert len(rows) - 1 == result.rows == 900
    assert all(1 <= int(r[-2]) <= 99 for r in rows[1:])
    assert sum(result.bands.values()) == 900
    assert result.drift is not None
    assert result.drift.status == "ok"
    direct = TabularModel.load(model_dir).predict_proba(read_csv(export))
    assert np.allclose([float(r[-3]) for r in rows[1:]], direct, atol=1e-6)


def test_chunks_in_flight_score_every_row_in_place(model_dir: Path, export: Path) -> None:
    """Small chunks scored by several threads at once give each row the score one sequential call gives."""
    from scoring.tabular_model import run_chunks

    model = TabularModel.load(model_dir)
    feed, _ = model.feed(read_csv(export))
    whole = model._session.run(["probability"], feed)[0]
    parallel = run_chunks(model._session, feed, chunk=37, workers=3)  # 900 rows: 25 chunks, the last one short
    assert parallel.shape == whole.shape
    assert np.array_equal(parallel.astype(np.float32), whole)
    assert np.array_equal(run_chunks(model._session, feed, chunk=37, workers=1), parallel)


def test_shifted_file_raises_drift(model_dir: Path, tmp_path: Path) -> None:
    """A population with many more visits drifts in score and in the visit columns."""
    result = score_csv(model_dir, write_export(tmp_path / "shifted.csv", seed=5, shift=3.0))
    assert result.drift is not None
    assert result.drift.score_psi > 0.25
    assert result.drift.feature_psi["pricing.visits"] > 0.25
    assert result.drift.status == "alert"


def test_file_without_a_model_column_is_refused(model_dir: Path, tmp_path: Path) -> None:
    """Scoring a file that lacks one of the model's columns fails naming the column."""
    path = tmp_path / "partial.csv"
    path.write_text('"Lead Source";"visits";"pricing.visits"\n"webinar";1;2\n')
    with pytest.raises(ModelMismatchError, match="missing: country"):
        score_csv(model_dir, path)


def test_card_that_disagrees_with_the_onnx_inputs_is_refused(model_dir: Path, tmp_path: Path) -> None:
    """A card naming an input the ONNX graph does not have is refused on load."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    card = json.loads((copy / CARD_FILE).read_text())
    card["columns"][0]["input"] = "renamed"
    (copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelMismatchError, match="do not match its card"):
        TabularModel.load(copy)


def test_too_little_data_is_refused_with_numbers(export: Path, tmp_path: Path) -> None:
    """The minimum-data gate names the positives found and the minimum."""
    with pytest.raises(ReleaseGateError, match=r"positive examples, at least 5000 needed"):
        train_csv(export, tmp_path, label="converted", version="x", trained_at=NOW, min_positives=5000)


def test_model_no_better_than_points_is_refused(tmp_path: Path) -> None:
    """When the label is exactly a rule a marketer would write, the points baseline wins and the gate fires."""
    rng = np.random.default_rng(2)
    path = tmp_path / "rule.csv"
    with path.open("w") as f:
        f.write("form_submits,noise,converted\n")
        for _ in range(600):
            k = int(rng.integers(0, 4))
            f.write(f"{k},{rng.normal():.4f},{'yes' if k == 3 else 'no'}\n")
    points = tmp_path / "points.toml"
    points.write_text('name = "forms"\n[[rule]]\ncolumn = "form_submits"\nat_least = 3\npoints = 10\n')
    with pytest.raises(ReleaseGateError, match="no better than the points baseline 'forms'") as info:
        train_csv(path, tmp_path / "m", label="converted", version="x", trained_at=NOW, points_path=points,
                  allow_leaky=["form_submits"], min_examples=100, min_positives=20, candidates=LR)
    assert info.value.gate == "baseline"
