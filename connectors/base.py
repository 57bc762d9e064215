"""The connector contract: what every source and destination plugin implements and nothing more.

A connector talks to one outside system. It declares, without I/O, its name, contract version, config
model (secret fields are ``pydantic.SecretStr``) and capabilities; it receives its HTTP layer from the
framework; it knows how to talk to its API and how to classify the answers. Retries, batching, rate
budgets, state and checkpoints belong to the framework (``sync``).

Data crosses the boundary as the canonical records below. Sources yield :class:`Page` objects (records,
quarantined rows and the cursor *after* the page); destinations answer :meth:`Destination.write_batch`
with one :class:`RecordOutcome` per input. Whole-request failures raise one of the errors at the end of
this module, each named for what the caller does next::

    ConnectorError
     ├── RetryLater          transient: wait (optionally ``retry_after`` seconds) and try again
     │    └── QuotaExhausted a daily quota is spent: stop the run, resume after ``resets_at``
     ├── FixConfiguration    credentials, scopes, field names: a person must act
     └── GiveUp              these records cannot be written as they are
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from connectors.http import HttpLayer

CONTRACT_VERSION = 1

Scalar = str | int | float | bool | None


# --------------------------------------------------------------------------------------------------
# Canonical records (what sources yield)


@dataclass(frozen=True, slots=True)
class Lead:
    """A person in the CRM or MAP. ``key`` is the source system's id, stable for the person's life.

    ``read_only``: the source refuses writes to this record, e.g. a converted Salesforce Lead. leadrelay keeps
    it for training and history (it is scored and stored), plans no write to it and routes nothing to it.
    """

    key: str
    updated_at: datetime
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    account_key: str | None = None
    owner_id: str | None = None
    country: str | None = None
    title: str | None = None
    lifecycle_stage: str | None = None
    created_at: datetime | None = None
    attributes: Mapping[str, Scalar] = field(default_factory=dict)
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Account:
    """A company. ``domain`` is the normalised web domain used for lead-to-account matching."""

    key: str
    updated_at: datetime
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    employees: int | None = None
    country: str | None = None
    annual_revenue: float | None = None
    attributes: Mapping[str, Scalar] = field(default_factory=dict)


# Canonical fields a connector fills itself (identity, change time, pass-through attributes, write-ability):
# never mapped from a vendor field in config.
_NOT_MAPPED = frozenset({"key", "updated_at", "attributes", "read_only"})
#: Lead / Account fields a connector's field map may name.
MAPPABLE_LEAD_FIELDS = frozenset(f.name for f in fields(Lead)) - _NOT_MAPPED
MAPPABLE_ACCOUNT_FIELDS = frozenset(f.name for f in fields(Account)) - _NOT_MAPPED


# Score-update payload keys a destination sends only when its score field map names them (the account model's
# score of the lead's account); unmapped, they are left out of the write rather than refused.
OPTIONAL_SCORE_KEYS = frozenset({"account_score", "account_band"})


#: The ``update_account`` operation's payload keys (the account model's score of one account, written to the
#: account object itself: a HubSpot company, a Salesforce Account); each connector maps them to its fields.
ACCOUNT_SCORE_KEYS = frozenset({"account_score", "account_band", "model_version"})


def without_unmapped(payload: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """``payload`` without the :data:`OPTIONAL_SCORE_KEYS` that ``names`` does not map."""
    return {k: v for k, v in payload.items() if k in names or k not in OPTIONAL_SCORE_KEYS}


class ActivityType(enum.StrEnum):
    """The activity vocabulary scoring understands; sources map vendor event types onto it."""

    PAGE_VIEW = "page_view"
    PRICING_PAGE = "pricing_page"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    FORM_SUBMIT = "form_submit"
    CONTENT_DOWNLOAD = "content_download"
    WEBINAR = "webinar"
    MEETING = "meeting"
    SALES_TOUCH = "sales_touch"
    CONVERSION = "conversion"
    #: A rep's verdict on the lead (lead status), recorded by the pipeline when it changes (sync.dispositions).
    DISPOSITION = "disposition"
    #: A product event (a login, a feature used) from a product-analytics source or plugin; feeds the opt-in
    #: usage-decay features ([scoring.timing] usage_types), never the default intent features.
    PRODUCT_USAGE = "product_usage"


@dataclass(frozen=True, slots=True)
class Activity:
    """Something a lead did (or had done to them) at a point in time."""

    key: str
    lead_key: str
    type: ActivityType
    occurred_at: datetime
    attributes: Mapping[str, Scalar] = field(default_factory=dict)


class ConsentStatus(enum.StrEnum):
    GRANTED = "granted"
    DENIED = "denied"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One change of a person's consent on one channel (email, ads, sales)."""

    key: str
    lead_key: str
    channel: str
    status: ConsentStatus
    effective_at: datetime
    lawful_basis: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Opportunity:
    """A sales opportunity (HubSpot deal, Salesforce Opportunity) on an account: what an account model's
    question asks about ("an opportunity created within N days"). ``is_won`` is ``None`` while it is open."""

    key: str
    updated_at: datetime
    created_at: datetime
    account_key: str | None = None
    lead_key: str | None = None
    name: str | None = None
    stage: str | None = None
    amount: float | None = None
    closed_at: datetime | None = None
    is_won: bool | None = None
    attributes: Mapping[str, Scalar] = field(default_factory=dict)


