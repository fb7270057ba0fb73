"""Approvals by condition (engine.runbooks.approval_rules): the forms the loader takes and
refuses (file, line, reason), how conditions judge a plan's facts (asking whenever a fact
cannot be judged), and ``allow_self: false`` refused in the one place approvals are
decided, through the HTTP API and the CLI."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from engine.actions.registry import default_registry
from engine.config import load_config
from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration import approvals
from engine.records import Switch, new_id
from engine.runbooks.approval_rules import FactCondition, approval_need
from engine.runbooks.loader import RunbookError, load_runbook
from tests.support.cli_env import Env
from tests.support.paths import ROOT
from tests.support.webhook_app import AS_ALICE, AS_BOB, Service

# Every test runs on each state backend (tests/support/state_backends.py).
pytestmark = pytest.mark.both_backends

CATALOGUE = default_registry(["tests.support.engine_actions"]).catalogue()


def write(tmp_path: Path, approval: str, *, action: str = "redis.flush_corrupted",
          playbook: str | None = None) -> Path:
    """A runbook whose one step (line 4) has ``approval: <approval>`` on line 6."""
    runs = f"playbook: {playbook}" if playbook else f"action: {action}"
    path = tmp_path / "rb.yml"
    path.write_text(textwrap.dedent(f"""\
        name: rb
        verify: {{action: redis.ping}}
        strategies:
          - name: step
            {runs}
            approval: {approval}
        """))
    return path


def loaded(tmp_path: Path, approval: str, **kw: object):
    return load_runbook(write(tmp_path, approval, **kw), known_actions=CATALOGUE,  # type: ignore[arg-type]
                        playbooks_dir=ROOT / "playbooks").strategies[0]


def refused(tmp_path: Path, approval: str, **kw: object) -> RunbookError:
    with pytest.raises(RunbookError) as caught:
        loaded(tmp_path, approval, **kw)
    return caught.value


# -- the forms the loader takes ----------------------------------------------------------


def test_unconditional_forms_stay_as_they_were(tmp_path: Path) -> None:
    for text, asked in (("required", True), ("none", False), ("true", True), ("false", False)):
        step = loaded(tmp_path, text)
        assert (step.approval, step.approval_when, step.allow_self) == (asked, (), None)


def test_a_condition_on_a_declared_fact_is_typed(tmp_path: Path) -> None:
    step = loaded(tmp_path, "{when: [{fact: keys_to_delete, over: 1000}], allow_self: false}")
    assert not step.approval and step.allow_self is False
    assert step.approval_when == (FactCondition("keys_to_delete", "over", 1000, "count"),)
    rollback = loaded(tmp_path, "{when: [{fact: snapshot_bytes, over: 1GB}]}",
                      playbook="snapshot_rollback.yml")
    assert rollback.approval_when == (FactCondition("snapshot_bytes", "over", 10**9, "bytes"),)
    assert rollback.approval_when[0].describe() == "snapshot_bytes over 1 GB"
    assert loaded(tmp_path, "{when: [{fact: snapshot_bytes, under: 2GiB}]}",
                  playbook="snapshot_rollback.yml").approval_when[0].value == 2 * 2**30


def test_allow_self_alone_means_required_by_a_second_person(tmp_path: Path) -> None:
    step = loaded(tmp_path, "{allow_self: false}")
    assert step.approval and step.allow_self is False and step.approval_when == ()


@pytest.mark.parametrize(("approval", "reason"), [
    ("{when: [{fact: keys_to_delete, above: 5}]}",
     "unknown key 'above' in a condition (allowed: fact, over, under, equals, is_true)"),
    ("{when: [{fact: keys_to_delete, over: 5, under: 9}]}",
     "exactly one comparison of over, under, equals, is_true (here: over, under)"),
    ("{when: [{fact: keys_to_delete}]}", "exactly one comparison"),
    ("{when: [{fact: snapshot_bytes, over: 1GB}]}",
     "the step does not report fact 'snapshot_bytes' in its plan (it reports: "
     "keys_to_delete (count))"),
    ("{when: [{fact: keys_to_delete, over: lots}]}",
     "keys_to_delete over: 'lots' is not a count"),
    ("{when: [{fact: keys_to_delete, is_true: true}]}",
     "keys_to_delete is a count: compare it with over or under or equals, not is_true"),
    ("{when: [{fact: 'labels.instance', over: 1}]}", "is not a fact name"),
    ("{when: [{fact: keys_to_delete, over: 5}], required: true}",
     "required: true asks always; with `when` the conditions decide"),
    ("{when: []}", "approval.when"),
    ("{when: [{fact: keys_to_delete, over: 5}], by: alice}", "unknown key 'by'"),
    ("{allow_self: nobody}", "allow_self"),
    ("maybe", "approval"),
])
def test_bad_forms_are_refused_with_file_line_and_reason(tmp_path: Path, approval: str,
                                                         reason: str) -> None:
    error = refused(tmp_path, approval)
    assert error.file.endswith("rb.yml") and error.line == 6, str(error)
    assert reason in error.reason, error.reason


def test_a_playbook_fact_is_checked_against_what_the_playbook_declares(tmp_path: Path) -> None:
    error = refused(tmp_path, "{when: [{fact: keys_to_delete, over: 5}]}",
                    playbook="snapshot_rollback.yml")
    assert "does not report fact 'keys_to_delete'" in error.reason
    assert "snapshot_bytes (bytes)" in error.reason
    error = refused(tmp_path, "{when: [{fact: snapshot_bytes, over: big}]}",
                    playbook="snapshot_rollback.yml")
    assert "'big' is not a size" in error.reason and error.line == 6


def test_without_a_catalogue_the_kind_comes_from_the_value(tmp_path: Path) -> None:
    step = load_runbook(write(tmp_path, "{when: [{fact: snapshot_bytes, over: 1GB}]}",
                              playbook="snapshot_rollback.yml")).strategies[0]
    assert step.approval_when[0].kind == "bytes" and step.approval_when[0].value == 10**9


# -- judging a plan's facts --------------------------------------------------------------


BIG = FactCondition("snapshot_bytes", "over", 10**9, "bytes")
CONFIG = FactCondition("changes_config", "is_true", True, "bool")


def test_any_condition_that_holds_asks_and_says_which() -> None:
    need = approval_need((BIG, CONFIG), {"snapshot_bytes": 2 * 10**9, "changes_config": False})
    assert need.asked
    assert need.reason == "snapshot_bytes = 2 GB (rule: snapshot_bytes over 1 GB)"
    need = approval_need((BIG, CONFIG), {"snapshot_bytes": 5, "changes_config": True})
    assert need.asked and need.reason == "changes_config = true (rule: changes_config is true)"


def test_nothing_holds_no_approval_and_the_values_said() -> None:
    need = approval_need((BIG, CONFIG), {"snapshot_bytes": 1234, "changes_config": False})
    assert not need.asked
    assert need.reason == ("snapshot_bytes = 1.23 KB (1234 bytes), not "
                           "snapshot_bytes over 1 GB; changes_config = false, not "
                           "changes_config is true")


@pytest.mark.parametrize(("facts", "error", "said"), [
    (None, "its plan failed: no snapshot", "could not be determined (its plan failed: no "
                                           "snapshot); asking is the safe answer"),
    (None, None, "could not be determined (the step's plan was not made)"),
    ({}, None, "the plan did not report snapshot_bytes"),
    ({"snapshot_bytes": "huge"}, None, "snapshot_bytes = 'huge' cannot be judged"),
    ({"snapshot_bytes": True}, None, "cannot be judged"),
    # A negative size is no size (a plan's "unknown" sentinel): never under the rule.
    ({"snapshot_bytes": -1}, None, "cannot be judged"),
    ({"snapshot_bytes": "-1"}, None, "cannot be judged"),
])
def test_a_fact_that_cannot_be_judged_asks(facts, error, said) -> None:
    need = approval_need((BIG,), facts, error)
    assert need.asked and said in need.reason, need.reason


def test_equals_and_under_compare_as_their_kind() -> None:
    assert approval_need((FactCondition("n", "under", 3, "count"),), {"n": 2}).asked
    assert not approval_need((FactCondition("n", "under", 3, "count"),), {"n": 3}).asked
    model = FactCondition("model", "equals", "llama3", "text")
    assert approval_need((model,), {"model": "llama3"}).asked
    assert not approval_need((model,), {"model": "mistral"}).asked


# -- a second person: allow_self: false --------------------------------------------------


@pytest.fixture
def asked_by_alice(engine_env, run_incident):
    """A step that alice asked for, parked; its runbook says allow_self: false."""
    engine_env.runbook("demo", """
        strategies:
          - {name: flush, action: test.ok, approval: {allow_self: false}}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo", target="cache-1", requested_by="alice").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    assert run.status == RunStatus.PENDING_APPROVAL
    return Service(ctx.config, context=ctx), run


