"""Dead letters: filtered listing, replay back into the queue, discard for good — store and CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sync.cli import main
from sync.planner import DesiredWrite, plan
from sync.store import DeadLetterFilter, Store

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _seed(store: Store) -> None:
    """Four operations: three rejected with different reasons and times, one still open."""
    desired = [DesiredWrite("crm", "update_lead", f"t{i}", {"score": i}, "r") for i in range(3)]
    desired.append(DesiredWrite("crm", "create_task", "t9", {"subject": "call"}, "r"))
    with store.unit() as u:
        u.enqueue("nightly", plan(desired, {}, {}).ops, None, NOW)
        ops = {o.target: o for o in u.open_operations("crm")}
        u.mark([(ops["t0"], "rejected", "INVALID_OPTION: band 'Z'")], NOW)
        u.mark([(ops["t1"], "rejected", "OBJECT_NOT_FOUND")], NOW + timedelta(hours=2))
        u.mark([(ops["t9"], "rejected", "INVALID_OWNER_ID")], NOW + timedelta(hours=3))


def test_filters_narrow_the_listing(store: Store) -> None:
    """Each filter narrows the dead letters: operation, target, reason text (any case), time."""
    _seed(store)
    with store.unit(dry_run=True) as u:
        def targets(**kw: object) -> list[str]:
            return [d["target"] for d in u.dead_letters(DeadLetterFilter(**kw))]  # type: ignore[arg-type]

        assert targets() == ["t0", "t1", "t9"]
        assert targets(operation="update_lead") == ["t0", "t1"]
        assert targets(target="t1") == ["t1"]
        assert targets(reason_contains="invalid_") == ["t0", "t9"]
        assert targets(since=NOW + timedelta(hours=1)) == ["t1", "t9"]
        assert targets(pipeline="other") == []


def test_replay_requeues_and_discard_retires(store: Store) -> None:
    """Replay puts a dead letter back as pending with fresh attempts; discard keeps it, never to be sent."""
    _seed(store)
    with store.unit() as u:
        assert u.replay_dead_letters(DeadLetterFilter(target="t0"), NOW) == 1
        assert u.discard_dead_letters(DeadLetterFilter(reason_contains="owner"), NOW) == 1
    with store.unit(dry_run=True) as u:
        open_ops = {o.target: o for o in u.open_operations("crm")}
        assert set(open_ops) == {"t0", "t2"}
        assert open_ops["t0"].attempts == 0
        assert [d["target"] for d in u.dead_letters()] == ["t1"]
        assert u.outbox_counts()["discarded"] == 1


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n'
                    '[connections.crm]\ntype = "hubspot"\ntoken = "t"\n'
                    '[pipelines.nightly]\nsource = "crm"\ndestination = "crm"\n')
    return path


def test_cli_lists_replays_and_discards(tmp_path: Path) -> None:
    """`deadletters list --json` shows reasons; replay and discard act on the filtered set only."""
    cfg = _config(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.create_all()
    _seed(store)
    runner = CliRunner()
    listed = runner.invoke(main, ["-c", str(cfg), "deadletters", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["target"], r["last_error"]) for r in rows][1] == ("t1", "OBJECT_NOT_FOUND")
    replayed = runner.invoke(main, ["-c", str(cfg), "deadletters", "replay", "--operation", "create_task"])
    assert replayed.exit_code == 0, replayed.output
    assert replayed.output.startswith("1 operation(s) queued again")
    discarded = runner.invoke(main, ["-c", str(cfg), "deadletters", "discard", "--id", str(rows[0]["id"])])
    assert discarded.output.startswith("1 operation(s) discarded")
    with store.unit(dry_run=True) as u:
        assert [d["target"] for d in u.dead_letters()] == ["t1"]
    store.close()


@pytest.mark.parametrize("verb", ["replay", "discard"])
def test_cli_refuses_to_act_on_everything_by_accident(tmp_path: Path, verb: str) -> None:
    """Replay or discard with no filter asks for --all instead of touching every dead letter."""
    result = CliRunner().invoke(main, ["-c", str(_config(tmp_path)), "deadletters", verb])
    assert result.exit_code == 2
    assert "--all" in result.output
