"""Sales dispositions as events: a rep's verdict on a lead, recorded when it changes, for labels.

A rep marks a lead in the CRM — HubSpot's *Lead Status* (``hs_lead_status``: ``UNQUALIFIED``,
``OPEN_DEAL``, …), Salesforce's Lead ``Status`` (the canonical ``lifecycle_stage`` by default) — and that
judgement can train the next model (``[scoring.question] target = { event = "disposition",
positive = [...], negative = [...] }``). With ``disposition_field`` set on a pipeline, every lead pulled
whose value of that field differs from the stored one (or that is seen for the first time with a value)
yields one ``disposition`` activity at the lead's modification time, with ``value``, ``previous`` and
``field`` in its attributes.

The field is a canonical lead field (``lifecycle_stage``, ``title``…) or a source property copied into the
lead's attributes (HubSpot ``extra_contact_properties``, Salesforce ``extra_lead_fields``). The activity's
key is derived from the lead, the value and the time, so pulling the same record again adds nothing.
A value cleared in the CRM records nothing (no verdict is not a verdict). Features never see
dispositions unless a feature spec lists the ``disposition`` event type.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import Activity, ActivityType, Lead

__all__ = ["CANONICAL_FIELDS", "disposition_changes", "value_of"]

#: Lead fields a disposition can be read from besides the source properties in ``Lead.attributes``.
CANONICAL_FIELDS = ("lifecycle_stage", "title", "owner_id", "country")


def value_of(field: str, lead: Lead | Mapping[str, Any]) -> str | None:
    """The lead's value of ``field`` as text (``None`` when empty or absent); a stored row or a record."""
    if isinstance(lead, Lead):
        raw = getattr(lead, field) if field in CANONICAL_FIELDS else lead.attributes.get(field)
    else:
        raw = lead.get(field) if field in CANONICAL_FIELDS else (lead.get("attributes") or {}).get(field)
    if raw is None:
        return None
    text = str(raw).strip()
    return text or None


def disposition_changes(field: str, leads: Sequence[Lead],
                        stored: Mapping[str, Mapping[str, Any]]) -> tuple[list[Activity], bool]:
    """One ``disposition`` activity per lead whose ``field`` value is new or differs from ``stored`` (rows
    by lead key, before this page is stored); and whether any lead carried the field at all — a field no
    lead has is usually one the source was not asked to pull."""
    out: list[Activity] = []
    seen_field = False
    latest = {lead.key: lead for lead in leads}  # a page may repeat a key: the last one wins, as in the store
    for key, lead in latest.items():
        present = field in CANONICAL_FIELDS or field in lead.attributes
        seen_field = seen_field or present
        value = value_of(field, lead)
        if value is None:
            continue
        before = value_of(field, stored[key]) if key in stored else None
        if value == before:
            continue
        stamp = lead.updated_at.isoformat()
        digest = hashlib.sha256(f"{key}\x1f{field}\x1f{value}\x1f{stamp}".encode()).hexdigest()[:24]
        out.append(Activity(key=f"disposition:{digest}", lead_key=key, type=ActivityType.DISPOSITION,
                            occurred_at=lead.updated_at,
                            attributes={"value": value, "previous": before, "field": field}))
    return out, seen_field
