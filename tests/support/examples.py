"""The examples under docs/examples/ that operators copy, and what the tests read from them."""

from __future__ import annotations

import yaml

from tests.support.paths import EXAMPLES, ROOT

ALERTMANAGER = EXAMPLES / "alertmanager.yml"
PROMETHEUS = EXAMPLES / "prometheus.yml"
METRICS_TOKEN_FILE = "/etc/prometheus/recovery-metrics.token"   # named in PROMETHEUS, never read
UNIT = EXAMPLES / "infra-recovery.service"
ENGINE_RULES = EXAMPLES / "recovery-engine-rules.yml"      # the engine's own alerts
SHIPPED = sorted(p.stem for p in (ROOT / "runbooks").glob("*.yml"))


def rules_of(component: str) -> list[dict]:
    doc = yaml.safe_load((EXAMPLES / f"{component}-rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def example_labels(rule: dict) -> dict[str, str]:
    """The labels an alert of this rule carries, with an instance as exporters set it."""
    return {"alertname": rule["alert"], "instance": "cache-1.example:9121",
            **{k: str(v) for k, v in (rule.get("labels") or {}).items()}}


def engine_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ENGINE_RULES.read_text())["groups"]
            for rule in group["rules"]]
