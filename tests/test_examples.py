"""The examples under docs/examples/ are what operators copy: every shipped runbook has
Prometheus alert rules that pass ``promtool check rules`` and their own ``promtool test
rules``; the Alertmanager configuration passes ``amtool check-config`` and routes every
one of those alerts to the engine; and the shipped runbook matches each of them with a
failure type one of its strategies handles. The Prometheus configuration passes
``promtool check config`` and scrapes /metrics with a token from a file; the systemd
unit passes ``systemd-analyze verify`` and runs the service as a user of its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.alerts.routing import match_runbook
from engine.runbooks.loader import load_runbooks

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


PROMETHEUS = EXAMPLES / "prometheus.yml"
METRICS_TOKEN_FILE = "/etc/prometheus/recovery-metrics.token"


def test_the_prometheus_example_scrapes_the_engine_with_a_token_from_a_file():
    config = yaml.safe_load(PROMETHEUS.read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "infra-recovery"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9797"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": METRICS_TOKEN_FILE}
    assert "recovery-engine-rules.yml" in config["rule_files"]


@needs_promtool
def test_the_prometheus_example_passes_promtool(tmp_path):
    """promtool checks that the token file exists: the example's, put here."""
    for rules in EXAMPLES.glob("*-rules.yml"):
        shutil.copy(rules, tmp_path)
    token = tmp_path / "recovery-metrics.token"
    token.write_text("a-metrics-token-0123456789abcdef\n")
    token.chmod(0o600)
    copy = tmp_path / "prometheus.yml"
    copy.write_text(PROMETHEUS.read_text().replace(METRICS_TOKEN_FILE, str(token)))
    done = subprocess.run(["promtool", "check", "config", str(copy)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


UNIT = EXAMPLES / "infra-recovery.service"
needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze missing")


def unit_settings() -> dict[str, str]:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), value.strip())
    return settings


def test_the_systemd_unit_runs_the_service_as_a_dedicated_user_and_stops_it_in_order():
    unit = unit_settings()
    assert unit["User"] not in ("root", "0") and unit["Group"] not in ("root", "0")
    assert unit["ExecStart"].endswith("recovery serve")
    assert unit["KillMode"] == "mixed"           # SIGTERM to the parent alone
    assert int(unit["TimeoutStopSec"]) > 30 + 10  # shutdown_grace + graceful_timeout
    assert unit["StateDirectoryMode"] == "0700" and unit["UMask"] == "0077"


@needs_systemd_analyze
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    """verify checks that ExecStart exists: this checkout's ``recovery`` stands in."""
    recovery = Path(sys.executable).with_name("recovery")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/infra-recovery/.venv/bin/recovery",
                                             str(recovery)))
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), \
        done.stdout + done.stderr
