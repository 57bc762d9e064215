"""Seeded, realistic HubSpot portals for the sandbox: companies, contacts, deals, owners and web/email events.

The data is built so that a lead-scoring model has something real to learn, and not too easily. Each
contact has a latent conversion propensity from *fit* (ICP industry, company size in a sweet spot, a
senior title, a work address rather than free mail) and from *engagement* (how active they are), plus
noise. Contacts who convert show a ramp of activity — pricing and demo page views, a demo request — in
the weeks before converting; a quarter convert without one (sales-led), and some non-converters show a
ramp without converting, so a good model lands around AUC 0.8–0.9, not 1.0.

A conversion is what HubSpot records when a contact becomes an opportunity: ``lifecyclestage`` is
``opportunity`` and ``hs_lifecyclestage_opportunity_date`` holds the time. Contacts that would convert
after ``now`` are not converted yet (censored), as in a real portal.

Deals (HubSpot's opportunities, the account model's label): a contact at a company who converts opens a
deal on that company within a couple of hours of converting (a second conversion at the same company
within 30 days joins the open deal instead), and some companies get sales-led deals with no conversion
behind them (likelier for a good fit). A deal whose sales cycle ended before ``now`` is closed, won or lost;
the others are open in one of the earlier stages, their ``closedate`` the expected close. Deals come from a
random stream of their own (``f"{seed}:deals"``), so adding them changed no other value of existing datasets.

Event types (``eventType``; ``objectType`` is ``contact``; all property values are strings):

=======================  ==============================================================================
``e_visited_page``       ``hs_url``, ``hs_page_title`` — home, product, ``/pricing``, ``/demo``,
                         ``/docs/...``, ``/blog/...``, ``/customers``; several views per session
``e_submitted_form``     ``hs_form_id``, ``hs_form_title``, ``hs_url`` ("Request a demo", "Contact sales",
                         "Newsletter signup", "Webinar registration")
``e_opened_email``       ``hs_email_campaign_id``, ``hs_email_subject``
``e_clicked_email``      ``hs_email_campaign_id``, ``hs_url`` (follows an open within minutes)
``e_attended_webinar``   ``hs_webinar_id``, ``hs_webinar_name``
``e_downloaded_content`` ``hs_asset_name``, ``hs_url``
=======================  ==============================================================================

Malformed contacts (``malformed_share > 0``), listed in :attr:`Dataset.malformed` as
``(object_type, id, problem)``; each breaks exactly one data-contract rule:

* ``invalid_email``: ``email`` has no ``@`` (``jane.doe.example.com``);
* ``missing_createdate``: the contact has no ``createdate`` property;
* ``unknown_lifecyclestage``: ``lifecyclestage`` is ``hot_lead``, not a HubSpot stage;
* ``non_numeric_employees``: the contact's company has ``numberofemployees`` like ``50-200`` (recorded
  against the company id).
"""

from __future__ import annotations

import gc
import hashlib
import math
import random
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from connectors.sandbox._generator_vocab import (
    _ASSETS,
    _BLOG,
    _CAMPAIGNS,
    _COUNTRIES,
    _DOCS,
    _FIRST,
    _FORMS,
    _FUNCTIONS,
    _LAST,
    _NAME_A,
    _NAME_B,
    _PAGES,
    _SENIORITY,
    _SITE,
    _WEBINARS,
    EVENT_TYPES,
    FREE_MAIL,
    ICP_INDUSTRIES,
    INDUSTRIES,
    MALFORMED_KINDS,
    SWEET_SPOT,
)
from connectors.sandbox._wire import iso_ms, parse_time, to_ms

