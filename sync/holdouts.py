"""Deterministic holdouts: who is kept back as control, the record of it, and the lift it measures.

Per audience and per routing rule a share of people is held out: the decision is made and recorded
exactly as for everyone else, but not acted on (no owner change, no task, no audience add). Whether a
person is in control is a pure function of (rule, person, share) — a SHA-256 of the rule and the person,
never Python's ``hash()`` (salted per process) — so every run, every machine and every dry run agrees, and
raising the share only ever moves people *into* control. Different rules draw independent buckets, so a
person held out of one audience is no more likely to be held out of another.

:func:`lift` compares the conversion of treated and control with a confidence interval; it is what
``leadrelay report lift`` prints (the CLI, the store tables and the conversion query live elsewhere).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")

# Domain separation: a change of the scheme (or a deliberate re-draw of every holdout) bumps the version.
_DOMAIN = b"leadrelay-holdout/v1\x00"
_SCALE = 2.0**64


def bucket(person_key: str, rule_name: str) -> float:
    """The person's position in ``[0, 1)`` for this rule: uniform, stable, independent across rules."""
    rule = rule_name.encode()
    # The rule is length-prefixed, so ("ab", "c") and ("a", "bc") can never share a digest.
    digest = hashlib.sha256(_DOMAIN + len(rule).to_bytes(4, "big") + rule + person_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def _check_share(share: float) -> float:
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 <= share <= 1.0:
        raise ValueError(f"share: must be a number from 0 to 1, got {share!r}")
    return float(share)


def in_control(person_key: str, rule_name: str, share: float) -> bool:
    """Whether this person is held out of ``rule_name`` when ``share`` of everyone is (0 ≤ share ≤ 1)."""
    return bucket(person_key, rule_name) < _check_share(share)


@dataclass(frozen=True, slots=True)
class Decision(Generic[T]):
    """A decision about one person under one rule, recorded whether or not it is acted on.

    ``value`` is what was decided (a membership, a routing action); ``control`` marks the person as held
    out: the decision is logged and counted for lift, and nothing is sent anywhere.
    """

    rule: str
    subject: str
    value: T
    control: bool
    share: float
    decided_at: datetime

    @property
    def acted(self) -> bool:
        return not self.control


def decide(subject: str, rule: str, share: float, value: T, now: datetime) -> Decision[T]:
    """Wrap ``value`` as a recorded decision, marked control when the subject's bucket says so."""
    return Decision(rule, subject, value, in_control(subject, rule, share), float(share), now)


def acted_on(decisions: Iterable[Decision[T]]) -> list[T]:
    """The values of the decisions that are carried out (treated); control decisions are left out."""
    return [d.value for d in decisions if not d.control]


# --------------------------------------------------------------------------------------------------
# Lift


@dataclass(frozen=True, slots=True)
class Lift:
    """Treated against control: rates, their difference with a confidence interval, and relative lift.

    ``relative`` is treated ÷ control − 1 (``None`` while control has no conversion); its interval is the
    log-scale (Katz) interval of the rate ratio, ``None`` while either group has no conversion.
    """

    treated_rate: float
    control_rate: float
    difference: float
    difference_ci: tuple[float, float]
    relative: float | None
    relative_ci: tuple[float, float] | None
    confidence: float
    method: str = "Newcombe hybrid score (Wilson) interval; Katz log interval for the ratio"

    @property
    def significant(self) -> bool:
        """The difference's interval excludes zero."""
        low, high = self.difference_ci
        return low > 0.0 or high < 0.0


def _counts(converted: int, total: int, group: str) -> None:
    for name, value in ((f"{group}_converted", converted), (f"{group}_total", total)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: must be a whole number ≥ 0, got {value!r}")
    if total == 0:
        raise ValueError(f"{group}_total: no one in the {group} group yet; lift needs both groups")
    if converted > total:
        raise ValueError(f"{group}_converted: {converted} exceeds {group}_total {total}")


def lift(
    treated_converted: int,
    treated_total: int,
    control_converted: int,
    control_total: int,
    confidence: float = 0.95,
) -> Lift:
    """The difference in conversion rate (treated − control) with Newcombe's hybrid score interval.

    Newcombe (1998, method 10) combines each group's Wilson score interval; unlike the plain normal
    (Wald) interval it keeps close to nominal coverage for the small control groups and low conversion
    rates holdouts produce, and it stays inside [-1, 1] with zero conversions. The Wilson intervals and the
    ratio interval come from scipy (imported here, on use: ``leadrelay --help`` stays light).
    """
    _counts(treated_converted, treated_total, "treated")
    _counts(control_converted, control_total, "control")
    if isinstance(confidence, bool) or not isinstance(confidence, float | int) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be between 0 and 1 (exclusive), got {confidence!r}")
    from scipy.stats import binomtest
    from scipy.stats.contingency import relative_risk

    def wilson(k: int, n: int) -> tuple[float, float]:
        ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
        return float(ci.low), float(ci.high)

    p1, p2 = treated_converted / treated_total, control_converted / control_total
    (l1, u1), (l2, u2) = wilson(treated_converted, treated_total), wilson(control_converted, control_total)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    relative = p1 / p2 - 1.0 if p2 > 0 else None
    relative_ci = None
    if treated_converted > 0 and control_converted > 0:
        ratio = relative_risk(treated_converted, treated_total, control_converted, control_total)
        ci = ratio.confidence_interval(confidence_level=confidence)
        relative_ci = (float(ci.low) - 1.0, float(ci.high) - 1.0)
    return Lift(p1, p2, d, (max(-1.0, low), min(1.0, high)), relative, relative_ci, float(confidence))


__all__ = ["Decision", "Lift", "acted_on", "bucket", "decide", "in_control", "lift"]
