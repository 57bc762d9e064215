"""TOML -> validated settings.

Every key is checked on load; an error names the key path and what is wrong; unknown keys are refused.
Secrets are written as ``"${VAR}"`` (or ``"${VAR:-default}"``) and taken from the environment at load
time; connector settings mark them ``SecretStr`` so they are never printed, logged or stored. Connection
tables are validated by the connector's own config model: a plugin's options are treated as the built-ins'.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from connectors.base import ConnectorConfig, LeadrelayError

if TYPE_CHECKING:
    from sync.audiences import AudienceSpec
    from sync.consent import ConsentPolicy
    from sync.routing import RoutingSpec

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEFAULT_STORE_URL = "sqlite:///.leadrelay/leadrelay.db"


class ConfigError(LeadrelayError):
    """The configuration is wrong; the message lists each problem as ``key.path: what is wrong``."""

    def __init__(self, problems: list[str], *, source: str | None = None) -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n  " + "\n  ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(_Strict):
    url: str = DEFAULT_STORE_URL

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        return value


class RetryConfig(_Strict):
    attempts: int = Field(5, ge=1, le=50)
    initial_wait: float = Field(0.5, gt=0)
    max_wait: float = Field(30.0, gt=0)
    max_retry_after: float = Field(300.0, gt=0)
    timeout: float = Field(30.0, gt=0)


class BandThreshold(_Strict):
    name: str
    min_score: int = Field(ge=1, le=99)


class DriftSettings(_Strict):
    """PSI thresholds of the per-run drift check (score and top features against the training reference)."""

    warn: float = Field(0.1, gt=0)
    alert: float = Field(0.25, gt=0)
    min_rows: int = Field(100, ge=1)  # fewer leads scored in a run: PSI is noise, reported but never flagged

    @model_validator(mode="after")
    def _ordered(self) -> DriftSettings:
        if self.warn > self.alert:
            raise ValueError(f"warn ({self.warn}) must not be above alert ({self.alert})")
        return self


class AccountScoringSettings(_Strict):
    """``[scoring.account]``: an account model served beside the lead model (``leadrelay train --entity
    account``); its scores ride on each lead's score update as ``account_score``/``account_band``."""

    model_dir: str = ".leadrelay/models/account"
    horizon_days: int = Field(30, ge=1, le=365)
    # entity = "account" (the default here); validated by scoring.PredictiveQuestion like [scoring.question].
    question: dict[str, Any] = Field(default_factory=dict)


class ScoringSettings(_Strict):
    model_dir: str = ".leadrelay/models/lead"
    horizon_days: int = Field(30, ge=1, le=365)
    cutoff_step_days: int = Field(7, ge=1, le=90)
    min_examples: int = Field(200, ge=10)
    min_positives: int = Field(20, ge=5)
    batch_size: int = Field(2_000, ge=1, le=1_000_000)
    rescore_after_hours: float = Field(24.0, gt=0)
    features: dict[str, Any] = Field(default_factory=dict)  # intent features; validated by scoring.FeatureSpec
    fit: dict[str, Any] = Field(default_factory=dict)       # fit features and the ICP; likewise
    timing: dict[str, Any] = Field(default_factory=dict)    # renewal proximity and usage decay; likewise
    # The predictive question (entity, population, target, assuming); validated by scoring.PredictiveQuestion.
    question: dict[str, Any] = Field(default_factory=dict)
    drift: DriftSettings = DriftSettings()
    shadow: bool = True  # score a registered challenger beside the champion each cycle (stored, never pushed)
    account: AccountScoringSettings | None = None  # [scoring.account]: the account model, when configured

    def feature_mapping(self) -> dict[str, Any]:
        """The ``scoring.FeatureSpec`` mapping these settings describe (empty: the defaults)."""
        return {k: v for k, v in (("features", self.features), ("fit", self.fit), ("timing", self.timing)) if v}


