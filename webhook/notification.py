"""An Alertmanager webhook notification, parsed: pure functions, no Flask, no store.

Two levels of wrong (docs/operations.md): a body that is not a notification at all
(not JSON, not an object, no ``alerts`` list, wrong types at the top level, an unknown
``version``) raises ``NotANotification`` and the request gets a 400. A single bad alert
inside a good notification is skipped and counted in ``Parsed.ignored`` with its reason:
Alertmanager re-sends whole groups, so rejecting the group would block its good alerts
forever.

Shapes accepted: version 4 and 3, and the older ones without ``version``; an alert
without ``status`` takes the notification's; an empty or missing ``fingerprint`` falls
back to a hash of the sorted labels; unknown keys are ignored. Reasons never quote a
label value (they are logged), only label names, shortened.

Everything kept is storable (``engine.alerts.alert.unstorable``: bounded, no lone UTF-16
surrogate), so the worker never drops an alert the webhook answered 200 for: a
top-level field the engine keeps (``receiver``, ``groupKey``, ``externalURL``, and
``status``, the alerts' fallback) that is not is a ``NotANotification``; an alert field
(``status``, ``fingerprint``, ``startsAt``, ``endsAt``, ``generatorURL``, label and
annotation names and values) that is not is a ``BadAlert``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from engine.alerts.alert import (
    FIRING,
    MAX_TEXT,
    RESOLVED,
    Alert,
    fingerprint_of,
    normalize_time,
    unstorable,
)

MAX_FINGERPRINT = 256
MAX_ALERTS = 2000          # per notification: more are ignored (counted, with the reason)
MAX_LABELS = 100           # per alert
MAX_VALUE = MAX_TEXT       # characters in any kept string (label, annotation, URL...)
_STATUSES = (FIRING, RESOLVED)
_STRING_MAP = {"type": ["object", "null"], "additionalProperties": {"type": "string"}}

# The top level only; each alert is checked on its own (``parse_alert``).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["alerts"],
    "properties": {
        "version": {"enum": ["3", "4"]},
        "alerts": {"type": "array"},
        "status": {"type": ["string", "null"]},
        "receiver": {"type": ["string", "null"]},
        "groupKey": {"type": ["string", "null"]},
        "externalURL": {"type": ["string", "null"]},
        "truncatedAlerts": {"type": ["integer", "null"], "minimum": 0},
        "groupLabels": _STRING_MAP,
        "commonLabels": _STRING_MAP,
        "commonAnnotations": _STRING_MAP,
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class NotANotification(ValueError):
    """The body is not an Alertmanager notification at all; ``str()`` says why."""


class BadAlert(ValueError):
    """One alert of a notification cannot be used; ``str()`` says why (no label values)."""


@dataclass
class Parsed:
    alerts: list[Alert]
    ignored: list[str] = field(default_factory=list)   # one reason per skipped alert
    beyond_limit: int = 0                              # alerts past MAX_ALERTS, skipped

    @property
    def ignored_count(self) -> int:
        return len(self.ignored) + self.beyond_limit
    group_key: str = ""
    receiver: str = ""


def parse_notification(body: bytes | str) -> Parsed:
    """The alerts of a notification, and why any were skipped."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotANotification(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise NotANotification("body is not JSON: nested too deeply") from None
    except ValueError as exc:   # NaN, Infinity
        raise NotANotification(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise NotANotification(f"not an Alertmanager notification: the body is a JSON "
                               f"{_kind(data)}, not an object")
    if not _well_formed(data):   # jsonschema only for the doubtful: it says what is wrong
        error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(data))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "top level"
            raise NotANotification(f"not an Alertmanager notification: {where}: "
                                   f"{_short(error.message)}")
    for key in _KEPT_STRINGS:
        value = data.get(key)
        why = unstorable(value, MAX_VALUE) if isinstance(value, str) else None
        if why is not None:
            raise NotANotification(f"not an Alertmanager notification: {key} {why}")
    common = {
        "receiver": data.get("receiver") or "",
        "external_url": data.get("externalURL") or "",
        "group_key": data.get("groupKey") or "",
    }
    fallback = data.get("status")
    parsed = Parsed(alerts=[], group_key=common["group_key"], receiver=common["receiver"])
    for index, raw in enumerate(data["alerts"]):
        if index >= MAX_ALERTS:
            parsed.beyond_limit = len(data["alerts"]) - MAX_ALERTS
            break
        try:
            parsed.alerts.append(parse_alert(raw, fallback_status=fallback, **common))
        except BadAlert as exc:
            parsed.ignored.append(f"alert {index}: {exc}")
    return parsed


