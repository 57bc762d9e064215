"""Masking personal data in reports and logs."""

from __future__ import annotations

import copy
import logging
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.masking import (
    MASK,
    MaskingFilter,
    mask_email,
    mask_name,
    mask_phone,
    mask_record,
    mask_value,
    scrub_text,
)

PROPERTY = settings(max_examples=300, deadline=None)
LOCAL = st.text(string.ascii_letters + string.digits + ".+_-", min_size=1, max_size=30)
DOMAIN = st.from_regex(r"[a-z0-9]{1,10}\.(com|io|de)", fullmatch=True)


def test_mask_email_keeps_the_first_character_and_the_domain() -> None:
    """jane.doe@acme.com shows as j•••@acme.com: ops still see which company."""
    assert mask_email("jane.doe@acme.com") == f"j{MASK}@acme.com"
    assert mask_email(" Jane@ACME.com ") == f"J{MASK}@acme.com"
    assert mask_email("no-at-sign") == f"n{MASK}"


@PROPERTY
@given(LOCAL, DOMAIN)
def test_nothing_of_the_local_part_beyond_its_first_character_survives(local: str, domain: str) -> None:
    """The mask is the first character and a fixed mask, whatever the local part's length or content."""
    masked = mask_email(f"{local}@{domain}")
    assert masked == f"{local[0]}{MASK}@{domain}"
    assert masked.rpartition("@")[0] == local[0] + MASK  # length does not leak either


@PROPERTY
@given(st.one_of(st.text(max_size=40), st.builds("{}@{}".format, LOCAL, DOMAIN)))
def test_every_mask_is_idempotent(value: str) -> None:
    """Masking a masked value changes nothing, so reports can mask what a log already masked."""
    for mask in (mask_email, mask_name, mask_phone, scrub_text):
        once = mask(value)
        assert mask(once) == once


def test_mask_phone_keeps_only_the_last_two_digits() -> None:
    """+44 20 7946 0958 shows as •••58; a number of two digits or fewer is hidden whole."""
    assert mask_phone("+44 20 7946 0958") == f"{MASK}58"
    assert mask_phone("12") == MASK
    assert mask_phone("n/a") == MASK


def test_mask_name_shows_one_initial_only() -> None:
    """A full name keeps just its first initial."""
    assert mask_name("Jane Doe") == f"J{MASK}"
    assert mask_name("  ") == ""


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("email", "jane@acme.com", f"j{MASK}@acme.com"),
    ("workEmail", "jane@acme.com", f"j{MASK}@acme.com"),
    ("EMAIL", "jane@acme.com", f"j{MASK}@acme.com"),
    ("phone", "+1 650 555 1234", f"{MASK}34"),
    ("mobile_phone", 4915112345678, f"{MASK}78"),
    ("first_name", "Jane", f"J{MASK}"),
    ("lastName", "Doe", f"D{MASK}"),
    ("FN", "jane", f"j{MASK}"),
    ("name", "Jane Doe", f"J{MASK}"),
    ("city", "Berlin", f"B{MASK}"),
    ("zip", 94107, f"9{MASK}"),
    ("street", "1 Main St", f"1{MASK}"),
    ("ip_address", "203.0.113.7", f"2{MASK}"),
    ("country", "DE", "DE"),
    ("state", "CA", "CA"),
    ("score", 87, 87),
    ("audience_name", "Hot leads", "Hot leads"),
    ("email_opt_out", True, True),
    ("email", None, None),
])
def test_mask_value_dispatches_by_field_name(field: str, value: Any, expected: Any) -> None:
    """Personal fields are masked by kind, in any spelling of their name; other fields pass untouched."""
    assert mask_value(field, value) == expected


def test_mask_record_masks_nested_personal_fields_and_leaves_the_rest() -> None:
    """Nested mappings and lists are walked; scores, ids and reasons stay readable; the input is not changed."""
    record = {
        "key": "123", "score": 87, "reasons": ["visited pricing"],
        "person": {"email": "jane.doe@acme.com", "first_name": "Jane", "country": "DE"},
        "operations": [{"operation": "audience_add", "payload": {"audience_id": "aud-1", "phone": "+1 650 555 1234",
                                                                 "emails": ["a.b@acme.com", "c@beta.io"]}}],
        "address": {"line1": "1 Main St", "city": "Berlin"},
    }
    original = copy.deepcopy(record)
    masked = mask_record(record)
    assert record == original
    assert masked == {
        "key": "123", "score": 87, "reasons": ["visited pricing"],
        "person": {"email": f"j{MASK}@acme.com", "first_name": f"J{MASK}", "country": "DE"},
        "operations": [{"operation": "audience_add", "payload": {"audience_id": "aud-1", "phone": f"{MASK}34",
                                                                 "emails": [f"a{MASK}@acme.com", f"c{MASK}@beta.io"]}}],
        "address": {"line1": f"1{MASK}", "city": f"B{MASK}"},
    }
    assert mask_record(masked) == masked


def test_reveal_returns_the_record_unchanged() -> None:
    """An authorised audit (reveal=True) sees the very record it passed in."""
    record = {"email": "jane@acme.com", "nested": [{"phone": "+1 650 555 1234"}]}
    assert mask_record(record, reveal=True) is record
    assert record == {"email": "jane@acme.com", "nested": [{"phone": "+1 650 555 1234"}]}


def test_planted_pii_never_shows_in_a_masked_record() -> None:
    """None of a planted person's values beyond what the masks keep appears anywhere in the masked output."""
    planted = {"email": "zq.secretperson@acme.com", "first_name": "Zqxwvut", "last_name": "Plmokn",
               "phone": "+49 151 99887766", "city": "Xyzzyville", "zip": "31337"}
    out = repr(mask_record({"people": [planted, {"inner": planted}]}))
    for value in planted.values():
        assert value[1:] not in out
    assert "secretperson" not in out
    assert "99887766" not in out


def test_scrub_text_masks_addresses_in_free_text() -> None:
    """A vendor's error message naming an address is masked before it reaches a log or report."""
    assert scrub_text("rejected <jane.doe@acme.com>, bob@beta.io: invalid") == (
        f"rejected <j{MASK}@acme.com>, b{MASK}@beta.io: invalid")


def test_masking_filter_masks_addresses_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    """A logger with the filter never writes the planted address, whether in the message or its arguments."""
    logger = logging.getLogger("tests.masking")
    logger.addFilter(MaskingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="tests.masking"):
            logger.info("removing %s from %s", "zq.planted@acme.com", "aud-1")
            logger.info("bounce from zq.planted@acme.com")
    finally:
        logger.filters.clear()
    assert "zq.planted" not in caplog.text
    assert [r.getMessage() for r in caplog.records] == [f"removing z{MASK}@acme.com from aud-1",
                                                         f"bounce from z{MASK}@acme.com"]
