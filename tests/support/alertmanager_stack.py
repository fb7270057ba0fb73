"""One ``recovery serve`` and its real Alertmanager(s), for end-to-end tests: the
service's state read back through the CLI and its SQLite store opened read-only;
everything started is stopped on the way out, even when the test fails."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.alertmanager import Alertmanager
from tests.support.service import GRACE, Served, first_token, free_port, wait_for

WEBHOOK = f"{{workers: 1, http_workers: 1, shutdown_grace: {GRACE}s, graceful_timeout: 2s}}"


# -- the stack: one service, its Alertmanager(s) ------------------------------------------

class Stack:
    def __init__(self, served: Served, ams: list[Alertmanager]) -> None:
        self.served, self.ams = served, ams
        self.db = served.home / "recovery.db"

    @property
    def am(self) -> Alertmanager:
        return self.ams[0]

    # -- the CLI, with the service's configuration and home --------------------------------
    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", *args],
                              env=self.served.environ(), capture_output=True, text=True,
                              timeout=60)

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, f"recovery {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout)

    # -- the store, read-only ---------------------------------------------------------------
    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def runs(self, runbook: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM runs WHERE runbook = ? ORDER BY started_at", runbook)

    def incidents(self, runbook: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM incidents WHERE runbook = ? ORDER BY opened_at",
                          runbook)

    def attempts(self, runbook: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM attempts WHERE runbook = ?", runbook)

    def journaled(self, fingerprint: str) -> list[str]:
        """Dedup keys (fingerprint|startsAt|status) the webhook journaled for this alert."""
        return [r["dedup_key"] for r in self.query(
            "SELECT dedup_key FROM intake_seen WHERE dedup_key LIKE ? ORDER BY seen_at",
            fingerprint + "|%")]

    def queued(self) -> int:
        """Journaled alerts not processed (acknowledged) yet."""
        return self.query("SELECT COUNT(*) AS n FROM intake")[0]["n"]

    def pending(self, runbook: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM approvals WHERE runbook = ? AND status = 'pending'",
                          runbook)

    def wait_parked(self, runbook: str, timeout: float = 15) -> str:
        """The run id of the step of ``runbook`` that waits for approval."""
        found = wait_for(lambda: self.pending(runbook), timeout)
        assert found, f"no step of {runbook} parked: {self.served.stderr()[-3000:]}"
        [approval] = found
        return approval["run_id"]

    def settle(self, timeout: float = 10) -> None:
        """Every journaled alert processed (the intake queue empty)."""
        assert wait_for(lambda: self.queued() == 0, timeout), "intake never drained"


def fingerprint(am: Alertmanager, labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of the (active) alert with exactly these labels."""
    found = wait_for(lambda: [a for a in am.alerts() if a["labels"] == labels], 5)
    assert found, f"{labels} is not active in {am.url}"
    return found[0]["fingerprint"]


@contextmanager
def stack(engine_env, tmp_path: Path, *, alertmanagers: int = 1, webhook: str = WEBHOOK,
          **config: str) -> Iterator[Stack]:
    """``recovery serve --workers 1`` on a free port, with ``alertmanagers`` real
    Alertmanagers whose receiver is its /api/v1/alerts with its webhook token, listed
    under the service's ``alertmanagers:`` (silence checks, outgoing alerts). Everything
    started is stopped on the way out."""
    served = Served(engine_env, tmp_path / "home", free_port())
    engine_env.write_config(webhook=webhook, **config)
    token = first_token(engine_env.config_path, served)
    ams = [Alertmanager(tmp_path / f"am{i}", f"{served.url}/api/v1/alerts", token)
           for i in range(alertmanagers)]
    config["alertmanagers"] = json.dumps([am.url for am in ams])
    engine_env.write_config(webhook=webhook, **config)
    try:
        served.start("--workers", "1")
        for am in ams:
            am.start()
        served.wait_healthy()
        served.wait_ready(20)
        yield Stack(served, ams)
    finally:
        for am in ams:
            am.stop()
        try:
            if served.proc is not None and served.proc.poll() is None:
                served.stop()
        finally:
            served.kill_all()
