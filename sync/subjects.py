"""Store rows -> ``scoring.Subject``: the one conversion shared by training and serving.

Training (``leadrelay train``) and every cycle build the model's inputs through :func:`build_subjects`,
so the attributes a model learned from are the attributes it is served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sync.identity import email_domain, is_free_mail

if TYPE_CHECKING:
    from scoring import Subject

ActivityRows = Mapping[str, Sequence[tuple[str, datetime, Mapping[str, Any]]]]


def build_subjects(
    leads: Sequence[Mapping[str, Any]],
    accounts: Mapping[str, Mapping[str, Any]],
    activities: ActivityRows,
) -> list[Subject]:
    from scoring import Event, Subject

    out: list[Subject] = []
    for lead in leads:
        account = accounts.get(lead.get("account_key") or "", {})
        domain = email_domain(lead.get("email"))
        attributes: dict[str, Any] = {
            "employees": account.get("employees"),
            "annual_revenue": account.get("annual_revenue"),
            "industry": account.get("industry"),
            "country": lead.get("country") or account.get("country"),
            "title": lead.get("title"),
            "email_domain_free": is_free_mail(domain) if domain else None,
            "account_key": lead.get("account_key"),
        }
        events = [Event(kind, at, attrs) for kind, at, attrs in activities.get(lead["key"], ())]
        out.append(Subject(key=lead["key"], created_at=lead.get("created_at"), attributes=attributes,
                           events=events))
    return out


__all__ = ["build_subjects"]