class FollowUpSettings(_Strict):
    """One follow-up task per lead, created once, when its score first reaches ``min_score``."""

    min_score: int = Field(80, ge=1, le=99)
    subject: str = Field("Follow up: {name} scored {score}", min_length=1, max_length=250)
    body: str = "leadrelay scored this lead {score} (band {band}). Top reasons: {reasons}."
    due_hours: float = Field(24.0, gt=0, le=24 * 90)
    priority: Literal["LOW", "MEDIUM", "HIGH"] = "HIGH"

    @field_validator("subject", "body")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        try:
            value.format(name="", score=0, band="", reasons="", email="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"unknown placeholder or bad braces ({exc}); use {{name}}, {{score}}, {{band}}, "
                             "{reasons} or {email}") from None
        return value


class PipelineSettings(_Strict):
    source: str
    destination: str
    streams: tuple[str, ...] = ("accounts", "opportunities", "leads", "activities", "consent")
    interval_seconds: int = Field(900, ge=10)
    # `leadrelay run`: a cron expression instead of the interval ("m h dom mon dow", or six fields with
    # seconds first); and an optional fast poll, an incremental cycle every N seconds in between.
    cron: str | None = None
    fast_poll_seconds: float | None = Field(None, ge=0.5)
    push_scores: bool = True
    min_score_change: int = Field(1, ge=0, le=98)
    activity_retention_days: int = Field(180, ge=1)
    follow_up: FollowUpSettings | None = None
    audiences: tuple[str, ...] = ()   # names of [audiences.*] tables this pipeline keeps
    routing: str | None = None        # name of the [routing.*] rule that routes this pipeline's leads
    # A lead field holding the rep's verdict (HubSpot hs_lead_status, Salesforce Status, or a canonical field
    # such as lifecycle_stage): each change is recorded as a `disposition` event, usable as a training label.
    disposition_field: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_follow_up(self) -> PipelineSettings:
        if self.routing is not None and self.follow_up is not None:
            raise ValueError("follow_up: routing creates the follow-up tasks; remove follow_up or routing")
        return self

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            cron_trigger(value)  # raises ValueError naming what is wrong
        return value

    @model_validator(mode="after")
    def _interval_or_cron(self) -> PipelineSettings:
        if self.cron is not None and "interval_seconds" in self.model_fields_set:
            raise ValueError("cron: give either cron or interval_seconds, not both")
        return self


CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")


def cron_trigger(expression: str, timezone: str = "UTC") -> Any:
    """An apscheduler CronTrigger from a crontab line (5 fields, or 6 with seconds first)."""
    from apscheduler.triggers.cron import CronTrigger

    parts = expression.split()
    if len(parts) not in (5, 6):
        raise ValueError(f"must have 5 fields (minute hour day month day_of_week) or 6 (seconds first), "
                         f"got {len(parts)}: {expression!r}")
    names = CRON_FIELDS if len(parts) == 5 else ("second", *CRON_FIELDS)
    try:
        return CronTrigger(**dict(zip(names, parts, strict=True)), timezone=timezone)
    except ValueError as exc:
        raise ValueError(f"not a valid cron expression {expression!r}: {exc}") from None


class DaemonSettings(_Strict):
    """`leadrelay run`: the operators' HTTP endpoint, this agent's identity and its pipeline leases."""

    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)  # 0: any free port (printed at start-up)
    agent_id: str | None = None              # default: host name and process id
    lease_seconds: float = Field(30.0, ge=1, le=3600)
    misfire_grace_seconds: int = Field(300, ge=1)
    stop_grace_seconds: float = Field(120.0, gt=0)  # SIGTERM: how long the batch in flight may take to finish
    # Webhook secrets by connection name, written as "${ENV}": HubSpot's app secret or a shared HMAC key.
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    public_url: str | None = None  # the base URL senders call, if a proxy sits in front (HubSpot signs it)
    # A webhook's cycle reads just the records it names (by id) when the source can, up to this many ids
    # coalesced into one cycle; more (or 0: always) and the cycle is an incremental pull instead.
    trigger_max_ids: int = Field(1000, ge=0)


