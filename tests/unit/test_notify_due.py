"""``post_soon`` (engine.notify_due) is a hint to the notifier, written to the store on
the remediation path (a step's start and end, an attempt's end, a degraded mode). A
store that refuses that write must not cost the step anything: before, a failure there
skipped the release of the step's lock (in ``_run``'s ``finally``), and the lease keeper
went on renewing that lock for as long as the process lived."""

from __future__ import annotations

import sqlite3

from engine.lifecycle import IncidentState
from engine.notify_due import POSTED_AT, post_soon


def _refuse_the_hint(db_path: str) -> None:
    """A real SQLite trigger that fails every write of the notifier's hint."""
    with sqlite3.connect(db_path) as db:
        db.execute(f"CREATE TRIGGER refuse_hint BEFORE INSERT ON kv WHEN NEW.key = "
                   f"'{POSTED_AT}' BEGIN SELECT RAISE(ABORT, 'injected: write refused'); END")


def test_a_refused_hint_neither_fails_the_step_nor_keeps_its_lock(engine_env,
                                                                  run_incident) -> None:
    engine_env.write_config(
        alertmanagers="[http://127.0.0.1:9]",       # configured: post_soon writes
        alertmanager="{when_unreachable: allow, timeout: 0.2s}")
    engine_env.runbook("demo", """
        strategies:
          - {name: fix, action: test.ok}
    """)
    ctx = engine_env.context()
    ctx.store.set_value("warm", 1)                   # the database file exists
    _refuse_the_hint(ctx.store.path)
    post_soon(ctx)                                   # said, not raised

    opened = run_incident(ctx, "demo", target="cache-1")

    assert opened.incident.state == IncidentState.RECOVERED, opened.incident.reason
    assert ctx.store.get_lock("cache-1") is None, "the step's lock was released"