def test_the_api_refuses_the_requesters_own_approval(asked_by_alice) -> None:
    service, run = asked_by_alice
    own = service.client.post(f"/api/v1/approvals/{run.id}", headers=AS_ALICE,
                              json={"decision": "approve"})
    assert own.status_code == 409 and own.json["error"] == "self_approval"
    assert ("alice asked for step flush on cache-1" in own.json["reason"]
            and "a second person must approve it" in own.json["reason"])
    assert service.store.get_approval(run.id).status == "pending"
    other = service.client.post(f"/api/v1/approvals/{run.id}", headers=AS_BOB,
                                json={"decision": "approve"})
    assert other.status_code == 200, other.json
    assert service.store.get_approval(run.id).decided_by == "bob"


def test_the_requester_may_still_reject_it(asked_by_alice) -> None:
    service, run = asked_by_alice
    answer = service.client.post(f"/api/v1/approvals/{run.id}", headers=AS_ALICE,
                                 json={"decision": "reject"})
    assert answer.status_code == 200
    assert service.store.get_run(run.id).status == RunStatus.REJECTED


def test_the_cli_refuses_it_by_the_step_or_by_recovery_yml(cli_env: Env) -> None:
    cli_env.write_runbook("second.yml", """\
        name: second
        strategies:
          - {name: touch, action: test.touch, with: {path: "{home}/touched"},
             approval: {allow_self: false}}
        """)
    assert cli_env.cli("recover", "-c", "second", "--as", "alice").code == 3
    (pending,) = cli_env.cli("pending", "--json").json()
    own = cli_env.cli("approve", pending["run_id"], "--as", "alice")
    assert own.code == 4
    assert "alice asked for step touch" in own.err and "the step says allow_self" in own.err
    assert cli_env.store().get_approval(pending["run_id"]).status == "pending"
    assert cli_env.cli("approve", pending["run_id"], "--as", "bob", "--now").code == 0
    assert cli_env.work("touched").exists()

    # `guarded` says nothing: recovery.yml's default decides; by default alice may.
    assert cli_env.cli("recover", "-c", "guarded", "--as", "alice").code == 3
    (pending,) = cli_env.cli("pending", "--json").json()
    cli_env.write_config("approval: {allow_self: false}")
    own = cli_env.cli("approve", pending["run_id"], "--as", "alice")
    assert own.code == 4 and "recovery.yml says allow_self: false" in own.err
    cli_env.write_config()
    assert cli_env.cli("approve", pending["run_id"], "--as", "alice").code == 0