class AlertSettings(_Strict):
    """Alerts on a change of state, posted to a Slack-compatible webhook (sync.alerts)."""

    webhook_url: SecretStr | None = None   # "${SLACK_WEBHOOK}": the URL is a credential, never logged
    rejected_threshold: int = Field(50, ge=1)          # dead-lettered + quarantined rows in one run
    history_runs: int = Field(10, ge=3, le=200)        # recent runs the record-count and duration medians use
    min_history_runs: int = Field(5, ge=2)             # fewer finished runs: no judgement yet
    volume_ratio: float = Field(3.0, gt=1)             # read > median × r or < median ÷ r is "far"
    volume_min_records: int = Field(100, ge=1)         # medians below this are too small to judge
    slow_ratio: float = Field(3.0, gt=1)               # a run longer than median × r ...
    slow_min_seconds: float = Field(60.0, ge=0)        # ... and longer than this is slow
    schema_min_records: int = Field(50, ge=1)          # records of a stream sampled before fields are judged
    timeout: float = Field(10.0, gt=0)

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # "${SLACK_WEBHOOK:-}" with the variable unset: alerts off

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")  # the value itself is never echoed
        return value


class ConnectionSettings(_Strict):
    """A named connection: the connector type, framework options, and the connector's own options."""

    type: str
    options: ConnectorConfig


class Settings(_Strict):
    store: StoreSettings = StoreSettings()
    retry: RetryConfig = RetryConfig()
    scoring: ScoringSettings = ScoringSettings()
    daemon: DaemonSettings = DaemonSettings()
    alerts: AlertSettings = AlertSettings()
    connections: dict[str, ConnectionSettings]
    pipelines: dict[str, PipelineSettings]
    # Decision tables, validated by their own modules in parse() (sync.consent, sync.audiences, sync.routing).
    consent: dict[str, Any] = Field(default_factory=dict)
    audiences: dict[str, dict[str, Any]] = Field(default_factory=dict)
    routing: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _pipelines_name_connections(self) -> Settings:
        problems = []
        for name, pipe in self.pipelines.items():
            for role in ("source", "destination"):
                target = getattr(pipe, role)
                if target not in self.connections:
                    problems.append(f"pipelines.{name}.{role}: no connection named {target!r}")
            problems += [f"pipelines.{name}.audiences: no audience named {a!r} (define [audiences.{a}])"
                         for a in pipe.audiences if a not in self.audiences]
            if pipe.routing is not None and pipe.routing not in self.routing:
                problems.append(f"pipelines.{name}.routing: no routing rule named {pipe.routing!r} "
                                f"(define [routing.{pipe.routing}])")
        problems += [f"daemon.webhook_secrets.{c}: no connection named {c!r}"
                     for c in self.daemon.webhook_secrets if c not in self.connections]
        for name, table in self.audiences.items():
            destination = table.get("destination")
            if isinstance(destination, str) and destination not in self.connections:
                problems.append(f"audiences.{name}.destination: no connection named {destination!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def consent_policy(self) -> ConsentPolicy:
        from sync.consent import ConsentPolicy

        return ConsentPolicy.from_mapping(self.consent)

    def audience(self, name: str) -> tuple[AudienceSpec, float]:
        """The audience's spec and its holdout share (the control share decided but never added)."""
        from sync.audiences import AudienceSpec

        table = dict(self.audiences[name])
        share = table.pop("holdout_share", 0.0)
        return AudienceSpec.from_mapping(name, table), share

    def routing_rule(self, name: str) -> RoutingSpec:
        from sync.routing import RoutingSpec

        return RoutingSpec.from_mapping(self.routing[name], name=name)


def _interpolate(value: Any, path: str, problems: list[str], env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            var, default = match.group(1), match.group(2)
            if var in env:
                return env[var]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {var} is not set")
            return ""
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else k, problems, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", problems, env) for i, v in enumerate(value)]
    return value


def _pydantic_problems(exc: ValidationError, prefix: str) -> list[str]:
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
        path = ".".join(p for p in (prefix, loc) if p)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        out.append(f"{path or '(top level)'}: {message}")
    return out


def parse(raw: Mapping[str, Any], *, env: Mapping[str, str] | None = None, source: str | None = None) -> Settings:
    """Validate a parsed TOML document; raise :class:`ConfigError` listing every problem found."""
    from connectors import registry

    problems: list[str] = []
    data = _interpolate(dict(raw), "", problems, os.environ if env is None else env)
    connections: dict[str, Any] = {}
    for name, table in (data.get("connections") or {}).items():
        path = f"connections.{name}"
        if not isinstance(table, dict):
            problems.append(f"{path}: must be a table")
            continue
        options = dict(table)
        kind = options.pop("type", None)
        if not isinstance(kind, str):
            problems.append(f"{path}.type: required key is missing (the connector to use, e.g. 'hubspot')")
            continue
        try:
            cls = registry.get(kind)
        except registry.UnknownConnector as exc:
            problems.append(f"{path}.type: {exc}")
            continue
        try:
            model = cls.config_model.model_validate(options)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, path))
            continue
        connections[name] = {"type": kind, "options": model}
    data["connections"] = connections
    if "pipelines" not in data:
        problems.append("pipelines: at least one pipeline is required")
    if problems:
        raise ConfigError(problems, source=source)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(exc, ""), source=source) from None
    from scoring.errors import FeatureSpecError
    from scoring.features import FeatureSpec

    try:
        spec = FeatureSpec.from_mapping(settings.scoring.feature_mapping())
    except FeatureSpecError as exc:
        raise ConfigError([f"scoring.{exc.path}: {exc.problem}"], source=source) from None
    if settings.scoring.question:
        from scoring.question import PredictiveQuestion

        try:
            question = PredictiveQuestion.from_mapping(settings.scoring.question, path="scoring.question")
        except FeatureSpecError as exc:
            raise ConfigError([f"{exc.path}: {exc.problem}"], source=source) from None
        if question.entity != "lead":
            # [scoring.question] is the lead model's; the account model has its own table.
            raise ConfigError([f"scoring.question.entity: {question.entity!r} belongs in "
                               "[scoring.account.question] (the account model); [scoring.question] is the lead "
                               "model's (use entity = \"lead\")"], source=source)
        if question.target.event in spec.usage_types:
            # Counting the target as usage would hand the model the outcome (build_examples refuses it too).
            at = spec.usage_types.index(question.target.event)
            raise ConfigError([f"scoring.timing.usage_types[{at}]: {question.target.event!r} is the "
                               "training target ([scoring.question] target.event); counting it would leak the "
                               "outcome"], source=source)
    account = settings.scoring.account
    if account is not None and account.question:
        from scoring.question import PredictiveQuestion

        try:
            asked = PredictiveQuestion.from_mapping({"entity": "account", **account.question},
                                                    path="scoring.account.question")
        except FeatureSpecError as exc:
            raise ConfigError([f"{exc.path}: {exc.problem}"], source=source) from None
        if asked.entity != "account":
            raise ConfigError([f"scoring.account.question.entity: must be \"account\" here, got "
                               f"{asked.entity!r}"], source=source)
    problems = _decision_problems(settings)
    if problems:
        raise ConfigError(problems, source=source)
    return settings


