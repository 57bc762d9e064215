"""A signed-webhook destination for leadrelay: an example connector plugin.

Registered as ``webhook`` in the ``leadrelay.connectors`` entry-point group. :mod:`leadrelay_webhook.fake`
is a receiver that follows the same protocol, for tests (the conformance kit) and demos.
"""

from __future__ import annotations

from ._config import WebhookConfig
from ._connector import WebhookConnector
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookConfig", "WebhookConnector", "sign"]
