"""The embedded API reads what the status shows: a degraded mode's capability matrix and
reasons; and ``trigger`` takes the strategy and the context a health check passes."""

from __future__ import annotations

import json
import time
from dataclasses import FrozenInstanceError

import pytest

from engine.lifecycle import IncidentState
from engine.records import DegradedReason

pytestmark = pytest.mark.both_backends

RUNBOOK = """
    strategies:
      - {{name: first, action: test.touch, with: {{path: "{root}/first-ran"}}}}
      - {{name: second, action: test.touch, with: {{path: "{root}/second-ran"}}}}
    verify: {{action: test.fail, interval: 0.05s, deadline: 0.2s}}
    degraded_mode: {{name: test_down}}
"""


@pytest.fixture
def app(engine_env):
    from engine import Recovery
    from engine.config import load_config

    engine_env.runbook("demo", RUNBOOK.format(root=engine_env.root))
    recovery = Recovery.from_config(load_config(engine_env.config_path))
    yield recovery
    recovery.close()


def test_a_mode_reads_as_the_status_shows_it_off_then_on_with_its_reason(app):
    off = app.degraded_mode("test_down")
    assert (off.active, off.configured, off.reasons) == (False, True, ())
    assert dict(off.capabilities) == {"feature": False}
    assert off.switches_off == ("feature",) and off.off_now == ()
    assert off.runbooks == ("demo",) and off.allows("feature")
    assert app.feature_on("feature") and not app.degraded("test_down")

    app.context.store.add_degraded(DegradedReason(
        mode="test_down", key="manual", manual=True, created_by="ops@example",
        reason="maintenance", since=time.time()))
    on = app.degraded_mode("test_down")
    assert on.active and on.manual and on.off_now == ("feature",)
    [reason] = on.reasons
    assert (reason.who, reason.manual, reason.reason) == ("ops@example", True, "maintenance")
    assert not on.allows("feature") and not app.feature_on("feature")
    assert app.degraded("test_down")            # the boolean, as before
    with pytest.raises(FrozenInstanceError):
        on.active = False                       # type: ignore[misc]


def test_an_exhausted_incident_turns_its_mode_on_with_incident_and_target(app):
    incident = app.trigger("demo", target="cache-1").wait(20)
    assert incident.state == IncidentState.FAILED       # exhausted: its mode goes on
    [reason] = app.degraded_mode("test_down").reasons
    assert (reason.incident_id, reason.target, reason.manual) == (incident.id, "cache-1", False)
    assert reason.since > 0


def test_unknown_names_are_lookup_errors_not_answers(app):
    with pytest.raises(LookupError, match="test_down"):
        app.degraded_mode("test_dwon")
    with pytest.raises(LookupError, match="featur"):
        app.feature_on("featur")


def test_a_strategy_restriction_runs_that_strategy_alone_and_records_the_context(
        app, engine_env):
    context = {"check": "ping", "latency_ms": 5012, "labels": {"x": "{{ 7*7 }}"}}
    handle = app.trigger("demo", "timeout", target="cache-1", strategy="second",
                         context=context)
    incident = handle.wait(20)
    assert incident.state == IncidentState.FAILED       # exhausted: its mode goes on
    assert (engine_env.root / "second-ran").exists()
    assert not (engine_env.root / "first-ran").exists()        # never ran
    assert incident.context == context                         # as given, kept as data
    [run] = app.context.store.query_runs(incident_id=incident.id)
    run_json = app.context.artifacts_dir / run.id / "run.json"
    assert json.loads(run_json.read_text())["context"] == context


def _deep(levels: int) -> list:
    nested: list = []
    for _ in range(levels):
        nested = [nested]
    return nested


DEEP = _deep(5000)        # small as JSON, deeper than the encoder's recursion


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"strategy": "thrid"}, "no strategy 'thrid' (it has: first, second)"),
    ({"context": {1: "x"}}, "keys must be strings"),
    ({"context": {"at": object()}}, "JSON data"),
    ({"context": {"x": float("nan")}}, "JSON data"),
    ({"context": ["not", "a", "mapping"]}, "mapping"),
    ({"context": {"big": "x" * 20000}}, "more than 16384"),
    ({"context": {"deep": DEEP}}, "nested too deep"),
])
def test_a_bad_strategy_or_context_is_refused_before_anything_opens(app, kwargs, said):
    with pytest.raises(ValueError, match=said.replace("(", r"\(").replace(")", r"\)")):
        app.trigger("demo", target="cache-1", **kwargs)
    assert app.context.store.latest_incident("demo", "cache-1") is None
