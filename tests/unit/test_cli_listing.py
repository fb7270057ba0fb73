"""What the command line shows, through ``engine.cli.main`` in this process
(tests/support/cli_env.py): `show`, tables in UTC, `metrics`, `test` (plans and records
nothing), degraded modes switched by hand, `runbooks`.
"""

from __future__ import annotations

import json
import re
import time

from tests.support.cli_env import Env

# -- reading -------------------------------------------------------------------------------------

def test_show_prints_record_events_and_stdout(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "svc", "--as", "zed").code == 0
    run = cli_env.cli("history", "--json", "-n", "1").json()[0]
    r = cli_env.cli("show", run["id"])
    assert r.code == 0
    text = r.out
    assert text.index("run.json:") < text.index("events:") < text.index("stdout:")
    assert "requested by     zed" in text
    assert "#1" in text and "action_start" in text and "RUN test.ok on localhost" in text
    doc = cli_env.cli("show", run["id"], "--json").json()
    assert doc["run"]["id"] == run["id"]
    events = [e["event"] for e in doc["events"]]
    assert events[:2] == ["action_start", "action_result"]
    assert set(events[2:]) <= {"verify_check"}  # the runbook's verify, if it recorded any
    assert "succeeded: ok on localhost" in doc["stdout"]
    assert cli_env.cli("show", "run-nope").code == 2   # usage: no such run


def test_a_run_on_one_target_records_that_hosts_outcome(cli_env: Env) -> None:
    """A python action says nothing of hosts: its target's outcome comes from the run's
    status, in history --json, show and the host metric; a refusal acted on no host."""
    assert cli_env.cli("recover", "-c", "svc", "-t", "web-1").code == 0
    assert cli_env.cli("disable", "-t", "web-2").code == 0
    cli_env.cli("recover", "-c", "svc", "-t", "web-2")
    runs = {(r["target"], r["strategy"]): r for r in cli_env.cli("history", "--json").json()}
    assert runs["web-1", "first"]["hosts"] == [
        {"host": "web-1", "outcome": "failed", "reason": runs["web-1", "first"]["reason"]}]
    assert "failed on web-1 (on purpose)" in runs["web-1", "first"]["reason"]
    assert runs["web-1", "second"]["hosts"] == [
        {"host": "web-1", "outcome": "ok", "reason": ""}]
    assert [r["status"] for r in runs.values() if r["target"] == "web-2"] == ["refused"]
    assert all(r["hosts"] == [] for r in runs.values() if r["target"] == "web-2")
    shown = cli_env.cli("show", runs["web-1", "first"]["id"]).out
    assert re.search(r"^    web-1 +failed +.*failed on web-1 \(on purpose\)", shown, re.M)
    metrics = cli_env.cli("metrics").out
    for outcome in ("failed", "ok"):
        assert (f'infra_recovery_host_outcomes_total{{component="svc",outcome="{outcome}",'
                f'strategy="{"first" if outcome == "failed" else "second"}"}} 1.0') in metrics
    assert 'infra_recovery_host_outcomes_total{component="svc",outcome="refused"' not in metrics


def test_human_tables_show_utc_times(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "svc").code == 0
    out = cli_env.cli("history").out
    header = out.splitlines()[0].split()
    assert header[:4] == ["STARTED", "RUN", "COMPONENT", "STRATEGY"]
    assert time.strftime("%Y-%m-%d", time.gmtime()) in out and "Z" in out
    assert "ago" in cli_env.cli("incidents").out
    status = cli_env.cli("status").out
    assert "components (last 1d)" in status and "50% (1/2)" in status


def test_metrics_command(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "svc").code == 0
    r = cli_env.cli("metrics")
    assert r.code == 0
    assert 'infra_recovery_attempts_total{component="svc"' in r.out
    r = cli_env.cli("metrics", "--json")
    assert r.code == 0 and isinstance(r.json(), dict)


# -- plan only ------------------------------------------------------------------------------------

def _counts(cli_env: Env) -> tuple[int, int, int]:
    store = cli_env.store()
    return (len(store.query_runs(limit=None)), len(store.list_incidents()),
            len(store.list_approvals(None)))


