"""LinkedIn's e-mail hashing and field rules (apis.md §6.2)."""

from __future__ import annotations

import hashlib

from connectors.linkedin.hashing import clean_country, clean_name, hashed_email


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_linkedin_email_hashes_and_fields() -> None:
    """LinkedIn e-mails are trimmed and lowercased before SHA-256 or SHA-512; names fit 35 characters."""
    assert hashed_email(" Jane.Doe@Example.COM ") == sha("jane.doe@example.com")
    assert hashed_email("x@y.org", "SHA512") == hashlib.sha512(b"x@y.org").hexdigest()
    assert hashed_email("not-an-address") is None
    assert clean_name("  A   B ") == "A B"
    assert len(clean_name("x" * 50) or "") == 35
    assert (clean_country("us"), clean_country("USA")) == ("US", None)