_DAY_MS = 86_400_000
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Dataset:
    """A portal's content, HubSpot-shaped and ready for ``HubSpotSandbox.load``."""

    companies: list[dict[str, Any]]
    contacts: list[dict[str, Any]]
    owners: list[dict[str, Any]]
    events: list[dict[str, Any]]
    malformed: list[tuple[str, str, str]] = field(default_factory=list)
    deals: list[dict[str, Any]] = field(default_factory=list)
    # (deal id, "companies" | "contacts", object id, association type id: 341/5 company, 3 contact)
    deal_associations: list[tuple[str, str, str, int]] = field(default_factory=list)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation; exactness does not matter for fake data
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _pick(rng: random.Random, items: Sequence[T]) -> T:
    # random.choice's rejection sampling is exact but slow; this bias is far below what fake data needs
    return items[int(rng.random() * len(items))]


def _slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _consent_properties(email: str) -> dict[str, str]:
    """Consent as a portal records it: drawn from a hash of the address, not from the generator's random
    stream, so adding consent changed no other value of existing datasets."""
    roll = int.from_bytes(hashlib.sha256(email.encode()).digest()[:4], "big") % 100
    ads = "granted" if roll < 65 else "denied" if roll < 75 else None
    sales = "denied" if 90 <= roll < 95 else "granted"
    props = {"hs_email_optout": "true" if roll >= 97 else "false", "leadrelay_sales_consent": sales,
             "hs_legal_basis": ("Freely given consent from contact" if ads == "granted"
                                else "Legitimate interest – prospect/lead")}
    if ads is not None:
        props["leadrelay_ads_consent"] = ads
    return props


def generate_dataset(
    *,
    seed: int,
    contacts: int,
    companies: int | None = None,
    now: datetime,
    history_days: int = 180,
    owners: int = 8,
    malformed_share: float = 0.0,
) -> Dataset:
    """A deterministic portal for ``seed``: ``contacts`` people at ``companies`` (default contacts/8)
    over ``history_days`` before ``now``, about 8% of whom converted to opportunity."""
    if contacts < 0 or history_days < 1 or not 0.0 <= malformed_share <= 1.0:
        raise ValueError("contacts >= 0, history_days >= 1 and 0 <= malformed_share <= 1 are required")
    # Millions of small dicts and no cycles: the cyclic collector would only rescan them, again and again.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(seed, contacts, companies, now, history_days, owners, malformed_share)
    finally:
        if was_enabled:
            gc.enable()


