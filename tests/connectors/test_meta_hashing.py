"""Meta's normalisation and hashing (apis.md §4.4): normalised strings for tricky inputs, and their digests."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.meta.hashing import (
    BadIdentifier,
    is_sha256_hex,
    normalize,
    normalize_country,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_state,
    normalize_zip,
    wire_row,
    wire_value,
)


def digest(text: str) -> str:
    """The test's own SHA-256, independent of the module under test."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(("raw", "expected"), [
    ("  John.Doe@Example.COM \n", "john.doe@example.com"),
    ("\tMIXED.Case+tag@Mail.Example.org", "mixed.case+tag@mail.example.org"),
    ("   ", None),
])
def test_email_is_trimmed_and_lowercased(raw: str, expected: str | None) -> None:
    """E-mails lose surrounding whitespace and case and nothing else (dots and plus tags stay)."""
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(("raw", "country", "expected"), [
    ("+1 (650) 555-1234", None, "16505551234"),
    ("+44 (0)20 7946 0958", None, "442079460958"),      # bracketed trunk zero is not dialled from abroad
    ("0044 20 7946 0958", None, "442079460958"),         # 00 international prefix: leading zeros dropped
    ("07700 900123", "gb", "447700900123"),              # national with trunk 0: calling code prefixed
    ("030 1234567", "de", "49301234567"),
    ("650.555.1234", "us", "16505551234"),               # ten NANP digits are national
    ("1-650-555-1234", "us", "16505551234"),             # eleven starting with 1 already carry the code
    ("06 1234 5678", "it", "390612345678"),              # Italy keeps its leading zero after +39
    ("650 555 1234", None, "6505551234"),                # no country known: sent as written, digits only
    ("+49 30 1234567 ext. 9", None, "493012345679"),     # letters go, every digit stays
    ("n/a", "us", None),
])
def test_phone_digits_with_country_code(raw: str, country: str | None, expected: str | None) -> None:
    """Phones become digits with the calling code, no '+', no leading zeros."""
    assert normalize_phone(raw, country) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("  Mary-Ann ", "maryann"),
    ("O'Brien-Smith", "obriensmith"),
    ("Jean Luc", "jeanluc"),
    ("José", "josé"),                 # Meta accepts UTF-8 letters: accents are kept, not stripped
    ("Zoe\u0308", "zoë"),             # decomposed accents are composed first, so both spellings agree
    ("Dr. J. R. R. Tolkien, Jr.", "drjrrtolkienjr"),
    ("123", None),
])
def test_names_are_lowercase_letters_only(raw: str, expected: str | None) -> None:
    """Names keep their letters only, lowercased."""
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(("raw", "country", "expected"), [
    ("California", "us", "ca"),
    ("CA", "us", "ca"),
    ("N.Y.", "us", "ny"),
    ("new york", None, "ny"),          # no country: a US state name is still recognised
    ("Île-de-France", "fr", "îledefrance"),
    ("Ontario", "ca", "ontario"),
])
def test_state_codes(raw: str, country: str | None, expected: str) -> None:
    """US states become their 2-letter code; elsewhere lowercase without punctuation or spaces."""
    assert normalize_state(raw, country) == expected


@pytest.mark.parametrize(("raw", "country", "expected"), [
    ("94107-1234", "us", "94107"),     # ZIP+4: first five digits
    ("94107-1234", None, "94107"),     # unmistakably a US ZIP+4 even without a country
    ("941071234", "us", "94107"),
    ("SW1A 1AA", "gb", "sw1a1aa"),
    ("1010-AB", "nl", "1010ab"),
    ("75008", "fr", "75008"),
])
def test_zip_codes(raw: str, country: str | None, expected: str) -> None:
    """ZIPs are lowercase with no spaces or dashes; US codes keep five digits."""
    assert normalize_zip(raw, country) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("US", "us"), ("usa", "us"), ("U.S.A.", "us"), ("United States of America", "us"), ("United States", "us"),
    ("United Kingdom", "gb"), ("UK", "gb"), ("Great Britain", "gb"), ("DEU", "de"), ("Deutschland", "de"),
    ("Côte d'Ivoire", "ci"), ("cote divoire", "ci"), ("Türkiye", "tr"), ("Turkey", "tr"), ("Narnia", None),
])
def test_country_names_and_codes_become_alpha2(raw: str, expected: str | None) -> None:
    """Countries become ISO 3166-1 alpha-2 from codes, names, local names and accents-free spellings."""
    assert normalize_country(raw) == expected