def _decision_problems(settings: Settings) -> list[str]:
    """Every problem of the [consent], [audiences.*] and [routing.*] tables, each with its key path."""
    from sync.audiences import AudienceSpecError
    from sync.consent import PolicyError
    from sync.routing import RoutingSpecError

    problems: list[str] = []
    try:
        settings.consent_policy()
    except PolicyError as exc:
        problems += [f"consent.{path}: {problem}" for path, problem in exc.problems]
    for name, table in settings.audiences.items():
        share = table.get("holdout_share", 0.0)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
            problems.append(f"audiences.{name}.holdout_share: must be a fraction from 0 up to (not including) 1, "
                            f"got {share!r}")
            continue
        try:
            settings.audience(name)
        except AudienceSpecError as exc:
            problems += [f"audiences.{name}.{path}: {problem}" for path, problem in exc.problems]
    for name in settings.routing:
        try:
            settings.routing_rule(name)
        except RoutingSpecError as exc:
            problems.append(f"routing.{name}.{exc}")
    return problems


def load(path: str | Path, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a TOML config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], source=str(file)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source=str(file)) from None
    return parse(raw, env=env, source=str(file))


__all__ = [
    "AccountScoringSettings",
    "AlertSettings",
    "ConfigError",
    "ConnectionSettings",
    "DaemonSettings",
    "DriftSettings",
    "PipelineSettings",
    "RetryConfig",
    "ScoringSettings",
    "Settings",
    "StoreSettings",
    "cron_trigger",
    "load",
    "parse",
]
