"""Meta's normalisation and SHA-256 hashing of customer identifiers (reference/apis.md §4.4). Pure functions.

Meta matches a Custom Audience row only when every value was normalised exactly as Meta normalises its own
users' data before hashing, so this module is the one place those rules live. Each ``normalize_*`` returns
the string that gets hashed, or ``None`` when nothing usable is left (the value is then left out of the
row rather than sent as a hash that can never match):

========  ======================================================================  ======
key       normalisation                                                            hashed
========  ======================================================================  ======
EMAIL     trim, lowercase                                                          yes
PHONE     digits only, leading zeros dropped, with the country calling code        yes
FN / LN   lowercase, letters only (Unicode letters kept: Meta allows UTF-8)        yes
CT        lowercase, letters only                                                  yes
ST        US: the 2-letter code, lowercase; elsewhere lowercase, no punctuation    yes
ZIP       lowercase, no spaces or dashes; US: the first 5 digits                   yes
COUNTRY   ISO 3166-1 alpha-2, lowercase (names and alpha-3 codes are mapped)       yes
EXTERN_ID as-is                                                                    no
========  ======================================================================  ======

Phones need a country calling code. A number written internationally (``+``, ``00``) keeps its own; a
number written nationally gets the calling code of the row's country (or the configured default) when it
is unmistakably national: a leading trunk ``0``, or ten digits in a North-American-numbering country.
Anything else is left as written, because guessing would corrupt numbers that already carry their code.

A value that is already a SHA-256 digest (64 lowercase hex characters) passes through unchanged, so an
upstream system may pre-hash. Raw values never leave this module except as their digest, and no function
here puts a value into an exception message.

Test vectors (normalised string → the SHA-256 of its UTF-8 bytes is what Meta receives)::

    " John.Doe@Example.COM "       EMAIL            john.doe@example.com
    "+1 (650) 555-1234"            PHONE            16505551234
    "07700 900123", country gb     PHONE            447700900123
    "+44 (0)20 7946 0958"          PHONE            442079460958
    "O'Brien-Smith"                LN               obriensmith
    "94107-1234", country us       ZIP              94107
    "United States of America"     COUNTRY          us
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping

from connectors.meta._countries import (
    ALPHA3,
    CALLING_CODES,
    COUNTRY_NAMES,
    KEEPS_LEADING_ZERO,
    NANP,
    US_STATE_CODES,
    US_STATES,
    name_key,
)

# Canonical payload field -> Meta multi-key schema key, in the order columns are sent.
SCHEMA_KEYS: dict[str, str] = {
    "email": "EMAIL",
    "phone": "PHONE",
    "first_name": "FN",
    "last_name": "LN",
    "city": "CT",
    "state": "ST",
    "zip": "ZIP",
    "country": "COUNTRY",
    "external_id": "EXTERN_ID",
}
UNHASHED_KEYS = frozenset({"EXTERN_ID"})

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_US_ZIP = re.compile(r"\d{5}(?:-\d{4})?")


class BadIdentifier(ValueError):
    """An identifier of a type that cannot be normalised; the message names the field, never the value."""


def sha256_hex(text: str) -> str:
    """The lowercase hex SHA-256 of ``text``'s UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """Whether ``value`` already is a digest: exactly 64 lowercase hex characters."""
    return _SHA256_HEX.fullmatch(value) is not None


def _letters(text: str) -> str:
    # NFC first, so "e" + combining accent and "é" are one letter and survive the same way.
    return "".join(ch for ch in unicodedata.normalize("NFC", text).lower() if ch.isalpha())


def normalize_email(value: str) -> str | None:
    """Trimmed and lowercased."""
    text = value.strip().lower()
    return text or None


def normalize_name(value: str) -> str | None:
    """First or last name: lowercase letters only ("Mary-Ann O'Neil" → "maryannoneil", "José" → "josé")."""
    return _letters(value) or None


def normalize_city(value: str) -> str | None:
    """Lowercase letters only ("St. Louis" → "stlouis")."""
    return _letters(value) or None


def normalize_country(value: str) -> str | None:
    """ISO 3166-1 alpha-2, lowercase, from a code ("DE", "deu") or a name ("Germany", "Deutschland", "UK")."""
    text = value.strip()
    key = name_key(text)
    if len(key) == 2 and key in CALLING_CODES:
        return key
    if len(key) == 3 and key in ALPHA3:
        return ALPHA3[key]
    return COUNTRY_NAMES.get(key)


def normalize_state(value: str, country: str | None = None) -> str | None:
    """US (or country unknown and the name is a US state): the 2-letter code; else lowercase alphanumerics."""
    key = name_key(value)
    if country in (None, "us"):
        if key in US_STATES:
            return US_STATES[key]
        if country == "us" and key in US_STATE_CODES:
            return key
    cleaned = "".join(ch for ch in unicodedata.normalize("NFC", value).lower() if ch.isalnum())
    return cleaned or None


