"""The HubSpot sandbox's object types and property schema.

HubSpot rejects writes to properties that do not exist or are read-only, and types every property
(``string``, ``number``, ``datetime``, ``enumeration``...). The schema here is the subset of HubSpot's
default properties the demo and the connector touch, plus the custom properties leadrelay writes back.
"""

from __future__ import annotations

from typing import Any

OBJECT_TYPES = ("contacts", "companies", "deals", "tasks")

# HubSpot accepts plural names, singular names and object type ids in paths.
TYPE_ALIASES = {
    "contacts": "contacts",
    "contact": "contacts",
    "0-1": "contacts",
    "companies": "companies",
    "company": "companies",
    "0-2": "companies",
    "deals": "deals",
    "deal": "deals",
    "0-3": "deals",
    "tasks": "tasks",
    "task": "tasks",
    "0-27": "tasks",
}
SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal", "tasks": "task"}
TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "deals": "0-3", "tasks": "0-27"}

# Contacts call their modified-date property differently from every other object (apis.md 1.7).
MODIFIED_PROPERTY = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
    "tasks": "hs_lastmodifieddate",
}
CREATED_PROPERTY = {"contacts": "createdate", "companies": "createdate", "deals": "createdate",
                    "tasks": "hs_createdate"}

# What search and list return when the request names no properties (apis.md 1.4 for contacts).
DEFAULT_PROPERTIES = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "deals": ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate", "hs_object_id",
              "pipeline"),
    "tasks": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
}

# Default association types (apis.md 1.2): typeId -> (from type, to type); the reverse type is recorded too.
ASSOCIATION_TYPES: dict[int, tuple[str, str]] = {
    279: ("contacts", "companies"),
    280: ("companies", "contacts"),
    1: ("contacts", "companies"),
    204: ("tasks", "contacts"),
    203: ("contacts", "tasks"),
    192: ("tasks", "companies"),
    341: ("deals", "companies"),
    342: ("companies", "deals"),
    5: ("deals", "companies"),  # the deal's primary company
    3: ("deals", "contacts"),
    4: ("contacts", "deals"),
}
REVERSE_ASSOCIATION = {279: 280, 280: 279, 1: 280, 204: 203, 203: 204, 192: 192, 341: 342, 342: 341, 5: 342,
                       3: 4, 4: 3}
DEFAULT_ASSOCIATION = {
    ("contacts", "companies"): 279,
    ("companies", "contacts"): 280,
    ("deals", "companies"): 341,
    ("companies", "deals"): 342,
    ("deals", "contacts"): 3,
    ("contacts", "deals"): 4,
    ("tasks", "contacts"): 204,
    ("contacts", "tasks"): 203,
    ("tasks", "companies"): 192,
}

LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)

# The default sales pipeline's stages (HubSpot's internal values); the last two close the deal.
DEAL_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)
CLOSED_DEAL_STAGES = {"closedwon": True, "closedlost": False}  # stage -> won


def _prop(
    name: str,
    label: str,
    type_: str = "string",
    field_type: str = "text",
    *,
    read_only: bool = False,
    unique: bool = False,
    options: tuple[str, ...] = (),
    custom: bool = False,
) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "groupName": "leadrelay" if custom else "contactinformation",
        "description": "",
        "options": [
            {"label": o, "value": o, "hidden": False, "displayOrder": i} for i, o in enumerate(options)
        ],
        "hasUniqueValue": unique,
        "hidden": False,
        "formField": not read_only,
        "calculated": False,
        "externalOptions": False,
        "hubspotDefined": not custom,
        "modificationMetadata": {
            "archivable": custom,
            "readOnlyDefinition": not custom,
            "readOnlyValue": read_only,
        },
    }


def _common(kind: str) -> list[dict[str, Any]]:
    modified = MODIFIED_PROPERTY[kind]
    created = CREATED_PROPERTY[kind]
    props = [
        _prop("hs_object_id", "Record ID", "number", "number", read_only=True),
        _prop(modified, "Last Modified Date", "datetime", "date", read_only=True),
        _prop("hubspot_owner_id", "Owner", "enumeration", "select"),
    ]
    if created == "hs_createdate":
        props.append(_prop(created, "Create Date", "datetime", "date", read_only=True))
    else:  # HubSpot lets imports and integrations set createdate on contacts and companies
        props.append(_prop(created, "Create Date", "datetime", "date"))
    if kind == "companies":
        props.append(_prop("hs_createdate", "Object create date/time", "datetime", "date", read_only=True))
    return props


