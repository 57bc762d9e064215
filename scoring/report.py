"""The evaluation report written next to every trained model: numbers a data scientist signs, for people.

Training (:mod:`scoring.train` from the store, :mod:`scoring.tabular` from a file) hands this module the
validation labels and each compared model's validation probabilities — the champion, the other
candidates, the points baseline and, when there is one, the model currently serving. It writes
``report.md`` and ``report.html`` (one table of ROC-AUC, PR-AUC, Brier, log loss, top-decile lift and
the share of conversions captured by the top 15/25/35 %; lift by decile; conversion rate by band) and two
charts, ``reliability.png`` and ``bands.png``. matplotlib (Agg backend, no display) is imported only to
draw; the numbers come from :func:`metrics` alone.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CAPTURE_SHARES", "Compared", "capture", "lift_by_decile", "metrics", "reliability", "write_report"]

CAPTURE_SHARES = (0.15, 0.25, 0.35)
REPORT_FILES = ("report.md", "report.html", "reliability.png", "bands.png")


@dataclass(frozen=True, slots=True, eq=False)
class Compared:
    """One model in the comparison: its label, role and validation probabilities (or points)."""

    name: str
    role: str  # "champion", "candidate", "baseline" or "serving"
    proba: np.ndarray
    note: str = ""


def _top(proba: np.ndarray, share: float) -> np.ndarray:
    order = np.argsort(-np.asarray(proba, dtype=np.float64), kind="stable")
    return order[: max(1, math.ceil(len(order) * share))]


def capture(y: np.ndarray, proba: np.ndarray, share: float) -> float:
    """Share of all conversions found among the top ``share`` of rows by probability."""
    total = float(np.sum(y))
    return float(np.sum(y[_top(proba, share)]) / total) if total else 0.0


def lift_by_decile(y: np.ndarray, proba: np.ndarray) -> list[float]:
    """Conversion rate of each tenth of the rows (best first) divided by the overall rate."""
    base = float(np.mean(y)) if len(y) else 0.0
    order = np.argsort(-np.asarray(proba, dtype=np.float64), kind="stable")
    return [float(np.mean(y[part]) / base) if base and len(part) else 0.0 for part in np.array_split(order, 10)]


def reliability(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Mean predicted vs observed rate in ``bins`` equal-count bins of the predictions."""
    order = np.argsort(np.asarray(proba, dtype=np.float64), kind="stable")
    out = []
    for part in np.array_split(order, bins):
        if len(part):
            out.append({"predicted": float(np.mean(proba[part])), "observed": float(np.mean(y[part])),
                        "rows": len(part)})
    return out


def metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, log loss, top-decile lift and capture at 15/25/35 % for ``proba``."""
    from scoring.train import evaluate

    out = evaluate(y, proba)
    for share in CAPTURE_SHARES:
        out[f"capture_top_{round(share * 100)}"] = capture(y, proba, share)
    return out


@dataclass(frozen=True, slots=True)
class _Section:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)


def _fmt(v: float, pct: bool = False) -> str:
    return f"{v:.1%}" if pct else f"{v:.4f}"


def _sections(y: np.ndarray, compared: Sequence[Compared], band_validation: Sequence[Mapping[str, Any]]
              ) -> tuple[list[_Section], dict[str, dict[str, float]]]:
    scores = {c.name: metrics(y, c.proba) for c in compared}
    table = _Section("Comparison on the validation rows", (
        "model", "role", "ROC-AUC", "PR-AUC", "Brier", "log loss", "top-decile lift",
        "top 15 %", "top 25 %", "top 35 %"))
    for c in compared:
        m = scores[c.name]
        table.rows.append((c.name + (f" ({c.note})" if c.note else ""), c.role, _fmt(m["roc_auc"]),
                           _fmt(m["pr_auc"]), _fmt(m["brier"]), _fmt(m["log_loss"]),
                           f"{m['top_decile_lift']:.2f}",
                           *(_fmt(m[f"capture_top_{round(s * 100)}"], pct=True) for s in CAPTURE_SHARES)))
    deciles = _Section("Lift by decile (best tenth first)", ("model", *(f"D{i}" for i in range(1, 11))))
    for c in compared:
        deciles.rows.append((c.name, *(f"{v:.2f}" for v in lift_by_decile(y, c.proba))))
    bands = _Section("Conversion rate by band (champion)", ("band", "rows", "share", "conversion rate",
                                                            "share of conversions"))
    for b in band_validation:
        bands.rows.append((str(b["band"]), str(b["rows"]), _fmt(b["share"], pct=True),
                           _fmt(b["conversion_rate"], pct=True), _fmt(b["share_of_conversions"], pct=True)))
    return [table, deciles, bands], scores


def _markdown(title: str, facts: Sequence[tuple[str, str]], sections: Sequence[_Section],
              notes: Sequence[str]) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts]
    for s in sections:
        lines += ["", f"## {s.title}", "", "| " + " | ".join(s.header) + " |",
                  "|" + "---|" * len(s.header)]
        lines += ["| " + " | ".join(r) + " |" for r in s.rows]
    lines += ["", "![Reliability curve](reliability.png)", "", "![Conversion rate by band](bands.png)"]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _html(title: str, facts: Sequence[tuple[str, str]], sections: Sequence[_Section], notes: Sequence[str]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}td:first-child{text-align:left}"
             "</style></head><body>", f"<h1>{e(title)}</h1><ul>"]
    parts += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in facts]
    parts.append("</ul>")
    for s in sections:
        parts.append(f"<h2>{e(s.title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in s.header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in s.rows]
        parts.append("</table>")
    parts.append("<p><img src='reliability.png' alt='Reliability curve'> <img src='bands.png' alt='Bands'></p>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _charts(directory: Path, y: np.ndarray, compared: Sequence[Compared],
            band_validation: Sequence[Mapping[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect calibration")
    top = 0.0
    for c in compared:
        if c.role == "baseline" and not np.all((c.proba >= 0) & (c.proba <= 1)):
            continue  # raw points are not probabilities
        pts = reliability(y, c.proba)
        xs, ys = [p["predicted"] for p in pts], [p["observed"] for p in pts]
        top = max(top, *xs, *ys)
        ax.plot(xs, ys, marker="o", label=c.name)
    lim = min(1.0, top * 1.1 + 0.02)
    ax.set(xlim=(0, lim), ylim=(0, lim), xlabel="mean predicted probability", ylabel="observed conversion rate",
           title="Reliability (validation, 10 equal-count bins)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(directory / "reliability.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    names = [str(b["band"]) for b in band_validation]
    rates = [float(b["conversion_rate"]) for b in band_validation]
    bars = ax.bar(names, rates, color="#3b6ea8")
    for bar, b in zip(bars, band_validation, strict=True):
        ax.annotate(f"{b['conversion_rate']:.1%}\n{b['share']:.0%} of rows", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=8)
    base = float(np.mean(y)) if len(y) else 0.0
    ax.axhline(base, color="#c44", linestyle="--", linewidth=1, label=f"overall {base:.1%}")
    ax.set(xlabel="band", ylabel="conversion rate", title="Conversion rate by band (validation)",
           ylim=(0, max([*rates, base]) * 1.3 + 1e-3))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(directory / "bands.png", dpi=100)
    plt.close(fig)


def write_report(directory: str | Path, *, title: str, y: np.ndarray, compared: Sequence[Compared],
                 band_validation: Sequence[Mapping[str, Any]], facts: Sequence[tuple[str, str]] = (),
                 notes: Sequence[str] = (), charts: bool = True) -> dict[str, dict[str, float]]:
    """Write the report files into ``directory``; return each compared model's metrics by name."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y, dtype=np.int64)
    sections, scores = _sections(y, compared, band_validation)
    (folder / "report.md").write_text(_markdown(title, facts, sections, notes))
    (folder / "report.html").write_text(_html(title, facts, sections, notes))
    if charts:
        _charts(folder, y, compared, band_validation)
    return scores