def _generate(
    seed: int,
    contacts: int,
    companies: int | None,
    now: datetime,
    history_days: int,
    owners: int,
    malformed_share: float,
) -> Dataset:
    rng = random.Random(seed)
    iso = iso_ms
    now_ms = to_ms(now)
    start_ms = now_ms - history_days * _DAY_MS
    n_companies = max(1, companies if companies is not None else contacts // 8)

    owner_rows = _owners(rng, owners, iso(start_ms))
    company_rows, company_fit = _companies(rng, n_companies, start_ms, now_ms, iso)
    contact_rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    malformed: list[tuple[str, str, str]] = []
    event_ms: list[int] = []

    weights = [math.sqrt(float(c["properties"]["numberofemployees"])) for c in company_rows]
    cumulative = [0.0] * len(weights)
    running = 0.0
    for i, w in enumerate(weights):
        running += w
        cumulative[i] = running
    chosen = rng.choices(range(len(company_rows)), cum_weights=cumulative, k=contacts)
    countries = [c[0] for c in _COUNTRIES]
    country_weights = [c[1] for c in _COUNTRIES]
    seniority_cumulative = [sum(s[1] for s in _SENIORITY[: i + 1]) for i in range(len(_SENIORITY))]
    emails: set[str] = set()
    owner_ids = [o["id"] for o in owner_rows]

    for n in range(contacts):
        contact_id = str(n + 1)
        company = company_rows[chosen[n]]
        cprops = company["properties"]
        first, last = _pick(rng, _FIRST), _pick(rng, _LAST)
        free_mail = rng.random() < 0.15
        domain = _pick(rng, FREE_MAIL) if free_mail else cprops["domain"]
        local = _slug(first) + _pick(rng, (".", "", "_")) + _slug(last)
        email = f"{local}@{domain}"
        suffix = 1
        while email in emails:
            suffix += 1
            email = f"{local}{suffix}@{domain}"
        emails.add(email)
        level = _SENIORITY[bisect_left(seniority_cumulative, rng.random() * seniority_cumulative[-1])]
        title = _pick(rng, level[3]).format(f=_pick(rng, _FUNCTIONS))
        country = cprops["country"] if rng.random() < 0.85 else rng.choices(countries, country_weights)[0]
        created = start_ms + int(rng.random() ** 0.8 * (now_ms - start_ms - 3_600_000))

        fit = company_fit[chosen[n]] + level[2] - (0.9 if free_mail else 0.0)
        engagement = rng.lognormvariate(0.3 * fit, 0.8)
        latent = -3.6 + fit + 0.9 * math.log(engagement) + rng.gauss(0.0, 0.8)
        converted_ms = None
        if rng.random() < 1.0 / (1.0 + math.exp(-latent)):
            at = created + int((3 + rng.expovariate(1 / 35)) * _DAY_MS)
            if at < now_ms:
                converted_ms = at

        props: dict[str, Any] = {
            "email": email,
            "firstname": first,
            "lastname": last,
            "jobtitle": title,
            "country": country,
            "createdate": iso(created),
        }
        if not free_mail:
            props["associatedcompanyid"] = company["id"]
            props["company"] = cprops["name"]
        if rng.random() < 0.8:
            props["hubspot_owner_id"] = _pick(rng, owner_ids)
        props["hs_lifecyclestage_lead_date"] = iso(created)
        if converted_ms is not None:
            props["lifecyclestage"] = "opportunity"
            props["hs_lifecyclestage_opportunity_date"] = iso(converted_ms)
        else:
            props["lifecyclestage"] = (
                "marketingqualifiedlead"
                if engagement > 2.0 and rng.random() < 0.4
                else rng.choices(("lead", "subscriber"), (70, 30))[0]
            )
            if props["lifecyclestage"] == "subscriber":
                del props["hs_lifecyclestage_lead_date"]
        modified = max(created + 60_000, converted_ms or 0)
        if rng.random() < 0.6:
            modified = max(modified, created + int(rng.random() * (now_ms - created)))
        props["lastmodifieddate"] = iso(modified)
        props.update(_consent_properties(email))

        if malformed_share and rng.random() < malformed_share:
            problem = _pick(rng, MALFORMED_KINDS)
            if problem == "invalid_email":
                props["email"] = email.replace("@", ".")
            elif problem == "missing_createdate":
                del props["createdate"]
            elif problem == "unknown_lifecyclestage":
                props["lifecyclestage"] = "hot_lead"
            else:
                cprops["numberofemployees"] = _pick(rng, ("50-200", "unknown", "approx. 300"))
            malformed.append(
                ("companies", company["id"], problem)
                if problem == "non_numeric_employees"
                else ("contacts", contact_id, problem)
            )

        contact_rows.append(
            {
                "id": contact_id,
                "properties": props,
                "createdAt": iso(created),
                "updatedAt": props["lastmodifieddate"],
                "archived": False,
            }
        )
        _contact_events(rng, contact_id, created, now_ms, engagement, converted_ms, iso, events, event_ms)

    deals, deal_links = _deals(random.Random(f"{seed}:deals"), company_rows, company_fit, contact_rows,
                               owner_ids, now_ms, start_ms)
    return Dataset(company_rows, contact_rows, owner_rows, _chronological(events, event_ms), malformed, deals,
                   deal_links)


_DEAL_JOIN_MS = 30 * _DAY_MS  # a conversion this soon after a deal opened at the same company joins it
_OPEN_STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin",
                "contractsent")


