"""Store rows -> ``scoring.Subject``: the one conversion shared by training and serving.

Training (``leadrelay train``) and every cycle build the model's inputs through :func:`build_subjects`,
so the attributes a model learned from are the attributes it is served. Firmographics come from the
lead's account, or from the lead's own attributes when it has no account or the account lacks them. Every
other attribute the source mapped (a tech stack, a renewal date, ...) is passed through under its own name,
the lead's value first, else the account's, so that a feature declared in ``[scoring.fit]`` or
``[scoring.timing]`` reads it by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sync.identity import email_domain, is_free_mail

if TYPE_CHECKING:
    from scoring import Subject

ActivityRows = Mapping[str, Sequence[tuple[str, datetime, Mapping[str, Any]]]]
# Account key -> its opportunities as the store reads them (``Unit.opportunities_of_accounts``).
OpportunityRows = Mapping[str, Sequence[Mapping[str, Any]]]
OPPORTUNITY_EVENT = "opportunity"  # the account model's default target: an opportunity created

# Firmographics a lead may carry itself, under these canonical attribute names, when the source has no
# account for it: Marketo's lead records hold the company's industry, size and revenue (its connector maps
# them into Lead.attributes, see connectors.marketo._config.DEFAULT_ATTRIBUTE_FIELDS).
FIRMOGRAPHICS = ("employees", "annual_revenue", "industry")


def _firmographic(name: str, account: Mapping[str, Any], lead_attributes: Mapping[str, Any]) -> Any:
    """The account's value; the lead's own attribute of the same name when the account has none."""
    value = account.get(name)
    if value is None or value == "":
        value = lead_attributes.get(name)
    if name == "industry":
        return value if isinstance(value, str) and value.strip() else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return value
    try:  # a source that keeps numbers as text ("250")
        return float(str(value).replace(",", "").strip())
    except ValueError:
        return None


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != []


def _passed_through(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of ``layers`` merged, the first layer with a value winning (a blank value is none)."""
    out: dict[str, Any] = {}
    for layer in reversed(layers):
        out.update((k, v) for k, v in layer.items() if _present(v))
    return out


def build_subjects(
    leads: Sequence[Mapping[str, Any]],
    accounts: Mapping[str, Mapping[str, Any]],
    activities: ActivityRows,
) -> list[Subject]:
    from scoring import Event, Subject

    out: list[Subject] = []
    for lead in leads:
        account = accounts.get(lead.get("account_key") or "", {})
        own = lead.get("attributes") or {}
        domain = email_domain(lead.get("email"))
        attributes: dict[str, Any] = {
            # The canonical attributes below come last: a free-form attribute never overrides them.
            **_passed_through(own, account.get("attributes") or {}),
            **{name: _firmographic(name, account, own) for name in FIRMOGRAPHICS},
            "country": lead.get("country") or account.get("country"),
            "title": lead.get("title"),
            "email_domain_free": is_free_mail(domain) if domain else None,
            "account_key": lead.get("account_key"),
        }
        events = [Event(kind, at, attrs) for kind, at, attrs in activities.get(lead["key"], ())]
        out.append(Subject(key=lead["key"], created_at=lead.get("created_at"), attributes=attributes,
                           events=events))
    return out


def _known_since(lead: Mapping[str, Any], activities: ActivityRows) -> datetime | None:
    """When the CRM knew the lead: its creation, else its first activity (``None``: neither is known)."""
    if lead.get("created_at") is not None:
        return lead["created_at"]
    return min((at for _kind, at, _attrs in activities.get(lead["key"], ())), default=None)


def build_account_subjects(
    accounts: Mapping[str, Mapping[str, Any]],
    leads_by_account: Mapping[str, Sequence[Mapping[str, Any]]],
    activities: ActivityRows,
    *,
    as_of: datetime | None = None,
    opportunities: OpportunityRows | None = None,
) -> list[Subject]:
    """One subject per account, for the account model (training and serving both build them here).

    Attributes: the account's firmographics (``employees``, ``annual_revenue``, ``industry``, ``country``)
    and ``leads``, the number of its leads the CRM knew before ``as_of`` (all of them when ``None``) — a
    count as of the freeze time, so a training row never sees leads created after its cutoff. Events: every
    activity of its leads, each with the lead's key in its attributes (``lead_key``), and each of its
    ``opportunities`` (the ``opportunities`` stream) as an ``opportunity`` event at its creation, with
    ``stage``, ``amount`` and ``is_won`` (as the store holds them now: label material, never a feature —
    ``opportunity`` is no intent event type, and features only count events before the cutoff anyway).
    The account is known from its first lead. The label is the question's target: by default an
    opportunity created within the horizon; ``target.event = "conversion"`` takes a conversion of any of its
    leads instead (the proxy for a CRM without opportunities).
    """
    from scoring import Event, Subject

    out: list[Subject] = []
    for key in sorted(accounts):
        account = accounts[key]
        leads = leads_by_account.get(key, ())
        since = [_known_since(lead, activities) for lead in leads]
        known = sum(1 for at in since if at is None or as_of is None or at < as_of)
        deals = [Event(OPPORTUNITY_EVENT, o["created_at"],
                       {"opportunity_key": o["key"], "stage": o.get("stage"),
                        "amount": o.get("amount"), "is_won": o.get("is_won")})
                 for o in (opportunities or {}).get(key, ())]
        events = sorted(
            [*(Event(kind, at, {**attrs, "lead_key": lead["key"]})
               for lead in leads for kind, at, attrs in activities.get(lead["key"], ())), *deals],
            key=lambda e: (e.at, str(e.attributes.get("lead_key") or ""), e.type))
        attributes: dict[str, Any] = {
            **_passed_through(account.get("attributes") or {}),
            **{name: _firmographic(name, account, {}) for name in FIRMOGRAPHICS},
            "country": account.get("country") or None,
            "leads": known,
        }
        out.append(Subject(key=key, created_at=min((at for at in since if at is not None), default=None),
                           attributes=attributes, events=events))
    return out


__all__ = ["FIRMOGRAPHICS", "OPPORTUNITY_EVENT", "build_account_subjects", "build_subjects"]
