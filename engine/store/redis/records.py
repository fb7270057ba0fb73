"""Records as the Redis store keeps them: one JSON object per record, its fields as they
are (floats written so that they read back equal), and back."""

from __future__ import annotations

import json
from dataclasses import fields
from functools import cache
from typing import Any, TypeVar

from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.records import Attempt, RunRecord

T = TypeVar("T")


def encode(record: Any) -> str:
    """``record`` (a dataclass) as JSON; its enums (str) as their values."""
    return json.dumps(field_values(record))


def field_values(record: Any) -> dict[str, Any]:
    """``record``'s fields by name, as ``dataclasses.asdict`` without its deep copy: the
    records hold plain values, dicts and lists, no records, and what is returned is
    written out at once (the copy was a good share of a decision's time)."""
    return {name: getattr(record, name) for name in _field_names(type(record))}


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def decode(cls: type[T], text: str | bytes) -> T:
    """The record ``cls`` of ``encode``'s JSON."""
    return from_dict(cls, json.loads(text))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """The record ``cls`` of its decoded JSON; keys it does not know (kept beside the
    fields, or written by a newer version) are left out."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in data.items() if k in known}
    if "state" in kwargs:
        kwargs["state"] = IncidentState(kwargs["state"])
    if "status" in kwargs and cls is RunRecord:
        kwargs["status"] = RunStatus(kwargs["status"])
    if "outcome" in kwargs and cls is Attempt:
        kwargs["outcome"] = AttemptOutcome(kwargs["outcome"])
    return cls(**kwargs)
