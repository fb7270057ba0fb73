"""A step interrupted by a SIGKILL of the whole service is not run again blind: after the
restart the step's verify is asked first. The step is a real playbook that counts its
executions (a line per run in a file), does its work (or not yet) and holds; the
service is killed while it holds, then started again on the same home."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.support.alerts import alert_payload
from tests.support.paths import TEST_PLAYBOOKS
from tests.support.service import Served, post_alerts, store_rows, wait_for

pytestmark = pytest.mark.slow

PLAYBOOK = TEST_PLAYBOOKS / "count_then_hold.yml"


class Rollback:
    """A service whose runbook's one step is ``count_then_hold.yml`` on cache-1."""

    def __init__(self, serve, env, tmp_path: Path, *, work_first: bool,
                 idempotent: bool = True) -> None:
        self.count, self.done = tmp_path / "count", tmp_path / "done"
        self.hold = tmp_path / "hold"
        self.hold.write_text("hold")
        shutil.copy(PLAYBOOK, env.root / "playbooks" / PLAYBOOK.name)
        env.runbook("rollback", f"""
            match:
              - alertname="test-alert"
            target: "{{{{ labels.instance }}}}"
            strategies:
              - name: rollback
                playbook: {PLAYBOOK.name}
                extravars: {{count_file: "{self.count}", done_file: "{self.done}",
                             hold_file: "{self.hold}", work_first: {str(work_first).lower()}}}
                {"" if idempotent else "idempotent: false"}
            verify: {{action: test.file_exists, with: {{path: "{self.done}"}},
                      interval: 0.2s, deadline: 2s}}
        """)
        self.served: Served = serve()

    def executions(self) -> int:
        return len(self.count.read_text().splitlines()) if self.count.exists() else 0

    def runs(self) -> list[sqlite3.Row]:
        return store_rows(self.served.home, "SELECT * FROM runs WHERE runbook = 'rollback' "
                                            "ORDER BY started_at")

    def incident(self) -> sqlite3.Row:
        return store_rows(self.served.home,
                          "SELECT * FROM incidents WHERE runbook = 'rollback'")[0]

    def killed_while_it_holds(self, work_done: bool) -> None:
        """Alert, wait for the step to hold (its work done or not), SIGKILL every process
        of the service at once, start it again."""
        served = self.served
        served.start()
        served.wait_ready()
        assert post_alerts(served, alert_payload(self.count.parent, "cache-1"))["accepted"] == 1
        assert wait_for(lambda: self.executions() == 1 and self.done.exists() == work_done
                        and [r["status"] for r in self.runs()] == ["running"], 60), \
            served.stderr()[-3000:]
        served.children()                 # the playbook's processes too, remembered
        served.kill_all()                 # SIGKILL to all of them at once
        served.start()
        served.wait_ready()

    def recovered(self, timeout: float = 10) -> sqlite3.Row:
        """The incident once it is recovered (or as it is after ``timeout``): the skipped or
        succeeded run's row is written a moment before its incident is closed."""
        return (wait_for(lambda: (row := self.incident())["state"] == "recovered" and row,
                         timeout) or self.incident())

    def settled(self, timeout: float = 60) -> list[str]:
        """The runs' statuses once the interrupted run has a successor that is not running."""
        wait_for(lambda: len(self.runs()) >= 2 and self.runs()[-1]["status"] != "running",
                 timeout)
        return [r["status"] for r in self.runs()]


def test_an_interrupted_step_that_had_done_its_work_is_verified_not_run_again(
        serve, engine_env, tmp_path):
    rollback = Rollback(serve, engine_env, tmp_path, work_first=True)
    try:
        rollback.killed_while_it_holds(work_done=True)
        statuses = rollback.settled()
        assert statuses == ["interrupted", "skipped"], (statuses,
                                                         rollback.served.stderr()[-3000:])
        assert rollback.executions() == 1            # the playbook did not run again
        incident = rollback.recovered()
        assert incident["state"] == "recovered"
        assert "verified after interruption" in incident["reason"]
        skipped = rollback.runs()[-1]
        assert "verified after interruption" in skipped["reason"]
        assert rollback.runs()[0]["id"] in skipped["reason"]
    finally:
        rollback.hold.unlink(missing_ok=True)
        rollback.served.terminate()


def test_an_interrupted_step_whose_target_still_fails_is_run_again_once(
        serve, engine_env, tmp_path):
    rollback = Rollback(serve, engine_env, tmp_path, work_first=False)
    try:
        rollback.killed_while_it_holds(work_done=False)
        rollback.hold.unlink()                       # the second run may finish
        statuses = rollback.settled()
        assert statuses == ["interrupted", "succeeded"], (statuses,
                                                           rollback.served.stderr()[-3000:])
        assert rollback.executions() == 2
        assert rollback.recovered()["state"] == "recovered"
        assert wait_for(lambda: rollback.executions() > 2, 3) is None   # and only once
    finally:
        rollback.hold.unlink(missing_ok=True)
        rollback.served.terminate()


def test_an_interrupted_step_that_is_not_idempotent_is_parked_for_approval(
        serve, engine_env, tmp_path):
    rollback = Rollback(serve, engine_env, tmp_path, work_first=False, idempotent=False)
    try:
        rollback.killed_while_it_holds(work_done=False)
        rollback.hold.unlink()                       # a re-run would finish: none may start
        statuses = rollback.settled()
        assert statuses == ["interrupted", "pending_approval"], (
            statuses, rollback.served.stderr()[-3000:])
        assert rollback.executions() == 1
        parked = rollback.runs()[-1]
        assert "not idempotent" in parked["reason"]
        assert "still fails its verify" in parked["reason"]
        assert rollback.incident()["state"] == "remediating"
    finally:
        rollback.hold.unlink(missing_ok=True)
        rollback.served.terminate()
