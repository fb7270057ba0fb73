"""``recovery serve --log-format json``: every line every process of the service writes
(the parent, gunicorn's master and workers, the engine workers) is one JSON object, and
the lines of a run carry its run_id, its incident_id and its alert's fingerprint."""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest

from tests.support.alerts import alert_payload
from tests.support.service import history, post_alerts, touchy, wait_for, webhook_token

pytestmark = pytest.mark.slow


def lines(text: str) -> list[dict]:
    """Each stderr line as JSON; a line that is not one fails the test with it."""
    parsed = []
    for line in text.splitlines():
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    return parsed


def test_every_line_is_json_and_a_runs_lines_carry_its_ids(serve, engine_env, tmp_path):
    served, markers = touchy(lambda: serve("--log-format", "json", "-v"), engine_env,
                             tmp_path)
    payload = alert_payload(markers, "cache-1.example:9121")
    fingerprint = payload["alerts"][0]["fingerprint"]
    post_alerts(served, payload)
    assert wait_for(lambda: (markers / "cache-1.example:9121.marker").exists(), 30)
    [run] = wait_for(lambda: [r for r in history(served) if r["status"] == "succeeded"], 30)
    refused = httpx.post(served.url + "/api/v1/alerts", content=b"{not json", timeout=5,
                         headers={"Authorization": f"Bearer {webhook_token(served.home)}",
                                  "Content-Type": "application/json"})
    assert refused.status_code == 400           # the webhook says so in its log
    os.kill(served.proc.pid, signal.SIGHUP)     # a reload's report: captured, then said
    assert wait_for(lambda: "reload done" in served.stderr(), 60), served.stderr()[-2000:]
    assert served.terminate() == 0

    logged = lines(served.stderr())
    roles = {entry.get("role") for entry in logged}
    assert {"serve", "worker", "http"} <= roles, roles       # every process said something
    for entry in logged:
        assert {"time", "level", "logger", "message", "process"} <= set(entry), entry
        assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert any(e["logger"].startswith("webhook") and e.get("role") == "http"
               for e in logged), "no line of the webhook"
    assert any(e["message"].startswith("reload: ") for e in logged)
    of_run = [e for e in logged if e.get("run_id") == run["id"]]
    assert of_run, "no line of the run carries its run_id"
    for entry in of_run:
        assert entry["incident_id"] == run["incident_id"], entry
        assert entry["fingerprint"] == fingerprint, entry
    assert any(e.get("fingerprint") == fingerprint and "run_id" not in e
               for e in logged), "the alert's intake said nothing with its fingerprint"
