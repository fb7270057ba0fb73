"""Which running steps are destructive (RecoveryActionInProgress fires for them): one
that needed approval, a playbook, a step marked idempotent: false; not a python action
of an auto runbook."""

from __future__ import annotations

import pytest

from engine.lifecycle import RunStatus
from engine.records import RunRecord
from engine.runbooks.approval_rules import FactCondition
from engine.runbooks.model import Mode, Runbook, Strategy
from engine.service.outgoing_alerts import destructive


def book(mode: Mode = Mode.AUTO, **step: object) -> Runbook:
    return Runbook(name="cache", component="cache", path="cache.yml", sha256="", mode=mode,
                   strategies=(Strategy(name="fix", action="cache.fix", **step),))


def running(kind: str = "action", approved_by: str | None = None) -> RunRecord:
    return RunRecord(id="run-1", component="cache", runbook="cache", strategy="fix",
                     target="cache-1", status=RunStatus.RUNNING, kind=kind,
                     approved_by=approved_by)


@pytest.mark.parametrize(("run", "runbook", "expected"), [
    (running(), book(), False),                                 # a reconnect, a flush
    (running(), book(approval=True), True),                     # approval: required
    (running(), book(approval_when=(FactCondition("keys_to_delete", "over", 5, "count"),)),
     True),                                                     # approval by condition
    (running(), book(Mode.APPROVE), True),                      # every step parks
    (running(approved_by="alice"), book(), True),               # someone said yes to it
    (running(), book(idempotent=False), True),
    (running(kind="playbook"), book(), True),                   # acts on hosts: Ansible
    (running(kind="playbook"), None, True),                     # its runbook since removed
    (running(), None, False),
])
def test_what_counts_as_destructive(run, runbook, expected) -> None:
    assert destructive(run, runbook) is expected