def _deals(
    rng: random.Random,
    companies: list[dict[str, Any]],
    fits: list[float],
    contacts: list[dict[str, Any]],
    owner_ids: list[str],
    now_ms: int,
    start_ms: int,
) -> tuple[list[dict[str, Any]], list[tuple[str, str, str, int]]]:
    """Deals opened by conversions at companies, plus sales-led ones; with their associations."""
    index = {c["id"]: i for i, c in enumerate(companies)}
    people: dict[str, list[str]] = {}
    conversions: list[tuple[int, str, str]] = []  # (converted ms, company id, contact id)
    for contact in contacts:
        props = contact["properties"]
        company = props.get("associatedcompanyid")
        if company not in index:
            continue
        people.setdefault(company, []).append(contact["id"])
        converted = props.get("hs_lifecyclestage_opportunity_date")
        if props.get("lifecyclestage") == "opportunity" and converted:
            conversions.append((parse_time(converted) or 0, company, contact["id"]))
    conversions.sort()
    opened: list[tuple[int, str, str | None]] = []  # (created ms, company id, contact id)
    last_open: dict[str, int] = {}
    links: list[tuple[str, str, str, int]] = []
    joined: list[tuple[int, str]] = []  # (deal position, contact id) for conversions joining a deal
    position: dict[str, int] = {}
    for at, company, contact in conversions:
        if company in last_open and at - last_open[company] < _DEAL_JOIN_MS:
            joined.append((position[company], contact))
            continue
        created = min(now_ms - 60_000, at + int(rng.random() * 2 * 3_600_000))
        position[company] = len(opened)
        last_open[company] = created
        opened.append((created, company, contact))
    converted_at = {company for _, company, _ in conversions}
    for company in companies:
        if company["id"] in converted_at:
            continue
        if rng.random() < 0.03 + 0.03 * fits[index[company["id"]]]:  # sales-led: no conversion behind it
            crowd = people.get(company["id"])
            created = start_ms + int(rng.random() * (now_ms - start_ms - 3_600_000))
            opened.append((created, company["id"], _pick(rng, crowd) if crowd else None))
    deals: list[dict[str, Any]] = []
    for n, (created, company_id, contact) in enumerate(opened):
        company = companies[index[company_id]]
        deal_id = str(30_000_001 + n)
        employees = company["properties"]["numberofemployees"]
        size = float(employees) if str(employees).isdigit() else 50.0
        amount = round(rng.lognormvariate(math.log(4_000 * size**0.35), 0.6), -2)
        cycle = int((7 + rng.expovariate(1 / 40)) * _DAY_MS)
        end = created + cycle
        props: dict[str, Any] = {
            "dealname": f"{company['properties']['name']} - new business",
            "pipeline": "default",
            "dealtype": "newbusiness",
            "amount": str(int(amount)),
            "createdate": iso_ms(created),
            "closedate": iso_ms(end),
        }
        if owner_ids:
            props["hubspot_owner_id"] = _pick(rng, owner_ids)
        if end < now_ms:
            won = rng.random() < 0.25 + 0.1 * fits[index[company_id]]
            props["dealstage"] = "closedwon" if won else "closedlost"
            props["hs_is_closed"], props["hs_is_closed_won"] = "true", "true" if won else "false"
            touched = end
        else:
            progress = (now_ms - created) / cycle
            props["dealstage"] = _OPEN_STAGES[min(len(_OPEN_STAGES) - 1, int(progress * len(_OPEN_STAGES)))]
            props["hs_is_closed"], props["hs_is_closed_won"] = "false", "false"
            touched = created
        modified = min(now_ms, touched + int(rng.random() * 3 * _DAY_MS))
        props["hs_lastmodifieddate"] = iso_ms(modified)
        deals.append({"id": deal_id, "properties": props, "createdAt": iso_ms(created),
                      "updatedAt": iso_ms(modified), "archived": False})
        links += [(deal_id, "companies", company_id, 341), (deal_id, "companies", company_id, 5)]
        if contact is not None:
            links.append((deal_id, "contacts", contact, 3))
    for n, contact in joined:
        links.append((deals[n]["id"], "contacts", contact, 3))
    return deals, links


