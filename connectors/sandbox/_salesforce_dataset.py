"""A generated :class:`~connectors.sandbox.generator.Dataset` poured into the Salesforce sandbox's org.

The generator speaks HubSpot; this maps it onto the sObjects a Salesforce org would hold for the same
people, so the same learnable signal reaches a pipeline whatever the CRM:

===========================  =====================================================================
owners                       ``User`` (active)
companies                    ``Account`` (``Website`` = domain, ``NumberOfEmployees``, ``AnnualRevenue``)
contacts                     ``Lead``; the company as ``Company`` and as the matched-account lookup
                             ``Account__c``; converted contacts are converted leads (``IsConverted``,
                             ``ConvertedDate``, ``ConvertedAccountId``); about 4 % opted out of e-mail
page views, e-mail opens     ``Task`` (``Type`` "Web Visit", "Email Open", "Email Click"; the page title
and clicks                   or e-mail subject in ``Subject``, the URL in ``Description``)
form submits, webinars,      ``CampaignMember`` of one ``Campaign`` per form, webinar or asset (``Status``
downloads                    "Responded", "Attended", "Downloaded"); one membership per campaign and lead
deals                        ``Opportunity`` on the deal's company's ``Account`` (``StageName`` from the deal
                             stage, ``Amount``, ``CloseDate``, ``IsClosed``/``IsWon``, ``CreatedDate``)
===========================  =====================================================================

Malformed generator rows stay malformed: an e-mail without ``@``, a lead without ``CreatedDate``, a
status Salesforce would not have, employees as text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connectors.sandbox._salesforce_wire import sf_date
from connectors.sandbox._wire import parse_time

if TYPE_CHECKING:
    from connectors.sandbox._salesforce_store import SalesforceState
    from connectors.sandbox.generator import Dataset

STATUS = {
    "subscriber": "Open - Not Contacted",
    "lead": "Open - Not Contacted",
    "marketingqualifiedlead": "Working - Contacted",
    "opportunity": "Closed - Converted",
}
TASK_EVENTS = {  # event type → (Task Type, TaskSubtype, subject property, description property)
    "e_visited_page": ("Web Visit", "Task", "hs_page_title", "hs_url"),
    "e_opened_email": ("Email Open", "Email", "hs_email_subject", None),
    "e_clicked_email": ("Email Click", "Email", "hs_email_campaign_id", "hs_url"),
}
CAMPAIGN_EVENTS = {  # event type → (Campaign Type, member Status, campaign name property)
    "e_submitted_form": ("Web Form", "Responded", "hs_form_title"),
    "e_attended_webinar": ("Webinar", "Attended", "hs_webinar_name"),
    "e_downloaded_content": ("Content", "Downloaded", "hs_asset_name"),
}
_OPT_OUT_SHARE = 0.04
OPPORTUNITY_STAGES = {  # HubSpot deal stage → Salesforce's default opportunity stage
    "appointmentscheduled": "Prospecting",
    "qualifiedtobuy": "Qualification",
    "presentationscheduled": "Needs Analysis",
    "decisionmakerboughtin": "Proposal/Price Quote",
    "contractsent": "Negotiation/Review",
    "closedwon": "Closed Won",
    "closedlost": "Closed Lost",
}


@dataclass(slots=True)
class Loaded:
    """How the generator's ids became Salesforce ids (tests look people up by either)."""

    users: dict[str, str] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    leads: dict[str, str] = field(default_factory=dict)
    campaigns: dict[str, str] = field(default_factory=dict)
    opportunities: dict[str, str] = field(default_factory=dict)


def _ms(value: Any) -> int | None:
    # The generator writes HubSpot's one fixed layout; its parser reads that from tables (millions of rows).
    return parse_time(value) if isinstance(value, str) else None


def _day(value: Any, ms: int) -> str:
    return value[:10] if isinstance(value, str) and value[10:11] == "T" else sf_date(ms)


