"""The examples under docs/examples/ are what operators copy: the shipped runbook matches
each example alert with a failure type one of its strategies handles; the Prometheus
configuration scrapes /metrics with a token from a file; the systemd unit runs the
service as a user of its own. The tools' own checks of the same files are in
tests/integration/test_examples_tools.py."""

from __future__ import annotations

import pytest
import yaml

from engine.alerts.routing import match_runbook
from engine.runbooks.loader import load_runbooks
from tests.support.examples import (
    METRICS_TOKEN_FILE,
    PROMETHEUS,
    SHIPPED,
    UNIT,
    example_labels,
    rules_of,
)
from tests.support.paths import EXAMPLES, ROOT


def test_the_shipped_components_are_the_four_of_the_design():
    assert SHIPPED == ["chromadb", "openwebui", "redis", "system"]


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


def test_the_prometheus_example_scrapes_the_engine_with_a_token_from_a_file():
    config = yaml.safe_load(PROMETHEUS.read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "infra-recovery"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9797"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": METRICS_TOKEN_FILE}
    assert "recovery-engine-rules.yml" in config["rule_files"]


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


def test_the_readme_alert_is_a_notification_the_system_runbook_cleans_up_after():
    """The README posts docs/examples/alert-disk-full.json to the running service: it must
    be a notification the webhook takes whole, routed to the system runbook's disk_full
    (whose first step is disk_cleanup), at the route the webhook serves."""
    from webhook.notification import parse_notification

    example = EXAMPLES / "alert-disk-full.json"
    parsed = parse_notification(example.read_bytes())
    assert parsed.ignored == [] and len(parsed.alerts) == 1
    [alert] = parsed.alerts
    runbook = match_runbook(load_runbooks(ROOT / "runbooks"), alert.labels)
    assert runbook is not None and runbook.name == "system"
    failure = runbook.failure_type_of(alert.labels)
    assert failure == "disk_full"
    assert [s.name for s in runbook.strategies if not s.when or failure in s.when][0] == \
        "disk_cleanup"
    readme = (ROOT / "README.md").read_text()
    assert "--data @docs/examples/alert-disk-full.json http://127.0.0.1:9797/api/v1/alerts" \
        in readme
    assert "/api/v1/alerts" in (ROOT / "webhook" / "alerts.py").read_text()
