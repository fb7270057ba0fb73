"""Moving an install's state from SQLite to Redis (``recovery store migrate``), so that
replicas sharing the Redis store keep its history and its safety state: open incidents
and their attempts (cooldowns go on counting), approvals, kill switches, degraded modes,
the run index, metrics, kept deliveries, the audit log, shared values.

Why a backend-level export and import rather than the protocols' verbs: the protocols
list what a caller asks about (the newest N runs, one incident, a window), and their
writes derive as they go (``add_refusal`` counts, ``record_outcome`` adds to histograms,
``ack_intake`` folds deliveries): copying through them would re-derive, not copy. So the
SQLite file is read whole, read-only, in one transaction (``sqlite.state_export``), and
Redis writes each record with the same keys and indexes its own verbs write
(``redis.state_import``).

The order, and what it guarantees: the source is refused while a service works on it
(runs running, alerts journaled and not processed, live locks: stop the service, let
the journal drain); the target is refused if anything is under its prefix, unless
``replace`` (then it is cleared first: never merged), and even with ``replace`` while a
service uses it (``target_in_use``: clearing a live store drops its locks, its running
runs and the alerts it acknowledged and has not processed); the target is marked incomplete
(the shared value ``MIGRATION_KEY``) before the first record is written and complete
only once every kind's count read back equals the source's. A migration cut short
leaves the mark incomplete: ``recovery status`` says so, and the rerun needs
``replace``. Locks are not copied: they are the leases of the stopped service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from engine.lifecycle import RunStatus
from engine.store import StoreUnavailable, open_store
from engine.store.redis.connection import redacted
from engine.store.redis.state_import import RedisStateImport
from engine.store.sqlite.state_export import export_sqlite
from engine.store.state_snapshot import MIGRATION_KEY


class MigrationRefused(Exception):
    """Nothing was written: the reasons say what to do first."""

    def __init__(self, reasons: list[str], *, usage: bool = False) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons
        self.usage = usage     # a wrong source or target, not a state to change


class MigrationFailed(Exception):
    """Writing or verifying failed midway: the target stays marked incomplete."""


@dataclass
class MigrationReport:
    source: str
    target: str                    # redacted
    counts: dict[str, int]         # of the source, per kind
    copied: bool = False           # False: --check, nothing written
    replaced_keys: int = 0         # keys dropped from the target first (``replace``)
    held_keys: int = 0             # keys found under the target's prefix
    read_back: dict[str, int] = field(default_factory=dict)


def sqlite_source(url: str, base_dir: Path | None) -> Path:
    """The file of a ``sqlite:///PATH`` URL (relative to ``base_dir``); a ValueError for
    any other store."""
    if urlparse(url).scheme != "sqlite" or not url.startswith("sqlite:///"):
        raise ValueError(f"the source must be a SQLite store (sqlite:///PATH), not "
                         f"{redacted(url)}")
    raw = url[len("sqlite:///"):]
    if raw == ":memory:":
        raise ValueError("the source is an in-memory store: nothing to migrate")
    path = Path(raw)
    return base_dir / path if not path.is_absolute() and base_dir is not None else path


def _target(url: str) -> RedisStateImport:
    if urlparse(url).scheme not in ("redis", "rediss"):
        raise MigrationRefused([f"the target must be a Redis store (redis://...), not "
                                f"{redacted(url)}"], usage=True)
    try:
        store = open_store(url)   # refuses a server whose settings would lose state
    except ValueError as exc:
        raise MigrationRefused([str(exc)], usage=True) from None
    assert isinstance(store, RedisStateImport)
    return store


def target_in_use(target: RedisStateImport, now: float, lease: float) -> list[str]:
    """What says a service uses the target now (empty: none does). Live as ``recovery
    status`` judges a replica: its workers wrote within three lock leases."""
    live_after = now - 3 * lease
    reasons = []
    live = [line.replica for line in target.replicas(live_after)]
    if live:
        reasons.append(f"{len(live)} replica(s) seen in the last {3 * lease:g}s "
                       f"({', '.join(live)})")
    beats = target.get_value("worker_heartbeat")
    fresh = [h for h, t in (beats.items() if isinstance(beats, dict) else ())
             if isinstance(t, int | float) and t >= live_after]
    if fresh:
        reasons.append(f"{len(fresh)} worker heartbeat(s) in the last {3 * lease:g}s")
    # Running and beating: a run left "running" by a service killed long ago is not use.
    stale = {r.id for r in target.stale_running_runs(live_after)}
    running = [r for r in target.query_runs(status=RunStatus.RUNNING.value, limit=None)
               if r.id not in stale]
    if running:
        reasons.append(f"{len(running)} run(s) running (beating in the last "
                       f"{3 * lease:g}s)")
    locks = target.list_locks()
    if locks:
        reasons.append(f"{len(locks)} live lock(s)")
    depth, _ = target.intake_depth(now)
    if depth:
        reasons.append(f"{depth} alert(s) journaled and not processed")
    return reasons


def migrate(source: Path, target_url: str, *, replace: bool = False,
            check: bool = False, lease: float = 30.0) -> MigrationReport:
    """Copy the SQLite store ``source`` into the Redis store ``target_url`` (``check``:
    only count and check, write nothing). MigrationRefused before any write;
    MigrationFailed after (the target marked incomplete); StoreUnavailable if the target
    cannot be reached. ``lease``: the lock lease, by which a replica counts as live."""
    if not source.is_file():
        raise MigrationRefused([f"no SQLite store at {source}"], usage=True)
    snap, activity = export_sqlite(source)
    busy = activity.reasons()
    if busy:
        raise MigrationRefused([*busy, "stop the service (every replica and worker) and "
                                "let the intake journal drain, then migrate"])
    report = MigrationReport(str(source), redacted(target_url), snap.counts())
    target = _target(target_url)
    try:
        report.held_keys = target.held_keys()
        if report.held_keys and not replace:
            mark = target.get_value(MIGRATION_KEY)
            why = ("an interrupted migration left it incomplete"
                   if isinstance(mark, dict) and mark.get("state") == "incomplete"
                   else "it holds another install's state, or this one's already")
            raise MigrationRefused([
                f"the target already holds state under its prefix ({report.held_keys}"
                f"{'+' if report.held_keys >= 1000 else ''} keys: {why}); nothing is "
                "merged: --replace drops it and copies afresh, or choose another ?prefix="])
        live = target_in_use(target, time.time(), lease) if report.held_keys else []
        if live:
            raise MigrationRefused([
                "the target is live: " + ", ".join(live) + "; --replace never drops a "
                "store a service uses: stop every replica and worker on it (and let its "
                "intake drain), or choose another ?prefix="])
        if check:
            return report
        if report.held_keys:
            report.replaced_keys = target.clear()
        target.set_value(MIGRATION_KEY, {"state": "incomplete", "source": str(source),
                                         "at": time.time()})
        try:
            target.import_state(snap)
            report.read_back = target.held_counts()
        except StoreUnavailable as exc:   # the server lost, full, restarted: cut short
            raise MigrationFailed(f"writing the target stopped midway: {exc}") from None
        differ = {k: (n, report.read_back.get(k)) for k, n in report.counts.items()
                  if report.read_back.get(k) != n}
        if differ:
            raise MigrationFailed("read back from the target differs from the source "
                                  + ", ".join(f"{k}: {a} copied, {b} read back"
                                              for k, (a, b) in differ.items()))
        target.set_value(MIGRATION_KEY, {"state": "complete", "source": str(source),
                                         "at": time.time()})
        report.copied = True
        return report
    finally:
        target.close()

