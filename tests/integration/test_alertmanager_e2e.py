"""End to end, real components only: a real Alertmanager (or an unclustered HA pair of
them) whose webhook receiver is a real ``recovery serve``, alerts posted to
Alertmanager's API as Prometheus posts them, and the service's state read back through
the CLI (``recovery history|incidents|pending --json``), the SQLite store opened
read-only, and the marker/trace files the test actions write.

Each case starts one service and its Alertmanager(s), waits with deadlines, and stops
every process in ``finally``. Alertmanager timings (tests/support/alertmanager.py): group_wait
and group_interval 1s, repeat_interval 2s, grouped by (alertname, instance).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.alertmanager import Alertmanager, iso
from tests.support.alertmanager_stack import fingerprint, stack
from tests.support.service import wait_for

pytestmark = pytest.mark.requires("alertmanager")


def webhook_notifications(am: Alertmanager) -> int:
    """How many webhook notifications this Alertmanager delivered (its own counter)."""
    text = httpx.get(f"{am.url}/metrics", timeout=5).text
    sent = failed = 0.0
    for line in text.splitlines():
        match = re.match(r'alertmanager_notifications(_failed)?_total\{([^}]*)\} (\S+)', line)
        if match and 'integration="webhook"' in match.group(2):
            if match.group(1):
                failed += float(match.group(3))
            else:
                sent += float(match.group(3))
    return int(sent - failed)


def fire_everywhere(ams: list[Alertmanager], labels: dict[str, str]) -> None:
    """What Prometheus does with an HA pair: the very same alert (same startsAt) posted to
    every Alertmanager, through their API (POST /api/v2/alerts)."""
    now = datetime.now(UTC)
    body = [{"labels": labels, "annotations": {},
             "startsAt": iso(now), "endsAt": iso(now + timedelta(seconds=300))}]
    for am in ams:
        httpx.post(f"{am.url}/api/v2/alerts", json=body, timeout=5).raise_for_status()


# -- 1. one firing episode, one attempt ------------------------------------------------------

@pytest.mark.slow
def test_repeats_and_group_resends_give_one_attempt(engine_env, tmp_path):
    trace = tmp_path / "trace.log"
    started = tmp_path / "started"
    # A 2 s step: repeats arrive while it runs and after it has ended.
    engine_env.runbook("flaky", f"""
        match: [alertname="E2EDown", check="primary"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - name: restart
            action: test.sleep
            with: {{seconds: 2, started: "{started}", trace: "{trace}"}}
    """)
    first = {"alertname": "E2EDown", "instance": "cache-1", "check": "primary",
             "severity": "critical"}
    # Same group (alertname, instance), matched by no runbook: only there to change the
    # group, so that Alertmanager re-sends the whole group, the first alert included.
    second = {"alertname": "E2EDown", "instance": "cache-1", "check": "secondary",
              "severity": "critical"}
    with stack(engine_env, tmp_path) as s:
        s.am.fire(first)
        fp = fingerprint(s.am, first)
        assert wait_for(started.exists, 15), s.served.stderr()[-3000:]
        t_first = time.monotonic()
        s.am.fire(second)                              # the group changes: re-sent
        fp2 = fingerprint(s.am, second)
        # ~8 s of deliveries: the first, the group re-send, repeats every 2 s.
        assert wait_for(lambda: s.journaled(fp2), 10), "the group re-send never arrived"
        time.sleep(max(0.0, 8 - (time.monotonic() - t_first)))
        # at least the first delivery, the group re-send and two repeats
        sent = wait_for(lambda: (n := webhook_notifications(s.am)) >= 4 and n, 10)
        assert sent, f"only {webhook_notifications(s.am)} webhook notifications"
        s.settle()

        runs = s.cli_json("history")
        incidents = s.cli_json("incidents")
        flaky_runs = [r for r in runs if r["runbook"] == "flaky"]
        assert [(r["strategy"], r["status"], r["trigger"], r["fingerprint"])
                for r in flaky_runs] == [("restart", "succeeded", "alert", fp)], flaky_runs
        flaky = [i for i in incidents if i["runbook"] == "flaky"]
        assert [(i["state"], i["target"], i["fingerprint"]) for i in flaky] == \
            [("recovered", "cache-1", fp)], flaky
        assert len(s.attempts("flaky")) == 1
        assert [line.split()[0] for line in trace.read_text().splitlines()] == \
            ["sleep-start", "sleep-end"]                # the step really ran once
        # What was delivered: one firing key per alert (repeats and re-sends collapse).
        assert [k.rsplit("|", 1)[1] for k in s.journaled(fp)] == ["firing"]
        assert [k.rsplit("|", 1)[1] for k in s.journaled(fp2)] == ["firing"]
        # the second alert matches no runbook: no incident, no run of its own
        assert {i["fingerprint"] for i in incidents} == {fp}
    print(f"\n{sent} webhook notifications over ~8 s; one attempt, one run")


# -- 2. resolve --------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_resolve_cancels_the_pending_approval_and_starts_nothing(engine_env, tmp_path):
    marker = tmp_path / "careful.marker"
    eager = tmp_path / "eager.marker"
    engine_env.runbook("careful", f"""
        match: [alertname="E2EParked", probe!="never"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: touch, action: test.touch, with: {{path: "{marker}"}}, approval: required}}
    """)
    # Would act at once (no approval) on any firing alert it matches.
    engine_env.runbook("eager", f"""
        match: [alertname="E2EParked", probe="never"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: touch, action: test.touch, with: {{path: "{eager}"}}}}
    """)
    labels = {"alertname": "E2EParked", "instance": "cache-2", "severity": "critical"}
    never = dict(labels, probe="never")   # same group; never fires, only resolves
    with stack(engine_env, tmp_path) as s:
        s.am.fire(labels)
        fp = fingerprint(s.am, labels)
        run_id = s.wait_parked("careful")
        [waiting] = s.cli_json("pending")
        assert (waiting["run_id"], waiting["runbook"], waiting["target"]) == \
            (run_id, "careful", "cache-2")

        # A resolve for an alert that never fired: delivered (with its group, which has a
        # firing alert), journaled, and it starts nothing and closes nothing.
        s.am.resolve(never)
        resolved_keys = lambda: [r["dedup_key"] for r in s.query(  # noqa: E731
            "SELECT dedup_key FROM intake_seen WHERE dedup_key LIKE '%|resolved'")]
        assert wait_for(resolved_keys, 10), "the never-fired resolve was not delivered"
        assert not any(k.startswith(fp + "|") for k in resolved_keys())
        s.settle()
        assert not eager.exists()
        assert s.runs("eager") == [] and s.incidents("eager") == []
        assert [i["state"] for i in s.incidents("careful")] == ["remediating"]
        assert [a["run_id"] for a in s.pending("careful")] == [run_id]

        # The alert itself resolves: incident resolved, approval canceled, nothing run.
        s.am.resolve(labels)
        assert wait_for(lambda: [i for i in s.incidents("careful")
                                 if i["state"] == "resolved"], 10), s.served.stderr()[-3000:]
        time.sleep(1.5)                     # several worker passes, a repeat: still nothing
        s.settle()
        incidents = [i for i in s.cli_json("incidents") if i["runbook"] == "careful"]
        assert [(i["state"], i["fingerprint"]) for i in incidents] == [("resolved", fp)]
        assert s.cli_json("pending") == []
        [run] = [r for r in s.cli_json("history") if r["runbook"] == "careful"]
        assert (run["id"], run["status"]) == (run_id, "canceled"), run
        [approval] = s.query("SELECT * FROM approvals WHERE run_id = ?", run_id)
        assert approval["status"] == "canceled"
        assert not marker.exists() and not eager.exists()
        assert {r["status"] for r in s.query("SELECT status FROM runs")} == {"canceled"}
        # approving now is refused: the incident is closed
        done = s.cli("approve", run_id, "--now")
        assert done.returncode == 4, (done.stdout, done.stderr)
        assert not marker.exists()


# -- 3. a silence created after the alert was journaled ----------------------------------------

def test_a_silence_created_after_the_alert_was_journaled_stops_the_step(engine_env, tmp_path):
    marker = tmp_path / "guarded.marker"
    engine_env.runbook("guarded", f"""
        match: [alertname="E2ESilenced"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: touch, action: test.touch, with: {{path: "{marker}"}}, approval: required}}
    """)
    labels = {"alertname": "E2ESilenced", "instance": "cache-1", "severity": "critical"}
    with stack(engine_env, tmp_path) as s:
        s.am.fire(labels)
        fp = fingerprint(s.am, labels)
        run_id = s.wait_parked("guarded")
        assert s.journaled(fp)                            # journaled before the silence
        silence = s.am.silence({"alertname": "E2ESilenced", "instance": "cache-1"})
        assert wait_for(lambda: [a for a in s.am.alerts(silenced="true")
                                 if a["labels"] == labels and a["status"]["silencedBy"]], 5)

        done = s.cli("approve", run_id, "--now")
        assert done.returncode == 4, (done.returncode, done.stdout, done.stderr)
        assert not marker.exists()
        print(f"\napprove --now: exit {done.returncode}: {done.stderr.strip()[-300:]}")
        time.sleep(1.0)                       # the service's workers do not run it either
        assert not marker.exists()

        [run] = [r for r in s.cli_json("history") if r["runbook"] == "guarded"]
        assert (run["id"], run["status"]) == (run_id, "deferred"), run
        assert "silenced" in run["reason"] and silence in run["reason"], run
        [incident] = [i for i in s.cli_json("incidents") if i["runbook"] == "guarded"]
        assert incident["state"] == "open"            # deferred: its resolve closes it
        assert "silenced" in incident["reason"]
        assert s.cli_json("pending") == []
        assert not marker.exists()


@pytest.mark.slow
def test_a_silenced_alert_that_resolves_meanwhile_still_stops_the_step(engine_env, tmp_path):
    """Once a silenced alert resolves, Alertmanager lists it no more and does not deliver
    its resolve: the gate must find the silence itself (GET /api/v2/silences)."""
    marker = tmp_path / "guarded.marker"
    engine_env.runbook("guarded", f"""
        match: [alertname="E2ESilenced"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: touch, action: test.touch, with: {{path: "{marker}"}}, approval: required}}
    """)
    labels = {"alertname": "E2ESilenced", "instance": "cache-1", "severity": "critical"}
    with stack(engine_env, tmp_path) as s:
        s.am.fire(labels)
        fp = fingerprint(s.am, labels)
        run_id = s.wait_parked("guarded")
        silence = s.am.silence({"alertname": "E2ESilenced", "instance": "cache-1"})
        s.am.resolve(labels)       # during the maintenance the silence stands for
        assert wait_for(lambda: not [a for a in s.am.alerts() if a["labels"] == labels], 5)
        time.sleep(2.5)            # a group interval and a repeat: nothing is delivered
        assert [k.rsplit("|", 1)[1] for k in s.journaled(fp)] == ["firing"]
        active = httpx.get(f"{s.am.url}/api/v2/silence/{silence}", timeout=5).json()
        assert active["status"]["state"] == "active"
        assert [i["state"] for i in s.incidents("guarded")] == ["remediating"]

        done = s.cli("approve", run_id, "--now")
        assert not marker.exists(), "the step ran under an active silence"
        assert done.returncode == 4, (done.returncode, done.stdout, done.stderr)


# -- 4. an unclustered HA pair ---------------------------------------------------------------

@pytest.mark.slow
def test_an_unclustered_ha_pair_delivering_the_same_alert_gives_one_attempt(
        engine_env, tmp_path):
    trace = tmp_path / "trace.log"
    marker = tmp_path / "pair.marker"
    engine_env.runbook("pair", f"""
        match: [alertname="E2EPair"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: touch, action: test.touch, with: {{path: "{marker}", trace: "{trace}"}}}}
    """)
    labels = {"alertname": "E2EPair", "instance": "cache-1", "severity": "critical"}
    with stack(engine_env, tmp_path, alertmanagers=2) as s:
        one, two = s.ams
        fire_everywhere(s.ams, labels)
        fp = fingerprint(one, labels)
        assert fingerprint(two, labels) == fp
        assert wait_for(marker.exists, 15), s.served.stderr()[-3000:]
        # both members delivered, more than once (first delivery and a repeat)
        assert wait_for(lambda: webhook_notifications(one) >= 2
                        and webhook_notifications(two) >= 2, 10)
        s.settle()
        pair_runs = [r for r in s.cli_json("history") if r["runbook"] == "pair"]
        assert [(r["status"], r["fingerprint"]) for r in pair_runs] == \
            [("succeeded", fp)], pair_runs
        assert [i["state"] for i in s.cli_json("incidents") if i["runbook"] == "pair"] == \
            ["recovered"]
        assert len(s.attempts("pair")) == 1
        assert trace.read_text().split()[::3] == ["touch"]
        assert [k.rsplit("|", 1)[1] for k in s.journaled(fp)] == ["firing"]


# -- 5. the engine's own alert --------------------------------------------------------------

@pytest.mark.slow
def test_the_outgoing_alert_reaches_alertmanager_comes_back_and_is_not_remediated(
        engine_env, tmp_path):
    marker = tmp_path / "careful.marker"
    greedy = tmp_path / "greedy.marker"
    engine_env.runbook("careful", f"""
        match: [alertname="E2EOutgoing"]
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: touch, action: test.touch, with: {{path: "{marker}"}}, approval: required}}
    """)
    # Would take the engine's own alerts, if anything let them through.
    engine_env.runbook("greedy", f"""
        match: [alertname=~"Recovery.*"]
        target: cache-1
        strategies:
          - {{name: touch, action: test.touch, with: {{path: "{greedy}"}}}}
    """)
    labels = {"alertname": "E2EOutgoing", "instance": "cache-2", "severity": "critical"}
    with stack(engine_env, tmp_path, alertmanager="{notify_interval: 1s}") as s:
        s.am.fire(labels)
        run_id = s.wait_parked("careful")

        def outgoing() -> list[dict]:
            return [a for a in s.am.alerts()
                    if a["labels"].get("alertname") == "RecoveryApprovalPending"]

        shown = wait_for(outgoing, 10)
        assert shown, f"no RecoveryApprovalPending in {s.am.url}: {s.served.stderr()[-3000:]}"
        [alert] = shown
        assert alert["labels"]["source"] == "infra-recovery"
        assert alert["annotations"]["run"] == run_id
        assert alert["labels"]["target"] == "cache-2"
        assert alert["labels"]["severity"] == "P2"   # runbook priority medium (the default)
        assert alert["status"]["state"] == "active"
        ends = datetime.strptime(alert["endsAt"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        assert ends > datetime.now(UTC)              # re-posted while the step waits
        # Alertmanager routes it back to the service: journaled, never remediated.
        assert wait_for(lambda: s.journaled(alert["fingerprint"]), 10), \
            "the outgoing alert never came back through the webhook"
        s.settle()
        time.sleep(1.0)                           # re-posts, repeats, worker passes
        s.settle()
        assert not greedy.exists() and not marker.exists()
        assert s.runs("greedy") == [] and s.incidents("greedy") == []
        incidents = s.cli_json("incidents")
        assert [(i["runbook"], i["target"]) for i in incidents] == [("careful", "cache-2")]
        runs = s.cli_json("history")
        assert [(r["runbook"], r["status"]) for r in runs] == [("careful", "pending_approval")]
        assert [a["run_id"] for a in s.cli_json("pending")] == [run_id]
