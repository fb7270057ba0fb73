"""`recovery recover` and the gates it answers to, through ``engine.cli.main`` in this
process on a configuration of the test's own (tests/support/cli_env.py): its exit codes,
configuration and usage errors, targets, the kill switch and --force, cooldowns, check
mode. The real entry point in a process of its own: tests/integration/test_cli_process.py.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path

import pytest

from engine.cli import main
from tests.support.cli_env import Env

# -- recover: exit codes ------------------------------------------------------------------------

def test_recover_escalates_and_exits_0_when_recovered(cli_env: Env) -> None:
    r = cli_env.cli("--as", "oncall", "recover", "--component", "svc")
    assert r.code == 0, r.err
    assert "first" in r.out and "failed" in r.out and "succeeded" in r.out
    assert "recovered" in r.out

    runs = cli_env.cli("history", "--json").json()
    assert [(x["strategy"], x["status"]) for x in runs] == [("second", "succeeded"),
                                                           ("first", "failed")]
    assert {x["requested_by"] for x in runs} == {"oncall"}
    assert {x["target"] for x in runs} == {"localhost"}
    incidents = cli_env.cli("incidents", "--json").json()
    assert [(i["runbook"], i["state"]) for i in incidents] == [("svc", "recovered")]
    assert runs[0]["incident_id"] == incidents[0]["id"]


def test_recover_exhausted_exits_1_and_switches_degraded_mode_on(cli_env: Env) -> None:
    r = cli_env.cli("recover", "-c", "broken")
    assert r.code == 1
    assert "failed: exhausted" in r.err
    status = cli_env.cli("status", "--json").json()
    mode = next(m for m in status["degraded_modes"] if m["mode"] == "broken_down")
    assert mode["active"] and not mode["manual"]
    assert mode["capabilities"] == {"reads": True, "writes": False}
    broken = next(c for c in status["components"] if c["component"] == "broken")
    assert broken["health"] == "degraded"
    assert broken["success_rate"] == 0.0
    assert broken["incidents_ended"]["failed"] == 1


def test_recover_ending_degraded_exits_1_not_verified(cli_env: Env) -> None:
    r = cli_env.cli("recover", "-c", "shed")
    assert r.code == 1, (r.out, r.err)
    assert "degraded, not recovered: degraded by graceful_degradation" in r.err
    assert [i["state"] for i in cli_env.cli("incidents", "--json").json()] == ["degraded"]


def test_a_foreign_recovery_home_exits_2_and_is_left_alone(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = cli_env.root / "work"
    (foreign / "someone-elses.txt").write_text("x")
    os.chmod(foreign, 0o755)
    monkeypatch.setenv("RECOVERY_HOME", str(foreign))
    r = cli_env.cli("status")
    assert r.code == 2 and "is not a recovery home" in r.err and r.out == ""
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o755


def test_store_unavailable_at_start_exits_2(cli_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERY_STATE_URL", "sqlite:////proc/no-such-dir/recovery.db")
    r = cli_env.cli("history")
    assert r.code == 2 and "store unavailable" in r.err and r.out == ""
    monkeypatch.setenv("RECOVERY_STATE_URL", "postgres://db/recovery")
    r = cli_env.cli("history")
    assert r.code == 2 and "unsupported state URL" in r.err


def test_a_bad_runbook_is_a_config_error_for_commands_that_use_runbooks(cli_env: Env) -> None:
    cli_env.write_runbook("zzz.yml", "name: zzz\nstrategies:\n  - name: x\n    action: nope.nope\n")
    r = cli_env.cli("recover", "-c", "svc")
    assert r.code == 2
    assert "zzz.yml:4:" in r.err and "Traceback" not in r.err
    # the kill switch still works when a runbook is broken
    assert cli_env.cli("disable", "--for", "5m").code == 0


@pytest.mark.parametrize("args", [
    ["recover"],                                        # --component is required
    ["bogus"],
    [],
    ["recover", "-c", "svc", "--diff"],                 # --diff needs --check
    ["recover", "-c", "svc", "--strategy", "nope"],
    ["recover", "-c", "nope"],
    ["history", "--last", "yesterday"],
    ["approve", "run-x", "--now", "--reject"],
])
def test_usage_errors_exit_2(cli_env: Env, args: list[str]) -> None:
    r = cli_env.cli(*args)
    assert r.code == 2, (r.out, r.err)
    assert r.err and "Traceback" not in r.err


def test_config_from_environment_and_options_after_the_command(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert main(["runbooks", "--config", str(cli_env.config), "--json"]) == 0
    names = [rb["name"] for rb in json.loads(capsys.readouterr().out)]
    assert names == ["broken", "guarded", "holder", "shed", "sleepy", "svc"]
    monkeypatch.setenv("RECOVERY_CONFIG", str(cli_env.config))
    monkeypatch.setenv("RECOVERY_OPERATOR", "from-env")
    assert main(["disable", "-c", "svc"]) == 0
    assert "by from-env" in capsys.readouterr().out
    assert main(["enable", "-c", "svc", "--as", "flag-wins"]) == 0
    events = cli_env.store().list_events()
    assert [(e.action, e.actor) for e in events] == [("enable", "flag-wins"),
                                                     ("disable", "from-env")]


def test_unknown_target_is_refused_with_4_and_recorded(cli_env: Env) -> None:
    r = cli_env.cli("recover", "-c", "svc", "--target", "nowhere")
    assert r.code == 4
    assert "unknown target" in r.err
    refused = cli_env.cli("history", "--status", "refused", "--json").json()
    assert len(refused) == 1 and "nowhere" in refused[0]["reason"]
    assert cli_env.cli("incidents", "--json").json() == []


def test_target_alias_and_pattern_resolve_to_hosts(cli_env: Env) -> None:
    r = cli_env.cli("recover", "-c", "svc", "--target", "web-1:9100")
    assert r.code == 0, r.err
    assert cli_env.cli("history", "--json", "-n", "1").json()[0]["target"] == "web-1"
    r = cli_env.cli("recover", "-c", "guarded", "--target", "web")
    assert r.code == 3
    pending = cli_env.cli("pending", "--json").json()
    assert sorted(p["target"] for p in pending) == ["web-1", "web-2"]


def test_test_accepts_the_group_recover_runs_and_lists_its_hosts(cli_env: Env) -> None:
    """`recovery test --target GROUP` plans what `recover --target GROUP` would run."""
    r = cli_env.cli("test", "-c", "svc", "--target", "web")
    assert r.code == 0, r.err
    assert "refused" not in r.out
    assert "web-1, web-2" in r.out
    plan = cli_env.cli("test", "-c", "svc", "--target", "web", "--json").json()
    assert plan["hosts"] == ["web-1", "web-2"]
    assert [h["target"] for h in plan["per_host"]] == ["web-1", "web-2"]


def test_the_plan_of_a_group_holds_back_what_its_limits_would(cli_env: Env) -> None:
    """`recover --target web` under group_share 25% (one host of two) runs one host and
    defers the other: the plan says so, not `allow` for each host asked alone."""
    plan = cli_env.cli("test", "-c", "svc", "--target", "web", "--json").json()
    would = {h["target"]: (h["would"], h["reason"]) for h in plan["per_host"]}
    assert would["web-1"] == ("allow", "")
    assert would["web-2"][0] == "defer"
    assert "group_share 25% allows 1" in would["web-2"][1]
    assert plan["would"] == "mixed"
    cli_env.write_config("fleet: {group_share: 100%, max_in_flight: 1}\n")
    plan = cli_env.cli("test", "-c", "svc", "--target", "web", "--json").json()
    would = {h["target"]: (h["would"], h["reason"]) for h in plan["per_host"]}
    assert would["web-1"] == ("allow", "")
    assert would["web-2"][0] == "defer" and "max_in_flight 1" in would["web-2"][1]
    cli_env.write_config("fleet: {group_share: 100%}\n")
    plan = cli_env.cli("test", "-c", "svc", "--target", "web", "--json").json()
    assert {h["would"] for h in plan["per_host"]} == {"allow"}
    r = cli_env.cli("recover", "-c", "svc", "--target", "web", "--check")
    assert "web-1, web-2" in r.out


def test_test_refuses_an_unknown_group_term_with_the_reason(cli_env: Env) -> None:
    plan = cli_env.cli("test", "-c", "svc", "--target", "web:!nosuch", "--json").json()
    assert plan["would"] == "refuse"
    assert "'nosuch' matches no inventory host or group" in plan["reason"]
    r = cli_env.cli("recover", "-c", "svc", "--target", "web:!nosuch")
    assert r.code == 4 and "'nosuch' matches no inventory host or group" in r.err


def test_several_hosts_the_worst_exit_code_wins(cli_env: Env) -> None:
    assert cli_env.cli("disable", "--target", "web-2").code == 0
    # svc's verify always passes: without --include-healthy both hosts are left alone
    r = cli_env.cli("recover", "-c", "svc", "--target", "web", "--include-healthy")
    assert r.code == 4
    states = {i["target"]: i["state"] for i in cli_env.cli("incidents", "--json").json()}
    assert states == {"web-1": "recovered", "web-2": "canceled"}


FARM = """\
all:
  hosts:
    localhost: {ansible_connection: local}
  children:
    farm:
      hosts:
        farm-1: {ansible_connection: local}
        farm-2: {ansible_connection: local}
        farm-3: {ansible_connection: local}
