"""Kill switches and --force end to end, real components only: a real Alertmanager
posting to a real ``recovery serve``, the operator at the CLI (``recover --force``,
``disable``, ``enable``, ``status``, ``show``), the service's state read back through
the CLI and its SQLite store opened read-only (tests/test_alertmanager_e2e.py's
``stack``).

The runbook stands for Redis: one step that "restarts" it (creates a marker file and
traces it), a verify that passes at once, a cooldown of one attempt an hour.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.alertmanager import BINARY
from tests.service import wait_for
from tests.test_alertmanager_e2e import Stack, fingerprint, stack

pytestmark = pytest.mark.skipif(BINARY is None, reason="prometheus-alertmanager missing")

LABELS = {"alertname": "E2ERedisDown", "instance": "cache-1", "severity": "critical"}


def redis_runbook(env, tmp_path: Path) -> Path:
    """The runbook; returns the trace file its step appends to (one line a restart)."""
    trace = tmp_path / "restarts.log"
    env.runbook("cache", f"""
        match: [alertname="E2ERedisDown"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: restart, action: test.touch,
              with: {{path: "{tmp_path / 'restarted'}", trace: "{trace}"}}}}
        verify: {{action: test.ok, interval: 0.05s, deadline: 0.5s}}
        cooldown: {{max_attempts: 1, window: 1h}}
    """)
    return trace


def restarts(trace: Path) -> int:
    return len(trace.read_text().splitlines()) if trace.exists() else 0


def runs_of(s: Stack) -> list[dict]:
    """The runbook's runs, oldest first."""
    return [r for r in reversed(s.cli_json("history")) if r["runbook"] == "cache"]


def fire_again(s: Stack) -> str:
    """Redis dies again: the alert resolves in Alertmanager, the resolve is delivered,
    then it fires anew (a new startsAt, the same fingerprint). Returns the fingerprint."""
    fp = fingerprint(s.am, LABELS)
    s.am.resolve(LABELS)
    assert wait_for(lambda: any(k.endswith("|resolved") for k in s.journaled(fp)), 10), \
        "the resolve was never delivered"
    before = len(s.journaled(fp))
    s.am.fire(LABELS)
    assert wait_for(lambda: len(s.journaled(fp)) > before, 10), "the re-fire never arrived"
    assert fingerprint(s.am, LABELS) == fp
    s.settle()
    return fp


def test_a_forced_take_over_is_not_inherited_when_alertmanager_reopens_the_incident(
        engine_env, tmp_path):
    trace = redis_runbook(engine_env, tmp_path)
    with stack(engine_env, tmp_path) as s:
        done = s.cli("recover", "-c", "cache", "-t", "cache-1", "--as", "oncall")
        assert done.returncode == 0, done.stderr         # the cooldown's one attempt
        s.am.fire(LABELS)
        fp = fingerprint(s.am, LABELS)
        assert wait_for(lambda: [i for i in s.incidents("cache") if i["state"] == "open"],
                        15), s.served.stderr()[-3000:]   # deferred by the cooldown
        done = s.cli("recover", "-c", "cache", "-t", "cache-1", "--force", "--as", "cli:root")
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert "taken over" in done.stdout
        forced = runs_of(s)[-1]
        assert (forced["status"], forced["trigger"], forced["requested_by"],
                forced["forced"]) == ("succeeded", "manual", "cli:root", True)
        assert restarts(trace) == 2

        done = s.cli("disable", "--target", "cache-1", "--for", "10m", "--as", "cli:root")
        assert done.returncode == 0, done.stderr
        fire_again(s)
        assert wait_for(lambda: runs_of(s)[-1]["id"] != forced["id"], 15), \
            s.served.stderr()[-3000:]
        time.sleep(1.0)                                  # worker passes, repeats
        s.settle()
        latest = runs_of(s)[-1]
        assert restarts(trace) == 2, "the service restarted it under the kill switch"
        assert (latest["status"], latest["trigger"], latest["forced"], latest["fingerprint"]) \
            == ("refused", "alert", False, fp), latest
        assert latest["requested_by"].startswith("alertmanager:"), latest
        assert "auto-recovery disabled for target=cache-1" in latest["reason"]
        [incident] = [i for i in s.cli_json("incidents") if i["runbook"] == "cache"
                      and i["fingerprint"] == fp]
        assert incident["id"] == latest["incident_id"]   # the one the operator took over
        assert (incident["state"], incident["forced"], incident["trigger"]) == \
            ("canceled", False, "alert")
