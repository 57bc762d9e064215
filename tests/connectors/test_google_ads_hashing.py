"""Google's documented normalisation before SHA-256 (apis.md §5.3), with the documentation's own examples."""

from __future__ import annotations

import hashlib

import pytest

from connectors.google_ads.hashing import (
    BadIdentifier,
    identifiers,
    normalize_country,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_postal_code,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(("raw", "country", "expected"), [
    ("+1 (212) 565-0000", None, "+12125650000"),      # Google's own E.164 example
    ("+44 20 7031 3000", None, "+442070313000"),      # Google's own E.164 example
    ("020 7031 3000", "GB", "+442070313000"),         # national, trunk 0 dropped, calling code added
    ("(650) 555-1234", "US", "+16505551234"),         # NANP ten digits
    ("1-650-555-1234", "US", "+16505551234"),         # NANP with the 1 written without a plus
    ("0044 20 7031 3000", None, "+442070313000"),     # international with 00
    ("06 1234 5678", "IT", "+390612345678"),          # Italy keeps its leading 0
    ("555-1234", None, None),                         # no calling code knowable: left out, not guessed
    ("12345", "US", None),
])
def test_phone_is_e164_with_plus(raw: str, country: str | None, expected: str | None) -> None:
    """Phones become E.164 with the leading '+' and the calling code, or are left out when that is unknowable."""
    assert normalize_phone(raw, country) == expected


def test_email_and_names_follow_googles_rules_not_metas() -> None:
    """E-mails are trimmed and lowercased with gmail dots kept; names trimmed and lowercased, punctuation kept."""
    assert normalize_email(" John.Doe@Gmail.COM ") == "john.doe@gmail.com"
    assert normalize_name("  Mary  Ann ") == "mary ann"
    assert normalize_name("O'Brien") == "o'brien"
    assert normalize_name("José") == "josé"


def test_country_and_postal_code() -> None:
    """Countries become uppercase alpha-2 from codes or names; a US ZIP+4 keeps its five digits."""
    assert [normalize_country(v) for v in ("de", "DEU", "Germany", "Deutschland", "USA", "Atlantis")] == [
        "DE", "DE", "DE", "DE", "US", None]
    assert normalize_postal_code("94107-1234", "US") == "94107"
    assert normalize_postal_code(" SW1A  1AA ", "GB") == "SW1A 1AA"


def test_identifiers_hash_and_assemble_one_user_data() -> None:
    """A person becomes hashed e-mail, hashed E.164 phone and an address with plain country and postal code."""
    found = identifiers({"email": " A@B.com", "phone": "(212) 565-0000", "first_name": "Ann", "last_name": "Lee",
                         "zip": "10011", "country": "us", "city": "NYC", "state": "NY"})
    assert found.wire() == [
        {"hashedEmail": sha("a@b.com")}, {"hashedPhoneNumber": sha("+12125650000")},
        {"addressInfo": {"hashedFirstName": sha("ann"), "hashedLastName": sha("lee"), "countryCode": "US",
                         "postalCode": "10011"}}]
    assert identifiers({"external_id": " crm-1 "}).wire(crm_id=True) == [{"thirdPartyUserId": "crm-1"}]
    assert identifiers({"email": sha("a@b.com")}).hashed_email == sha("a@b.com")  # pre-hashed passes through


def test_incomplete_address_is_left_out_and_bad_fields_named_without_values() -> None:
    """An address without all four parts is not sent; unknown fields raise an error naming the field only."""
    assert identifiers({"first_name": "Ann", "last_name": "Lee", "country": "US"}).wire() == []
    with pytest.raises(BadIdentifier) as raised:
        identifiers({"email": "secret@x.org", "shoe_size": "44"})
    assert "shoe_size" in str(raised.value)
    assert "secret@x.org" not in str(raised.value)