def _chronological(events: list[dict[str, Any]], event_ms: list[int]) -> list[dict[str, Any]]:
    import numpy as np  # a stable argsort over millions of timestamps, ten times faster than sorted()

    order = np.argsort(np.asarray(event_ms, dtype=np.int64), kind="stable").tolist()
    return [events[i] for i in order]


def _owners(rng: random.Random, count: int, created: str) -> list[dict[str, Any]]:
    rows = []
    for i in range(count):
        first, last = _pick(rng, _FIRST), _pick(rng, _LAST)
        rows.append(
            {
                "id": str(90_000_001 + i),
                "email": f"{_slug(first)}.{_slug(last)}@leadrelay-demo.com",
                "firstName": first,
                "lastName": last,
                "userId": 7_000_001 + i,
                "userIdIncludingInactive": 7_000_001 + i,
                "type": "PERSON",
                "createdAt": created,
                "updatedAt": created,
                "archived": False,
                "teams": [{"id": "1", "name": "SDR", "primary": True}],
            }
        )
    return rows


def _companies(
    rng: random.Random, count: int, start_ms: int, now_ms: int, iso: Callable[[int], str]
) -> tuple[list[dict[str, Any]], list[float]]:
    rows, fits, domains = [], [], set()
    countries = [c for c, _, _ in _COUNTRIES]
    weights = [w for _, w, _ in _COUNTRIES]
    tlds = {c: t for c, _, t in _COUNTRIES}
    for i in range(count):
        name = f"{_pick(rng, _NAME_A)} {_pick(rng, _NAME_B)}"
        country = rng.choices(countries, weights)[0]
        tld = "com" if rng.random() < 0.5 else tlds[country]
        base, n = _slug(name), 1
        domain = f"{base}.{tld}"
        while domain in domains:
            n += 1
            domain = f"{base}{n}.{tld}"
        domains.add(domain)
        if n > 1:
            name = f"{name} {n}"
        industry = _pick(rng, INDUSTRIES)
        employees = max(1, min(250_000, int(rng.lognormvariate(math.log(60), 1.6))))
        revenue = int(employees * rng.lognormvariate(math.log(150_000), 0.5))
        created = start_ms - int(rng.random() * 365 * _DAY_MS)
        modified = created + int(rng.random() * (now_ms - created))
        rows.append(
            {
                "id": str(50_000_001 + i),
                "properties": {
                    "name": name,
                    "domain": domain,
                    "industry": industry,
                    "numberofemployees": str(employees),
                    "annualrevenue": str(revenue),
                    "country": country,
                    "createdate": iso(created),
                    "hs_lastmodifieddate": iso(modified),
                    "lifecyclestage": "lead",
                },
                "createdAt": iso(created),
                "updatedAt": iso(modified),
                "archived": False,
            }
        )
        fits.append(
            (1.0 if industry in ICP_INDUSTRIES else 0.0)
            + (0.7 if SWEET_SPOT[0] <= employees <= SWEET_SPOT[1] else 0.0)
        )
    return rows, fits


def _view(path: str, title: str) -> dict[str, str]:
    return {"hs_url": _SITE + path, "hs_page_title": title}


# Page-view properties are shared between events (a dataset holds a million of them): read-only.
_VIEW = {key: _view(path, title) for key, (path, title) in _PAGES.items()}
_BLOG_VIEWS = tuple(_view(f"/blog/{slug}", slug.replace("-", " ").capitalize()) for slug in _BLOG)
_DOCS_VIEWS = tuple(_view(f"/docs/{slug}", f"Docs: {slug}") for slug in _DOCS)
_OTHER_VIEWS = (_VIEW["home"], _VIEW["product"], _VIEW["customers"])


