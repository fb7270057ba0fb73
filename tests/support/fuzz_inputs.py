"""Generated requests for the fuzzing of the HTTP API (tests/unit/test_fuzz.py and
bench/fuzz.py): hypothesis strategies for Alertmanager-shaped notifications, the same
with any part swapped for other JSON, bodies that are not JSON at all, and requests of
any route with any credential, query string and headers. ``send`` makes one through
Flask's test client and says what came back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.support.routes import PLACEHOLDERS, ROUTES
from tests.support.webhook_app import BY_ROLE, WEBHOOK

# Text an attacker would try in a label, an id or a query: templates, shell, traversal,
# control characters, a NUL, a lone surrogate's neighbours, very long runs.
HOSTILE = ["{{ lookup('pipe', 'id') }}", "{% for x in range(9) %}x{% endfor %}", "$(id)",
           "`id`", "; rm -rf /", "| cat /etc/passwd", "../../../../etc/passwd", "..\\..\\x",
           "%2e%2e%2f", "\x00", "\r\nX-Injected: 1", "\u202e\u200b", "🔥" * 50, "\ufeff",
           "' OR 1=1 --", "<script>alert(1)</script>", "${jndi:ldap://x}", "%s%n%x",
           "a" * 5000, "", " ", "null", "NaN", "1e309"]
NAMES = ["alertname", "instance", "job", "component", "severity", "service", "host", "__name__"]
TIMES = ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.123456789+02:00",
         "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "", "yesterday", "2024-13-45T99:99:99Z",
         "-1", "1714557600"]

text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40),
                 st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12)
labels = st.dictionaries(st.one_of(st.sampled_from(NAMES), text), text, max_size=6)


@st.composite
def alertmanager_alert(draw, wild: bool = True) -> dict[str, Any]:
    """One alert as Alertmanager sends it, every value drawn; ``wild``: its status, times
    and label names any text too, else only what Alertmanager sends (values still any)."""
    names = st.one_of(st.sampled_from(NAMES), text) if wild else st.sampled_from(NAMES)
    named = draw(st.dictionaries(names, text, max_size=6))
    named.setdefault("alertname", draw(st.sampled_from(["RedisDown", "DemoDown"]) | text))
    statuses, times = st.sampled_from(["firing", "resolved"]), st.sampled_from(TIMES[:4])
    return {"status": draw(statuses | text if wild else statuses),
            "labels": named, "annotations": draw(st.dictionaries(names, text, max_size=3)),
            "startsAt": draw(times | st.sampled_from(TIMES) | text if wild else times),
            "endsAt": draw(times | st.sampled_from(TIMES) | text if wild else times),
            "generatorURL": draw(text), "fingerprint": draw(text)}


@st.composite
def alertmanager_notification(draw, wild: bool = True) -> dict[str, Any]:
    """A notification of Alertmanager's shape (version 4) with drawn alerts."""
    alerts = draw(st.lists(alertmanager_alert(wild), min_size=0 if wild else 1, max_size=5))
    versions = st.sampled_from(["4", "3"])
    return {"version": draw(versions | text if wild else versions), "groupKey": draw(text),
            "truncatedAlerts": draw(st.integers(-5 if wild else 0, 5)),
            "status": draw(st.sampled_from(["firing", "resolved"]) | text),
            "receiver": draw(text), "groupLabels": draw(labels),
            "commonLabels": draw(labels), "commonAnnotations": draw(labels),
            "externalURL": draw(text), "alerts": alerts}


@st.composite
def mutated(draw, base: st.SearchStrategy) -> Any:
    """``base`` with one part (a top-level key, an alert, one of its keys) swapped for any
    JSON, or deleted."""
    body = draw(base)
    where = draw(st.sampled_from(["top", "alert", "alert-key", "none"]))
    swap = draw(any_json)
    delete = draw(st.booleans())
    if where == "top":
        key = draw(st.sampled_from(sorted(body)))
        body.pop(key) if delete else body.__setitem__(key, swap)
    elif where in ("alert", "alert-key") and body["alerts"]:
        i = draw(st.integers(0, len(body["alerts"]) - 1))
        if where == "alert":
            body["alerts"][i] = swap
        else:
            key = draw(st.sampled_from(sorted(body["alerts"][i])))
            body["alerts"][i].pop(key) if delete else body["alerts"][i].__setitem__(key, swap)
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


