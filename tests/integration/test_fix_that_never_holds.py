"""An alert that keeps firing because the fix never holds, against a real ``recovery
serve``: Alertmanager sends it again and again, the step runs and its verify always
fails. The cooldown bounds the attempts (3 per window; a short window here), the
runbook's degraded mode goes on, the engine's own alerts say so to its Alertmanager (a
test HTTP server that keeps what it is sent), and no step runs again until the window
has passed since the first attempt: the record shows the deferral, the step's own trace
counts the runs."""

from __future__ import annotations

import time

import httpx

from tests.support.alert_receiver import AlertReceiver
from tests.support.service import GRACE, store_rows, wait_for

WINDOW = 20.0          # s: the cooldown's window in this test
MAX_ATTEMPTS = 3
BOUND = 90.0           # s: bound on the whole scenario's waits


def posting(served, until, every: float = 0.5) -> bool:
    """Post the alert every ``every`` s (as an Alertmanager repeating a firing alert)
    until ``until()`` holds or BOUND passes; whether it held."""
    body = {"version": "4", "status": "firing", "receiver": "recovery", "groupKey": "{}:{}",
            "alerts": [{"status": "firing", "startsAt": "2026-01-01T00:00:00Z",
                        "labels": {"alertname": "LoopDown", "instance": "cache-1"},
                        "fingerprint": "loop-cache-1"}]}
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        answer = httpx.post(served.url + "/api/v1/alerts", json=body, timeout=10,
                            headers={"Authorization": f"Bearer {served.token}"})
        assert answer.status_code == 200, answer.text
        if until():
            return True
        time.sleep(every)
    return False


def test_a_fix_that_never_holds_is_tried_three_times_per_window_and_degrades(
        serve, engine_env, tmp_path):
    trace = tmp_path / "trace.log"
    engine_env.runbook("loop", f"""
        match: ['alertname="LoopDown"']
        target: "{{{{ labels.instance }}}}"
        strategies:
          - name: fix
            action: test.touch
            with: {{path: "{tmp_path / 'touched'}", trace: "{trace}"}}
        verify: {{action: test.fail, interval: 0.1s, deadline: 0.3s}}
        degraded_mode: {{name: test_down, when: exhausted}}
        cooldown: {{max_attempts: {MAX_ATTEMPTS}, window: {WINDOW:g}s, after_failure: 0s}}
    """)

    def executions() -> list[str]:
        return trace.read_text().splitlines() if trace.exists() else []

    def runs() -> list:
        return store_rows(served.home, "SELECT status, started_at, gate, reason FROM runs "
                                       "WHERE runbook = 'loop' ORDER BY started_at")

    def deferred() -> list:
        return [r for r in runs() if r["status"] == "deferred" and r["gate"] == "cooldown"]

    with AlertReceiver() as alertmanager:
        engine_env.write_config(
            alertmanagers=f'["{alertmanager.url}"]',
            alertmanager="{notify_interval: 1s, timeout: 1s, when_unreachable: allow}",
            webhook=f"{{workers: 1, http_workers: 1, shutdown_grace: {GRACE}s, "
                    "graceful_timeout: 2s, repeat_signal_after: 1s}")
        served = serve().start()
        try:
            served.wait_ready()
            # keeps firing: three attempts, then the cooldown holds the next one back
            assert posting(served, lambda: len(executions()) >= MAX_ATTEMPTS and deferred()), (
                executions(), [dict(r) for r in runs()], served.stderr()[-3000:])
            assert len(executions()) == MAX_ATTEMPTS
            held = deferred()[0]
            assert f"{MAX_ATTEMPTS} attempts on cache-1" in held["reason"]

            # every attempt failed its verify: the incidents failed, the degraded mode is on
            incidents = store_rows(served.home, "SELECT state FROM incidents "
                                                "WHERE runbook = 'loop' ORDER BY opened_at")
            assert [r["state"] for r in incidents][:MAX_ATTEMPTS] == ["failed"] * MAX_ATTEMPTS
            modes = store_rows(served.home, "SELECT mode, target FROM degraded")
            assert ("test_down", "cache-1") in [(r["mode"], r["target"]) for r in modes]

            # ... and its Alertmanager is told: exhausted, degraded
            def told() -> set[str]:
                return {a["labels"]["alertname"] for batch in alertmanager.engine_posts()
                        for a in batch}
            assert wait_for(lambda: {"RecoveryExhausted", "RecoveryDegradedMode"} <= told(),
                            30), told()

            # still firing: the next run only once the window has passed since the first
            assert posting(served, lambda: len(executions()) > MAX_ATTEMPTS), (
                executions(), [dict(r) for r in runs()])
            started = [r["started_at"] for r in runs() if r["status"] != "deferred"]
            assert len(started) == MAX_ATTEMPTS + 1 == len(executions()), [
                dict(r) for r in runs()]
            assert started[MAX_ATTEMPTS] >= started[0] + WINDOW
            assert held["started_at"] < started[0] + WINDOW       # held back within it
        finally:
            served.terminate()