"""


def _farm(cli_env: Env) -> tuple[Path, Path]:
    """A group of three local hosts whose health is a marker file each; farm-2 healthy."""
    (cli_env.root / "inventory" / "hosts.yml").write_text(FARM)
    markers, trace = cli_env.work("markers"), cli_env.work("trace")
    markers.mkdir()
    (markers / "farm-2").write_text("up")
    cli_env.write_runbook("farm.yml", f"""\
        name: farm
        # these tests are about which hosts are acted on, not the blast radius: the
        # whole group may be under remediation at once
        fleet: {{group_share: 100%}}
        strategies:
          - name: restart
            action: test.touch
            with: {{dir: "{markers}", trace: "{trace}"}}
        verify: {{action: test.file_exists, with: {{dir: "{markers}"}}, interval: 0.05s,
                 deadline: 2s}}
        """)
    return markers, trace


def _acted_on(trace: Path) -> list[str]:
    return sorted(line.split()[1] for line in trace.read_text().splitlines())


def test_a_healthy_host_of_a_group_is_left_alone(cli_env: Env) -> None:
    markers, trace = _farm(cli_env)
    r = cli_env.cli("recover", "-c", "farm", "-t", "farm")
    assert r.code == 0, r.err
    assert "farm: farm-1, farm-2, farm-3" in r.out
    assert _acted_on(trace) == ["farm-1", "farm-3"]
    runs = cli_env.cli("history", "--json").json()
    skipped = [x for x in runs if x["status"] == "skipped"]
    assert [(x["target"], x["incident_id"]) for x in skipped] == [("farm-2", None)]
    assert skipped[0]["reason"].startswith("healthy: verify test.file_exists")
    run_json = json.loads((cli_env.home / "artifacts" / skipped[0]["id"] / "run.json")
                          .read_text())
    assert run_json["hosts"] == [{"host": "farm-2", "outcome": "skipped", "reason": "healthy"}]
    states = {i["target"]: i["state"] for i in cli_env.cli("incidents", "--json").json()}
    assert states == {"farm-1": "recovered", "farm-3": "recovered"}


def test_a_group_beyond_its_share_is_deferred_with_the_reason_force_or_not(
        cli_env: Env) -> None:
    """recovery.yml's default fleet limits: 25% of a group within 10 minutes, never
    fewer than one host. Of three hosts one is acted on, the others wait, on the record."""
    _, trace = _farm(cli_env)
    book = cli_env.rb / "farm.yml"
    book.write_text(book.read_text().replace("fleet: {group_share: 100%}", ""))
    r = cli_env.cli("recover", "-c", "farm", "-t", "farm", "--include-healthy", "--force")
    assert r.code == 4
    # The group's incidents are driven together: whichever host the gate admits first
    # is the one acted on; the two others are held back, whichever they are.
    (first,) = _acted_on(trace)
    others = sorted({"farm-1", "farm-2", "farm-3"} - {first})
    incidents = {i["target"]: i for i in cli_env.cli("incidents", "--json").json()}
    assert {t: i["state"] for t, i in incidents.items()} == {
        first: "recovered", **{t: "open" for t in others}}
    # Each reason names the hosts that held the group's room when it was asked (hosts
    # racing for it count each other's locks; the earliest lock wins: engine/gates/fleet.py).
    for t in others:
        assert re.search(r"blast radius: [12] of 3 hosts of group farm under remediation "
                         r"within 600s \(farm-\d(, farm-\d)?\); group_share 25% allows 1",
                         incidents[t]["reason"]), incidents[t]["reason"]
    deferred = [x for x in cli_env.cli("history", "--json").json() if x["status"] == "deferred"]
    assert sorted((x["target"], x["gate"]) for x in deferred) == [(t, "fleet") for t in others]


def test_include_healthy_acts_on_every_host_of_the_group(cli_env: Env) -> None:
    _, trace = _farm(cli_env)
    r = cli_env.cli("recover", "-c", "farm", "-t", "farm", "--include-healthy")
    assert r.code == 0, r.err
    assert _acted_on(trace) == ["farm-1", "farm-2", "farm-3"]


def test_a_host_named_by_itself_is_acted_on_even_when_healthy(cli_env: Env) -> None:
    _, trace = _farm(cli_env)
    assert cli_env.cli("recover", "-c", "farm", "-t", "farm-2").code == 0
    assert _acted_on(trace) == ["farm-2"]


def test_check_mode_over_a_group_says_which_hosts_would_be_left_alone(cli_env: Env) -> None:
    _, trace = _farm(cli_env)
    r = cli_env.cli("recover", "-c", "farm", "-t", "farm", "--check")
    assert r.code == 0, r.err
    assert "farm-2: healthy, would be left alone" in r.out
    assert not trace.exists()


# -- gates: kill switch, cooldown, check mode ---------------------------------------------------

def test_kill_switch_refuses_with_4_and_force_passes_on_the_record(cli_env: Env) -> None:
    r = cli_env.cli("disable", "-c", "svc", "--reason", "maintenance", "--as", "bob")
    assert r.code == 0 and "until" in r.out
    r = cli_env.cli("recover", "-c", "svc")
    assert r.code == 4
    assert "disabled" in r.err and "bob" in r.err
    r = cli_env.cli("recover", "-c", "svc", "--force")
    assert r.code == 0, r.err
    runs = cli_env.cli("history", "--json").json()
    ran = [x for x in runs if x["status"] in ("succeeded", "failed")]
    assert ran and all(x["forced"] for x in ran)
    assert [x["status"] for x in runs if not x["forced"]] == ["refused"]
    switches = cli_env.cli("status", "--json").json()["switches"]
    assert [(s["component"], s["created_by"], s["reason"]) for s in switches] == [
        ("svc", "bob", "maintenance")]

    r = cli_env.cli("enable", "-c", "svc", "--as", "bob")
    assert r.code == 0 and "removed switch" in r.out
    assert cli_env.cli("status", "--json").json()["switches"] == []
    assert [e.action for e in cli_env.store().list_events()] == ["enable", "disable"]


def test_disable_for_a_second_expires(cli_env: Env) -> None:
    assert cli_env.cli("disable", "--for", "1s").code == 0
    assert len(cli_env.cli("status", "--json").json()["switches"]) == 1
    time.sleep(1.1)
    assert cli_env.cli("status", "--json").json()["switches"] == []
    assert cli_env.cli("recover", "-c", "svc").code == 0


def test_disable_never_and_unknown_component(cli_env: Env) -> None:
    r = cli_env.cli("disable", "-t", "web-1:9100", "--for", "never")
    assert r.code == 0 and "until `recovery enable`" in r.out
    (switch,) = cli_env.cli("status", "--json").json()["switches"]
    assert (switch["target"], switch["until"]) == ("web-1", None)
    assert cli_env.cli("disable", "-c", "nope").code == 2
    assert cli_env.cli("disable", "--for", "-5m").code == 2
    r = cli_env.cli("enable", "-t", "web-2")
    assert r.code == 0 and "no kill switch" in r.out and "still active" in r.out


def test_cooldown_defers_with_4(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "svc").code == 0
    assert cli_env.cli("recover", "-c", "svc").code == 0
    r = cli_env.cli("recover", "-c", "svc")
    assert r.code == 4
    assert "deferred" in r.err and "cooldown" in r.err
    (cd,) = cli_env.cli("status", "--json").json()["cooldowns"]
    assert (cd["runbook"], cd["target"], cd["attempts"], cd["max_attempts"], cd["cooling"]) == (
        "svc", "localhost", 2, 2, True)
    assert cd["next_allowed_at"] > time.time() + 3000
    assert "cooldown" in cli_env.cli("status").out


def test_check_mode_opens_no_incident_and_changes_nothing(cli_env: Env) -> None:
    r = cli_env.cli("recover", "-c", "guarded", "--check")
    assert r.code == 0, r.err
    assert not cli_env.work("touched").exists()
    assert cli_env.cli("incidents", "--json").json() == []
    runs = cli_env.cli("history", "--json").json()
    assert len(runs) == 1 and runs[0]["check_mode"] and runs[0]["status"] == "succeeded"
    assert cli_env.cli("pending", "--json").json() == []
