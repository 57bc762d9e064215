"""Marketo leads carry their current e-mail consent: an opt-out (unsubscribed, emailInvalid,
marketingSuspended) made before the first pull's start date is known, and a later change still wins by time.
Mapper units, then the leads stream over loopback against the Marketo sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from connectors.base import ConsentChange, ConsentStatus, Lead
from connectors.marketo import MarketoConnector
from connectors.marketo._config import DEFAULT_ATTRIBUTE_FIELDS, DEFAULT_LEAD_FIELDS, MarketoConfig
from connectors.marketo._mapping import BadRow, current_consent, lead_records
from connectors.sandbox import serve_on_loopback
from sync.consent import Channel, ConsentState, events_from_change, fold
from tests.connectors.test_marketo_rig import CLIENT_ID, SECRET, Clock, collect, make_connector, make_sandbox

FIELDS = ["unsubscribed", "emailInvalid", "marketingSuspended"]
UPDATED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def row(**values: object) -> dict[str, object]:
    return {"id": 42, "email": "ana@example.com", "updatedAt": "2026-03-02T09:30:00Z", **values}


def status_of(state: ConsentState, now: datetime) -> ConsentStatus | None:
    current = state.current("42", Channel.EMAIL, now)
    return None if current is None else current.status


# -- mapper -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
def test_any_blocking_field_true_is_an_email_denial_at_updated_at(field: str) -> None:
    """Each of unsubscribed / emailInvalid / marketingSuspended set to true denies e-mail at the lead's updatedAt."""
    change = current_consent(row(**{field: True}), "42", UPDATED, FIELDS)
    assert (change.lead_key, change.channel, change.status, change.effective_at) == (
        "42", "email", ConsentStatus.DENIED, UPDATED)
    assert change.source == f"marketo lead field: {field}"


def test_all_fields_false_or_empty_is_a_grant() -> None:
    """No blocking field set (false, or left empty as Marketo's booleans default to false) grants e-mail."""
    change = current_consent(row(unsubscribed=False, emailInvalid=None), "42", UPDATED, FIELDS)
    assert change.status is ConsentStatus.GRANTED
    assert change.source == "marketo lead field"


def test_same_state_gives_the_same_key_and_a_new_state_a_new_one() -> None:
    """Pulling the same lead state twice yields the same change key (stored once); a newer updatedAt a new key."""
    first = current_consent(row(unsubscribed=True), "42", UPDATED, FIELDS)
    again = current_consent(row(unsubscribed=True), "42", UPDATED, FIELDS)
    later = current_consent(row(unsubscribed=True), "42", UPDATED + timedelta(seconds=1), FIELDS)
    assert first.key == again.key != later.key


def test_a_non_boolean_blocking_field_is_refused_naming_it() -> None:
    """A value that is not a boolean is a bad row whose reason names the field."""
    with pytest.raises(BadRow, match="emailInvalid"):
        current_consent(row(emailInvalid="perhaps"), "42", UPDATED, FIELDS)


def test_lead_records_add_the_consent_only_when_asked() -> None:
    """lead_records adds the current consent after the Lead when consent fields are given, and not otherwise."""
    with_consent = lead_records(row(unsubscribed=True), DEFAULT_LEAD_FIELDS, DEFAULT_ATTRIBUTE_FIELDS, None, FIELDS)
    without = lead_records(row(unsubscribed=True), DEFAULT_LEAD_FIELDS, DEFAULT_ATTRIBUTE_FIELDS, None)
    assert [type(r) for r in with_consent] == [Lead, ConsentChange]
    assert [type(r) for r in without] == [Lead]


def test_a_later_activity_wins_over_the_snapshot_and_an_older_one_does_not() -> None:
    """Folded with Change Data Value activities: the latest effective change wins either way, so a
    resubscribe after the snapshot grants and an unsubscribe older than a granting snapshot does not."""
    recorded = UPDATED + timedelta(days=1)
    snapshot_out = current_consent(row(unsubscribed=True), "42", UPDATED, FIELDS)
    back_in = ConsentChange("g1", "42", "email", ConsentStatus.GRANTED, UPDATED + timedelta(hours=1))
    state = fold([*events_from_change(snapshot_out, recorded), *events_from_change(back_in, recorded)])
    assert status_of(state, recorded) is ConsentStatus.GRANTED
    snapshot_in = current_consent(row(unsubscribed=False), "42", UPDATED, FIELDS)
    old_out = ConsentChange("g0", "42", "email", ConsentStatus.DENIED, UPDATED - timedelta(hours=1))
    state = fold([*events_from_change(snapshot_in, recorded), *events_from_change(old_out, recorded)])
    assert status_of(state, recorded) is ConsentStatus.GRANTED


def test_config_reads_consent_field_and_blocking_fields_once_each() -> None:
    """The e-mail consent fields are consent_field plus email_blocking_fields, deduplicated; blanks are refused."""
    config = MarketoConfig(base_url="https://1.mktorest.com", client_id=CLIENT_ID, client_secret=SECRET,
                           email_blocking_fields=["emailInvalid", "unsubscribed", "emailInvalid"])
    assert config.email_consent_fields() == ["unsubscribed", "emailInvalid"]
    with pytest.raises(ValidationError, match="email_blocking_fields"):
        MarketoConfig(base_url="https://1.mktorest.com", client_id=CLIENT_ID, client_secret=SECRET,
                      email_blocking_fields=[" "])


# -- over loopback ----------------------------------------------------------------------------------


@pytest.fixture
async def connectors() -> AsyncIterator[list[MarketoConnector]]:
    made: list[MarketoConnector] = []
    yield made
    for connector in made:
        await connector.http.client.aclose()


@pytest.mark.anyio
async def test_an_opt_out_older_than_the_start_date_arrives_with_the_lead(connectors: list[MarketoConnector]) -> None:
    """A lead unsubscribed (or marked invalid) before the first pull's start date and changed after it: the
    consent stream sees no change in the window, the leads stream yields the lead with an e-mail denial."""
    clock = Clock(datetime(2026, 1, 1, tzinfo=UTC))
    sandbox = make_sandbox(clock)
    out = sandbox.add_lead(email="out@example.com", title="CTO")
    invalid = sandbox.add_lead(email="bounced@example.com", title="CFO")
    reachable = sandbox.add_lead(email="in@example.com", title="CEO")
    clock.advance(days=1)
    sandbox.update_lead(out, unsubscribed=True)
    sandbox.update_lead(invalid, emailInvalid=True)
    clock.advance(days=1)
    start = clock.now
    clock.advance(days=1)
    for lead_id in (out, invalid, reachable):
        sandbox.update_lead(lead_id, title="VP Sales")
    with serve_on_loopback(sandbox.app) as url:
        connectors.append(make_connector(url, clock, start_date=start))
        consent, _, _ = await collect(connectors[0].pull("consent", None))
        records, bad, _ = await collect(connectors[0].pull("leads", None))
    assert consent == []  # the unsubscribe activity lies before the window
    assert bad == []
    changes = {c.lead_key: c for c in records if isinstance(c, ConsentChange)}
    assert {k: c.status for k, c in changes.items()} == {
        str(out): ConsentStatus.DENIED, str(invalid): ConsentStatus.DENIED, str(reachable): ConsentStatus.GRANTED}
    leads = {r.key: r for r in records if isinstance(r, Lead)}
    assert all(changes[k].effective_at == leads[k].updated_at for k in changes)
    assert changes[str(invalid)].source == "marketo lead field: emailInvalid"