def test_a_fan_out_does_not_make_the_requester_a_second_person(engine_env,
                                                               run_incident) -> None:
    """A step whose ``target:`` is a group opens an incident per other host, each asked
    for by "fan-out of incident ...": whoever asked for the first is who asked for those
    too, and may not approve them where allow_self is false."""
    from engine.orchestration.fanout import wait_fanned_out

    engine_env.runbook("grouped", """
        strategies:
          - {name: flush, action: test.ok, target: "cache-1:cache-2",
             approval: {allow_self: false}}
        verify: {action: test.fail, interval: 0.05s, deadline: 0.2s}
    """)
    ctx = engine_env.context()
    run_incident(ctx, "grouped", target="cache-1", requested_by="alice")
    assert wait_fanned_out(10.0)
    parked = {a.target: a for a in ctx.store.list_approvals("pending")}
    assert set(parked) == {"cache-1", "cache-2"}, parked
    assert parked["cache-2"].requested_by.startswith("fan-out of incident ")
    for target in ("cache-1", "cache-2"):
        with pytest.raises(approvals.SelfApproval, match="alice asked for step flush"):
            approvals.approve(ctx, parked[target].run_id, by="alice")
    assert approvals.approve(ctx, parked["cache-2"].run_id, by="bob").run is not None


def test_recovery_yml_takes_only_a_boolean(engine_env) -> None:
    engine_env.write_config(approval="{allow_self: false}")
    assert load_config(engine_env.config_path).approval_allow_self is False
    engine_env.write_config()
    assert load_config(engine_env.config_path).approval_allow_self is True


