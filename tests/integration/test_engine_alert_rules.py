"""The engine's own alert rules (docs/examples/recovery-engine-rules.yml), checked by
``promtool check rules`` and tested with promtool's PromQL unit tests: the rules on what
the store reports (store down, intake stuck, a runbook exhausted) and the webhook's rules
on its request counters. That the rules use only metrics the engine exposes is checked
in tests/unit/test_metrics.py."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.support.examples import ENGINE_RULES, engine_rules
from webhook.request_metrics import REQUESTS

# -- the rules on what the store reports --------------------------------------------------

@pytest.mark.requires("promtool")
def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(ENGINE_RULES)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # And the expressions mean what their names say (promtool's PromQL unit tests).
    expr = {rule["alert"]: rule["expr"] for rule in engine_rules()}
    attempts = "infra_recovery_attempts_total"
    tests = textwrap.dedent(f"""\
        rule_files: [{ENGINE_RULES}]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              - series: 'infra_recovery_store_up{{instance="a"}}'
                values: '1 1 0 0'
              - series: 'infra_recovery_intake_oldest_age_seconds{{instance="a"}}'
                values: '0 30 90 150'
              - series: '{attempts}{{component="redis",outcome="failed"}}'
                values: '0+1x40'
              - series: '{attempts}{{component="chromadb",outcome="failed"}}'
                values: '0+1x40'
              - series: '{attempts}{{component="chromadb",outcome="succeeded"}}'
                values: '0+1x40'
            promql_expr_test:
              - expr: {json.dumps(expr["RecoveryEngineStoreDown"])}
                eval_time: 3m
                exp_samples: [{{labels: '{{}}', value: 0}}]
              - expr: {json.dumps(expr["RecoveryEngineStoreDown"])}
                eval_time: 1m
                exp_samples: []
              - expr: {json.dumps(expr["RecoveryEngineQueueStuck"])}
                eval_time: 3m
                exp_samples: [{{labels: '{{}}', value: 150}}]
              - expr: {json.dumps(expr["RecoveryEngineQueueStuck"])}
                eval_time: 1m
                exp_samples: []
              - expr: {json.dumps(expr["RecoveryEngineRunbookExhausted"])}
                eval_time: 40m
                exp_samples: [{{labels: '{{component="redis"}}', value: 30}}]
        """)
    file = tmp_path / "engine-rules-test.yml"
    file.write_text(tests)
    tested = subprocess.run(["promtool", "test", "rules", str(file)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr


# -- the webhook's rules, on its request counters ----------------------------------------


@pytest.mark.requires("promtool")
def test_the_webhook_alert_rules_fire_when_they_should(tmp_path):
    rules = ENGINE_RULES
    expr = {rule["alert"]: rule["expr"] for group in yaml.safe_load(rules.read_text())["groups"]
            for rule in group["rules"]}
    total = REQUESTS + "_total"
    refusing = json.dumps(expr_description(rules, "RecoveryEngineWebhookRefusing"))
    tests = tmp_path / "tests.yml"
    tests.write_text(textwrap.dedent(f"""\
        rule_files: [{rules}]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              - series: '{total}{{instance="a",code="200"}}'
                values: '0+10x30'
              - series: '{total}{{instance="b",code="200"}}'
                values: '0+10x30'
              - series: '{total}{{instance="a",code="401"}}'
                values: '0x10 1+1x20'
              - series: '{total}{{instance="b",code="503"}}'
                values: '0x10 0+5x20'
            promql_expr_test:
              - expr: {json.dumps(expr["RecoveryEngineWebhookRefusing"])}
                eval_time: 9m
                exp_samples: []
              - expr: {json.dumps(expr["RecoveryEngineWebhookRefusing"])}
                eval_time: 25m
                exp_samples: [{{labels: '{{}}', value: 10}}]
              - expr: {json.dumps(expr["RecoveryEngineWebhookFailing"])}
                eval_time: 9m
                exp_samples: []
              - expr: {json.dumps(rounded(expr["RecoveryEngineWebhookFailing"]))}
                eval_time: 25m
                exp_samples: [{{labels: '{{}}', value: 1923}}]
            alert_rule_test:
              - alertname: RecoveryEngineWebhookRefusing
                eval_time: 25m
                exp_alerts:
                  - exp_labels: {{severity: warning, source: infra-recovery}}
                    exp_annotations:
                      summary: "Recovery webhook refused 10 notification(s) in 10m"
                      description: {refusing}
        """))
    checked = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def rounded(expr: str) -> str:
    """The ratio in units of 1/10,000: float sums of rates differ in the last bit with the
    order promtool adds the series in, and its comparison is exact."""
    return f"round(({expr.strip()}) * 10000)"


def expr_description(rules: Path, alert: str) -> str:
    for group in yaml.safe_load(rules.read_text())["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                return rule["annotations"]["description"]
    raise KeyError(alert)
