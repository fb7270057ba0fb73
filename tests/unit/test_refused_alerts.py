"""Alerts a kill switch refused that still fire: listed by `recovery status` and
`recovery enable`, re-queued by `enable --replay` and run the normal way. The engine
in this process (the intake drained by hand, the CLI through ``engine.cli.main``); the
same story with a real Alertmanager and service is in
tests/integration/test_alertmanager_switches.py."""

from __future__ import annotations

import time

import pytest

from engine.alerts.alert import Alert
from engine.alerts.intake import drain
from engine.alerts.refused import refused_alerts, replay
from engine.cli import main
from engine.lifecycle import IncidentState, RunStatus
from tests.support.alertmanager import iso_at

# Every test runs on each state backend (tests/support/state_backends.py).
pytestmark = pytest.mark.both_backends

T0 = time.time() - 120


def alert(status: str = "firing", *, starts: float = T0, ends: float | None = None,
          fingerprint: str = "fp-redis") -> Alert:
    return Alert(status=status, labels={"alertname": "RedisDown", "instance": "cache-1"},
                 starts_at=iso_at(starts), ends_at=iso_at(ends) if ends else None,
                 fingerprint=fingerprint, receiver="recovery")


def journal(ctx, *alerts: Alert) -> None:
    ctx.store.enqueue_alerts([(a.dedup_key, a.to_payload()) for a in alerts])
    assert drain(ctx) == len(alerts)


