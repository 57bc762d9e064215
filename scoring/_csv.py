"""Reading exported tables (CSV) for tabular training and scoring: dialect detection, typed columns.

A CRM or warehouse export is the other way a model reaches leadrelay besides the store (DESIGN.md,
*Score*): ``scoring.tabular`` trains on it and scores it. This module only turns a file into columns: it
detects the separator and the quote character (or takes them), refuses ragged rows naming the line, and
tells numeric columns (every present value parses as a number) from categorical ones. A missing
categorical value stays the empty string — the raw value a file holds — so the exported ONNX model takes
raw cells unchanged; a missing number becomes NaN.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scoring.errors import ScoringError

__all__ = ["MISSING_TOKENS", "Table", "TableError", "detect_dialect", "read_csv", "to_numeric"]

#: Cells that mean "no value" in exports (compared after stripping, case-insensitively).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "#n/a"})
_DELIMITERS = ",;\t|"


class TableError(ScoringError, ValueError):
    """The file cannot be read as a table: empty, one column, duplicate names or a ragged row."""


@dataclass(frozen=True, slots=True, eq=False)
class Table:
    """Columns of one file as stripped strings: ``cells`` is object [N, C]; ``sep``/``quote`` as used."""

    columns: tuple[str, ...]
    cells: np.ndarray
    sep: str
    quote: str

    def __len__(self) -> int:
        return len(self.cells)

    def column(self, name: str) -> np.ndarray:
        return self.cells[:, self.columns.index(name)]


def detect_dialect(sample: str) -> tuple[str, str]:
    """(separator, quote character) of a file from its first kilobytes. The sniffer is tried first; when
    it cannot decide, the candidate separator most frequent in the header line wins."""
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
        sep, quote = dialect.delimiter, dialect.quotechar or '"'
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        sep = max(_DELIMITERS, key=header.count)
        quote = '"'
    # The sniffer can pick a character inside quoted names; the header must split into several
    # columns with it, or the frequency rule decides instead.
    header = sample.splitlines()[0] if sample else ""
    if header.count(sep) == 0 and any(header.count(d) for d in _DELIMITERS):
        sep = max(_DELIMITERS, key=header.count)
    return sep, quote


def read_csv(path: str | Path, *, sep: str | None = None, quote: str | None = None) -> Table:
    """Read ``path`` (UTF-8, a BOM is dropped) into a :class:`Table`; ``sep``/``quote`` override detection."""
    text = Path(path).read_text(encoding="utf-8-sig")
    if not text.strip():
        raise TableError(f"{path} is empty")
    found_sep, found_quote = detect_dialect(text[:65536])
    sep = sep or found_sep
    quote = quote or found_quote
    if sep in ("\\t", "tab"):
        sep = "\t"
    reader = csv.reader(io.StringIO(text), delimiter=sep, quotechar=quote)
    header = [h.strip() for h in next(reader)]
    if len(header) < 2:
        raise TableError(f"{path}: the header has {len(header)} column(s) with separator {sep!r}; give --sep")
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise TableError(f"{path}: duplicate column names: {', '.join(dupes)}")
    rows: list[list[str]] = []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue  # blank line
        if len(row) != len(header):
            raise TableError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
        rows.append(row)
    cells = np.array(rows, dtype=object).reshape(len(rows), len(header))
    # Strip once for all cells (vectorised over the object array).
    cells = np.char.strip(cells.astype(str)).astype(object) if len(rows) else cells
    return Table(tuple(header), cells, sep, quote)


def _missing_mask(values: np.ndarray) -> np.ndarray:
    lowered = np.char.lower(values.astype(str))
    return np.isin(lowered, list(MISSING_TOKENS))


def to_numeric(values: np.ndarray) -> tuple[np.ndarray, int] | None:
    """float32 column (NaN for missing) and the count of unparsable cells set to NaN; None when the column
    is categorical (some present value is not a number). Used for type inference at training (where
    any unparsable value makes the column categorical) and for parsing at scoring time."""
    missing = _missing_mask(values)
    present = values[~missing].astype(str)
    out = np.full(len(values), np.nan, dtype=np.float32)
    try:
        out[~missing] = present.astype(np.float64)
        return out, 0
    except ValueError:
        pass
    # Cell by cell only on the slow path, to count what does not parse.
    bad = 0
    parsed = np.full(len(present), np.nan)
    for i, v in enumerate(present.tolist()):
        try:
            parsed[i] = float(v)
        except ValueError:
            bad += 1
    if bad == len(present):
        return None
    out[~missing] = parsed
    return out, bad


def categorical(values: np.ndarray) -> np.ndarray:
    """Object [N] of strings with every missing token as the empty string (the ONNX graph's raw 'no
    value', seen identically at training and scoring time)."""
    out = values.astype(str).astype(object)
    out[_missing_mask(values)] = ""
    return out


def split_names(raw: Sequence[str]) -> tuple[str, ...]:
    """``--drop a,b --drop c`` -> ("a", "b", "c")."""
    return tuple(n.strip() for item in raw for n in item.split(",") if n.strip())
