"""One Alertmanager alert as the engine keeps it: parsed once at the door, journaled,
and read back by the intake worker.

Alertmanager facts that shape it: delivery is at least once, so each alert
is deduplicated on (fingerprint, startsAt, status); the fingerprint can be empty or
missing (before 0.19), so it falls back to a hash of the sorted labels; a firing
alert's ``endsAt`` is ``0001-01-01T00:00:00Z``, read as "none"; timestamps come with
any offset and nanoseconds. Labels and annotations are data: plain str -> str.

Every string of an ``Alert`` is one the store can keep (``unstorable`` says why not): a
JSON escape can carry a lone UTF-16 surrogate, which no UTF-8 store can write; the
webhook refuses those at the door, so the worker never has to drop what was accepted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FIRING, RESOLVED = "firing", "resolved"
_ZERO_TIME = ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z")
MAX_TEXT = 16384          # characters in any one string the engine keeps from an alert


def unstorable(text: str, limit: int = MAX_TEXT) -> str | None:
    """Why ``text`` cannot be kept as it is (journal, store, run record, artifacts), in
    words that never quote it; None when it can: over ``limit`` characters, or a lone
    UTF-16 surrogate (valid in a JSON escape, not in UTF-8: the store's write fails).
    Any other character is data, NUL and control characters included (kept verbatim;
    SQLite and JSON keep them, and a playbook that chokes on one fails its run)."""
    if len(text) > limit:
        return f"longer than {limit} characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (a lone UTF-16 surrogate)"
    return None


def printable(text: str, limit: int = 200, *, quoted: bool = True) -> str:
    """Text that came with an alert (a label, a group key, a fingerprint), fit for one
    line of a log or a terminal: quoted with its control characters and escapes made
    visible (as Python's ``repr``: an escape sequence or a newline cannot act on the
    reader's terminal or forge a line), and bounded. ``quoted=False``: text with nothing
    to make visible is shown as it is."""
    text = str(text)
    shown = text if not quoted and text.isprintable() else repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def fingerprint_of(labels: dict[str, str]) -> str:
    """A stable fingerprint from the sorted labels (for alerts that carry none)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def normalize_time(value: str | None) -> str | None:
    """RFC 3339 with any offset and up to nanoseconds -> UTC ``...Z`` to the microsecond;
    the zero time (and None) -> None. Raises ValueError for anything else."""
    if value is None or value in _ZERO_TIME or value.startswith("0001-01-01T"):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    main, frac, offset = text, "", ""
    for sign in ("+", "-"):
        at = text.rfind(sign)
        if at > 10:  # past the date's own dashes
            main, offset = text[:at], text[at:]
            break
    if "." in main:
        main, frac = main.split(".", 1)
        frac = "." + (frac + "000000")[:6]  # Go gives nanoseconds; Python takes micro
    parsed = datetime.fromisoformat(main + frac + offset)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without an offset: {value!r}")
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timestamp_of(normalized: str | None) -> float | None:
    """Epoch seconds of a ``normalize_time`` value (None stays None)."""
    if not normalized:
        return None
    return datetime.fromisoformat(normalized.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Alert:
    status: str                                   # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: str | None = None                  # normalized UTC, or None when absent
    ends_at: str | None = None                    # None while firing
    fingerprint: str = ""                         # Alertmanager's, else fingerprint_of(labels)
    generator_url: str = ""
    receiver: str = ""
    external_url: str = ""
    group_key: str = ""

    @property
    def dedup_key(self) -> str:
        """(fingerprint, startsAt, status): repeats and HA duplicates collapse onto it;
        a re-fire after resolving has a new startsAt, hence a new key."""
        return f"{self.fingerprint}|{self.starts_at or '-'}|{self.status}"

    @property
    def firing(self) -> bool:
        return self.status == FIRING

    def to_payload(self) -> dict[str, Any]:
        """``dataclasses.asdict`` without its deep copy (22 µs an alert): the fields are
        strings, None, or a str -> str dict, copied one level down."""
        return {name: dict(value) if type(value) is dict else value
                for name in _FIELD_NAMES for value in (getattr(self, name),)}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Alert:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


_FIELD_NAMES = tuple(Alert.__dataclass_fields__)