_OPTIONAL_STRINGS = ("status", "receiver", "groupKey", "externalURL")
_KEPT_STRINGS = _OPTIONAL_STRINGS   # each alert keeps them (status: as its fallback)
_STRING_MAPS = ("groupLabels", "commonLabels", "commonAnnotations")


def _well_formed(data: dict[str, Any]) -> bool:
    """True when ``data`` certainly passes ``SCHEMA`` (what Alertmanager sends): a few
    µs where jsonschema takes ~70. False is no verdict: jsonschema decides, and words
    the error. So this may be stricter than the schema, never looser."""
    if type(data.get("alerts")) is not list:
        return False
    if "version" in data and data["version"] not in ("3", "4"):
        return False
    for key in _OPTIONAL_STRINGS:
        value = data.get(key)
        if value is not None and type(value) is not str:
            return False
    truncated = data.get("truncatedAlerts")
    if truncated is not None and (type(truncated) is not int or truncated < 0):
        return False
    for key in _STRING_MAPS:
        value = data.get(key)
        if value is None:
            continue
        if type(value) is not dict:
            return False
        for item in value.values():
            if type(item) is not str:
                return False
    return True


def parse_alert(raw: Any, *, fallback_status: Any = None, receiver: str = "",
                external_url: str = "", group_key: str = "") -> Alert:
    """One alert object -> ``Alert``; ``BadAlert`` with the reason otherwise."""
    if not isinstance(raw, dict):
        raise BadAlert(f"an alert is an object, not a {_kind(raw)}")
    labels = _string_map(raw.get("labels"), "labels")
    if not labels:
        raise BadAlert("labels are missing or empty")
    if len(labels) > MAX_LABELS:
        raise BadAlert(f"more than {MAX_LABELS} labels")
    _storable_map(labels, "label")
    annotations = _string_map(raw.get("annotations"), "annotations")
    _storable_map(annotations, "annotation")

    status = raw.get("status")
    if status in (None, ""):
        status = fallback_status
        if status not in _STATUSES:
            raise BadAlert("no status (firing or resolved), on the alert or the notification")
    elif status not in _STATUSES:
        raise BadAlert(f"status must be 'firing' or 'resolved', not {_short(repr(status))}")

    starts_at = _time(raw, "startsAt")
    ends_at = _time(raw, "endsAt")
    fingerprint = raw.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise BadAlert(f"fingerprint must be a string, not a {_kind(fingerprint)}")
    if fingerprint:
        _storable(fingerprint, "fingerprint", MAX_FINGERPRINT)
    generator = raw.get("generatorURL")
    if generator is not None and not isinstance(generator, str):
        raise BadAlert(f"generatorURL must be a string, not a {_kind(generator)}")
    if generator:
        _storable(generator, "generatorURL")
    return Alert(
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint or fingerprint_of(labels),
        generator_url=generator or "",
        receiver=receiver,
        external_url=external_url,
        group_key=group_key,
    )


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadAlert(f"{what} must be an object of strings, not a {_kind(value)}")
    for key, item in value.items():
        if not key:
            raise BadAlert(f"{what}: an empty name")
        if not isinstance(item, str):
            raise BadAlert(f"{what}: the value of {_short(repr(key))} is a {_kind(item)}, "
                           "not a string")
    return dict(value)


def _time(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadAlert(f"{key} must be an RFC 3339 string, not a {_kind(value)}")
    if not value:
        return None
    try:
        return normalize_time(value)
    except (ValueError, OverflowError):
        raise BadAlert(f"{key} is not an RFC 3339 time: {_short(repr(value))}") from None


def _storable_map(values: dict[str, str], what: str) -> None:
    for name, value in values.items():   # words only for a refusal: this is the hot path
        why = unstorable(name, MAX_VALUE)
        if why is not None:
            raise BadAlert(f"a {what} name {why}")
        why = unstorable(value, MAX_VALUE)
        if why is not None:
            raise BadAlert(f"the value of {what} {_short(repr(name), 40)} {why}")


def _storable(text: str, what: str, limit: int = MAX_VALUE) -> None:
    """``BadAlert`` unless the store can keep ``text`` (engine.alerts.alert.unstorable)."""
    why = unstorable(text, limit)
    if why is not None:
        raise BadAlert(f"{what} {why}")


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
