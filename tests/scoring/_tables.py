"""Constructed exports for the tabular tests: known columns, a known signal, optional planted leak."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SOURCES = ("webinar", "paid search", "organic", "partner")


def write_export(path: Path, *, rows: int = 900, seed: int = 0, sep: str = ";", leak: bool = False,
                 shift: float = 0.0) -> Path:
    """A lead export: ``Lead Source`` and ``country`` (categorical, some blank), ``visits`` and
    ``pricing.visits`` (numbers, some blank), a unique ``lead_id``, and ``converted`` (yes/no) driven
    by pricing visits and source. ``leak`` adds ``days_to_close``, known only after conversion;
    ``shift`` moves the visit counts up (a drifted population)."""
    rng = np.random.default_rng(seed)
    source = rng.choice(SOURCES, rows, p=[0.2, 0.3, 0.4, 0.1])
    country = rng.choice(["US", "DE", "FR", ""], rows)
    visits = rng.poisson(3 + shift, rows).astype(float)
    pricing = rng.poisson(0.8 + shift, rows).astype(float)
    z = -2.6 + 0.9 * pricing + 0.15 * visits + np.where(source == "webinar", 1.0, 0.0) + rng.normal(0, 0.5, rows)
    y = rng.random(rows) < 1 / (1 + np.exp(-z))
    header = ["lead_id", "Lead Source", "country", "visits", "pricing.visits", "converted"]
    if leak:
        header.insert(-1, "days_to_close")
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter=sep, quoting=csv.QUOTE_NONNUMERIC if sep == ";" else csv.QUOTE_MINIMAL)
        w.writerow(header)
        for i in range(rows):
            v = "" if i % 37 == 0 else visits[i]
            row: list[object] = [f"L{i:05d}", str(source[i]), str(country[i]), v, pricing[i]]
            if leak:
                row.append(float(rng.integers(5, 40)) if y[i] else "")
            row.append("yes" if y[i] else "no")
            w.writerow(row)
    return path
