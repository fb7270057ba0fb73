"""The examples under docs/examples/, checked by the tools operators run them with: every
shipped runbook's Prometheus alert rules pass ``promtool check rules`` and their own
``promtool test rules``; the Alertmanager configuration passes ``amtool check-config`` and
routes every one of those alerts to the engine; the Prometheus configuration passes
``promtool check config``; the systemd unit passes ``systemd-analyze verify``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.examples import (
    ALERTMANAGER,
    METRICS_TOKEN_FILE,
    PROMETHEUS,
    SHIPPED,
    UNIT,
    example_labels,
    rules_of,
)
from tests.support.paths import EXAMPLES


@pytest.mark.requires("promtool")
@pytest.mark.parametrize("component", SHIPPED)
def test_each_runbook_has_rules_that_promtool_checks_and_tests(component):
    rules, tests = EXAMPLES / f"{component}-rules.yml", EXAMPLES / f"{component}-rules.test.yml"
    assert rules.is_file() and tests.is_file()
    assert rules_of(component), f"{rules.name} has no alerting rule"
    for argv in (["promtool", "check", "rules", str(rules)],
                 ["promtool", "test", "rules", str(tests)]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=EXAMPLES)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.requires("amtool")
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


@pytest.mark.requires("amtool")
@pytest.mark.parametrize("component", SHIPPED)
def test_alertmanager_routes_every_example_alert_to_the_engine_and_to_people(component):
    for rule in rules_of(component):
        assert routed_to(example_labels(rule)) == {"infra-recovery", "on-call"}, rule["alert"]


@pytest.mark.requires("amtool")
def test_the_engines_own_alerts_never_go_back_to_the_engine():
    own = {"alertname": "RecoveryExhausted", "severity": "critical",
           "source": "infra-recovery", "component": "redis", "target": "cache-1"}
    assert routed_to(own) == {"on-call"}


@pytest.mark.requires("promtool")
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


@pytest.mark.requires("systemd-analyze")
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