@pytest.mark.parametrize(("key", "raw", "normalised"), [
    ("EMAIL", " John.Doe@Example.COM ", "john.doe@example.com"),
    ("FN", "Mary-Ann", "maryann"),
    ("CT", "St. Louis", "stlouis"),
    ("COUNTRY", "United States", "us"),
])
def test_digest_is_sha256_of_the_normalised_string(key: str, raw: str, normalised: str) -> None:
    """What goes on the wire is the lowercase hex SHA-256 of exactly the normalised string."""
    assert normalize(key, raw) == normalised
    assert wire_value(key, raw) == digest(normalised)


def test_documented_vectors() -> None:
    """The module docstring's test vectors hold."""
    row = wire_row({"email": " John.Doe@Example.COM ", "phone": "07700 900123", "last_name": "O'Brien-Smith",
                    "zip": "SW1A 1AA", "country": "United Kingdom", "external_id": "CRM-0042"})
    assert row == {"EMAIL": digest("john.doe@example.com"), "PHONE": digest("447700900123"),
                   "LN": digest("obriensmith"), "ZIP": digest("sw1a1aa"), "COUNTRY": digest("gb"),
                   "EXTERN_ID": "CRM-0042"}


def test_prehashed_values_pass_through_and_uppercase_hex_does_not() -> None:
    """A 64-char lowercase hex value is taken as already hashed; anything else is normalised and hashed."""
    hashed = digest("a@example.com")
    assert wire_value("EMAIL", hashed) == hashed
    assert wire_value("PHONE", f"  {hashed} ") == hashed
    assert wire_value("EMAIL", hashed.upper()) == digest(hashed)  # lowercased first, then hashed: not a pass


def test_default_country_interprets_national_numbers_and_row_country_wins() -> None:
    """The row's country gives the calling code; the configured default only stands in when it is missing."""
    assert wire_row({"phone": "07700 900123"}, default_country="gb") == {"PHONE": digest("447700900123")}
    assert wire_row({"phone": "030 1234567", "country": "DE"}, default_country="gb")["PHONE"] == digest(
        "49301234567")
    assert wire_row({"zip": "02134-0001", "country": "usa"})["ZIP"] == digest("02134")


def test_empty_and_unusable_values_are_left_out() -> None:
    """Empty strings, None and unknown countries are dropped rather than sent as hashes that cannot match."""
    assert wire_row({"email": "  ", "phone": None, "country": "Narnia", "first_name": "!!"}) == {}


def test_bad_types_and_fields_raise_without_the_value() -> None:
    """A non-text identifier or an unknown field is refused, and the message never carries the value."""
    with pytest.raises(BadIdentifier, match="email: expected text") as caught:
        wire_row({"email": ["secret@example.com"]})
    assert "secret" not in str(caught.value)
    with pytest.raises(BadIdentifier, match="unknown identifier"):
        wire_row({"ssn": "123-45-6789"})


@given(st.text(max_size=40), st.sampled_from(["EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY"]))
def test_hashed_keys_never_send_raw_text(raw: str, key: str) -> None:
    """Whatever the input, a hashed key sends a 64-char lowercase hex digest or nothing."""
    sent = wire_value(key, raw)
    assert sent is None or is_sha256_hex(sent)
    if sent is not None and not is_sha256_hex(raw.strip()):
        assert sent == digest(normalize(key, raw) or "")


@given(st.emails())
def test_email_normalisation_is_idempotent(email: str) -> None:
    """Normalising a normalised e-mail changes nothing, so pre-normalised and raw inputs hash alike."""
    once = normalize_email(email)
    assert once is not None
    assert normalize_email(once) == once
    assert wire_value("EMAIL", f"  {email.upper()} ") == digest(email.lower())