@pytest.fixture
def refused(engine_env, capsys):
    """RedisDown fired and was fixed; a kill switch went on; Redis died again and the
    re-fire was refused. Returns (ctx, cli) with ``cli(*args) -> (code, stdout)``."""
    engine_env.runbook("redis", f"""
        match: [alertname="RedisDown"]
        target: "{{{{ labels.instance }}}}"
        strategies: [{{name: restart, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}]
    """)
    ctx = engine_env.context()

    def cli(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--config", str(engine_env.config_path), *args])
        return code, capsys.readouterr().out

    journal(ctx, alert())
    assert len(engine_env.traced()) == 1
    assert cli("disable", "--target", "cache-1", "--for", "10m", "--as", "alice")[0] == 0
    journal(ctx, alert("resolved", ends=time.time() - 5), alert(starts=time.time()))
    [run, *_] = ctx.store.query_runs(fingerprint="fp-redis")
    assert (run.status, run.gate) == (RunStatus.REFUSED, "kill_switch")
    return ctx, cli


def test_enable_lists_what_the_switch_refused_and_replay_runs_it_once(refused, engine_env):
    ctx, cli = refused
    [listed] = refused_alerts(ctx.store, since=0)
    assert (listed.alertname, listed.firing, listed.run.target) == ("RedisDown", True,
                                                                     "cache-1")
    code, printed = cli("enable", "--target", "cache-1", "--as", "alice")
    assert code == 0 and "RedisDown" in printed and listed.run.id in printed
    assert "recovery --config" in printed and "enable --target cache-1 --replay" in printed
    assert ctx.store.intake_depth(time.time())[0] == 0          # nothing re-queued
    code, printed = cli("enable", "--target", "cache-1", "--replay", "--as", "bob")
    assert code == 0 and "replayed RedisDown fp-redis" in printed, printed
    # twice is once: the same refusal is re-queued at most once
    code, printed = cli("enable", "--target", "cache-1", "--replay", "--as", "bob")
    assert "already queued" in printed
    assert drain(ctx) == 1
    newest = ctx.store.query_runs(fingerprint="fp-redis")[0]
    assert (newest.status, newest.trigger, newest.forced) == (RunStatus.SUCCEEDED, "alert",
                                                              False)
    assert newest.requested_by == "alertmanager:recovery, replayed by bob"
    assert ctx.store.get_incident(newest.incident_id).state == IncidentState.RECOVERED
    assert len(engine_env.traced()) == 2
    [kept, *_] = ctx.store.deliveries(fingerprint="fp-redis")
    assert kept.replayed_by == "bob" and kept.incident_id == newest.incident_id
    [event] = [e for e in ctx.store.list_events() if e.action == "replay"]
    assert event.actor == "bob"
    assert event.detail["replayed"] == [{"fingerprint": "fp-redis",
                                         "refused_run": listed.run.id}]
    assert refused_alerts(ctx.store, since=0) == []
    code, printed = cli("enable", "--target", "cache-1", "--replay", "--as", "bob")
    assert "nothing to replay" in printed


def test_a_replay_under_a_switch_still_on_is_refused_again(refused, engine_env):
    ctx, cli = refused
    assert cli("disable", "--for", "10m", "--as", "carol")[0] == 0     # everything, too
    code, printed = cli("enable", "--target", "cache-1", "--replay", "--as", "bob")
    assert "still covered by everything" in printed and "replayed" in printed
    assert drain(ctx) == 1
    newest = ctx.store.query_runs(fingerprint="fp-redis")[0]
    assert (newest.status, newest.gate) == (RunStatus.REFUSED, "kill_switch")
    assert "replayed by bob" in newest.requested_by
    assert len(engine_env.traced()) == 1                               # the gates held


def test_an_alert_that_resolved_is_neither_listed_nor_replayed(refused, engine_env):
    ctx, cli = refused
    journal(ctx, alert("resolved", starts=time.time() - 1, ends=time.time()))
    assert refused_alerts(ctx.store, since=0) == []
    code, printed = cli("enable", "--target", "cache-1", "--replay")
    assert code == 0 and "nothing to replay" in printed
    assert ctx.store.intake_depth(time.time())[0] == 0
    code, printed = cli("status")
    assert "refused by a kill switch" not in printed


def test_alerts_counted_into_one_refusal_record_are_each_listed_and_replayed(refused,
                                                                             engine_env):
    """Refusals of one minute share a record (engine.orchestration.refusals): each alert it lists is
    listed and replayed on its own; one refused again after its replay (the switch still
    on) can be replayed again."""
    ctx, cli = refused
    other = Alert(status="firing", labels={"alertname": "RedisDown", "instance": "cache-1",
                                           "job": "other"},
                  starts_at=iso_at(time.time()), fingerprint="fp-other", receiver="recovery")
    journal(ctx, other)
    [record] = ctx.store.query_runs(status="refused")
    assert (record.count, record.fingerprints) == (2, ["fp-redis", "fp-other"])
    listed = refused_alerts(ctx.store, since=0)
    assert sorted(a.fingerprint for a in listed) == ["fp-other", "fp-redis"]
    assert {a.run.id for a in listed} == {record.id}

    assert [a.fingerprint for a in replay(ctx.store, listed, by="bob")] == [
        a.fingerprint for a in listed]
    assert replay(ctx.store, listed, by="bob") == []            # twice is once
    assert drain(ctx) == 2          # the switch is still on: refused again, same words
    [record] = ctx.store.query_runs(status="refused")
    assert record.count == 4 and len(engine_env.traced()) == 1
    again = refused_alerts(ctx.store, since=0)
    assert {a.run.count for a in again} == {4}
    assert len(replay(ctx.store, again, by="bob")) == 2         # a new refusal: once more
    code, printed = cli("enable", "--target", "cache-1", "--as", "bob")
    assert code == 0 and drain(ctx) == 2
    # Each replayed alert went the normal way: the first ran the step; the other, of the
    # same target and sent before that fix was verified, attached to its incident.
    assert len(engine_env.traced()) == 2
    outcomes = [ctx.store.deliveries(fingerprint=fp)[0].outcome
                for fp in ("fp-redis", "fp-other")]
    assert sum("received before its fix was verified" in o for o in outcomes) == 1, outcomes


def test_label_values_are_printed_with_their_control_characters_made_visible(engine_env,
                                                                            capsys):
    """An alert's labels are data from outside: an escape sequence in its alertname (or
    a newline in its fingerprint) must not reach the operator's terminal as such."""
    engine_env.runbook("redis", """
        match: [instance="cache-1"]
        target: "{{ labels.instance }}"
        strategies: [{name: restart, action: test.ok}]
    """)
    ctx = engine_env.context()
    config = str(engine_env.config_path)
    assert main(["--config", config, "disable", "--target", "cache-1", "--for", "10m"]) == 0
    name, fingerprint = "Redis\x1b[2J\x1b[HDown", "fp\nforged line"
    journal(ctx, Alert(status="firing", labels={"alertname": name, "instance": "cache-1"},
                       starts_at=iso_at(T0), fingerprint=fingerprint, receiver="recovery"))
    capsys.readouterr()
    for args in (["status"], ["enable", "--target", "cache-1"]):
        assert main(["--config", config, *args]) == 0
        printed = capsys.readouterr().out
        assert "\x1b" not in printed and "\nforged line" not in printed, printed
        assert repr(name) in printed and repr(fingerprint) in printed, printed
