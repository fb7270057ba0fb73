"""Records to columns and rows to records, the same way for every table."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import fields
from typing import Any, TypeVar

from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.records import Attempt, RunRecord

T = TypeVar("T")

_JSON_FIELDS = {"labels", "plan", "detail", "payload", "context"}
_JSON_LISTS = {"fingerprints", "hosts"}
_BOOL_FIELDS = {"check_mode", "forced", "manual"}


def row_to(cls: type[T], row: sqlite3.Row) -> T:
    """The record ``cls`` (a dataclass) of ``row``: the columns it has, decoded."""
    keys = row.keys()
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in keys:
            continue
        value = row[f.name]
        if f.name in _JSON_FIELDS:
            value = json.loads(value) if value else {}
        elif f.name in _JSON_LISTS:
            value = json.loads(value) if value else []
        elif f.name == "count" and cls is RunRecord:
            value = 1 if value is None else value   # a row from before counts existed
        elif f.name in _BOOL_FIELDS:
            value = bool(value)
        elif f.name == "state":
            value = IncidentState(value)
        elif f.name == "status" and cls is RunRecord:
            value = RunStatus(value)
        elif f.name == "outcome" and cls is Attempt:
            value = AttemptOutcome(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def to_column(name: str, value: Any) -> Any:
    """The value of field ``name`` as it is stored."""
    if name in _JSON_FIELDS:
        return json.dumps(value or {})
    if name in _JSON_LISTS:
        return json.dumps(list(value or []))
    if isinstance(value, (IncidentState, RunStatus, AttemptOutcome)):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def columns(obj: Any) -> dict[str, Any]:
    """Every field of the record ``obj``, as stored."""
    return {f.name: to_column(f.name, getattr(obj, f.name)) for f in fields(obj)}


def parts(values: list[Any], size: int) -> Iterator[list[Any]]:
    """``values`` in slices of at most ``size`` (bound parameters of one statement)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]
