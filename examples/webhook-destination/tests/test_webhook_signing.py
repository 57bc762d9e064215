"""The webhook signature: what a receiver recomputes, and what makes it fail."""

from __future__ import annotations

import hashlib
import hmac

from leadrelay_webhook.signing import sign, verify


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """The header value is v1= and the HMAC-SHA256 hex of "<timestamp>.<body>" keyed with the secret."""
    expected = hmac.new(b"s3cret-s3cret-s3cret", b"1767225600.{\"a\":1}", hashlib.sha256).hexdigest()
    assert sign("s3cret-s3cret-s3cret", 1767225600, b'{"a":1}') == f"v1={expected}"


def test_a_changed_body_timestamp_or_secret_fails_verification() -> None:
    """Any change to the body, the timestamp or the secret makes the signature invalid."""
    good = sign("s3cret-s3cret-s3cret", 100, b"body")
    assert verify("s3cret-s3cret-s3cret", "100", b"body", good)
    assert not verify("s3cret-s3cret-s3cret", "100", b"body!", good)
    assert not verify("s3cret-s3cret-s3cret", "101", b"body", good)
    assert not verify("another-secret-value", "100", b"body", good)
    assert not verify("s3cret-s3cret-s3cret", "not-a-number", b"body", good)
