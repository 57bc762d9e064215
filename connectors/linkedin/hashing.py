"""E-mail normalisation and hashing for LinkedIn matched audiences (reference/apis.md §6.2). Pure.

LinkedIn takes e-mail addresses as ``SHA256_EMAIL`` (64 hex characters) or ``SHA512_EMAIL`` (128) and
documents only the encoding, not a normalisation (apis.md marks it [U]); trimming and lowercasing first,
the industry norm, is what lets the same address written two ways hash the same.
A value that already is a digest of the right length (lowercase hex) passes through unchanged.

Test vectors::

    " Jane.Doe@Example.COM "   →  SHA-256 of "jane.doe@example.com"
    "x@y.org" with SHA512      →  SHA-512 of "x@y.org" (128 hex characters)
"""

from __future__ import annotations

import hashlib
import re

ID_TYPES = {"SHA256": "SHA256_EMAIL", "SHA512": "SHA512_EMAIL"}
_DIGEST = {"SHA256": re.compile(r"[0-9a-f]{64}"), "SHA512": re.compile(r"[0-9a-f]{128}")}
_COUNTRY = re.compile(r"[A-Za-z]{2}")
NAME_LIMIT = 35  # characters LinkedIn takes in firstName / lastName


def normalize_email(value: str) -> str | None:
    """Trimmed and lowercased; ``None`` when nothing is left or it cannot be an address."""
    text = value.strip().lower()
    return text if "@" in text else None


def hashed_email(value: str, algorithm: str = "SHA256") -> str | None:
    """The lowercase hex digest LinkedIn expects (``algorithm`` SHA256 or SHA512), or ``None``."""
    stripped = value.strip()
    if _DIGEST[algorithm].fullmatch(stripped):
        return stripped
    text = normalize_email(stripped)
    if text is None:
        return None
    digest = hashlib.sha256 if algorithm == "SHA256" else hashlib.sha512
    return digest(text.encode("utf-8")).hexdigest()


def clean_name(value: str) -> str | None:
    """A first or last name as LinkedIn takes it: trimmed, inner whitespace collapsed, at most 35 characters."""
    text = " ".join(value.split())[:NAME_LIMIT]
    return text or None


def clean_country(value: str) -> str | None:
    """An ISO 3166-1 alpha-2 code, uppercase; anything else is left out rather than guessed."""
    text = value.strip()
    return text.upper() if _COUNTRY.fullmatch(text) else None


__all__ = ["ID_TYPES", "NAME_LIMIT", "clean_country", "clean_name", "hashed_email", "normalize_email"]