def test_test_plans_and_records_nothing(cli_env: Env) -> None:
    assert cli_env.cli("disable", "-t", "web-2").code == 0
    before = _counts(cli_env)
    r = cli_env.cli("test", "-c", "svc", "-t", "web-1")
    assert r.code == 0, r.err
    assert "would:        allow" in r.out and "kill_switch" in r.out
    plan = cli_env.cli("test", "-c", "guarded", "-t", "web-2", "--json").json()
    assert plan["target"] == "web-2" and plan["would"] == "refuse"
    assert plan["first_step"] == "touch"
    assert cli_env.cli("test", "-c", "guarded", "--json").json()["would"] == "park"
    refused = cli_env.cli("test", "-c", "svc", "-t", "nowhere", "--json").json()
    assert refused["would"] == "refuse" and "nowhere" in refused["refused"]

    notification = {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "SvcDown", "component": "svc",
                                        "instance": "web-1:9100"}, "fingerprint": "a1"},
        {"status": "resolved", "labels": {"alertname": "SvcDown", "component": "svc",
                                          "instance": "web-1:9100"}},
        {"status": "firing", "labels": {"alertname": "Other", "instance": "web-1"}},
    ]}
    alert_file = cli_env.root / "alert.json"
    alert_file.write_text(json.dumps(notification))
    plans = cli_env.cli("test", "--alert", str(alert_file), "--json").json()
    assert [(p["runbook"], p["would"]) for p in plans] == [
        ("svc", "allow"), (None, "nothing"), (None, "nothing")]
    assert plans[0]["target"] == "web-1"
    single = cli_env.root / "one.json"
    single.write_text(json.dumps(notification["alerts"][0]))
    r = cli_env.cli("test", "--alert", str(single))
    assert r.code == 0 and "runbook:      svc" in r.out
    assert _counts(cli_env) == before

    (cli_env.root / "junk.json").write_text("{not json")
    assert cli_env.cli("test", "--alert", str(cli_env.root / "junk.json")).code == 2
    assert cli_env.cli("test", "--alert", str(cli_env.root / "missing.json")).code == 2
    (cli_env.root / "empty.json").write_text('{"foo": 1}')
    assert cli_env.cli("test", "--alert", str(cli_env.root / "empty.json")).code == 2


# -- degraded modes ------------------------------------------------------------------------------

def test_degraded_on_and_off_by_hand_show_in_status(cli_env: Env) -> None:
    r = cli_env.cli("degraded", "--on", "broken_down", "--reason", "db migration", "--as", "dave")
    assert r.code == 0, r.err
    mode = next(m for m in cli_env.cli("status", "--json").json()["degraded_modes"]
                if m["mode"] == "broken_down")
    assert mode["active"] and mode["manual"]
    (reason,) = mode["reasons"]
    assert (reason["key"], reason["created_by"], reason["reason"]) == (
        "manual", "dave", "db migration")
    listing = cli_env.cli("degraded").out
    assert "broken_down: ON" in listing
    assert "  off now: writes (still on: reads)" in listing

    r = cli_env.cli("degraded", "--off", "broken_down", "--as", "erin")
    assert r.code == 0 and "cleared 1" in r.out
    modes = cli_env.cli("degraded", "--json").json()
    assert not next(m for m in modes if m["mode"] == "broken_down")["active"]
    assert [(e.action, e.actor) for e in cli_env.store().list_events()] == [
        ("degraded_off", "erin"), ("degraded_on", "dave")]
    assert cli_env.cli("degraded", "--on", "no_such_mode").code == 2
    assert cli_env.cli("degraded", "--off", "no_such_mode").code == 2


def test_degraded_modes_say_what_they_would_switch_off_not_that_it_is_off(cli_env: Env) -> None:
    """Off, a mode's matrix is what it would switch off; on, what is off now."""
    listing = cli_env.cli("degraded").out
    assert "broken_down: off" in listing
    assert "  when on, switches off: writes (keeps on: reads)" in listing
    assert "OFF" not in listing
    status = cli_env.cli("status").out
    assert "broken_down: off" in status
    assert "when on, switches off: writes (keeps on: reads)" in status and "OFF" not in status
    [mode] = [m for m in cli_env.cli("degraded", "--json").json() if m["mode"] == "broken_down"]
    assert (mode["switches_off"], mode["off_now"]) == (["writes"], [])

    assert cli_env.cli("degraded", "--on", "broken_down").code == 0
    status = cli_env.cli("status").out
    assert "broken_down: ON" in status and "off now: writes (still on: reads)" in status
    [mode] = [m for m in cli_env.cli("status", "--json").json()["degraded_modes"]
              if m["mode"] == "broken_down"]
    assert (mode["switches_off"], mode["off_now"]) == (["writes"], ["writes"])


def test_runbooks_lists_strategies_with_approval_markers(cli_env: Env) -> None:
    r = cli_env.cli("runbooks")
    assert r.code == 0
    line = next(x for x in r.out.splitlines() if x.startswith("guarded"))
    assert "touch*" in line
    rows = cli_env.cli("runbooks", "--json").json()
    guarded = next(x for x in rows if x["name"] == "guarded")
    assert guarded["strategies"][0]["approval"] is True
