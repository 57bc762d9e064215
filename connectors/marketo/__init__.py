"""Marketo Engage connector: leads, activities and email opt-outs through the activity log's paging
tokens; scores onto leads and static-list membership back. Registered as ``marketo`` in the
``leadrelay.connectors`` entry-point group.

There is no official Marketo SDK for Python; the connector speaks the REST API directly over the
framework's HTTP layer."""

from __future__ import annotations

from ._config import (
    DEFAULT_ACTIVITY_TYPES,
    DEFAULT_ATTRIBUTE_FIELDS,
    DEFAULT_LEAD_FIELDS,
    DEFAULT_SCORE_FIELDS,
    MarketoConfig,
)
from ._connector import MarketoConnector
from ._write import MAX_BATCH

__all__ = [
    "DEFAULT_ACTIVITY_TYPES",
    "DEFAULT_ATTRIBUTE_FIELDS",
    "DEFAULT_LEAD_FIELDS",
    "DEFAULT_SCORE_FIELDS",
    "MAX_BATCH",
    "MarketoConfig",
    "MarketoConnector",
]
