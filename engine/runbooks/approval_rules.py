"""Approval by condition: a step asks a person first only when a fact of its plan says so.

A runbook step's ``approval:`` is either unconditional (``required``/``none``) or a small
declarative rule (docs/runbooks.md, "Approval"):

    approval:
      when:                                  # any condition that holds asks for approval
        - {fact: snapshot_bytes, over: 1GB}
        - {fact: changes_config, is_true: true}
      allow_self: false                      # who asked for the step cannot approve it

A condition names one fact and one comparison (``over``, ``under``, ``equals`` or
``is_true``) with a value of the fact's kind. The facts are what the step's action or
playbook declares it reports in its plan (check mode), each with a kind: ``bytes``,
``count``, ``number``, ``bool`` or ``text``. There is no expression language: nothing
an alert's labels carry is ever read as a rule.

When a fact cannot be determined (the plan failed, or did not report it), approval is
asked: a missing fact never lets a step through.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("bytes", "count", "number", "bool", "text")
TESTS = ("over", "under", "equals", "is_true")
# Which comparisons a kind takes: over/under only for quantities, is_true only for bools.
TESTS_OF_KIND: dict[str, tuple[str, ...]] = {
    "bytes": ("over", "under", "equals"), "count": ("over", "under", "equals"),
    "number": ("over", "under", "equals"), "bool": ("is_true", "equals"), "text": ("equals",),
}
# Decimal units as disks are sold (1 GB = 10^9 bytes), binary ones as `du -h` counts.
SIZE_UNITS: dict[str, int] = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.ASCII)
FACT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$", re.ASCII)


class ApprovalFormError(ValueError):
    """A bad ``approval:`` form: ``where`` is the key path below ``approval`` it is at."""

    def __init__(self, where: tuple[str | int, ...], reason: str) -> None:
        super().__init__(reason)
        self.where, self.reason = where, reason


@dataclass(frozen=True)
class FactCondition:
    """One condition: ``fact`` compared by ``test`` with ``value`` (of the fact's kind)."""

    fact: str
    test: str            # over | under | equals | is_true
    value: Any
    kind: str            # the fact's kind, as its action or playbook declares it

    def describe(self) -> str:
        """The rule in words: ``snapshot_bytes over 1 GB``."""
        if self.test == "is_true":
            return f"{self.fact} is {'true' if self.value else 'false'}"
        return f"{self.fact} {self.test} {show(self.value, self.kind)}"

    def holds(self, value: Any) -> bool:
        """Does the reported ``value`` meet the condition? ValueError when it is not of
        the fact's kind (then it cannot be judged, and the caller asks a person)."""
        seen = parse_value(value, self.kind, reported=True)
        if self.test == "over":
            return seen > self.value
        if self.test == "under":
            return seen < self.value
        return seen == self.value   # equals, is_true


@dataclass(frozen=True)
class ApprovalNeed:
    """Whether a step would ask for approval, and why, in words an approver reads."""

    asked: bool
    reason: str
    facts: dict[str, Any]


def approval_need(conditions: tuple[FactCondition, ...], facts: Mapping[str, Any] | None,
                  plan_error: str | None = None) -> ApprovalNeed:
    """Judge ``conditions`` against the facts a step's plan reported. Asked when any
    holds, or when one cannot be judged (no plan, a failed plan, a fact missing or of
    the wrong kind): fail safe."""
    reported = dict(facts or {})
    if facts is None or plan_error:
        why = plan_error or "the step's plan was not made"
        return ApprovalNeed(True, f"the facts could not be determined "
                            f"({why}); asking is the safe answer", reported)
    unmet: list[str] = []
    for condition in conditions:
        if condition.fact not in reported:
            return ApprovalNeed(True, f"the plan did not report "
                                f"{condition.fact} (rule: {condition.describe()}); asking "
                                "is the safe answer", reported)
        value = reported[condition.fact]
        try:
            held = condition.holds(value)
        except ValueError as exc:
            return ApprovalNeed(True, f"{condition.fact} = {value!r} cannot "
                                f"be judged ({exc}); asking is the safe answer", reported)
        shown = show(parse_value(value, condition.kind, reported=True), condition.kind)
        if held:
            return ApprovalNeed(True, f"{condition.fact} = {shown} (rule: "
                                f"{condition.describe()})", reported)
        unmet.append(f"{condition.fact} = {shown}, not {condition.describe()}")
    return ApprovalNeed(False, "; ".join(unmet), reported)   # callers say "not needed"


def parse_value(value: Any, kind: str, *, reported: bool = False) -> Any:
    """A condition's value (or, ``reported``, a plan's fact) as its kind's Python value.
    ValueError with the reason when it is not one."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"{value!r} is not true or false")
    if kind == "text":
        if isinstance(value, str):
            return value
        raise ValueError(f"{value!r} is not text")
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a {_kind_words(kind)}")
    if kind == "bytes":
        return parse_size(value)    # a negative size is none: never under a rule
    if kind == "count":
        if isinstance(value, int) and value >= 0:
            return value
        raise ValueError(f"{value!r} is not a count (a whole number, 0 or more)")
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    raise ValueError(f"{value!r} is not a number")


def parse_size(value: Any) -> int:
    """Bytes in ``value``: a whole number, or a string like ``1GB``, ``512MiB``, ``10 kb``
    (decimal units are powers of 1000, ``*iB`` of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip().lower())
        if match and match.group(2) in ("", *SIZE_UNITS):
            return int(float(match.group(1)) * SIZE_UNITS.get(match.group(2) or "b", 1))
    raise ValueError(f"{value!r} is not a size (use bytes, or e.g. 500MB, 1GB, 2GiB)")


def show(value: Any, kind: str) -> str:
    """A value as an approver reads it: sizes in the largest decimal unit that fits."""
    if kind == "bytes" and isinstance(value, int):
        for unit in ("TB", "GB", "MB", "KB"):
            size = SIZE_UNITS[unit.lower()]
            if value >= size and value % size == 0:     # a round figure, as rules say
                return f"{value // size} {unit}"
            if value >= size:
                return f"{value / size:.3g} {unit} ({value} bytes)"
        return f"{value} bytes"
    if kind == "bool":
        return "true" if value else "false"
    return str(value)


def parse_rule(raw: Any, reports: Mapping[str, str] | None
               ) -> tuple[bool, tuple[FactCondition, ...], bool | None]:
    """A step's ``approval:`` as (required, conditions, allow_self). ``reports``: the facts
    the step's action or playbook declares (name -> kind); None when not known here (then
    a fact's kind is taken from its comparison's value, and checked when the plan
    reports it). ApprovalFormError with the place and the reason for a bad form."""
    if raw in ("required", True):
        return True, (), None
    if raw in ("none", False):
        return False, (), None
    if not isinstance(raw, Mapping):
        raise ApprovalFormError((), f"{raw!r} is not an approval: use required, none, or a "
                                "mapping with when / required / allow_self")
    allow_self = raw.get("allow_self")
    if allow_self is not None and not isinstance(allow_self, bool):
        raise ApprovalFormError(("allow_self",), "allow_self is true or false")
    when = raw.get("when")
    required = raw.get("required", when is None)   # {allow_self: false} alone: required
    if not isinstance(required, bool):
        raise ApprovalFormError(("required",), "required is true or false")
    if when is None:
        return required, (), allow_self
    if required:
        raise ApprovalFormError(("required",), "required: true asks always; with `when` "
                                "the conditions decide: keep one of them")
    if not isinstance(when, list) or not when:
        raise ApprovalFormError(("when",), "when is a list of one or more conditions, e.g. "
                                "[{fact: snapshot_bytes, over: 1GB}]")
    conditions = tuple(_condition(item, ("when", i), reports) for i, item in enumerate(when))
    return False, conditions, allow_self


def _condition(item: Any, where: tuple[str | int, ...],
               reports: Mapping[str, str] | None) -> FactCondition:
    if not isinstance(item, Mapping):
        raise ApprovalFormError(where, "a condition is a mapping: {fact: NAME, over: VALUE}")
    unknown = [k for k in item if k not in ("fact", *TESTS)]
    if unknown:
        raise ApprovalFormError((*where, unknown[0]), f"unknown key {unknown[0]!r} in a "
                                f"condition (allowed: fact, {', '.join(TESTS)})")
    fact = item.get("fact")
    if not isinstance(fact, str) or not FACT_NAME.match(fact):
        raise ApprovalFormError((*where, "fact"), f"fact {fact!r} is not a fact name "
                                "(lower case letters, digits, _)")
    tests = [k for k in TESTS if k in item]
    if len(tests) != 1:
        raise ApprovalFormError(where, f"a condition has exactly one comparison of "
                                f"{', '.join(TESTS)} (here: {', '.join(tests) or 'none'})")
    test = tests[0]
    if reports is not None and fact not in reports:
        declared = ", ".join(f"{n} ({k})" for n, k in sorted(reports.items())) or "none"
        raise ApprovalFormError((*where, "fact"), f"the step does not report fact "
                                f"{fact!r} in its plan (it reports: {declared})")
    kind = reports[fact] if reports is not None else _kind_from(test, item[test])
    if kind not in KINDS:
        raise ApprovalFormError((*where, "fact"), f"fact {fact!r} is declared of kind "
                                f"{kind!r}, not one of {', '.join(KINDS)}")
    if test not in TESTS_OF_KIND[kind]:
        raise ApprovalFormError((*where, test), f"{fact} is a {_kind_words(kind)}: compare "
                                f"it with {' or '.join(TESTS_OF_KIND[kind])}, not {test}")
    try:
        value = parse_value(item[test], kind)
    except ValueError as exc:
        raise ApprovalFormError((*where, test), f"{fact} {test}: {exc}") from None
    return FactCondition(fact, test, value, kind)


def _kind_from(test: str, value: Any) -> str:
    """A fact's kind when no declaration is at hand: what its comparison's value is."""
    if test == "is_true" or isinstance(value, bool):
        return "bool"
    if isinstance(value, str) and test == "equals":
        return "text"
    if isinstance(value, str):
        return "bytes"
    return "number"


def _kind_words(kind: str) -> str:
    return {"bytes": "size in bytes", "bool": "true/false fact"}.get(kind, kind)