Record = Lead | Account | Activity | ConsentChange | Opportunity


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A source row that broke the data contract, kept with the reason so nothing is silently lost."""

    stream: str
    key: str | None
    reason: str
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a stream. ``cursor`` resumes *after* this page; the framework stores it only once the
    page's records are stored."""

    records: Sequence[Record]
    cursor: str | None
    quarantined: Sequence[Quarantined] = ()


# --------------------------------------------------------------------------------------------------
# Writes (what destinations receive and answer)


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One record of a write batch.

    ``target`` is the destination's object id (or natural key); for ``audience_add``/``audience_remove`` it
    is the person's key at the source (the lead id; an id-based list adds it, a hash-based audience uses
    the identifiers in ``payload``), each record being one stay of that person. ``idempotency_key`` is
    stable across retries and runs, and a connector whose operation is not idempotent must carry it into the
    created object so that the framework can look it up after an unknown outcome.
    """

    target: str
    idempotency_key: str
    payload: Mapping[str, Any]


class Outcome(enum.StrEnum):
    ACKNOWLEDGED = "acknowledged"  # the destination confirmed this record: the ledger moves
    RETRYABLE = "retryable"        # a transient failure for this record: try again
    REJECTED = "rejected"          # a data error: dead letter with the destination's reason
    UNKNOWN = "unknown"            # sent, no answer: look up (or resend if idempotent)


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """The destination's answer for one input record, in the order the records were sent."""

    idempotency_key: str
    outcome: Outcome
    reason: str | None = None
    remote_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.ACKNOWLEDGED


# --------------------------------------------------------------------------------------------------
# Declarations (no I/O)


@dataclass(frozen=True, slots=True)
class Budget:
    """A further named request budget that only the requests naming it draw from: ``requests`` per rolling
    ``per_seconds`` window (HubSpot's search: 5 per second, beside the burst window)."""

    name: str
    requests: int
    per_seconds: float


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A destination account's request budgets.

    Every request draws from the daily quota (``daily``, reset at midnight in ``daily_reset_timezone``);
    a request that names no budget draws from the main rolling window (``requests`` per ``per_seconds``),
    one that names budgets draws from those instead (see ``HttpLayer.request``).
    """

    requests: int
    per_seconds: float
    daily: int | None = None
    budgets: tuple[Budget, ...] = ()
    daily_reset_timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """What a destination can do with one kind of operation."""

    max_batch_size: int
    idempotent: bool = True
    per_record_results: bool = True


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Everything the framework needs to drive a connector, declared without I/O."""

    streams: tuple[str, ...] = ()
    operations: Mapping[str, OperationSpec] = field(default_factory=dict)
    rate_limit: RateLimit | None = None
    # Streams whose records :meth:`Connector.fetch` reads by key (optional; a webhook names the people).
    fetchable: tuple[str, ...] = ()

    @property
    def is_source(self) -> bool:
        return bool(self.streams)

    @property
    def is_destination(self) -> bool:
        return bool(self.operations)


