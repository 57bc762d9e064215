"""`leadrelay sync` progress lines: on stderr only, at most one a second, and only on a terminal."""

from __future__ import annotations

import pytest

from sync import cli


def test_progress_lines_are_rate_limited_and_go_to_stderr(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Updates within a second print nothing; a second later one line; done() prints the final counts."""
    now = [0.0]
    progress = cli._CycleProgress("main")
    progress.clock = lambda: now[0]
    progress.last = 0.0
    progress({"pages": 1, "read": 200, "scored": 0, "delivered": 0})
    now[0] = 0.5
    progress({"pages": 2, "read": 400, "scored": 0, "delivered": 0})
    assert capsys.readouterr().err == ""
    now[0] = 1.2
    progress({"pages": 3, "read": 600, "scored": 100, "delivered": 0})
    progress.counts = {"pages": 3, "read": 600, "scored": 600, "delivered": 580}
    progress.done()
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        "main: 3 page(s) pulled (600 records), 100 lead(s) scored, 0 operation(s) delivered",
        "main: 3 page(s) pulled (600 records), 600 lead(s) scored, 580 operation(s) delivered"]


def test_no_progress_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped or captured stderr (CI, --json into a file) gets no progress reporter at all."""
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert cli._CycleProgress.on_tty("main") is None
    assert cli._train_progress() is None
