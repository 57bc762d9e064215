"""Meta connector settings and registration: what the config refuses, hides and declares."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors import registry
from connectors.base import RateLimit
from connectors.meta import MetaConfig, MetaConnector

TOKEN = "EAAG-config-secret-token"


def test_config_normalises_and_refuses() -> None:
    """act_ prefixes are dropped, countries mapped; oversized requests, bad ids and unknown keys are refused."""
    config = MetaConfig(access_token=TOKEN, ad_account_id="act_123", default_country="Deutschland",
                        base_url="https://graph.facebook.com/v25.0/")
    assert (config.ad_account_id, config.default_country, config.base_url) == (
        "123", "de", "https://graph.facebook.com/v25.0")
    for bad in ({"rows_per_request": 10_001}, {"ad_account_id": "my account"}, {"default_country": "Narnia"},
                {"base_url": "graph.facebook.com"}, {"surprise": 1}):
        with pytest.raises(ValidationError):
            MetaConfig(**{"access_token": TOKEN, "ad_account_id": "123", **bad})


def test_secrets_stay_hidden() -> None:
    """The token and app secret never show in the config's repr or dump."""
    config = MetaConfig(access_token=TOKEN, ad_account_id="1", app_secret="app-secret-value")
    shown = repr(config) + str(config.model_dump())
    assert TOKEN not in shown
    assert "app-secret-value" not in shown
    assert MetaConnector.client_headers(config)["Authorization"] == f"Bearer {TOKEN}"


def test_declarations() -> None:
    """A destination with add/remove (idempotent, counts not per-row results) and the configured budget."""
    caps = MetaConnector.capabilities
    assert not caps.is_source
    assert set(caps.operations) == {"audience_add", "audience_remove"}
    assert all(spec.idempotent and not spec.per_record_results for spec in caps.operations.values())
    config = MetaConfig(access_token=TOKEN, ad_account_id="1", rate_limit_requests=3_166,
                        rate_limit_window_seconds=60)
    assert MetaConnector.rate_limit_for(config) == RateLimit(3_166, 60)


def test_registered_through_the_entry_point_group() -> None:
    """The connector is found as ``meta`` in the leadrelay.connectors group, like any plugin."""
    found = {d.name: d for d in registry.discover()}
    assert found["meta"].connector is MetaConnector


def test_public_names_are_pinned() -> None:
    """The package and its hashing module export exactly their documented public names."""
    import connectors.meta
    import connectors.meta.hashing

    assert sorted(connectors.meta.__all__) == [
        "AudienceUnavailable", "MAX_ROWS_PER_REQUEST", "MatchRate", "MetaConfig", "MetaConnector",
        "appsecret_proof", "session_id_for"]
    assert sorted(connectors.meta.hashing.__all__) == [
        "BadIdentifier", "SCHEMA_KEYS", "UNHASHED_KEYS", "is_sha256_hex", "normalize", "normalize_city",
        "normalize_country", "normalize_email", "normalize_external_id", "normalize_name", "normalize_phone",
        "normalize_state", "normalize_zip", "sha256_hex", "wire_row", "wire_value"]
