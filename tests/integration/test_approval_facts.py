"""Approvals by condition, with real components: the shipped snapshot rollback reports the
size of the snapshot it would restore (a real file, through real ansible-runner in check
mode), and a step whose approval depends on that size parks over the threshold and runs
under it; a flush of a real Redis asks only when it would delete many keys; a plan that
cannot tell asks (fail safe); ``recovery test`` and ``recover --check`` say why."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from engine.executors.ansible import AnsibleExecutor
from engine.gates import Decision, GateContext, Verdict
from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration import approvals
from engine.orchestration.attempt import advance
from engine.orchestration.planner import check_runs, plan
from engine.orchestration.triggers import TriggerRequest
from tests.support.ansible_fixtures import new_run
from tests.support.paths import ROOT
from tests.support.redis_servers import RedisServer
from tests.support.system_env import recovery

SNAPSHOT = 50_000          # bytes of random data: the archive is about that big


def snapshot_home(root: Path, size: int = SNAPSHOT) -> dict[str, object]:
    """A data directory and one good snapshot of it (named and marked as snapshot_take.yml
    does) holding ``size`` random bytes; the extravars that point the snapshot playbooks
    at them."""
    data, snaps = root / "data", root / "snaps"
    data.mkdir(parents=True)
    snaps.mkdir()
    (data / "blob").write_bytes(os.urandom(size))
    archive = snaps / "data-20260101T000000000000Z.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(data / "blob", arcname="blob")
    (snaps / f"{archive.name}.good").write_text("")
    return {"persist_dir": str(data), "snapshot_dir": str(snaps),
            "snapshot_roots": [str(root)]}


def written_since_snapshot(root: Path) -> tuple[dict[str, object], Path, bytes]:
    """``snapshot_home``, its data then written over: (extravars, the data directory, the
    bytes the snapshot holds)."""
    dirs = snapshot_home(root)
    data = Path(str(dirs["persist_dir"]))
    snapshotted = (data / "blob").read_bytes()
    (data / "blob").write_bytes(b"written after the snapshot")
    return dirs, data, snapshotted


def newer_snapshot(root: Path) -> None:
    """A newer (and bigger) good snapshot beside the one ``snapshot_home`` made."""
    staged = root / "newer"
    staged.mkdir()
    (staged / "blob").write_bytes(os.urandom(2 * SNAPSHOT))
    archive = root / "snaps" / "data-20260102T000000000000Z.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staged / "blob", arcname="blob")
    (root / "snaps" / f"{archive.name}.good").write_text("")


class AfterThePlan:
    """Asked like a gate after the approval gate (so after the step's plan was judged), it
    changes the target before the run: what a real target may do between plan and run.
    Not a ``Gate`` subclass: it is no gate of the product's (the operator docs list those)."""

    name = "after_the_plan"

    def __init__(self, change) -> None:
        self.change = change

    def check(self, ctx: GateContext) -> Decision:
        self.change()
        return Decision(self.name, Verdict.ALLOW, "")


def change_after_the_plan(ctx, change) -> None:
    gates = ctx.gates.gates
    gates.insert(next(i for i, g in enumerate(gates) if g.name == "approval") + 1,
                 AfterThePlan(change))


def rollback_runbook(engine_env, name: str, dirs: dict[str, object], rule: str) -> None:
    """A runbook whose one step is the shipped snapshot rollback, asked under ``rule``."""
    for playbook in ("snapshot_take.yml", "snapshot_rollback.yml"):
        (engine_env.root / "playbooks" / playbook).write_text(
            (ROOT / "playbooks" / playbook).read_text())
    engine_env.runbook(name, f"""
        strategies:
          - name: rollback
            playbook: snapshot_rollback.yml
            extravars: {json.dumps(dirs)}
            approval: {rule}
    """)


def test_snapshot_rollback_plan_reports_the_snapshot_size(
    shipped_executor: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    dirs = snapshot_home(tmp_path / "srv")
    (archive,) = (tmp_path / "srv" / "snaps").glob("*.tar.gz")
    result = shipped_executor.run(artifacts=new_run(artifacts_root),
                                  playbook="snapshot_rollback.yml", limit="localhost",
                                  extravars=dirs, check=True)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert result.data["facts"] == {"snapshot_bytes": archive.stat().st_size}


def test_a_rollback_over_the_threshold_parks_and_one_under_it_runs(
    engine_env, run_incident, tmp_path: Path
) -> None:
    """The same playbook and snapshot: a 10 KB threshold asks a person (and restores
    nothing meanwhile), a 1 MB one lets the rollback run and restore the data."""
    dirs = snapshot_home(tmp_path / "srv")
    blob = Path(str(dirs["persist_dir"])) / "blob"
    before = blob.read_bytes()
    blob.write_bytes(b"written after the snapshot")
    (archive,) = (tmp_path / "srv" / "snaps").glob("*.tar.gz")
    rollback_runbook(engine_env, "big", dirs, "{when: [{fact: snapshot_bytes, over: 10KB}]}")
    rollback_runbook(engine_env, "small", dirs, "{when: [{fact: snapshot_bytes, over: 1MB}]}")
    ctx = engine_env.context()

    parked = run_incident(ctx, "big").incident
    assert parked.state == IncidentState.REMEDIATING
    [approval] = ctx.store.list_approvals("pending")
    size = archive.stat().st_size
    assert f"snapshot_bytes = {size / 1000:.3g} KB ({size} bytes)" in approval.reason
    assert "rule: snapshot_bytes over 10 KB" in approval.reason
    assert blob.read_bytes() == b"written after the snapshot"   # nothing restored yet
    run = ctx.store.get_run(approval.run_id)
    assert run.status == RunStatus.PENDING_APPROVAL

    done = run_incident(ctx, "small").incident
    assert done.state == IncidentState.RECOVERED, done.reason
    [ran] = ctx.store.query_runs(incident_id=done.id)
    assert ran.status == RunStatus.SUCCEEDED, ran.reason
    assert "no approval needed" in json.dumps(
        json.loads((ctx.artifacts_dir / ran.id / "run.json").read_text())["gates"])
    assert blob.read_bytes() == before                         # rolled back for real


def test_a_plan_that_cannot_tell_asks_and_says_why(engine_env, run_incident,
                                                   tmp_path: Path) -> None:
    """No good snapshot: the rollback's plan fails, so its size is unknown: approval is
    asked, never skipped, and the reason says the fact could not be determined."""
    dirs = snapshot_home(tmp_path / "srv")
    for marker in (tmp_path / "srv" / "snaps").glob("*.good"):
        marker.unlink()
    rollback_runbook(engine_env, "unknown", dirs, "{when: [{fact: snapshot_bytes, over: 1GB}]}")
    ctx = engine_env.context()
    run_incident(ctx, "unknown")
    [approval] = ctx.store.list_approvals("pending")
    assert "the facts could not be determined (its plan failed" in approval.reason
    assert "nothing to restore" in approval.reason or "refused" in approval.reason
    assert "asking is the safe answer" in approval.reason


def test_the_plans_say_whether_approval_would_be_asked_and_why(
    engine_env, tmp_path: Path
) -> None:
    """``recovery test`` (the planner and the CLI) and ``recover --check`` name the fact,
    its value and the rule; nothing is rolled back."""
    dirs = snapshot_home(tmp_path / "srv")
    blob = Path(str(dirs["persist_dir"])) / "blob"
    blob.write_bytes(b"now")
    rollback_runbook(engine_env, "big", dirs, "{when: [{fact: snapshot_bytes, over: 10KB}]}")
    rollback_runbook(engine_env, "small", dirs, "{when: [{fact: snapshot_bytes, over: 1GB}]}")
    ctx = engine_env.context()

    planned = plan(ctx, TriggerRequest(runbook="big", target="localhost"))
    assert planned["would"] == "park" and planned["approval"]["asked"]
    assert "rule: snapshot_bytes over 10 KB" in planned["approval"]["reason"]
    assert planned["strategies"][0]["approval_when"] == ["snapshot_bytes over 10 KB"]
    planned = plan(ctx, TriggerRequest(runbook="small", target="localhost"))
    assert planned["would"] == "allow" and not planned["approval"]["asked"]
    assert "not snapshot_bytes over 1 GB" in planned["approval"]["reason"]

    [run] = check_runs(ctx, ctx.runbook("big"), "localhost")
    assert run.status == RunStatus.SUCCEEDED
    assert "approval would be asked: snapshot_bytes = " in run.reason
    assert ctx.store.list_approvals("pending") == []

    shown = recovery(engine_env.env(), "test", "--component", "big", "--target", "localhost")
    assert shown.code == 0, shown.err
    assert "when snapshot_bytes over 10 KB" in shown.out
    assert "approval:     would be asked — snapshot_bytes = " in shown.out
    checked = recovery(engine_env.env(), "recover", "--component", "small", "--target", "localhost",
                       "--check")
    assert checked.code == 0, checked.err
    assert "approval not needed: snapshot_bytes = " in checked.out
    assert "no approval needed" not in checked.out          # said once, not twice
    assert blob.read_bytes() == b"now"


def flush_runbook(engine_env, server: RedisServer,
                  rule: str = "{when: [{fact: keys_to_delete, over: 5}]}") -> None:
    """localhost's Redis is ``server``; runbook ``flush`` asks under ``rule`` (by default:
    when over 5 keys)."""
    (engine_env.root / "inventory" / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        f"      redis_url: {json.dumps(server.url)}\n")
    engine_env.runbook("flush", """
        strategies:
          - name: flush
            action: redis.flush_corrupted
            with: {match: "cache:*", max_keys: 1000}
            approval: RULE
    """.replace("RULE", rule))


def test_a_redis_flush_asks_only_when_it_would_delete_many_keys(
    engine_env, run_incident, tmp_path: Path
) -> None:
    """redis.flush_corrupted reports keys_to_delete from a real server's SCAN."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        flush_runbook(engine_env, server)
        client = server.client()
        client.mset({f"cache:{i}": 1 for i in range(3)})
        ctx = engine_env.context()
        done = run_incident(ctx, "flush").incident
        assert done.state == IncidentState.RECOVERED, done.reason
        assert client.dbsize() == 0

        client.mset({f"cache:{i}": 1 for i in range(10)})
        parked = run_incident(ctx, "flush").incident
        assert parked.state == IncidentState.REMEDIATING
        [approval] = ctx.store.list_approvals("pending")
        assert "keys_to_delete = 10 (rule: keys_to_delete over 5)" in approval.reason
        assert client.dbsize() == 10
    finally:
        server.kill()


def test_a_flush_let_through_on_its_plan_deletes_no_more_than_the_plan_counted(
    engine_env, run_incident, tmp_path: Path
) -> None:
    """3 keys planned (under the rule's 5: no approval asked), 1,000 more written before
    the run: the run deletes 3, no more, and fails saying more remain and that deleting
    them needs approval; never ``recovered`` with most of the corruption left."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        flush_runbook(engine_env, server)
        client = server.client()
        client.mset({f"cache:{i}": 1 for i in range(3)})
        ctx = engine_env.context()
        change_after_the_plan(ctx, lambda: client.mset(
            {f"cache:grown:{i}": 1 for i in range(1000)}))
        ended = run_incident(ctx, "flush").incident
        assert ended.state != IncidentState.RECOVERED
        assert client.dbsize() == 1000                      # 1,003 - the 3 judged
        [ran] = ctx.store.query_runs(incident_id=ended.id)
        assert ran.status == RunStatus.FAILED
        assert "1000 more key(s) without a TTL remain" in ran.reason
        assert "needs approval" in ran.reason
        record = json.loads((ctx.artifacts_dir / ran.id / "run.json").read_text())
        assert record["plan_facts"]["pins"] == {"max_keys_pin": 3}
    finally:
        server.kill()


def test_a_rollback_let_through_on_its_plan_restores_the_snapshot_judged(
    engine_env, run_incident, tmp_path: Path
) -> None:
    """A newer (and much bigger) good snapshot appears between the plan and the run: the
    run restores the one its plan judged, not the newest one."""
    dirs, data, judged = written_since_snapshot(tmp_path / "srv")

    rollback_runbook(engine_env, "small", dirs, "{when: [{fact: snapshot_bytes, over: 1MB}]}")
    ctx = engine_env.context()
    change_after_the_plan(ctx, lambda: newer_snapshot(tmp_path / "srv"))
    done = run_incident(ctx, "small").incident
    assert done.state == IncidentState.RECOVERED, done.reason
    assert (data / "blob").read_bytes() == judged
    [ran] = ctx.store.query_runs(incident_id=done.id)
    record = json.loads((ctx.artifacts_dir / ran.id / "run.json").read_text())
    assert record["plan_facts"]["pins"]["snapshot_pin"] == \
        "data-20260101T000000000000Z.tar.gz"


def test_a_rollback_refuses_when_the_snapshot_judged_changed(
    engine_env, run_incident, tmp_path: Path
) -> None:
    """The snapshot judged is rewritten (another size) between plan and run: the run
    refuses, restores nothing, and says the snapshot changed since it was judged."""
    dirs = snapshot_home(tmp_path / "srv")
    data, snaps = Path(str(dirs["persist_dir"])), tmp_path / "srv" / "snaps"
    (data / "blob").write_bytes(b"written after the snapshot")
    (archive,) = snaps.glob("*.tar.gz")

    def rewrite() -> None:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(data / "blob", arcname="blob")

    rollback_runbook(engine_env, "small", dirs, "{when: [{fact: snapshot_bytes, over: 1MB}]}")
    ctx = engine_env.context()
    change_after_the_plan(ctx, rewrite)
    ended = run_incident(ctx, "small").incident
    assert ended.state != IncidentState.RECOVERED
    [ran] = ctx.store.query_runs(incident_id=ended.id)
    assert ran.status == RunStatus.FAILED
    assert "changed since its plan judged it" in ran.reason
    assert (data / "blob").read_bytes() == b"written after the snapshot"


def approve_and_run(ctx, run_id: str) -> None:
    """alice approves the parked run; it runs here, as ``approve --now`` does."""
    approvals.approve(ctx, run_id, by="alice")
    claimed = approvals.claim(ctx, run_id)
    assert claimed is not None
    advance(ctx, claimed.incident_id, resume=claimed)


def test_an_approved_flush_deletes_no_more_than_its_approver_was_shown(
    engine_env, run_incident, tmp_path: Path
) -> None:
    """Parked (approval required) while 3 keys matched, the pending view shows the plan's
    3; 1,000 more are written before alice approves: the run deletes the 3 she saw, no
    more, and fails saying what remains and that it takes another approval."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        flush_runbook(engine_env, server, rule="required")
        client = server.client()
        client.mset({f"cache:{i}": 1 for i in range(3)})
        ctx = engine_env.context()
        parked = run_incident(ctx, "flush").incident
        [waiting] = ctx.store.list_approvals("pending")
        assert waiting.plan["judged"]["pins"] == {"max_keys_pin": 3}
        shown = recovery(engine_env.env(), "pending")
        assert shown.code == 0, shown.err
        assert "keys_to_delete=3" in shown.out and "held to max_keys_pin=3" in shown.out

        client.mset({f"cache:grown:{i}": 1 for i in range(1000)})
        approve_and_run(ctx, waiting.run_id)
        assert client.dbsize() == 1000                      # 1,003 - the 3 approved
        ran = ctx.store.get_run(waiting.run_id)
        assert ran.status == RunStatus.FAILED
        assert ("stopped at the 3 key(s) the approved plan counted (approved by alice); "
                "1000 more key(s) without a TTL remain: approve again") in ran.reason
        ended = ctx.store.get_incident(parked.id)
        assert ended.state != IncidentState.RECOVERED
        assert "stopped at the 3 key(s) the approved plan counted" in ended.reason
        record = json.loads((ctx.artifacts_dir / ran.id / "run.json").read_text())
        assert record["approved_pins"] == {"max_keys_pin": 3, "approved_by_pin": "alice"}
    finally:
        server.kill()


def test_an_approved_flush_whose_plan_could_not_be_made_says_so_and_runs_as_written(
    engine_env, run_incident, tmp_path: Path
) -> None:
    """Redis down when the step parks: its plan cannot count, the pending view says so,
    and once it is back an approved run deletes what the runbook allows (max_keys)."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        flush_runbook(engine_env, server, rule="required")
        client = server.client()
        client.mset({f"cache:{i}": 1 for i in range(3)})
        server.stop()
        ctx = engine_env.context()
        run_incident(ctx, "flush")
        [waiting] = ctx.store.list_approvals("pending")
        assert waiting.plan["judged"]["error"] and waiting.plan["judged"]["pins"] == {}
        shown = recovery(engine_env.env(), "pending")
        assert "NOT PLANNED" in shown.out and "runs as the runbook says" in shown.out

        server.start()
        client = server.client()
        client.mset({f"cache:{i}": 1 for i in range(10)})
        approve_and_run(ctx, waiting.run_id)
        assert ctx.store.get_run(waiting.run_id).status == RunStatus.SUCCEEDED
        assert client.dbsize() == 0
    finally:
        server.kill()


def test_an_approved_rollback_restores_the_snapshot_its_approver_was_shown(
    engine_env, run_incident, tmp_path: Path
) -> None:
    """Parked (approval required) with one good snapshot; a newer one appears before the
    approval: the approved run restores the snapshot the approver was shown."""
    dirs, data, shown_then = written_since_snapshot(tmp_path / "srv")
    rollback_runbook(engine_env, "careful", dirs, "required")
    ctx = engine_env.context()
    parked = run_incident(ctx, "careful").incident
    [waiting] = ctx.store.list_approvals("pending")
    assert waiting.plan["judged"]["pins"]["snapshot_pin"] == \
        "data-20260101T000000000000Z.tar.gz"

    newer_snapshot(tmp_path / "srv")
    approve_and_run(ctx, waiting.run_id)
    done = ctx.store.get_incident(parked.id)
    assert done.state == IncidentState.RECOVERED, done.reason
    assert (data / "blob").read_bytes() == shown_then


def test_an_approved_rollback_refuses_when_the_snapshot_shown_changed(
    engine_env, run_incident, tmp_path: Path
) -> None:
    """The snapshot the approver was shown is rewritten (another size) before the
    approval: the approved run refuses and restores nothing."""
    dirs, data, _ = written_since_snapshot(tmp_path / "srv")
    (archive,) = (tmp_path / "srv" / "snaps").glob("*.tar.gz")
    rollback_runbook(engine_env, "careful", dirs, "required")
    ctx = engine_env.context()
    parked = run_incident(ctx, "careful").incident
    [waiting] = ctx.store.list_approvals("pending")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(data / "blob", arcname="blob")

    approve_and_run(ctx, waiting.run_id)
    ran = ctx.store.get_run(waiting.run_id)
    assert ran.status == RunStatus.FAILED
    assert "changed since its plan judged it" in ran.reason
    assert ctx.store.get_incident(parked.id).state != IncidentState.RECOVERED
    assert (data / "blob").read_bytes() == b"written after the snapshot"