def _opted_out(contact_id: str) -> bool:
    digest = hashlib.blake2b(f"opt-out:{contact_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32 < _OPT_OUT_SHARE


def load_dataset(state: SalesforceState, data: Dataset) -> Loaded:
    loaded = Loaded()
    for owner in data.owners:
        loaded.users[str(owner["id"])] = state.insert("User", {
            "Name": f"{owner.get('firstName', '')} {owner.get('lastName', '')}".strip(),
            "FirstName": owner.get("firstName"), "LastName": owner.get("lastName"),
            "Email": owner.get("email"), "IsActive": not owner.get("archived", False)})
    default_owner = next(iter(loaded.users.values()), state.integration_user)
    for company in data.companies:
        props = company["properties"]
        employees = props.get("numberofemployees")
        revenue = props.get("annualrevenue")
        loaded.accounts[str(company["id"])] = state.insert("Account", {
            "Name": props.get("name"), "Website": props.get("domain"), "Industry": props.get("industry"),
            # text that is not a number stays text: the malformed rows the connector must quarantine
            "NumberOfEmployees": int(employees) if str(employees).isdigit() else employees,
            "AnnualRevenue": float(revenue) if revenue is not None else None,
            "BillingCountry": props.get("country"), "OwnerId": default_owner, "Type": "Prospect",
        }, created_ms=_ms(props.get("createdate")), modified_ms=_ms(props.get("hs_lastmodifieddate")))
    for contact in data.contacts:
        _lead(state, loaded, contact, default_owner)
    seen_members: set[tuple[str, str]] = set()
    for event in data.events:
        _activity(state, loaded, event, seen_members)
    # Last, so that every other record keeps the id it had before datasets held deals.
    companies = {deal: company for deal, kind, company, _ in getattr(data, "deal_associations", ())
                 if kind == "companies"}
    for deal in getattr(data, "deals", ()):
        _opportunity(state, loaded, deal, companies.get(str(deal["id"])), default_owner)
    return loaded


def _opportunity(state: SalesforceState, loaded: Loaded, deal: dict[str, Any], company: str | None,
                 default_owner: str) -> None:
    props = deal["properties"]
    stage = OPPORTUNITY_STAGES.get(props.get("dealstage"), props.get("dealstage"))
    close = _ms(props.get("closedate"))
    amount = props.get("amount")
    loaded.opportunities[str(deal["id"])] = state.insert("Opportunity", {
        "AccountId": loaded.accounts.get(str(company)) if company else None, "Name": props.get("dealname"),
        "StageName": stage, "Amount": float(amount) if amount else None,
        "CloseDate": _day(props.get("closedate"), close) if close is not None else None,
        "IsClosed": props.get("hs_is_closed") == "true", "IsWon": props.get("hs_is_closed_won") == "true",
        "Type": "New Customer", "LeadSource": "Web",
        "OwnerId": loaded.users.get(str(props.get("hubspot_owner_id")), default_owner),
    }, created_ms=_ms(props.get("createdate")), modified_ms=_ms(props.get("hs_lastmodifieddate")))


def _lead(state: SalesforceState, loaded: Loaded, contact: dict[str, Any], default_owner: str) -> None:
    props = contact["properties"]
    account = loaded.accounts.get(str(props.get("associatedcompanyid")))
    stage = props.get("lifecyclestage")
    converted = _ms(props.get("hs_lifecyclestage_opportunity_date"))
    owner = loaded.users.get(str(props.get("hubspot_owner_id")), default_owner)
    created = _ms(props.get("createdate"))
    values: dict[str, Any] = {
        "FirstName": props.get("firstname"), "LastName": props.get("lastname"),
        "Name": f"{props.get('firstname', '')} {props.get('lastname', '')}".strip(),
        "Email": props.get("email"), "Title": props.get("jobtitle"), "Country": props.get("country"),
        "Company": props.get("company") or "[not provided]", "Account__c": account, "OwnerId": owner,
        "Status": STATUS.get(stage, stage), "LeadSource": "Web", "IsConverted": converted is not None,
        "ConvertedDate": sf_date(converted) if converted is not None else None,
        "ConvertedAccountId": account if converted is not None else None,
        "HasOptedOutOfEmail": _opted_out(str(contact["id"])), "DoNotCall": False,
    }
    lead_id = state.insert("Lead", values, created_ms=created, modified_ms=_ms(props.get("lastmodifieddate")))
    if created is None:
        state.records["Lead"][lead_id]["CreatedDate"] = None  # kept broken on purpose (missing_createdate)
    loaded.leads[str(contact["id"])] = lead_id


def _activity(state: SalesforceState, loaded: Loaded, event: dict[str, Any], seen: set[tuple[str, str]]) -> None:
    lead = loaded.leads.get(str(event.get("objectId")))
    at = _ms(event.get("occurredAt"))
    if lead is None or at is None:
        return
    props = event.get("properties") or {}
    kind = event.get("eventType")
    if kind in TASK_EVENTS:
        task_type, subtype, subject, description = TASK_EVENTS[kind]
        owner = state.records["Lead"][lead].get("OwnerId")
        state.insert("Task", {
            "Subject": props.get(subject) or task_type, "Description": props.get(description) if description else None,
            "Type": task_type, "TaskSubtype": subtype, "Status": "Completed", "Priority": "Normal",
            "IsClosed": True, "ActivityDate": _day(event.get("occurredAt"), at), "WhoId": lead, "OwnerId": owner,
        }, created_ms=at, modified_ms=at)
        return
    if kind not in CAMPAIGN_EVENTS:
        return
    campaign_type, status, name_property = CAMPAIGN_EVENTS[kind]
    name = str(props.get(name_property) or campaign_type)
    campaign = loaded.campaigns.get(name)
    if campaign is None:
        campaign = loaded.campaigns[name] = state.insert(
            "Campaign", {"Name": name, "Type": campaign_type, "IsActive": True}, created_ms=at)
    if (campaign, lead) in seen:
        return  # Salesforce holds one membership per campaign and lead
    seen.add((campaign, lead))
    state.insert("CampaignMember", {"CampaignId": campaign, "LeadId": lead, "Status": status,
                                    "HasResponded": True, "FirstRespondedDate": _day(event.get("occurredAt"), at)},
                 created_ms=at, modified_ms=at)


__all__ = ["CAMPAIGN_EVENTS", "OPPORTUNITY_STAGES", "STATUS", "TASK_EVENTS", "Loaded", "load_dataset"]
