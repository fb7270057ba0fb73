"""The openwebui runbook against the OpenWebUI stand-in (tests/support/openwebui_standin.py)
as an operator and Alertmanager run it: ``recovery recover`` in a subprocess switches the
default model to the next healthy fallback, and an alert posted to a real ``recovery
serve`` does the same. The embedded actions are tested in this process in
tests/unit/test_actions_openwebui.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.support.openwebui_fixtures import (
    MODE,
    PASSWORD,
    assert_no_secret_under,
)
from tests.support.service import Served, free_port, wait_for

pytestmark = pytest.mark.slow

# -- model_failover (remote) --------------------------------------------------------------

def test_model_failover_from_the_cli_switches_the_default_to_the_next_healthy_model(
        openwebui_env, webui):
    webui.model_down("llama3", "mistral")
    environ = openwebui_env.env()
    check = subprocess.run(
        [sys.executable, "-m", "engine", "recover", "-c", "openwebui", "-s", "model_failover",
         "-t", "webui-1", "--check"], env=environ, capture_output=True, text=True,
        timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "would ask the default model 'llama3'" in check.stdout
    assert webui.default_models == "llama3"                   # --check changed nothing
    done = subprocess.run(
        [sys.executable, "-m", "engine", "recover", "-c", "openwebui", "-s", "model_failover",
         "-t", "webui-1"], env=environ, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert webui.default_models == "phi3"
    assert webui.model_order == ["llama3", "mistral", "phi3"]  # kept as it was
    assert "default model switched from 'llama3'" in done.stdout
    ctx = openwebui_env.context()
    [run] = [r for r in ctx.store.query_runs(component="openwebui") if not r.check_mode]
    record = json.loads((openwebui_env.home / "artifacts" / run.id / "run.json").read_text())
    assert record["result"]["previous"] == "llama3" and record["result"]["default"] == "phi3"
    assert record["result"]["tried"]["gone-model"] == "not offered by this OpenWebUI"
    assert "HTTP 500" in record["result"]["tried"]["mistral"]
    assert_no_secret_under(openwebui_env.home, PASSWORD, *webui.issued)


def test_an_alert_through_the_service_switches_the_default_model(openwebui_env, webui,
                                                                 tmp_path):
    webui.model_down("llama3")
    served = Served(openwebui_env, tmp_path / "home", free_port(), "--workers", "1")
    try:
        served.start()
        served.wait_ready()
        alert = {"labels": {"alertname": "OpenWebUIModelUnavailable", "severity": "critical",
                            "instance": "webui-1:8080", "component": "openwebui"},
                 "annotations": {}, "startsAt": "2024-05-01T03:00:00Z",
                 "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "owui-e2e",
                 "generatorURL": "", "status": "firing"}
        body = {"version": "4", "groupKey": "{}:{}", "status": "firing",
                "receiver": "infra-recovery", "groupLabels": {}, "commonLabels": {},
                "commonAnnotations": {}, "externalURL": "", "truncatedAlerts": 0,
                "alerts": [alert]}
        answer = httpx.post(served.url + "/api/v1/alerts", json=body, timeout=5,
                            headers={"Authorization": f"Bearer {served.token}"})
        assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
        assert wait_for(lambda: webui.default_models == "mistral", 30), served.stderr()[-2000:]
        operator = (served.home / "operator.token").read_text().strip()
        degraded = wait_for(lambda: (r := served.get(
            "/api/v1/degraded", headers={"Authorization": f"Bearer {operator}"})) is not None
            and r.status_code == 200 and r.json(), 10)
        assert MODE in [m["mode"] for m in degraded["modes"]]
        assert MODE not in degraded["active"]
    finally:
        served.terminate()
    assert_no_secret_under(served.home, PASSWORD, *webui.issued)
