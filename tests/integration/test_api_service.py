"""A run asked over HTTP on a real ``recovery serve``: ``POST /api/v1/recover`` with an
operator's token answers 202 once the gates let the step start, and the service's engine
worker process (not the http worker that answered) runs the python action to the end: the
action's trace names the worker's pid, and the run is recorded succeeded with its host's
outcome, read back over the API as a viewer would."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.support.service import wait_for


@pytest.mark.slow
def test_a_manual_run_over_http_runs_on_an_engine_worker_to_a_recorded_run(engine_env, serve):
    marker = engine_env.root / "touched"
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: touch, action: test.touch,
              with: {{path: "{marker}", trace: "{engine_env.trace}"}}}}
    """)
    served = serve().start()
    served.wait_ready()
    operator = {"Authorization": "Bearer "
                + (served.home / "operator.token").read_text().strip()}
    added = subprocess.run([sys.executable, "-m", "engine", "token", "add", "vera", "--role",
                            "viewer", "--json"], env=served.environ(), capture_output=True,
                           text=True, timeout=60)
    viewer = {"Authorization": f"Bearer {json.loads(added.stdout)['token']}"}

    answer = httpx.post(served.url + "/api/v1/recover", headers=operator, timeout=60,
                        json={"component": "demo", "target": "cache-1"})
    assert answer.status_code == 202, answer.text
    run_id, incident_id = answer.json()["run_id"], answer.json()["incident_id"]
    assert run_id and answer.json()["outcome"] in ("running", "succeeded")

    def ended():
        run = httpx.get(f"{served.url}/api/v1/runs/{run_id}", headers=viewer, timeout=30).json()
        return run if run["run"]["status"] != "running" else None

    run = wait_for(ended, timeout=60)
    assert run is not None, "the run did not end within 60 s"
    assert run["run"]["status"] == "succeeded", run["run"]
    assert run["run"]["requested_by"] == "operator" and run["run"]["trigger"] == "manual"
    assert [(h["host"], h["outcome"]) for h in run["hosts"]] == [("cache-1", "ok")]
    assert marker.exists()
    [traced] = [line for line in engine_env.traced() if line.startswith("touch cache-1")]
    workers = {p.pid for p in served.engine_workers()}
    assert int(traced.split()[-1]) in workers   # the engine worker ran it, not gunicorn
    incident = httpx.get(f"{served.url}/api/v1/incidents/{incident_id}", headers=viewer,
                         timeout=30).json()
    assert incident["incident"]["state"] == "recovered"
    assert [r["id"] for r in incident["runs"]] == [run_id]