def default_schema() -> dict[str, dict[str, dict[str, Any]]]:
    """A fresh, mutable copy of the property schema per object type (``POST /properties`` adds to it)."""
    contacts = [
        *_common("contacts"),
        _prop("email", "Email", unique=True),
        _prop("firstname", "First Name"),
        _prop("lastname", "Last Name"),
        _prop("jobtitle", "Job Title"),
        _prop("phone", "Phone Number", field_type="phonenumber"),
        _prop("country", "Country/Region"),
        _prop("city", "City"),
        _prop("company", "Company Name"),
        _prop("website", "Website URL"),
        _prop("associatedcompanyid", "Primary Associated Company ID", "number", "number"),
        _prop("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", options=LIFECYCLE_STAGES),
        _prop(
            "hs_lead_status",
            "Lead Status",
            "enumeration",
            "radio",
            options=(
                "NEW",
                "OPEN",
                "IN_PROGRESS",
                "OPEN_DEAL",
                "UNQUALIFIED",
                "ATTEMPTED_TO_CONTACT",
                "CONNECTED",
                "BAD_TIMING",
            ),
        ),
        _prop(
            "hs_analytics_source",
            "Original Source",
            "enumeration",
            "select",
            options=(
                "ORGANIC_SEARCH",
                "PAID_SEARCH",
                "EMAIL_MARKETING",
                "SOCIAL_MEDIA",
                "REFERRALS",
                "OTHER_CAMPAIGNS",
                "DIRECT_TRAFFIC",
                "OFFLINE",
                "PAID_SOCIAL",
            ),
        ),
        _prop("hs_email_optout", "Unsubscribed from all email", "bool", "booleancheckbox"),
        _prop("hs_legal_basis", "Legal basis for processing contact's data", "enumeration", "checkbox",
              options=("Legitimate interest – prospect/lead", "Legitimate interest – existing customer",
                       "Performance of a contract", "Freely given consent from contact", "Not applicable")),
        # consent channels HubSpot has no standard property for; leadrelay's setup creates these two
        _prop("leadrelay_ads_consent", "leadrelay ads consent", "enumeration", "select",
              options=("granted", "denied"), custom=True),
        _prop("leadrelay_sales_consent", "leadrelay sales outreach consent", "enumeration", "select",
              options=("granted", "denied"), custom=True),
        # leadrelay's own properties, created by its setup step in a real portal
        _prop("leadrelay_score", "leadrelay score", "number", "number", custom=True),
        _prop("leadrelay_band", "leadrelay band", custom=True),
        _prop("leadrelay_reasons", "leadrelay reasons", field_type="textarea", custom=True),
        _prop("leadrelay_model_version", "leadrelay model version", custom=True),
        _prop("leadrelay_scored_at", "leadrelay scored at", "datetime", "date", custom=True),
        # the account model's score of the contact's company, when score_properties maps it
        _prop("leadrelay_account_score", "leadrelay account score", "number", "number", custom=True),
        _prop("leadrelay_account_band", "leadrelay account band", custom=True),
    ]
    contacts += [
        _prop(f"hs_lifecyclestage_{stage}_date", f"Became a {stage} date", "datetime", "date", read_only=True)
        for stage in LIFECYCLE_STAGES
    ]
    companies = [
        *_common("companies"),
        _prop("name", "Company name"),
        _prop("domain", "Company Domain Name"),
        _prop("industry", "Industry"),
        _prop("numberofemployees", "Number of Employees", "number", "number"),
        _prop("annualrevenue", "Annual Revenue", "number", "number"),
        _prop("country", "Country/Region"),
        _prop("city", "City"),
        _prop("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", options=LIFECYCLE_STAGES),
        # the account model's score, written by update_account; created by leadrelay's setup in a real portal
        _prop("leadrelay_account_score", "leadrelay account score", "number", "number", custom=True),
        _prop("leadrelay_account_band", "leadrelay account band", custom=True),
        _prop("leadrelay_account_model_version", "leadrelay account model version", custom=True),
    ]
    deals = [
        *_common("deals"),
        _prop("dealname", "Deal Name"),
        _prop("dealstage", "Deal Stage", "enumeration", "radio", options=DEAL_STAGES),
        _prop("pipeline", "Pipeline", "enumeration", "select", options=("default",)),
        _prop("amount", "Amount", "number", "number"),
        _prop("closedate", "Close Date", "datetime", "date"),
        _prop("dealtype", "Deal Type", "enumeration", "radio", options=("newbusiness", "existingbusiness")),
        # calculated by HubSpot from the stage: read-only ("true"/"false")
        _prop("hs_is_closed", "Is Deal Closed?", "bool", "booleancheckbox", read_only=True),
        _prop("hs_is_closed_won", "Is Closed Won", "bool", "booleancheckbox", read_only=True),
    ]
    tasks = [
        *_common("tasks"),
        _prop("hs_timestamp", "Due date", "datetime", "date"),
        _prop("hs_task_subject", "Task Title"),
        _prop("hs_task_body", "Task notes", field_type="textarea"),
        _prop(
            "hs_task_status",
            "Task Status",
            "enumeration",
            "select",
            options=("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"),
        ),
        _prop(
            "hs_task_priority", "Priority", "enumeration", "select", options=("NONE", "LOW", "MEDIUM", "HIGH")
        ),
        _prop("hs_task_type", "Task Type", "enumeration", "select", options=("CALL", "EMAIL", "TODO")),
        _prop("leadrelay_operation_key", "leadrelay operation key", unique=True, custom=True),
    ]
    return {
        kind: {p["name"]: p for p in props}
        for kind, props in (("contacts", contacts), ("companies", companies), ("deals", deals), ("tasks", tasks))
    }
