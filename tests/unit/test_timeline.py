"""`recovery show INCIDENT_ID|FINGERPRINT`: the timeline that answers "why didn't it
act?" — every kept delivery of the alert and what the intake made of it, every gate's
answer, refusals, deferrals, runs and their verify, the operator's switches, in order.
The engine in this process (the intake drained by hand, the CLI through
``engine.cli.main``)."""

from __future__ import annotations

import json
import time

import pytest

from engine.alerts.alert import Alert
from engine.alerts.intake import drain
from engine.cli import main
from engine.lifecycle import IncidentState
from tests.support.alertmanager import iso_at

T0 = time.time() - 120


def alert(status: str = "firing", *, starts: float = T0, ends: float | None = None) -> Alert:
    return Alert(status=status, labels={"alertname": "DemoDown", "instance": "cache-1"},
                 starts_at=iso_at(starts), ends_at=iso_at(ends) if ends else None,
                 fingerprint="fp-demo", receiver="recovery")


@pytest.fixture
def engine(engine_env, capsys):
    """(ctx, journal, cli): ``journal(*alerts)`` journals and drains them,
    ``cli(*args) -> (code, stdout, stderr)``."""
    engine_env.runbook("demo", f"""
        match: [alertname="DemoDown"]
        target: "{{{{ labels.instance }}}}"
        strategies: [{{name: fix, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}]
        verify: {{action: test.ok, interval: 0.05s, deadline: 0.2s}}
        cooldown: {{max_attempts: 1, window: 1h}}
    """)
    ctx = engine_env.context()

    def journal(*alerts: Alert) -> None:
        ctx.store.enqueue_alerts([(a.dedup_key, a.to_payload()) for a in alerts])
        assert drain(ctx) == len(alerts)

    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--config", str(engine_env.config_path), *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return ctx, journal, cli


def test_show_a_fingerprint_tells_why_the_re_fire_did_nothing(engine):
    ctx, journal, cli = engine
    journal(alert())
    assert cli("disable", "--target", "cache-1", "--for", "10m", "--as", "alice")[0] == 0
    time.sleep(0.25)
    journal(alert("resolved", ends=time.time() - 1), alert(starts=time.time()))
    [incident] = ctx.store.list_incidents()
    assert incident.state == IncidentState.CANCELED

    code, text, _ = cli("show", "fp-demo")
    assert code == 0, text
    lines = text.splitlines()

    def at(words: str) -> int:
        found = [i for i, line in enumerate(lines) if words in line]
        assert found, f"{words!r} not in:\n{text}"
        return found[0]

    order = [at(f"alert firing (startsAt {iso_at(T0)}): opened incident {incident.id}"),
             at("gate kill_switch: allow"), at("verify test.ok: 1 check(s), last ok"),
             at(": succeeded"), at("disable target=cache-1 by alice"),
             at("alert resolved"), at(f"reopened incident {incident.id}"),
             at("gate kill_switch: refuse"), at("(alert, alertmanager:recovery): refused"),
             at(f"incident {incident.id} ended canceled")]
    assert order == sorted(order), text

    code, printed, _ = cli("show", "fp-demo", "--json")
    doc = json.loads(printed)
    assert doc["subject"] == {"fingerprint": "fp-demo", "incidents": [incident.id]}
    kinds = [e["kind"] for e in doc["entries"]]
    assert kinds.count("delivery") == 3 and "verify" in kinds and "operator" in kinds
    assert [e["at"] for e in doc["entries"]] == sorted(e["at"] for e in doc["entries"])
    refused = [e for e in doc["entries"] if e["kind"] == "run"][-1]
    assert refused["run_id"] == ctx.store.query_runs(fingerprint="fp-demo")[0].id


def test_show_an_incident_tells_why_it_waits(engine):
    """Deferred by the cooldown, then a repeat attached to it: both on its timeline."""
    ctx, journal, cli = engine
    assert cli("recover", "-c", "demo", "-t", "cache-1")[0] == 0      # the one attempt
    time.sleep(0.25)   # past that fix's verify window: the alert is a new signal
    journal(alert())
    [deferred] = [i for i in ctx.store.list_incidents() if i.state == IncidentState.OPEN]
    repeat = alert()
    ctx.store.enqueue_alerts([(repeat.dedup_key + "|repeat", repeat.to_payload())])
    assert drain(ctx) == 1
    code, text, _ = cli("show", deferred.id)
    assert code == 0, text
    assert f"incident {deferred.id} (demo on cache-1): open" in text
    assert "gate cooldown: defer" in text and "deferred" in text
    assert f"attached to incident {deferred.id} (open, deferred until" in text
    assert text.index("gate cooldown: defer") < text.index("attached to incident")
    # the repeat is counted on the delivery it repeats, whose own outcome stays
    assert text.index(f"opened incident {deferred.id}") < text.index("gate cooldown: defer")
    assert "delivered again (2 in all)" in text


def test_show_something_unknown_says_so(engine):
    _, _, cli = engine
    code, _, err = cli("show", "nothing-like-this")
    assert code == 2 and "no run, incident or alert fingerprint nothing-like-this" in err
    code, _, err = cli("show", "fp-nope", "--follow")
    assert code == 2


def test_a_switch_removed_before_the_incident_is_not_on_its_timeline(engine):
    """A kill switch set and removed before the incident began was never in force for
    it: its timeline names neither (an enable in between ends what a disable said)."""
    ctx, journal, cli = engine
    assert cli("disable", "--target", "cache-1", "--for", "10m", "--as", "alice")[0] == 0
    assert cli("enable", "--target", "cache-1", "--as", "bob")[0] == 0
    time.sleep(0.05)
    journal(alert(starts=time.time()))
    [incident] = ctx.store.list_incidents()
    code, text, _ = cli("show", incident.id)
    assert code == 0, text
    assert "gate kill_switch: allow" in text
    assert "disable target=cache-1 by alice" not in text, text
    # a switch still in force when the incident began is named
    assert cli("disable", "--target", "cache-1", "--for", "10m", "--as", "carol")[0] == 0
    time.sleep(0.05)
    journal(alert("resolved", ends=time.time()), alert(starts=time.time() + 1))
    later = [i for i in ctx.store.list_incidents() if i.id != incident.id]
    code, text, _ = cli("show", (later or [incident])[0].id)
    assert "disable target=cache-1 by carol" in text, text