class ConnectorConfig(BaseModel):
    """Base for each connector's settings model. Secret fields are ``SecretStr``; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @staticmethod
    def http_base_url(value: str) -> str:
        """For a ``base_url`` validator: an http(s) URL without a trailing slash, or a clear error."""
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @staticmethod
    def field_map(defaults: Mapping[str, str], given: Any, allowed: frozenset[str] | None, *, what: str,
                  target: str, check: Callable[[str, Any], None] | None = None) -> dict[str, str]:
        """For a field-map validator (canonical field -> vendor field): ``given`` merged over ``defaults``.

        ``allowed`` lists the canonical names that may be mapped (``None``: any); ``check(name, value)``
        raises ``ValueError`` for a vendor name it refuses (default: a non-empty string)."""
        if given is None:
            return dict(defaults)
        if not isinstance(given, dict):
            raise ValueError(f"must be a table of {what} field -> {target}")
        unknown = sorted(set(given) - allowed) if allowed is not None else []
        if unknown:
            raise ValueError(f"unknown {what} field(s) {unknown}; known: {sorted(allowed or ())}")
        for name, value in given.items():
            if check is not None:
                check(name, value)
            elif not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name!r} must map to a non-empty {target} name")
        return {**defaults, **given}


class Connector(ABC):
    """Base of every connector. Sub-classes set the class variables and implement the I/O methods."""

    name: ClassVar[str]
    contract_version: ClassVar[int] = CONTRACT_VERSION
    config_model: ClassVar[type[ConnectorConfig]]
    capabilities: ClassVar[Capabilities]

    def __init__(self, config: ConnectorConfig, http: HttpLayer) -> None:
        self.config = config
        self.http = http

    @classmethod
    def client_base_url(cls, config: ConnectorConfig) -> str:
        """Where the framework points the HTTP client (default: the config's ``base_url``)."""
        return str(getattr(config, "base_url", ""))

    @classmethod
    def rate_limit_for(cls, config: ConnectorConfig) -> RateLimit | None:
        """The request budget for this account: the config's, when it has one, else the declared one."""
        configured = getattr(config, "rate_limit", None)
        if callable(configured):
            limit = configured()
            if isinstance(limit, RateLimit):
                return limit
        return cls.capabilities.rate_limit

    @classmethod
    def client_headers(cls, config: ConnectorConfig) -> dict[str, str]:
        """Headers the framework sets on the client (authentication, API version). No I/O."""
        return {}

    @abstractmethod
    async def check(self) -> None:
        """Make one cheap authenticated call; raise :class:`FixConfiguration` on bad credentials."""

    def pull(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        """Yield pages of ``stream`` changed since ``cursor`` (``None``: from the beginning).

        Sources implement this as an ``async def`` generator.
        """
        raise GiveUp(f"{self.name} is not a source", connector=self.name)

    def fetch(self, stream: str, keys: Sequence[str]) -> AsyncIterator[Page]:
        """Optional (declared in ``capabilities.fetchable``): yield pages holding the records of ``stream``
        named by ``keys`` — the source's own ids, read now, however long ago they changed.

        The pages carry no cursor (``cursor=None``): a read by key says nothing about what else changed, so
        the framework moves no cursor. Keys the source does not know (deleted, merged) are left out, not
        raised; batching to the vendor's limit is the connector's job. Sources implement this as an
        ``async def`` generator.
        """
        raise GiveUp(f"{self.name} cannot read {stream} by key", connector=self.name)

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        """Write one batch (never larger than the operation's ``max_batch_size``); one outcome per record."""
        raise GiveUp(f"{self.name} is not a destination", connector=self.name)

    def payload_keys(self, operation: str) -> frozenset[str] | None:
        """The payload keys this configured connector writes for ``operation``; ``None``: all it is given.

        No I/O. A connector whose field map can leave an operation's keys unmapped (``update_account`` on a
        CRM without the account score fields) says which are mapped; the framework plans nothing for an
        operation whose keys are all unmapped (an empty set) and says why in the run report.
        """
        return None

    async def lookup(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        """For non-idempotent operations: find objects already created under these idempotency keys.

        Returns ACKNOWLEDGED (with ``remote_id``) for found keys and UNKNOWN for the rest.
        """
        return [RecordOutcome(r.idempotency_key, Outcome.UNKNOWN) for r in records]


# --------------------------------------------------------------------------------------------------
# Errors, by what the caller does next


class LeadrelayError(Exception):
    """Base of every error leadrelay raises on purpose."""


class ConnectorError(LeadrelayError):
    """A whole request failed. Carries the connector's name and the vendor's message (never a secret)."""

    def __init__(self, message: str, *, connector: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.connector = connector
        self.status = status

    def __str__(self) -> str:
        where = f"{self.connector}: " if self.connector else ""
        code = f" (HTTP {self.status})" if self.status else ""
        return f"{where}{self.message}{code}"


class RetryLater(ConnectorError):
    """Transient: try again, after ``retry_after`` seconds when the vendor said so.

    ``rate_limited`` marks waits imposed by the vendor's rate limit, which do not use up a record's
    retry budget.
    """

    def __init__(
        self,
        message: str,
        *,
        connector: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(message, connector=connector, status=status)
        self.retry_after = retry_after
        self.rate_limited = rate_limited


class QuotaExhausted(RetryLater):
    """A daily (or other long-window) quota is spent: end the run cleanly; resume after ``retry_after``
    seconds, that is at ``resets_at`` when the quota's reset time is known."""

    def __init__(
        self,
        message: str,
        *,
        connector: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        rate_limited: bool = False,
        resets_at: datetime | None = None,
    ) -> None:
        super().__init__(
            message, connector=connector, status=status, retry_after=retry_after, rate_limited=rate_limited
        )
        self.resets_at = resets_at


class FixConfiguration(ConnectorError):
    """Credentials, scopes or settings are wrong; retrying will not help until a person acts.

    By default the destination's whole delivery stops for the run (bad credentials fail everything). With
    ``operation_only`` only the operation that raised it waits (a custom field missing for one operation —
    the account score fields — must not hold back lead writes); its records stay queued either way.
    """

    def __init__(self, message: str, *, connector: str | None = None, status: int | None = None,
                 operation_only: bool = False) -> None:
        super().__init__(message, connector=connector, status=status)
        self.operation_only = operation_only


class OutcomeUnknown(RetryLater):
    """The request may have reached the destination but no answer came back (a read timeout, a reset).

    Safe to resend for idempotent operations; for the others the framework looks the keys up first.
    """


class GiveUp(ConnectorError):
    """The records in this request cannot be written as they are (a malformed request, say)."""


__all__ = [
    "ACCOUNT_SCORE_KEYS",
    "CONTRACT_VERSION",
    "MAPPABLE_ACCOUNT_FIELDS",
    "MAPPABLE_LEAD_FIELDS",
    "OPTIONAL_SCORE_KEYS",
    "Account",
    "Activity",
    "ActivityType",
    "Budget",
    "Capabilities",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "ConsentChange",
    "ConsentStatus",
    "FixConfiguration",
    "GiveUp",
    "Lead",
    "LeadrelayError",
    "OperationSpec",
    "Opportunity",
    "Outcome",
    "OutcomeUnknown",
    "Page",
    "Quarantined",
    "QuotaExhausted",
    "RateLimit",
    "Record",
    "RecordOutcome",
    "RetryLater",
    "Scalar",
    "WriteRecord",
    "without_unmapped",
]
