"""Everything the webhook accepts can be stored: what it answers 200 for is never dropped
by the worker afterwards.

A string the store cannot write (a lone UTF-16 surrogate from a JSON escape) or an
unbounded value in any field the engine keeps (the notification's receiver, groupKey,
externalURL, status; an alert's status, fingerprint, startsAt, endsAt, generatorURL,
labels and annotations) is refused at the door: a bad top-level field makes the
notification a 400, a bad alert inside a good notification is counted as ignored with
its reason logged. Any other character is data (a NUL too): accepted, kept verbatim and
processed. Either way the worker never records ``alert_failed``.
"""

from __future__ import annotations

import time

import pytest

from engine.alerts.intake import drain
from engine.config import load_config
from tests.support.alerts import good_alert, notification
from tests.support.storable import ALERT_FIELDS, REFUSED, RUNBOOK, hostile_body
from tests.support.webhook_app import Service
from webhook.notification import MAX_VALUE

# Hostile but storable: data, kept verbatim.
KEPT = {
    "NUL": ('"a\\u0000b"', "a\x00b"),
    "control characters and bidi": ('"\\u001b[31m\\u202e\\r\\n"', "\x1b[31m\u202e\r\n"),
    "astral plane": ('"\\ud83d\\udca5"', "\U0001f4a5"),
}
TOP_FIELDS = ("receiver", "groupKey", "externalURL", "status")




def _strings(value):
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pytest.fixture
def app(engine_env):
    engine_env.runbook("cache", RUNBOOK)
    return Service(load_config(engine_env.config_path))


def _accepted_alerts_are_all_processed(service: Service) -> None:
    """Drain the intake in this process, as a worker does: every journaled alert is
    processed and none fails."""
    ctx = service.ctx
    while drain(ctx, limit=100):
        pass
    assert ctx.store.intake_depth(time.time())[0] == 0
    failed = [e.detail for e in ctx.store.list_events(limit=1000) if e.action == "alert_failed"]
    assert failed == []


@pytest.mark.parametrize("name", REFUSED)
@pytest.mark.parametrize("field", TOP_FIELDS)
def test_an_unstorable_top_level_field_is_a_400_with_the_field_named(app, field, name):
    answer = app.post_alerts(hostile_body("top", field, REFUSED[name]))
    assert answer.status_code == 400, answer.json
    assert field in answer.json["error"]
    assert app.depth() == 0


@pytest.mark.parametrize("name", REFUSED)
@pytest.mark.parametrize("field", ALERT_FIELDS)
def test_an_unstorable_field_of_an_alert_is_ignored_never_dropped_later(app, field, name,
                                                                       caplog):
    answer = app.post_alerts(hostile_body("alert", field, REFUSED[name]))
    assert answer.status_code == 200, answer.json
    assert answer.json == {"accepted": 0, "duplicates": 0, "ignored": 1}
    assert any("ignored an alert" in r.getMessage() for r in caplog.records)
    _accepted_alerts_are_all_processed(app)


@pytest.mark.parametrize("name", KEPT)
@pytest.mark.parametrize("field", ("receiver", "groupKey", "externalURL", "fingerprint",
                                   "generatorURL", "label name", "label value",
                                   "annotation name", "annotation value"))
def test_hostile_but_storable_text_is_accepted_kept_verbatim_and_processed(app, field, name):
    text, decoded = KEPT[name]
    where = "top" if field in TOP_FIELDS else "alert"
    answer = app.post_alerts(hostile_body(where, field, text))
    assert answer.json == {"accepted": 1, "duplicates": 0, "ignored": 0}
    [item] = app.store.claim_intake("look", 10, 0.001)   # a lease that lapses at once
    assert any(decoded in text for text in _strings(item.payload))
    time.sleep(0.01)
    _accepted_alerts_are_all_processed(app)
    [delivery] = app.store.deliveries()
    assert delivery.incident_id is not None, delivery.outcome
    if field == "receiver":
        [incident] = app.store.list_incidents()
        assert incident.requested_by == f"alertmanager:{decoded}"


def test_long_but_bounded_values_in_every_field_are_accepted_and_processed(app):
    """The bound is not a refusal of ordinary long values: each field at its limit is
    journaled and the worker stores it."""
    long = "v" * MAX_VALUE
    alert = good_alert("cache-1")
    alert.update(generatorURL="http://prometheus/graph?g0.expr=" + "x" * 4000,
                 fingerprint="f" * 256)
    alert["labels"]["long"] = long
    alert["annotations"]["description"] = long
    body = notification(alert, receiver="r" * MAX_VALUE, groupKey="g" * MAX_VALUE,
                        externalURL="http://am/" + "u" * 4000)
    answer = app.post_alerts(body)
    assert answer.json == {"accepted": 1, "duplicates": 0, "ignored": 0}
    _accepted_alerts_are_all_processed(app)
    [incident] = app.store.list_incidents()
    assert incident.requested_by == "alertmanager:" + "r" * MAX_VALUE