not_json = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"[", b'{"alerts": [', b"null", b"[]", b"1e999999", b"\xff\xfe",
                     b'{"alerts": "x"}', b'{"alerts": [1, 2]}', b'"\\ud800"',
                     b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000]),
    alertmanager_notification().map(lambda body: encode(body)[:-1]))     # cut short
alert_bodies = st.one_of(alertmanager_notification(wild=False).map(encode),
                         alertmanager_notification().map(encode),
                         mutated(alertmanager_notification()).map(encode),
                         any_json.map(encode), not_json)

CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain",
                 "application/x-www-form-urlencoded", "multipart/form-data", "",
                 "application/json; charset=latin-1", "*/*"]
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
authorization = st.one_of(
    st.sampled_from([None, f"Bearer {WEBHOOK}", f"Bearer {WEBHOOK[:-1]}x", "Bearer ",
                     "Basic", "Basic !!!", "Basic Og==", f"bearer {WEBHOOK}",
                     f"Bearer {WEBHOOK} {WEBHOOK}"]),
    st.sampled_from([t for t in BY_ROLE.values() if t]).map(lambda t: f"Bearer {t}"),
    header_text)
query = st.dictionaries(st.sampled_from(["limit", "offset", "state", "status", "since",
                                         "incident", "component", "runbook", "q"]) | header_text,
                        text | st.integers().map(str), max_size=4)


@dataclass
class Request:
    """One request to make: its method, path, query, headers and raw body."""

    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


@st.composite
def alert_posts(draw) -> Request:
    """A ``POST /api/v1/alerts``: a drawn body, content type and (three in four times)
    the right token."""
    headers = {}
    auth = f"Bearer {WEBHOOK}" if draw(st.integers(0, 3)) else draw(authorization)
    if auth is not None:
        headers["Authorization"] = auth
    headers["Content-Type"] = draw(st.sampled_from(CONTENT_TYPES))
    return Request("POST", "/api/v1/alerts", draw(alert_bodies), headers, draw(query))


ids = st.one_of(st.sampled_from(sorted(set(PLACEHOLDERS.values()))),
                st.text(alphabet=st.characters(blacklist_categories=["Cs"],
                                               blacklist_characters="/?#"),
                        min_size=1, max_size=30))


@st.composite
def route_calls(draw) -> Request:
    """A call of any route (the API's and the console's), ids drawn, any credential, a
    drawn query string and JSON (or not JSON) body."""
    method, path = draw(st.sampled_from(sorted(ROUTES)))
    for placeholder in PLACEHOLDERS:
        if placeholder in path:
            path = path.replace(placeholder, draw(ids))
    headers = {}
    token = BY_ROLE[draw(st.sampled_from(sorted(BY_ROLE)))]
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = b""
    if method in ("POST", "DELETE"):
        headers["Content-Type"] = draw(st.sampled_from(CONTENT_TYPES))
        body = draw(st.one_of(any_json.map(encode), not_json,
                              st.fixed_dictionaries({}, optional={
                                  "component": text, "runbook": text, "target": text,
                                  "force": any_json, "decision": text, "reason": text,
                                  "for": text, "scope": text, "lock": text,
                                  "extravars": any_json}).map(encode)))
    return Request(method, path, body, headers, draw(query))


def quoted_path(path: str) -> str:
    """The path as a client sends it: each character outside the safe set percent-encoded."""
    from urllib.parse import quote

    return quote(path, safe="/", errors="surrogatepass")


def send(client, request: Request):
    """Make ``request`` with Flask's test client; the response."""
    return client.open(quoted_path(request.path), method=request.method, data=request.body,
                       headers=request.headers, query_string=request.query)


def acceptable(request: Request, status: int) -> bool:
    """2xx, 3xx (the console's redirects to /login) and 4xx; a 503 only from /readyz (no
    engine worker has reported in a test: not ready is its answer, not a fault)."""
    if status == 503:
        return request.path == "/readyz"
    return status < 500
