"""Meta Custom Audiences destination: people added to and removed from customer-file audiences, their
identifiers normalised and SHA-256 hashed first (:mod:`connectors.meta.hashing`). Registered as ``meta``
in the ``leadrelay.connectors`` entry-point group."""

from __future__ import annotations

from ._config import MAX_ROWS_PER_REQUEST, MetaConfig
from ._connector import MetaConnector, appsecret_proof
from ._errors import AudienceUnavailable
from ._sessions import MatchRate, session_id_for

__all__ = [
    "MAX_ROWS_PER_REQUEST",
    "AudienceUnavailable",
    "MatchRate",
    "MetaConfig",
    "MetaConnector",
    "appsecret_proof",
    "session_id_for",
]
