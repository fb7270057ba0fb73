"""Kill switches and --force end to end, real components only: a real Alertmanager
posting to a real ``recovery serve``, the operator at the CLI (``recover --force``,
``disable``, ``enable``, ``status``, ``show``), the service's state read back through
the CLI and its SQLite store opened read-only (tests/support/alertmanager_stack.py).

The runbook stands for Redis: one step that "restarts" it (creates a marker file and
traces it), a verify that passes at once, a cooldown of one attempt an hour.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.alertmanager_stack import Stack, fingerprint, stack
from tests.support.service import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.requires("alertmanager")]

LABELS = {"alertname": "E2ERedisDown", "instance": "cache-1", "severity": "critical"}


def redis_runbook(env, tmp_path: Path, *, attempts: int = 1, verify: str = "0.5s") -> Path:
    """The runbook (``attempts`` an hour; a verify window of ``verify`` after a fix);
    returns the trace file its step appends to (one line a restart)."""
    trace = tmp_path / "restarts.log"
    env.runbook("cache", f"""
        match: [alertname="E2ERedisDown"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: restart, action: test.touch,
              with: {{path: "{tmp_path / 'restarted'}", trace: "{trace}"}}}}
        verify: {{action: test.ok, interval: 0.05s, deadline: {verify}}}
        cooldown: {{max_attempts: {attempts}, window: 1h}}
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


def test_a_target_down_under_a_kill_switch_shows_in_status_and_enable_replays_it(
        engine_env, tmp_path):
    """Redis recovers, a kill switch goes on, Redis dies again at once (within the fix's
    verify window): Alertmanager re-fires the alert. The refusal is recorded, status
    says the target is down and refused, `enable` lists it, `enable --replay` runs it
    through the gates again, credited to the alert."""
    trace = redis_runbook(engine_env, tmp_path, attempts=3, verify="60s")
    with stack(engine_env, tmp_path) as s:
        s.am.fire(LABELS)
        fp = fingerprint(s.am, LABELS)
        assert wait_for(lambda: restarts(trace) == 1 and runs_of(s)
                        and runs_of(s)[-1]["status"] == "succeeded", 15), \
            s.served.stderr()[-3000:]
        assert s.cli("disable", "--target", "cache-1", "--for", "10m",
                     "--as", "alice").returncode == 0
        fire_again(s)
        assert wait_for(lambda: runs_of(s)[-1]["status"] == "refused", 10), \
            f"the re-fire left no refused record: {runs_of(s)}"
        refused = runs_of(s)[-1]
        assert (refused["trigger"], refused["fingerprint"]) == ("alert", fp), refused
        assert restarts(trace) == 1
        # why nothing ran: the alert's timeline
        shown = s.cli("show", fp)
        assert shown.returncode == 0, shown.stderr
        told = shown.stdout
        assert told.index("disable target=cache-1 by alice") < \
            told.index("alert resolved") < told.index("gate kill_switch: refuse"), told
        assert f"run {refused['id']}" in told
        assert [e["kind"] for e in s.cli_json("show", fp)["entries"]].count("delivery") >= 3

        # status, in every form, says the target is down and refused
        status = s.cli_json("status")
        [cache] = [c for c in status["components"] if c["component"] == "cache"]
        assert cache["health"] == "refused", cache
        [row] = status["refused_alerts"]
        assert (row["component"], row["runbook"], row["target"], row["alertname"],
                row["fingerprint"], row["run_id"], row["firing"]) == \
            ("cache", "cache", "cache-1", "E2ERedisDown", fp, refused["id"], True), row
        assert "auto-recovery disabled for target=cache-1" in row["reason"]
        printed = s.cli("status").stdout
        assert "refused" in printed and refused["id"] in printed, printed
        operator = (s.served.home / "operator.token").read_text().strip()
        api = httpx.get(f"{s.served.url}/api/v1/status", timeout=10,
                        headers={"Authorization": f"Bearer {operator}"}).json()
        assert [r["run_id"] for r in api["refused_alerts"]] == [refused["id"]]

        # enable without --replay: the switch goes, the alert is listed, nothing runs
        done = s.cli("enable", "--target", "cache-1", "--as", "alice")
        assert done.returncode == 0, done.stderr
        assert "E2ERedisDown" in done.stdout and refused["id"] in done.stdout, done.stdout
        assert "recovery enable --target cache-1 --replay" in done.stdout, done.stdout
        time.sleep(1.0)
        assert restarts(trace) == 1 and runs_of(s)[-1]["id"] == refused["id"]

        # --replay: re-queued, gates asked again, run, credited to the alert
        done = s.cli("enable", "--target", "cache-1", "--replay", "--as", "alice")
        assert done.returncode == 0, done.stderr
        assert "replayed" in done.stdout and fp in done.stdout, done.stdout
        assert wait_for(lambda: restarts(trace) == 2, 15), s.served.stderr()[-3000:]
        assert wait_for(lambda: runs_of(s)[-1]["status"] == "succeeded", 10)
        replayed = runs_of(s)[-1]
        assert (replayed["trigger"], replayed["fingerprint"], replayed["forced"]) == \
            ("alert", fp, False), replayed
        assert replayed["requested_by"].startswith("alertmanager:")
        assert "replayed by alice" in replayed["requested_by"], replayed
        assert s.cli_json("status")["refused_alerts"] == []
        # a second --replay finds nothing left to replay
        done = s.cli("enable", "--target", "cache-1", "--replay", "--as", "alice")
        assert done.returncode == 0 and "nothing to replay" in done.stdout, done.stdout
        time.sleep(1.0)
        assert restarts(trace) == 2


