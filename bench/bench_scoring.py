"""Scoring benchmark: feature speed, ONNX scoring with and without reasons, scikit-learn for comparison.

Trains a model on a synthetic history (scoring.synthetic), then times, on serving-shaped subjects
(about 20 events each):

* ``compute_features`` in subjects/s;
* ``ScoringModel.score`` with and without reasons at 1, 100, 10,000 and 100,000 rows;
* the champion pipeline's ``predict_proba`` at the same sizes;

and prints peak RSS. Not run by CI: ``.venv/bin/python bench/bench_scoring.py [--train-leads N]``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np

from scoring.features import FeatureFrame, compute_features
from scoring.labels import build_examples, default_cutoffs
from scoring.model import ScoringModel
from scoring.synthetic import synthetic_history, synthetic_spec
from scoring.train import CANDIDATES, _pipeline, train

START = datetime(2024, 1, 1, tzinfo=UTC)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-leads", type=int, default=3000)
    parser.add_argument("--serve-leads", type=int, default=100_000)
    parser.add_argument(
        "--candidate", choices=("logistic_regression", "hist_gradient_boosting"), action="append"
    )
    args = parser.parse_args()

    spec = synthetic_spec()
    history = synthetic_history(args.train_leads, start=START, seed=7)
    end = START + timedelta(days=360)
    examples = build_examples(
        spec, history, default_cutoffs(START + timedelta(days=60), end, 30, 14), horizon_days=30
    )
    folder = tempfile.mkdtemp(prefix="leadrelay-bench-")
    t0 = time.perf_counter()
    card = train(examples, folder, version="bench", trained_at=end, candidates=args.candidate or CANDIDATES)
    train_s = time.perf_counter() - t0
    model = ScoringModel.load(folder)
    print(
        f"training: {len(examples)} examples, {card.counts['positives']} positives, {train_s:.1f} s; "
        f"champion {card.champion}, out-of-time ROC-AUC {card.metrics['roc_auc']:.3f}, "
        f"PR-AUC {card.metrics['pr_auc']:.3f}, lift {card.metrics['top_decile_lift']:.2f}, "
        f"parity {card.parity_max_diff:.2e}"
    )

    # Serving-shaped subjects: about 20 events each, as of the end of the history.
    serve = synthetic_history(args.serve_leads, start=START, seed=11, activity_per_day=0.06, burst_rate=1.2)
    events = sum(len(s.events) for s in serve) / len(serve)
    feat_s = best_of(lambda: compute_features(spec, serve, end), 3)
    frame = compute_features(spec, serve, end)
    print(
        f"features: {len(serve)} subjects x {events:.1f} events: {feat_s:.2f} s = "
        f"{len(serve) / feat_s:,.0f} subjects/s"
    )

    sk = _pipeline(card.champion, examples.frame, 42)
    sk.fit(examples.frame.to_matrix(), examples.y)

    print()
    print(f"{'rows':>8} | {'onnx, no reasons':>18} | {'onnx + reasons':>18} | {'sklearn predict_proba':>22}")
    print("-" * 76)
    for n in (1, 100, 10_000, 100_000):
        sub: FeatureFrame = frame.take(np.arange(min(n, len(frame))))
        repeat = 200 if n == 1 else 20 if n == 100 else 3
        plain = best_of(lambda sub=sub: model.score(sub, reasons=False), repeat)
        with_r = best_of(lambda sub=sub: model.score(sub), max(1, repeat // 2))
        matrix = sub.to_matrix()
        skl = best_of(lambda matrix=matrix: sk.predict_proba(matrix), max(1, repeat // 4))

        def cell(seconds: float, rows: int = n) -> str:
            return f"{seconds * 1e3:8.2f} ms {rows / seconds:>9,.0f}/s"

        print(f"{n:>8} | {cell(plain)} | {cell(with_r)} | {cell(skl):>22}")

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS: {rss_mb:,.0f} MB (python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
