"""The examples under docs/examples/ are what operators copy: every shipped runbook has
Prometheus alert rules that pass ``promtool check rules`` and their own ``promtool test
rules``; the Alertmanager configuration passes ``amtool check-config`` and routes every
one of those alerts to the engine; and the shipped runbook matches each of them with a
failure type one of its strategies handles."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from engine.routing import match_runbook
from engine.runbook_loader import load_runbooks

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
ALERTMANAGER = EXAMPLES / "alertmanager.yml"
SHIPPED = sorted(p.stem for p in (ROOT / "runbooks").glob("*.yml"))

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool missing (Debian package `prometheus`)")
needs_amtool = pytest.mark.skipif(shutil.which("amtool") is None,
                                  reason="amtool missing (Debian `prometheus-alertmanager`)")


def rules_of(component: str) -> list[dict]:
    doc = yaml.safe_load((EXAMPLES / f"{component}-rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def example_labels(rule: dict) -> dict[str, str]:
    """The labels an alert of this rule carries, with an instance as exporters set it."""
    return {"alertname": rule["alert"], "instance": "cache-1.example:9121",
            **{k: str(v) for k, v in (rule.get("labels") or {}).items()}}


def test_the_shipped_components_are_the_four_of_the_design():
    assert SHIPPED == ["chromadb", "openwebui", "redis", "system"]


@needs_promtool
@pytest.mark.parametrize("component", SHIPPED)
def test_each_runbook_has_rules_that_promtool_checks_and_tests(component):
    rules, tests = EXAMPLES / f"{component}-rules.yml", EXAMPLES / f"{component}-rules.test.yml"
    assert rules.is_file() and tests.is_file()
    assert rules_of(component), f"{rules.name} has no alerting rule"
    for argv in (["promtool", "check", "rules", str(rules)],
                 ["promtool", "test", "rules", str(tests)]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=EXAMPLES)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("component", SHIPPED)
def test_the_shipped_runbook_matches_every_example_alert(component):
    runbooks = load_runbooks(ROOT / "runbooks")
    for rule in rules_of(component):
        labels = example_labels(rule)
        runbook = match_runbook(runbooks, labels)
        assert runbook is not None and runbook.name == component, (rule["alert"], labels)
        failure = runbook.failure_type_of(labels)
        assert failure, f"{rule['alert']}: no failure type (label or failure_types)"
        handled = [s.name for s in runbook.strategies if not s.when or failure in s.when]
        assert handled, f"{rule['alert']}: no strategy of {component} handles {failure}"


@needs_amtool
def test_the_alertmanager_example_passes_amtool():
    done = subprocess.run(["amtool", "check-config", str(ALERTMANAGER)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def routed_to(labels: dict[str, str]) -> set[str]:
    done = subprocess.run(["amtool", "config", "routes", "test",
                           f"--config.file={ALERTMANAGER}",
                           *(f"{k}={v}" for k, v in labels.items())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return {r.strip() for r in done.stdout.strip().split(",")}


@needs_amtool
@pytest.mark.parametrize("component", SHIPPED)
def test_alertmanager_routes_every_example_alert_to_the_engine_and_to_people(component):
    for rule in rules_of(component):
        assert routed_to(example_labels(rule)) == {"infra-recovery", "on-call"}, rule["alert"]


@needs_amtool
def test_the_engines_own_alerts_never_go_back_to_the_engine():
    own = {"alertname": "RecoveryExhausted", "severity": "critical",
           "source": "infra-recovery", "component": "redis", "target": "cache-1"}
    assert routed_to(own) == {"on-call"}
