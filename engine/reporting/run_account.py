"""A run as every replica shows it, whichever replica ran it.

A run's full account is its artifacts directory (engine.artifacts), written by the
process that ran it under its own artifacts dir. With several ``recovery serve``
replicas, each has its own RECOVERY_HOME unless ``artifacts_dir`` points them all at one
shared directory; so when a run ends, its account in short (run.json, the events with
their output cut, the stdout's tail: ``RunArtifacts.account``) is also kept in the store
beside its record (``share_account``), with the replica and the directory that hold the
whole of it. ``read_run`` is the one reader ``recovery show``, the API and the timeline
use: the directory when this process can read it, else the account from the store,
saying where the full artifacts are.

What it cannot do: a run still going on another replica (or one that replica was killed
in) has no account yet: its record (status, per-host outcome) is shown, and where its
artifacts are.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.artifacts import RunArtifacts
from engine.records import RunRecord

if TYPE_CHECKING:
    from engine.context import EngineContext

log = logging.getLogger(__name__)

ARTIFACTS = "artifacts"   # read from the run's directory, here
STORE = "store"           # the account its replica kept in the store
RECORD = "record"         # only the run index's record


@dataclass
class RunView:
    """What is known of one run where it is read: ``source`` says from where."""

    record: RunRecord | None
    source: str
    run_json: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    rc: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""
    replica: str | None = None        # the replica that ran it (holds its artifacts)
    artifacts_path: str | None = None
    note: str | None = None           # where the full artifacts are, when not read here

    def where(self) -> dict[str, Any]:
        return {"source": self.source, "replica": self.replica,
                "path": self.artifacts_path, "note": self.note}


def share_account(ctx: EngineContext, run_id: str, artifacts: RunArtifacts) -> None:
    """Keep the ended run's account in the store. Best effort: the run's end is already
    recorded, and a store or disk that fails here costs only the view from elsewhere."""
    try:
        account = artifacts.account()
        account.update(replica=ctx.replica, artifacts=str(artifacts.path),
                       written_at=time.time())
        ctx.store.put_run_account(run_id, account)
    except Exception as exc:  # noqa: BLE001 - any failure: the log says what is missing
        log.warning("run %s: its account could not be kept in the store: %s", run_id, exc)


def read_run(ctx: EngineContext, run_id: str) -> RunView | None:
    """The run ``run_id`` as this process can show it; None when neither the store nor
    the artifacts dir knows it. ValueError: not a run id at all."""
    artifacts = RunArtifacts(ctx.artifacts_dir, run_id, ctx.redactor)
    record = ctx.store.get_run(run_id)
    replica = record.replica if record is not None else None
    if artifacts.exists():
        return RunView(record, ARTIFACTS, artifacts.read_run_json(), artifacts.read_status(),
                       artifacts.read_rc(), list(artifacts.read_events()),
                       artifacts.read_stdout(), replica, str(artifacts.path))
    account = ctx.store.get_run_account(run_id)
    if record is None and account is None:
        return None
    if account is None:
        return RunView(record, RECORD, replica=replica, note=_elsewhere(
            ctx, replica, None, "its events and output are not in the store (yet: a run "
            "keeps them there when it ends)"))
    replica = replica or account.get("replica")
    left = []
    if account.get("events_left_out"):
        left.append(f"{account['events_left_out']} earlier event(s)")
    if account.get("stdout_left_out"):
        left.append(f"the first {account['stdout_left_out']} characters of stdout")
    return RunView(record, STORE, dict(account.get("run_json") or {}), account.get("status"),
                   account.get("rc"), list(account.get("events") or []),
                   str(account.get("stdout") or ""), replica, account.get("artifacts"),
                   _elsewhere(ctx, replica, account.get("artifacts"),
                              "shown from the store" + (f", without {' and '.join(left)}"
                                                        if left else "")))


def _elsewhere(ctx: EngineContext, replica: str | None, path: str | None,
               what: str) -> str:
    holder = f"replica {replica}" if replica else "the replica that ran it"
    at = f" in {path}" if path else ""
    mine = " (this is that replica, but they are gone: pruned or deleted?)" \
        if replica and replica == ctx.replica else ""
    return f"its full artifacts are on {holder}{at}{mine}; {what}"