def _page(rng: random.Random, hot: bool) -> dict[str, str]:
    # hot sessions (the run-up to a conversion, or a false alarm) look at pricing and demo pages
    r = rng.random()
    if hot and r < 0.5:
        return _VIEW["pricing"] if r < 0.35 else _VIEW["demo"]
    if r < 0.45:
        return _pick(rng, _BLOG_VIEWS)
    if r < 0.68:
        return _pick(rng, _DOCS_VIEWS)
    if r < 0.92:
        return _pick(rng, _OTHER_VIEWS)
    return _VIEW["pricing"] if r < 0.97 else _VIEW["demo"]


def _contact_events(
    rng: random.Random,
    contact_id: str,
    created: int,
    now_ms: int,
    engagement: float,
    converted_ms: int | None,
    iso: Callable[[int], str],
    events: list[dict[str, Any]],
    event_ms: list[int],
) -> None:
    append, append_ms = events.append, event_ms.append

    def add(event_type: str, at: int, properties: dict[str, str]) -> None:
        if created <= at <= now_ms:
            append(
                {
                    "id": f"{contact_id}-{len(events)}",
                    "eventType": event_type,
                    "objectId": contact_id,
                    "objectType": "contact",
                    "occurredAt": iso(at),
                    "properties": properties,
                }
            )
            append_ms(at)

    def session(at: int, hot: bool) -> None:
        kind = rng.random()
        if kind < 0.55 or hot:
            for k in range(1 + _poisson(rng, 1.6 if hot else 0.9)):
                add("e_visited_page", at + k * (20_000 + int(rng.random() * 220_000)), _page(rng, hot))
            if hot and rng.random() < 0.25:
                add(
                    "e_submitted_form",
                    at + 600_000,
                    {"hs_form_id": "form-demo", "hs_form_title": _FORMS["demo"], "hs_url": _SITE + "/demo"},
                )
        elif kind < 0.85:
            campaign, subject = _pick(rng, _CAMPAIGNS)
            add("e_opened_email", at, {"hs_email_campaign_id": campaign, "hs_email_subject": subject})
            if rng.random() < 0.3:
                add(
                    "e_clicked_email",
                    at + 5_000 + int(rng.random() * 295_000),
                    {"hs_email_campaign_id": campaign, "hs_url": _page(rng, False)["hs_url"]},
                )
        elif kind < 0.92:
            form = _pick(rng, ("newsletter", "webinar", "contact"))
            add(
                "e_submitted_form",
                at,
                {"hs_form_id": f"form-{form}", "hs_form_title": _FORMS[form], "hs_url": f"{_SITE}/{form}"},
            )
        elif kind < 0.96:
            webinar_id, name = _pick(rng, _WEBINARS)
            add("e_attended_webinar", at, {"hs_webinar_id": webinar_id, "hs_webinar_name": name})
        else:
            asset = _pick(rng, _ASSETS)
            add(
                "e_downloaded_content",
                at,
                {"hs_asset_name": asset, "hs_url": f"{_SITE}/resources/{_slug(asset)}"},
            )

    span = now_ms - created
    for _ in range(_poisson(rng, 0.055 * engagement * span / _DAY_MS)):
        session(created + int(rng.random() * span), False)
    ramp_end = None
    if converted_ms is not None and rng.random() < 0.75:
        ramp_end = converted_ms  # the run-up to a conversion
    elif converted_ms is None and rng.random() < 0.10:
        ramp_end = created + int(rng.random() * span)  # interest that came to nothing
    if ramp_end is not None:
        for _ in range(2 + _poisson(rng, 3.0)):
            # sessions crowd towards the end of the ramp: engagement rises before converting
            session(ramp_end - int(21 * _DAY_MS * rng.random() ** 2) - 3_600_000, True)


__all__ = ["EVENT_TYPES", "Dataset", "generate_dataset"]