def test_an_emergency_stop_cancels_what_the_service_runs_and_rejects_what_waits(
        engine_env, tmp_path):
    """The service is restarting Redis for one alert and waits for approval of a flush
    for another, both on cache-1: `disable --target cache-1 --cancel-running` stops the
    one and rejects the other in the same step, and Alertmanager's repeats are refused
    from then on."""
    trace = tmp_path / "trace.log"
    started = tmp_path / "started"
    engine_env.runbook("slow", f"""
        match: [alertname="E2ERedisDown"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: restart, action: test.sleep,
              with: {{seconds: 30, started: "{started}", trace: "{trace}"}}}}
    """)
    engine_env.runbook("flush", f"""
        match: [alertname="E2ERedisCorrupted"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: flush, action: test.touch, with: {{path: "{tmp_path / 'flushed'}"}},
              approval: required}}
    """)
    corrupted = dict(LABELS, alertname="E2ERedisCorrupted")
    with stack(engine_env, tmp_path, webhook="{workers: 1, http_workers: 1, "
               "shutdown_grace: 5s, graceful_timeout: 2s, repeat_signal_after: 1s}") as s:
        s.am.fire(LABELS)
        s.am.fire(corrupted)
        assert wait_for(started.exists, 15), s.served.stderr()[-3000:]
        parked = s.wait_parked("flush")
        [running] = [r for r in s.runs("slow") if r["status"] == "running"]

        done = s.cli("disable", "--target", "cache-1", "--cancel-running", "--reason",
                     "wrong host", "--as", "carol")
        assert done.returncode == 0, done.stderr
        assert f"asked run {running['id']} to stop" in done.stdout, done.stdout
        assert f"rejected {parked}" in done.stdout, done.stdout
        assert wait_for(lambda: [r for r in s.runs("slow") if r["id"] == running["id"]
                                 and r["status"] == "canceled"], 15), \
            f"the step was not stopped: {s.served.stderr()[-3000:]}"
        assert "sleep-stopped" in trace.read_text()
        [incident] = [i for i in s.incidents("slow") if i["id"] == running["incident_id"]]
        assert (incident["state"], incident["reason"]) == \
            ("canceled", "canceled by carol: emergency stop: wrong host")
        [stopped] = [r for r in s.runs("slow") if r["id"] == running["id"]]
        assert stopped["reason"].startswith("canceled by carol: emergency stop: wrong host")
        [approval] = s.query("SELECT * FROM approvals WHERE run_id = ?", parked)
        assert (approval["status"], approval["decided_by"]) == ("rejected", "carol")
        assert not (tmp_path / "flushed").exists()
        # Alertmanager goes on repeating RedisDown: refused now, recorded, never run
        assert wait_for(lambda: [r for r in s.runs("slow") if r["status"] == "refused"], 15)
        assert trace.read_text().count("sleep-start") == 1
        [event] = [e for e in s.query("SELECT * FROM events WHERE action = 'disable'")]
        assert event["actor"] == "carol" and running["id"] in event["detail"]
