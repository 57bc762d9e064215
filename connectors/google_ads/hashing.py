"""Google's normalisation and SHA-256 hashing of Customer Match identifiers (reference/apis.md §5.3). Pure.

Google matches an uploaded identifier only when it was normalised exactly as Google normalises its own
users' data before hashing, so this module is the one place those rules live. They differ from Meta's
(:mod:`connectors.meta.hashing`) on purpose, and the difference costs matches when it is ignored:

===============  ================================================================  ===========
field            normalisation (Google Ads API Customer Match guide)                sent
===============  ================================================================  ===========
email            trim leading/trailing whitespace, lowercase                       SHA-256 hex
phone            E.164 **with the leading ``+``** and the country calling code      SHA-256 hex
first/last name  trim, lowercase (inner runs of whitespace collapsed to one space)   SHA-256 hex
country_code     ISO 3166-1 alpha-2, uppercase (names and alpha-3 codes mapped)     plain
postal_code      trimmed; US ZIP+4 cut to the 5-digit ZIP                           plain
===============  ================================================================  ===========

What Google does *not* ask for, and this module therefore does not do: removing the dots before
``@gmail.com``/``@googlemail.com`` ("not required … they'll still be accepted" for Customer Match; it is
required for Enhanced Conversions only), and stripping punctuation or accents from names (Meta's rule,
not Google's: "O'Brien" stays "o'brien"). Google's own Python example lowercases nothing on one path;
the expected values below follow the documented rules, not that helper.

A phone number needs its calling code. One written internationally (``+``, ``00``) keeps its own; one
written nationally gets the calling code of the person's country (or the configured default) when it is
unmistakably national: a leading trunk ``0``, or ten digits in a North-American-numbering country.
Anything else is left out rather than guessed, because Google accepts a badly formatted hash and simply
never matches it.

A value that already is a SHA-256 digest (64 lowercase hex characters) passes through, so an upstream
system may pre-hash. No function here puts an identifier's value into an exception message.

Test vectors (the SHA-256 of the normalised string's UTF-8 bytes is what Google receives)::

    " John.Doe@Gmail.COM "         email        john.doe@gmail.com   (dots kept)
    "+1 (212) 565-0000"            phone        +12125650000
    "020 7031 3000", country GB    phone        +442070313000
    "(650) 555-1234", country US   phone        +16505551234
    "  Mary  Ann "                 first name   mary ann
    "O'Brien"                      last name    o'brien
    "Deutschland"                  country      DE
    "94107-1234", country US       postal code  94107
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from connectors.google_ads._countries import (
    ALPHA2,
    ALPHA3,
    CALLING_CODES,
    COUNTRY_NAMES,
    KEEPS_LEADING_ZERO,
    NANP,
    name_key,
)

IDENTIFIER_FIELDS = ("email", "phone", "first_name", "last_name", "city", "state", "zip", "country", "external_id")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_US_ZIP = re.compile(r"(\d{5})(?:-?\d{4})?")
_E164_MAX_DIGITS = 15


class BadIdentifier(ValueError):
    """An identifier of a type that cannot be normalised; the message names the field, never the value."""


def sha256_hex(text: str) -> str:
    """The lowercase hex SHA-256 of ``text``'s UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """Whether ``value`` already is a digest: exactly 64 lowercase hex characters."""
    return _SHA256_HEX.fullmatch(value) is not None


def normalize_email(value: str) -> str | None:
    """Trimmed and lowercased; gmail dots are kept (Google does not require removing them here)."""
    text = value.strip().lower()
    return text or None


def normalize_name(value: str) -> str | None:
    """Trimmed and lowercased, inner whitespace collapsed (NFC first, so accents compare as one letter)."""
    text = " ".join(unicodedata.normalize("NFC", value).lower().split())
    return text or None


def normalize_country(value: str) -> str | None:
    """ISO 3166-1 alpha-2, uppercase, from a code ("de", "DEU") or a name ("Germany", "Deutschland")."""
    key = name_key(value)
    upper = key.upper()
    if len(key) == 2 and upper in ALPHA2:
        return upper
    if len(key) == 3 and upper in ALPHA3:
        return ALPHA3[upper]
    return COUNTRY_NAMES.get(key)


def normalize_phone(value: str, country: str | None = None) -> str | None:
    """E.164 with the leading ``+`` ("+1 (212) 565-0000" → "+12125650000"), or ``None`` when the calling
    code cannot be known (see the module docstring) or the result is no E.164 number."""
    text = value.strip()
    international = text.startswith(("+", "00"))
    if international:
        text = text.replace("(0)", "")  # "+44 (0)20 …": the bracketed trunk zero is not dialled from abroad
    digits = "".join(ch for ch in text if "0" <= ch <= "9")
    if international:
        digits = digits[2:] if text.startswith("00") else digits
    else:
        code = CALLING_CODES.get(country or "")
        if code is None:
            return None
        if digits.startswith("0") and not digits.startswith("00"):
            digits = code + (digits if country in KEEPS_LEADING_ZERO else digits.lstrip("0"))
        elif country in NANP and len(digits) == 10 and digits[0] != "1":
            digits = code + digits
        elif country in NANP and len(digits) == 11 and digits[0] == "1":
            pass  # already "1 212 …": the NANP calling code written without a plus
        else:
            return None
    if not digits or digits[0] == "0" or len(digits) > _E164_MAX_DIGITS or len(digits) < 8:
        return None
    return "+" + digits


