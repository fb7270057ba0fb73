"""Records as the Redis store keeps them: one JSON object per record, its fields as they
are (floats written so that they read back equal), and back."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any, TypeVar

from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.records import Attempt, RunRecord

T = TypeVar("T")


def encode(record: Any) -> str:
    """``record`` (a dataclass) as JSON; its enums (str) as their values."""
    return json.dumps(asdict(record))


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
