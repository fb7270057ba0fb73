"""The API's one blueprint (``/api/v1``), the pin to the set in force every request
keeps, and what its routes share: 400 for a query or body they cannot use (``BadQuery``),
404 wording, and the readers of query and body values."""

from __future__ import annotations

import re
import time
from typing import Any

from flask import Blueprint, jsonify, request

from engine.alerts.alert import normalize_time
from engine.durations import parse_duration
from webhook.state import pin_set_per_request

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_LIMIT = 1000
MAX_REASON = 2000
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_EPOCH = re.compile(r"\d+(\.\d+)?")


class BadQuery(ValueError):
    """A query or body the API cannot use: a 400 with this reason."""


@bp.errorhandler(BadQuery)
def _bad_query(exc: BadQuery):
    return jsonify(error=str(exc)), 400


pin_set_per_request(bp)


def not_found(what: str, ident: str):
    return jsonify(error=f"no {what} {ident[:64]!r}"), 404


# -- query and body values ------------------------------------------------------------


def json_body(example: str) -> dict[str, Any]:
    """The request's JSON object; ``BadQuery`` naming ``example`` otherwise (a body nested
    deeper than the decoder goes too: a RecursionError, which ``silent`` lets through)."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        body = None
    if not isinstance(body, dict):
        raise BadQuery(f"expected a JSON object: {example}")
    return body


def text_field(body: dict[str, Any], key: str, *, limit: int = 256,
               required: bool = False) -> str | None:
    """A string field of a body (None when absent and not ``required``)."""
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise BadQuery(f"{key}: required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadQuery(f"{key}: a string of at most {limit} characters")
    return value


def flag_field(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadQuery(f"{key}: true or false")
    return value


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """Epoch seconds (``1700000000``), a duration back from now (``24h``), or an RFC 3339
    time; None when absent."""
    if not value:
        return None
    text = value.strip()
    if _EPOCH.fullmatch(text):
        return float(text)
    if "T" in text:
        try:
            normalized = normalize_time(text)
        except ValueError:
            normalized = None
        if normalized:
            from datetime import datetime

            return datetime.fromisoformat(normalized.replace("Z", "+00:00")).timestamp()
    try:
        back = parse_duration(text)
    except ValueError:
        raise BadQuery(f"since: {text[:64]!r} is neither epoch seconds, a duration like "
                       "24h, nor an RFC 3339 time") from None
    return (time.time() if now is None else now) - back


def limit_of(value: str | None) -> int:
    if not value:
        return 100
    try:
        limit = int(value)
    except ValueError:
        raise BadQuery(f"limit: {value[:32]!r} is not a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit: between 1 and {MAX_LIMIT}")
    return limit