def normalize_postal_code(value: str, country: str | None = None) -> str | None:
    """Trimmed; a US code keeps its 5-digit ZIP (Google accepts ZIP+4 too, but one form matches one way)."""
    text = " ".join(value.split())
    if country == "US":
        found = _US_ZIP.fullmatch(text)
        return found.group(1) if found else (text or None)
    return text or None


def _hashed(value: str, normalise: Callable[[str], str | None]) -> str | None:
    stripped = value.strip()
    if is_sha256_hex(stripped):
        return stripped
    normalised = normalise(stripped)
    return sha256_hex(normalised) if normalised else None


def _text(field: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadIdentifier(f"{field}: expected text, got {type(value).__name__}")
    return str(value)


@dataclass(frozen=True, slots=True)
class Identifiers:
    """One person's wire values: ``userIdentifiers`` of one ``UserData`` (what :meth:`wire` returns)."""

    hashed_email: str | None = None
    hashed_phone_number: str | None = None
    hashed_first_name: str | None = None
    hashed_last_name: str | None = None
    country_code: str | None = None
    postal_code: str | None = None
    third_party_user_id: str | None = None

    @property
    def has_address(self) -> bool:
        """Google matches on an address only with all four parts (first and last name, country, postal code)."""
        return None not in (self.hashed_first_name, self.hashed_last_name, self.country_code, self.postal_code)

    def wire(self, *, crm_id: bool = False) -> list[dict[str, object]]:
        """The ``userIdentifiers`` list, one identifier each (a oneof), in a stable order.

        A CRM_ID list takes only ``thirdPartyUserId``; a CONTACT_INFO list takes everything else (Google
        refuses the other kind: INCOMPATIBLE_UPLOAD_KEY_TYPE).
        """
        if crm_id:
            return [{"thirdPartyUserId": self.third_party_user_id}] if self.third_party_user_id else []
        found: list[dict[str, object]] = []
        if self.hashed_email:
            found.append({"hashedEmail": self.hashed_email})
        if self.hashed_phone_number:
            found.append({"hashedPhoneNumber": self.hashed_phone_number})
        if self.has_address:
            found.append({"addressInfo": {"hashedFirstName": self.hashed_first_name,
                                          "hashedLastName": self.hashed_last_name,
                                          "countryCode": self.country_code, "postalCode": self.postal_code}})
        return found


def identifiers(person: Mapping[str, object], *, default_country: str | None = None) -> Identifiers:
    """A person's canonical identifiers (``email``, ``phone``, … see :data:`IDENTIFIER_FIELDS`) normalised
    and hashed. The person's own country (else ``default_country``, alpha-2) reads national phone numbers
    and US ZIP codes. Unknown fields or non-text values raise :class:`BadIdentifier`; ``city`` and
    ``state`` are accepted and not sent (Customer Match matches addresses on name, country and postal code).
    """
    unknown = sorted(set(person) - set(IDENTIFIER_FIELDS))
    if unknown:
        raise BadIdentifier(f"unknown identifier field(s) {unknown}; known: {list(IDENTIFIER_FIELDS)}")
    texts = {field: _text(field, value) for field, value in person.items()}
    raw_country = texts.get("country")
    country = (normalize_country(raw_country) if raw_country else None) or default_country
    phone = texts.get("phone")
    zip_code = texts.get("zip")
    external = texts.get("external_id")
    return Identifiers(
        hashed_email=_hashed(texts["email"], normalize_email) if texts.get("email") else None,
        hashed_phone_number=(_hashed(phone, lambda v: normalize_phone(v, country)) if phone else None),
        hashed_first_name=_hashed(texts["first_name"], normalize_name) if texts.get("first_name") else None,
        hashed_last_name=_hashed(texts["last_name"], normalize_name) if texts.get("last_name") else None,
        country_code=country,
        postal_code=normalize_postal_code(zip_code, country) if zip_code else None,
        third_party_user_id=external.strip() or None if external else None,
    )


__all__ = [
    "IDENTIFIER_FIELDS",
    "BadIdentifier",
    "Identifiers",
    "identifiers",
    "is_sha256_hex",
    "normalize_country",
    "normalize_email",
    "normalize_name",
    "normalize_phone",
    "normalize_postal_code",
    "sha256_hex",
]
