"""Metrics are read from the store: given these incidents, /metrics says exactly this.

A tiny ``demo`` runbook (actions from ``tests/support/engine_actions.py``) is driven through
``open_incident`` + ``advance`` on four inventory hosts: web-1 recovers, web-2 fails
(exhausted: degraded mode on, failure cooldown), web-3 is refused by a kill switch,
web-2 again is deferred by the cooldown, web-4 parks for approval.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from engine.config import load_config
from engine.context import EngineContext
from engine.records import Switch, new_id
from engine.reporting.metrics import StoreCollector, registry_for, render_json, render_text
from tests.support.examples import engine_rules
from tests.support.metrics_scenario import (
    drive_scenario,
    write_config,
)
from tests.support.paths import ROOT


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def ctx(config_file: Path):
    context = EngineContext(load_config(config_file, environ={}))
    store = context.store  # some tests swap in a broken one
    yield context
    store.close()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]


# -- given these incidents, the exposition says exactly this --------------------------------


def test_exposition_reports_outcomes_gates_and_state(ctx: EngineContext) -> None:
    drive_scenario(ctx)
    ctx.store.enqueue_alerts([("k1", {"labels": {}}), ("k2", {"labels": {}})])
    now = time.time()
    ctx.store.set_value("worker_heartbeat", {"host:1": now - 30, "host:2": now - 2})

    text = render_text(ctx)
    lines = set(text.splitlines())  # prometheus_client sorts labels by name
    for line in [
        'infra_recovery_store_up 1.0',
        'infra_recovery_attempts_total{component="demo",outcome="succeeded",strategy="first"} 1.0',
        'infra_recovery_attempts_total{component="demo",outcome="failed",strategy="broken"} 1.0',
        'infra_recovery_attempts_total{component="demo",outcome="refused",strategy="first"} 1.0',
        'infra_recovery_attempts_total{component="demo",outcome="deferred",strategy="broken"} 1.0',
        'infra_recovery_duration_seconds_bucket{component="demo",le="+Inf",strategy="first"} 1.0',
        'infra_recovery_duration_seconds_count{component="demo",strategy="first"} 1.0',
        'infra_recovery_duration_seconds_count{component="demo",strategy="broken"} 1.0',
        'infra_recovery_cooldown_active{component="demo",target="web-1"} 0.0',
        'infra_recovery_cooldown_active{component="demo",target="web-2"} 1.0',
        'infra_degraded_mode_active{mode="demo_unavailable"} 1.0',
        'infra_degraded_mode_active{mode="other_mode"} 0.0',
        'infra_recovery_disabled{component="*"} 0.0',
        'infra_recovery_disabled{component="demo"} 0.0',
        'infra_recovery_disabled_targets{component="demo"} 1.0',
        'infra_recovery_pending_approvals 1.0',
        'infra_recovery_intake_queue_depth 2.0',
        'infra_recovery_open_incidents{component="demo"} 2.0',
    ]:
        assert line in lines, f"{line!r} not in:\n{text}"

    parsed = samples(text)
    # Refused and deferred runs never executed: counted, but no duration observed.
    attempts = {labels for name, labels in parsed if name == "infra_recovery_attempts_total"}
    assert len(attempts) == 4
    # Cooldown series only for targets that had an attempt (web-3 was refused, web-4 parked).
    cooling = {dict(labels)["target"] for name, labels in parsed
               if name == "infra_recovery_cooldown_active"}
    assert cooling == {"web-1", "web-2"}
    # The histogram: cumulative buckets in order, +Inf last and equal to the count.
    buckets = [(float(dict(labels)["le"]), v) for (name, labels), v in parsed.items()
               if name == "infra_recovery_duration_seconds_bucket"
               and dict(labels)["strategy"] == "first"]
    counts = [v for _, v in sorted(buckets)]
    assert counts == sorted(counts) and sorted(buckets)[-1] == (float("inf"), 1.0)
    assert 0.0 <= value(parsed, "infra_recovery_duration_seconds_sum",
                        component="demo", strategy="first") < 5.0
    assert 0.0 <= value(parsed, "infra_recovery_intake_oldest_age_seconds") < 60.0
    assert 0.0 <= value(parsed, "infra_recovery_pending_approval_oldest_age_seconds") < 60.0
    assert 1.5 <= value(parsed, "infra_recovery_worker_heartbeat_age_seconds") < 30.0


def test_global_kill_switch_disables_every_component(ctx: EngineContext) -> None:
    ctx.store.add_switch(Switch(id=new_id("sw"), component=None, target=None, until=None,
                                created_at=time.time()))
    parsed = samples(render_text(ctx))
    assert value(parsed, "infra_recovery_disabled", component="*") == 1.0
    assert value(parsed, "infra_recovery_disabled", component="demo") == 1.0
    # An expired switch covers nothing.
    ctx.store.remove_switches(None, None)
    ctx.store.add_switch(Switch(id=new_id("sw"), component="demo", target=None,
                                until=time.time() - 1, created_at=time.time() - 10))
    parsed = samples(render_text(ctx))
    assert value(parsed, "infra_recovery_disabled", component="demo") == 0.0


def test_no_heartbeat_no_series_and_an_empty_store_still_answers(ctx: EngineContext) -> None:
    data = render_json(ctx)
    assert "infra_recovery_worker_heartbeat_age_seconds" not in data
    assert data["infra_recovery_store_up"] == [{"labels": {}, "value": 1.0}]
    assert data["infra_recovery_attempts_total"] == []
    assert data["infra_recovery_intake_queue_depth"] == [{"labels": {}, "value": 0.0}]
    assert data["infra_recovery_open_incidents"] == [
        {"labels": {"component": "demo"}, "value": 0.0}]


def test_json_has_the_same_numbers_as_the_text(ctx: EngineContext) -> None:
    drive_scenario(ctx)
    data = render_json(ctx)
    parsed = samples(render_text(ctx))
    for row in data["infra_recovery_attempts_total"]:
        assert value(parsed, "infra_recovery_attempts_total", **row["labels"]) == row["value"]
    [first] = [h for h in data["infra_recovery_duration_seconds"]
               if h["labels"] == {"component": "demo", "strategy": "first"}]
    assert first["count"] == 1.0 and first["buckets"]["+Inf"] == 1.0
    assert list(first["buckets"])[-1] == "+Inf"
    assert json.loads(json.dumps(data)) == data


# -- a broken store is a value, not an exception -----------------------------------------


def test_store_gone_gives_store_up_zero(ctx: EngineContext) -> None:
    drive_scenario(ctx)
    ctx.store.close()
    shutil.rmtree(ctx.config.home)
    text = render_text(ctx)  # must not raise
    parsed = samples(text)
    assert parsed == {("infra_recovery_store_up", frozenset()): 0.0}
    assert render_json(ctx) == {"infra_recovery_store_up": [{"labels": {}, "value": 0.0}]}


def test_any_store_error_gives_store_up_zero(ctx: EngineContext) -> None:
    class Exploding:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise RuntimeError(f"{name}: disk on fire")
            return fail

    ctx.store = Exploding()
    families = list(StoreCollector(ctx).collect())
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [
        ("infra_recovery_store_up", [0.0])]


def test_registering_the_collector_does_not_read_the_store(ctx: EngineContext) -> None:
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"store.{name} read at registration")

    ctx.store = Untouchable()
    registry_for(ctx)
    described = CollectorRegistry(auto_describe=True)  # as the default REGISTRY is
    described.register(StoreCollector(ctx))  # describe(): names only, no scrape


def test_metrics_module_imports_only_prometheus_client() -> None:
    code = ("import sys; import engine.reporting.metrics; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('ansible', 'ansible_runner', 'redis', 'httpx', 'flask', 'chromadb', 'yaml', "
            "'jinja2', 'engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert ast.literal_eval(out) == ["engine", "engine.reporting", "engine.reporting.metrics"]


# -- the alert rules for the engine itself ----------------------------------------------------


def test_alert_rules_use_only_metrics_the_collector_exposes(ctx: EngineContext) -> None:
    from webhook.request_metrics import EXPOSED  # the webhook's own counters

    exposed = set(EXPOSED)
    for family in StoreCollector(ctx).describe():
        exposed.add(family.name)
        if family.type == "counter":
            exposed.add(family.name + "_total")
    for rule in engine_rules():
        assert rule["labels"]["source"] == "infra-recovery", rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        used = set(re.findall(r"\binfra_[a-z_]+", rule["expr"]))
        used |= set(re.findall(r"\binfra_[a-z_]+", json.dumps(rule["annotations"])))
        assert used and used <= exposed, (rule["alert"], used - exposed)