def test_the_documented_example_is_a_valid_form() -> None:
    """docs/runbooks.md's example of the form (its first yaml block under "Approval by
    condition"), judged as the loader does where the facts' kinds are not known."""
    import yaml

    from engine.runbooks.approval_rules import parse_rule

    text = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    section = text.split("## Approval by condition", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    required, when, allow_self = parse_rule(yaml.safe_load(block)["approval"], None)
    assert not required and allow_self is False
    assert [c.describe() for c in when] == ["snapshot_bytes over 1 GB",
                                            "keys_to_delete over 1000",
                                            "changes_config is true"]


# -- the orchestrator: planned only when the approval gate asks ----------------------------


def sized_runbook(engine_env, path: Path, trace: Path, threshold: str) -> None:
    engine_env.runbook("sized", f"""
        strategies:
          - name: delete
            action: test.sized
            with: {{path: "{path}", trace: "{trace}"}}
            approval: {{when: [{{fact: file_bytes, over: {threshold}}}]}}
        cooldown: {{max_attempts: 5, window: 1h, after_failure: 0s}}
    """)


def test_the_step_is_planned_once_and_judged_on_what_its_plan_reported(
        engine_env, run_incident) -> None:
    path, trace = engine_env.root / "blob", engine_env.root / "trace"
    path.write_bytes(b"x" * 2000)
    sized_runbook(engine_env, path, trace, "1KB")
    ctx = engine_env.context()
    run_incident(ctx, "sized")
    [approval] = ctx.store.list_approvals("pending")
    assert "file_bytes = 2 KB (rule: file_bytes over 1 KB)" in approval.reason
    assert path.exists() and trace.read_text().split()[0::3] == ["plan"]
    record = json.loads((ctx.artifacts_dir / approval.run_id / "run.json").read_text())
    assert record["plan_facts"] == {"facts": {"file_bytes": 2000}, "error": None,
                                  "pins": {}}

    sized_runbook(engine_env, path, trace, "1MB")
    ctx = engine_env.context()
    approvals.cancel(ctx, approval.run_id, by="test")
    done = run_incident(ctx, "sized").incident
    assert done.state == IncidentState.RECOVERED, done.reason
    assert not path.exists() and trace.read_text().split()[0::3] == ["plan", "plan", "sized"]


def test_a_step_an_earlier_gate_holds_back_is_not_planned(engine_env, run_incident) -> None:
    """The kill switch refuses before the approval gate asks: nothing is planned."""
    path, trace = engine_env.root / "blob", engine_env.root / "trace"
    path.write_bytes(b"x")
    sized_runbook(engine_env, path, trace, "1KB")
    ctx = engine_env.context()
    ctx.store.add_switch(Switch(id=new_id("sw"), component="sized", target=None, until=None,
                                reason="maintenance", created_by="test",
                                created_at=time.time()))
    run_incident(ctx, "sized")
    assert not trace.exists() and path.exists()


def test_check_mode_says_what_the_plan_means_for_approval(engine_env) -> None:
    from engine.orchestration.planner import check_runs

    path, trace = engine_env.root / "blob", engine_env.root / "trace"
    path.write_bytes(b"x" * 2000)
    sized_runbook(engine_env, path, trace, "1KB")
    ctx = engine_env.context()
    [run] = check_runs(ctx, ctx.runbook("sized"), "localhost")
    assert run.status == RunStatus.SUCCEEDED and path.exists()
    assert run.reason == (f"would delete {path}; approval would be asked: file_bytes = 2 KB "
                          "(rule: file_bytes over 1 KB)")
    record = json.loads((ctx.artifacts_dir / run.id / "run.json").read_text())
    assert record["approval"]["asked"] and record["approval"]["facts"] == {"file_bytes": 2000}
    path.unlink()
    [run] = check_runs(ctx, ctx.runbook("sized"), "localhost")
    assert run.status == RunStatus.FAILED
    assert ("approval would be asked: the facts could not be determined (its plan failed: "
            f"no file {path}); asking is the safe answer") in run.reason


def test_the_plan_says_plainly_that_a_step_asks_for_no_approval(engine_env) -> None:
    """`recovery test` printed "approval: not needed — no approval: none"."""
    from engine.orchestration.planner import approval_answer

    engine_env.runbook("plain", """
        strategies:
          - {name: fix, action: test.ok}
    """)
    runbook = engine_env.context().runbook("plain")
    answer = approval_answer(runbook, runbook.strategies[0], None, None)
    assert answer == {"asked": False, "reason": "the step asks for none (approval: none)"}
