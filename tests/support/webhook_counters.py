"""The webhook's request counters read back from an exposition (``/metrics`` or the
app's own), for the tests of webhook.request_metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from webhook.request_metrics import ALERTS, DURATION, REQUESTS

LIMIT = 2048      # webhook.max_body_bytes in these tests


def scrape(text: str) -> dict:
    """{family name: {(sample name, sorted label items): value}}; a family twice fails."""
    out: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in out, f"family {family.name} twice in one exposition"
        out[family.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value
                            for s in family.samples}
    return out


def codes(families: dict) -> dict[str, float]:
    return {dict(labels)["code"]: v for (name, labels), v in families[REQUESTS].items()
            if name == REQUESTS + "_total"}


def results(families: dict) -> dict[str, float]:
    return {dict(labels)["result"]: v for (name, labels), v in families[ALERTS].items()
            if name == ALERTS + "_total"}


def observed(families: dict) -> float:
    return families[DURATION][(DURATION + "_count", ())]
