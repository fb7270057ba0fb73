"""`recovery approve|reject|cancel` and the life of an approval seen from the command
line, through ``engine.cli.main`` in this process (tests/support/cli_env.py): queued or
run now, refused when the step never waited or its incident closed, expired where no
service runs.
"""

from __future__ import annotations

import time

import pytest

from tests.support.cli_env import Env

# Every test runs on each state backend (tests/support/state_backends.py).
pytestmark = pytest.mark.both_backends


def test_approve_without_now_queues_and_reject_ends_the_attempt(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "guarded", "-t", "web-1").code == 3
    assert cli_env.cli("recover", "-c", "guarded", "-t", "web-2").code == 3
    first, second = sorted(cli_env.cli("pending", "--json").json(), key=lambda p: p["target"])
    r = cli_env.cli("approve", first["run_id"], "--as", "bob")
    assert r.code == 0 and "queued" in r.out
    assert cli_env.store().get_run(first["run_id"]).status.value == "queued"
    r = cli_env.cli("approve", second["run_id"], "--reject", "--reason", "not now", "--as", "eve")
    assert r.code == 0
    run = cli_env.store().get_run(second["run_id"])
    assert run.status.value == "rejected" and "eve" in run.reason
    approval = cli_env.store().get_approval(second["run_id"])
    assert (approval.status, approval.decided_by, approval.reason) == ("rejected", "eve",
                                                                        "not now")
    unknown = cli_env.cli("approve", "run-unknown")
    assert unknown.code == 2 and "no run run-unknown" in unknown.err


def test_approve_now_leaves_a_run_a_worker_holds(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "guarded").code == 3
    (pending,) = cli_env.cli("pending", "--json").json()
    run_id = pending["run_id"]
    assert cli_env.cli("approve", run_id).code == 0
    store = cli_env.store()
    assert store.claim_run(run_id, "worker-elsewhere", time.time(), 60) is not None
    r = cli_env.cli("approve", run_id, "--now")
    assert r.code == 4 and "a worker holds it" in r.err
    assert store.get_run(run_id).status.value == "queued"
    assert not cli_env.work("touched").exists()


def test_approving_a_step_of_a_closed_incident_is_refused(cli_env: Env) -> None:
    from engine.lifecycle import IncidentState

    assert cli_env.cli("recover", "-c", "guarded").code == 3
    (pending,) = cli_env.cli("pending", "--json").json()
    store = cli_env.store()
    # the incident ended while the step waited (e.g. its alert resolved)
    assert store.update_incident(pending["incident_id"], state=IncidentState.RESOLVED,
                                 closed_at=time.time(), reason="alert resolved") is not None
    r = cli_env.cli("approve", pending["run_id"], "--now")
    assert r.code == 4 and "resolved" in r.err and "cannot be approved" in r.err
    assert store.get_approval(pending["run_id"]).status == "pending"
    assert not cli_env.work("touched").exists()
    # saying no is still possible
    assert cli_env.cli("approve", pending["run_id"], "--reject").code == 0


def test_approve_a_run_that_never_waited_is_refused_with_4(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "svc").code == 0
    run = cli_env.cli("history", "--json", "-n", "1").json()[0]
    r = cli_env.cli("approve", run["id"])
    assert r.code == 4 and "never waited for approval" in r.err


def test_an_expired_approval_cannot_be_approved(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "guarded").code == 3
    (pending,) = cli_env.cli("pending", "--json").json()
    store = cli_env.store()
    approval = store.get_approval(pending["run_id"])
    approval.expires_at = time.time() - 1
    store.add_approval(approval)  # as if an hour had passed with no service to expire it
    r = cli_env.cli("approve", pending["run_id"], "--now")
    assert r.code == 4 and "expired" in r.err
    assert store.get_run(pending["run_id"]).status.value == "expired"
    assert not cli_env.work("touched").exists()


def test_every_command_expires_due_approvals_where_no_service_runs(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "guarded").code == 3
    (pending,) = cli_env.cli("pending", "--json").json()
    store = cli_env.store()
    approval = store.get_approval(pending["run_id"])
    approval.expires_at = time.time() - 1
    store.add_approval(approval)
    assert cli_env.cli("pending", "--json").json() == []  # seen as expired, not waiting
    assert store.get_run(pending["run_id"]).status.value == "expired"
    (incident,) = cli_env.cli("incidents", "--json").json()
    assert incident["state"] == "canceled" and "expired" in incident["reason"]
    assert cli_env.cli("status", "--json").json()["pending_approvals"] == 0


# -- cancel ------------------------------------------------------------------------------------

def test_cancel_of_a_pending_approval_cancels_the_incident(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "guarded").code == 3
    (pending,) = cli_env.cli("pending", "--json").json()
    r = cli_env.cli("cancel", pending["run_id"], "--as", "carol")
    assert r.code == 0, r.err
    assert "canceled run" in r.out and "canceled incident" in r.out
    (incident,) = cli_env.cli("incidents", "--json").json()
    assert incident["state"] == "canceled" and "carol" in incident["reason"]
    assert cli_env.store().get_run(pending["run_id"]).status.value == "canceled"
    assert cli_env.cli("pending", "--json").json() == []
    nope = cli_env.cli("cancel", "inc-nope")
    assert nope.code == 2 and "no run or incident inc-nope" in nope.err
