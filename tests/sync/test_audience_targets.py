"""The WriteRecord.target contract for audience operations: the ledger keys a membership by its stay
(``<audience>:<person>@<entered_at>``), the connector gets the person's key; other targets are unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import Capabilities, OperationSpec, Outcome, RecordOutcome, WriteRecord
from sync.audiences import ADD_OPERATION, REMOVE_OPERATION, matched_identifiers, membership_target, stay_person
from sync.decision_store import supersede_stays
from sync.outbox import Deliverer, object_id
from sync.planner import DesiredWrite, plan
from sync.store import Store
from tests.sync.test_outbox import ScriptedDestination

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class AudienceDestination(ScriptedDestination):
    capabilities = Capabilities(operations={ADD_OPERATION: OperationSpec(max_batch_size=10),
                                            REMOVE_OPERATION: OperationSpec(max_batch_size=10)})


@pytest.mark.parametrize(("person", "audience"), [("1001", "1042"), ("ana@x.test", "7"),
                                                   ("003Hs00000AbCdE", "customers/1/userLists:9")])
def test_an_audience_operation_names_the_person(person: str, audience: str) -> None:
    """An add/remove on a stay target gives the connector the person's key, whatever the key or audience id hold."""
    stay = membership_target(audience, person, NOW)
    assert stay_person(stay, audience) == person
    assert object_id(stay, ADD_OPERATION, {"audience_id": audience}) == person
    assert object_id(stay, REMOVE_OPERATION, {"audience_id": audience}) == person


def test_other_targets_are_left_as_they_were() -> None:
    """Record targets keep their meaning: ``#n`` is cut, a stay of another audience or a non-audience
    operation passes through unchanged."""
    stay = membership_target("1042", "1001", NOW)
    assert object_id("1001#2", "create_task", {}) == "1001"
    assert object_id("a:b@c", "update_lead", {"audience_id": "a"}) == "a:b@c"
    assert object_id(stay, ADD_OPERATION, {"audience_id": "9999"}) == stay
    assert object_id(stay, ADD_OPERATION, {}) == stay
    assert stay_person("1042:@2026", "1042") is None


@pytest.mark.anyio
async def test_connector_gets_the_person_and_the_ledger_keeps_the_stay(store: Store) -> None:
    """Delivered through the outbox, the connector sees lead ids; the ledger holds the stays, and
    supersede_stays still finds open operations by the stay prefix."""
    stays = {p: membership_target("1042", p, NOW - timedelta(hours=1)) for p in ("11", "12", "13")}
    desired = [DesiredWrite("dest", ADD_OPERATION, stays[p], {"audience_id": "1042", "email": f"{p}@x.test"}, "r")
               for p in ("11", "12")]
    with store.unit() as u:
        u.enqueue("pipe", plan(desired, {}, {}).ops, None, NOW)
    dest = AudienceDestination()
    with store.unit() as u:
        report = await Deliverer(u, dest, "dest", clock=lambda: NOW).deliver()
    assert dict(report.outcomes) == {"acknowledged": 2}
    assert [(op, sorted(targets)) for op, targets in dest.calls] == [(ADD_OPERATION, ["11", "12"])]
    with store.unit() as u:
        assert set(u.ledger("dest", ADD_OPERATION, list(stays.values()))) == {stays["11"], stays["12"]}
    later = DesiredWrite("dest", REMOVE_OPERATION, stays["13"], {"audience_id": "1042"}, "r")
    with store.unit() as u:
        u.enqueue("pipe", plan([later], {}, {}).ops, None, NOW)
        assert supersede_stays(u, "dest", [ADD_OPERATION, REMOVE_OPERATION], "1042", ["13"], NOW) == 1
        assert u.open_operations("dest") == []


@pytest.mark.anyio
async def test_removes_go_first_and_an_add_waits_while_its_persons_remove_is_open(store: Store) -> None:
    """A re-keyed member (remove of the old stay, add of the new) is removed before being added; while the
    remove is still open (retryable), that person's add waits for a later run, other adds go out."""
    old = membership_target("1042", "11", NOW - timedelta(days=2))
    desired = [DesiredWrite("dest", ADD_OPERATION, membership_target("1042", p, NOW), {"audience_id": "1042"}, "r")
               for p in ("11", "12")]
    desired.append(DesiredWrite("dest", REMOVE_OPERATION, old, {"audience_id": "1042"}, "r"))
    with store.unit() as u:
        u.enqueue("pipe", plan(desired, {}, {}).ops, None, NOW)

    def refuse_removes(operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        outcome = Outcome.RETRYABLE if operation == REMOVE_OPERATION else Outcome.ACKNOWLEDGED
        return [RecordOutcome(r.idempotency_key, outcome) for r in records]

    dest = AudienceDestination(refuse_removes)
    with store.unit() as u:
        report = await Deliverer(u, dest, "dest", clock=lambda: NOW).deliver()
    assert dest.calls == [(REMOVE_OPERATION, ["11"]), (ADD_OPERATION, ["12"])]
    assert dict(report.outcomes) == {"retryable": 1, "waiting_for_remove": 1, "acknowledged": 1}
    dest.script = None
    with store.unit() as u:
        await Deliverer(u, dest, "dest", clock=lambda: NOW).deliver()
        assert u.open_operations("dest") == []
    assert dest.calls[2:] == [(REMOVE_OPERATION, ["11"]), (ADD_OPERATION, ["11"])]


@pytest.mark.parametrize("kind", ["meta", "google_ads"])
def test_identifiers_compare_as_the_destination_hashes_them(kind: str) -> None:
    """Written differently but hashed alike is no change; another phone number is, for Meta and Google alike."""
    sent = {"email": "Ana@X.test ", "phone": "+1 415-555-0101", "consent": "GRANTED"}
    same = {"email": "ana@x.test", "phone": "+14155550101"}
    moved = {"email": "ana@x.test", "phone": "+1 415 555 0199"}
    assert matched_identifiers(kind, sent) == matched_identifiers(kind, same)
    assert matched_identifiers(kind, sent) != matched_identifiers(kind, moved)


def test_linkedin_compares_what_it_is_sent_and_marketo_nothing() -> None:
    """LinkedIn is sent the e-mail digest only (names when send_names): a phone change is no change there; a
    Marketo static list holds lead ids, so it has no identifiers to compare."""
    before, after = {"email": "ana@x.test", "phone": "+1 415 555 0101"}, {"email": "ana@x.test", "phone": "+1 999"}
    assert matched_identifiers("linkedin", before) == matched_identifiers("linkedin", after)
    assert matched_identifiers("marketo", before) is None