def normalize_zip(value: str, country: str | None = None) -> str | None:
    """Lowercase without spaces or dashes; a US code (or an unmistakable ZIP+4) keeps its first 5 digits."""
    text = value.strip()
    if country == "us" or (country is None and _US_ZIP.fullmatch(text)):
        digits = "".join(ch for ch in text if ch.isdigit())
        return digits[:5] or None
    cleaned = "".join(ch for ch in text.lower() if not ch.isspace() and ch != "-")
    return cleaned or None


def normalize_phone(value: str, country: str | None = None) -> str | None:
    """Digits only with the country calling code and no leading zeros ("+1 (650) 555-1234" → "16505551234").

    ``country`` (alpha-2, lowercase) supplies the calling code for numbers written nationally; see the
    module docstring for when a number counts as national.
    """
    text = value.strip()
    international = text.startswith(("+", "00"))
    if international:
        text = text.replace("(0)", "")  # "+44 (0)20 …": the bracketed trunk zero is not dialled from abroad
    digits = "".join(ch for ch in text if "0" <= ch <= "9")
    if not digits:
        return None
    code = CALLING_CODES.get(country or "", "")
    if not international and code:
        if digits.startswith("0") and not digits.startswith("00"):
            national = digits if country in KEEPS_LEADING_ZERO else digits.lstrip("0")
            digits = code + national
        elif country in NANP and len(digits) == 10 and not digits.startswith("1"):
            digits = code + digits
    return digits.lstrip("0") or None


def normalize_external_id(value: str) -> str | None:
    """As-is (Meta does not hash EXTERN_ID); only an empty value is dropped."""
    return value if value.strip() else None


_Normalizer = Callable[[str, str | None], str | None]
_NORMALIZERS: dict[str, _Normalizer] = {
    "EMAIL": lambda v, _c: normalize_email(v),
    "PHONE": normalize_phone,
    "FN": lambda v, _c: normalize_name(v),
    "LN": lambda v, _c: normalize_name(v),
    "CT": lambda v, _c: normalize_city(v),
    "ST": normalize_state,
    "ZIP": normalize_zip,
    "COUNTRY": lambda v, _c: normalize_country(v),
    "EXTERN_ID": lambda v, _c: normalize_external_id(v),
}


def normalize(key: str, value: str, country: str | None = None) -> str | None:
    """The normalised form of ``value`` for schema ``key`` (``EMAIL``, ``PHONE``, …), or ``None``."""
    return _NORMALIZERS[key](value, country)


def wire_value(key: str, value: str, country: str | None = None) -> str | None:
    """What is sent for ``value`` under schema ``key``: its digest, the value itself if already a digest,
    or the plain value for unhashed keys. ``None`` when the value normalises to nothing."""
    if key in UNHASHED_KEYS:
        return normalize(key, value, country)
    if is_sha256_hex(value.strip()):
        return value.strip()
    normalised = normalize(key, value, country)
    return sha256_hex(normalised) if normalised is not None else None


def _text(field: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadIdentifier(f"{field}: expected text, got {type(value).__name__}")
    return str(value)


def wire_row(identifiers: Mapping[str, object], *, default_country: str | None = None) -> dict[str, str]:
    """A person's canonical identifiers (``email``, ``phone``, … see :data:`SCHEMA_KEYS`) as schema key →
    wire value, leaving out what is empty or cannot be normalised.

    The row's own country (normalised) interprets its phone, state and ZIP; ``default_country`` (alpha-2)
    stands in when the row has none. Unknown fields raise :class:`BadIdentifier`.
    """
    unknown = sorted(set(identifiers) - set(SCHEMA_KEYS))
    if unknown:
        raise BadIdentifier(f"unknown identifier field(s) {unknown}; known: {sorted(SCHEMA_KEYS)}")
    texts = {field: _text(field, value) for field, value in identifiers.items()}
    raw_country = texts.get("country")
    own = None
    if raw_country is not None:
        own = raw_country.strip() if is_sha256_hex(raw_country.strip()) else normalize_country(raw_country)
    # A pre-hashed country cannot say which calling code applies: fall back to the default then.
    country = own if own is not None and not is_sha256_hex(own) else default_country
    row: dict[str, str] = {}
    for field, key in SCHEMA_KEYS.items():
        text = texts.get(field)
        if text is None:
            continue
        sent = wire_value(key, text, country)
        if sent is not None:
            row[key] = sent
    return row


__all__ = [
    "SCHEMA_KEYS",
    "UNHASHED_KEYS",
    "BadIdentifier",
    "is_sha256_hex",
    "normalize",
    "normalize_city",
    "normalize_country",
    "normalize_email",
    "normalize_external_id",
    "normalize_name",
    "normalize_phone",
    "normalize_state",
    "normalize_zip",
    "sha256_hex",
    "wire_row",
    "wire_value",
]
