"""The sObjects the Salesforce sandbox knows, with their fields' types and key prefixes.

Field names are matched case-insensitively, as Salesforce does, and answered in their declared casing.
Types drive how values are stored and compared: ``datetime`` fields are kept as epoch milliseconds and
rendered as ``…T…000+0000``; ``date`` fields as ``YYYY-MM-DD`` text; everything else as the JSON value.
Custom fields (``__c``) can be added per sandbox; the leadrelay ones are there by default, with the task
operation key declared as a unique external id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FieldType = str  # "id", "string", "datetime", "date", "boolean", "int", "double", "reference"

_SYSTEM: dict[str, FieldType] = {
    "Id": "id",
    "IsDeleted": "boolean",
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
}
_READ_ONLY = frozenset({"Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp"})

SCORE_FIELDS: dict[str, FieldType] = {
    "Leadrelay_Score__c": "double",
    "Leadrelay_Band__c": "string",
    "Leadrelay_Reasons__c": "string",
    "Leadrelay_Model_Version__c": "string",
    "Leadrelay_Scored_At__c": "datetime",
}
# The account model's score on the Account (update_account).
ACCOUNT_SCORE_FIELDS: dict[str, FieldType] = {
    "Leadrelay_Account_Score__c": "double",
    "Leadrelay_Account_Band__c": "string",
    "Leadrelay_Account_Model_Version__c": "string",
}
TASK_KEY_FIELD = "Leadrelay_Operation_Key__c"


@dataclass(slots=True)
class ObjectSchema:
    """One sObject type: its key prefix, its fields (declared casing → type) and its rules."""

    name: str
    prefix: str
    fields: dict[str, FieldType]
    required: tuple[str, ...] = ()
    unique: set[str] = field(default_factory=set)  # unique external-id fields
    references: dict[str, tuple[str, ...]] = field(default_factory=dict)  # field → allowed target types
    _lower: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fields = {**_SYSTEM, **self.fields}
        self._lower = {name.lower(): name for name in self.fields}

    def resolve(self, name: str) -> str | None:
        """The declared name of ``name`` (any casing), ``None`` if the object has no such field."""
        return self._lower.get(name.strip().lower())

    def add(self, name: str, kind: FieldType, *, unique: bool = False) -> None:
        self.fields[name] = kind
        self._lower[name.lower()] = name
        if unique:
            self.unique.add(name)

    def writable(self, name: str) -> bool:
        return name not in _READ_ONLY


def default_schemas() -> dict[str, ObjectSchema]:
    """A fresh set of schemas (each sandbox may add fields to its own)."""
    person = {"FirstName": "string", "LastName": "string", "Name": "string", "Email": "string",
              "Title": "string", "OwnerId": "reference", "HasOptedOutOfEmail": "boolean",
              "DoNotCall": "boolean", "LeadSource": "string", **SCORE_FIELDS}
    schemas = [
        ObjectSchema("User", "005", {"Name": "string", "Email": "string", "IsActive": "boolean",
                                     "FirstName": "string", "LastName": "string"}),
        ObjectSchema("Account", "001", {
            "Name": "string", "Website": "string", "Industry": "string", "NumberOfEmployees": "int",
            "AnnualRevenue": "double", "BillingCountry": "string", "OwnerId": "reference", "Type": "string",
            **ACCOUNT_SCORE_FIELDS,
        }, required=("Name",), references={"OwnerId": ("User",)}),
        ObjectSchema("Lead", "00Q", {
            **person, "Company": "string", "Country": "string", "Status": "string", "Industry": "string",
            "NumberOfEmployees": "int", "AnnualRevenue": "double", "IsConverted": "boolean",
            "ConvertedDate": "date", "ConvertedAccountId": "reference", "ConvertedContactId": "reference",
            "Account__c": "reference",
        }, required=("LastName", "Company"), references={"OwnerId": ("User",), "Account__c": ("Account",)}),
        ObjectSchema("Contact", "003", {
            **person, "AccountId": "reference", "MailingCountry": "string",
        }, required=("LastName",), references={"OwnerId": ("User",), "AccountId": ("Account",)}),
        ObjectSchema("Opportunity", "006", {
            "AccountId": "reference", "Name": "string", "StageName": "string", "Amount": "double",
            "CloseDate": "date", "IsClosed": "boolean", "IsWon": "boolean", "Probability": "double",
            "Type": "string", "LeadSource": "string", "OwnerId": "reference",
        }, required=("Name", "StageName", "CloseDate"), references={"OwnerId": ("User",), "AccountId": ("Account",)}),
        ObjectSchema("Task", "00T", {
            "Subject": "string", "Description": "string", "Status": "string", "Priority": "string",
            "ActivityDate": "date", "OwnerId": "reference", "WhoId": "reference", "WhatId": "reference",
            "Type": "string", "TaskSubtype": "string", "IsClosed": "boolean", TASK_KEY_FIELD: "string",
        }, references={"OwnerId": ("User",), "WhoId": ("Lead", "Contact"), "WhatId": ("Account",)}),
        ObjectSchema("Event", "00U", {
            "Subject": "string", "StartDateTime": "datetime", "EndDateTime": "datetime", "Type": "string",
            "OwnerId": "reference", "WhoId": "reference", "WhatId": "reference",
        }, references={"OwnerId": ("User",), "WhoId": ("Lead", "Contact"), "WhatId": ("Account",)}),
        ObjectSchema("Campaign", "701", {"Name": "string", "Type": "string", "IsActive": "boolean"},
                     required=("Name",)),
        ObjectSchema("CampaignMember", "00v", {
            "CampaignId": "reference", "LeadId": "reference", "ContactId": "reference", "Status": "string",
            "HasResponded": "boolean", "FirstRespondedDate": "date",
        }, required=("CampaignId",), references={"CampaignId": ("Campaign",), "LeadId": ("Lead",),
                                                   "ContactId": ("Contact",)}),
    ]
    found = {schema.name: schema for schema in schemas}
    found["Task"].unique.add(TASK_KEY_FIELD)
    return found


__all__ = ["ACCOUNT_SCORE_FIELDS", "SCORE_FIELDS", "TASK_KEY_FIELD", "FieldType", "ObjectSchema", "default_schemas"]
