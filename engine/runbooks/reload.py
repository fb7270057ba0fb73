"""Putting a set in force: ``recovery reload``, ``POST /api/v1/reload``, SIGHUP to
``recovery serve``, and a service's start.

Why: the CLI reads the files afresh at every command, a service once; without a reload
the two disagree in silence (``recovery test`` plans what the service will not do).
``reload_set`` validates the files on disk whole (engine.runbooks.validation) and, only when every
part is valid, copies them to ``RECOVERY_HOME/sets/<sha256>/`` and records that set (its
hash, when, by whom) in the store under ``loaded_set:<replica>``: a reload is this
replica's alone (engine.replica), another replica sharing the store keeps its set. A
set that fails is refused whole, with the reasons, and the set in force stays. How a
service's processes switch to it is engine.runbooks.loaded_set's.

The copies hold the whole inventory (host variables, keys, vault files): they are the
owner's alone (folders 0700, files 0600, 0700 where the owner may run them), and a copy
is kept only while a step may use it. The one a reload replaced goes once no step can be
on it (``drop_replaced``: every process has had ``SWITCH_GRACE`` to switch and no run is
running), at the latest at the next reload, or at the service's next start.

What it cannot do: share a set between services with different RECOVERY_HOMEs (the copy
lives in the home); a step that outlives two reloads loses its copy.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.context import EngineContext
from engine.lifecycle import RunStatus
from engine.runbooks.loaded_set import (
    SETS_DIR,
    SetPaths,
    SetRecord,
    record_key,
    recorded_set,
)
from engine.runbooks.validation import SetValidation, validate_set

log = logging.getLogger(__name__)

SWITCH_GRACE = 60.0             # s (at least 3 leases): every process switched by then
STAGING_KEPT = 3600.0           # a staging folder a crashed reload left, removed after


@dataclass
class Reload:
    """What a reload did: ``ok`` and the record in force, or the validation that refused
    the set (the old record stays in force)."""

    ok: bool
    record: SetRecord | None
    previous: SetRecord | None
    unchanged: bool = False
    validation: SetValidation | None = None
    reason: str = ""

    @property
    def problems(self) -> list[str]:
        if self.validation is not None and self.validation.errors:
            return list(self.validation.errors)
        return [self.reason] if self.reason and not self.ok else []

    def to_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "reloaded": self.ok and not self.unchanged, "unchanged": self.unchanged,
            "loaded_set": self.record.to_dict() if self.record else None,
            "previous": self.previous.to_dict() if self.previous else None,
            "problems": self.problems,
            "warnings": list(self.validation.warnings) if self.validation else [],
        }
        if self.validation is not None:
            answer["summary"] = self.validation.summary
        return answer


def reload_set(ctx: EngineContext, by: str, *, start: bool = False) -> Reload:
    """Validate the files on disk as one set and, only if all of it is valid, put it in
    force: copy it under RECOVERY_HOME/sets/ and record it in the store. The service's
    processes switch to it before their next claim or request.

    ``start`` (``recovery serve`` starting): as a start always did, only runbooks that do
    not load refuse the set; the playbooks are not syntax-checked (that takes seconds per
    playbook) and inventory problems are warnings."""
    config = ctx.config
    disk = SetPaths.of(config)
    previous = recorded_set(ctx.store, ctx.replica)
    try:
        sha = disk.sha256()
    except OSError as exc:
        return Reload(False, previous, previous, reason=f"cannot read the set: {exc}")
    validation = validate_set(disk, known_actions=ctx.registry.catalogue(),
                              degraded_modes=config.degraded_modes, redactor=ctx.redactor,
                              syntax_check=not start)
    if start:
        validation.warnings += [e for e in validation.errors
                                if e not in validation.runbook_errors]
        validation.errors = list(validation.runbook_errors)
    if not validation.ok:
        return Reload(False, previous, previous, validation=validation)
    if previous is not None and previous.sha256 == sha and previous.path.is_dir():
        _private(previous.path)      # a copy made before copies were private
        _prune(ctx, previous, start)
        return Reload(True, previous, previous, unchanged=True, validation=validation)
    try:
        copy = _store_copy(config.home, disk, sha)
    except (OSError, ValueError) as exc:
        return Reload(False, previous, previous, validation=validation,
                      reason=f"the set was not put in force: {exc}")
    record = SetRecord(sha256=sha, loaded_at=time.time(), loaded_by=by,
                       paths=copy.to_dict(),
                       runbooks=[rb.name for rb in validation.runbooks],
                       files=len(copy.files()),
                       replaced=previous.sha256 if previous is not None else None,
                       replica=ctx.replica)
    ctx.store.set_value(record_key(ctx.replica), record.to_dict())
    _prune(ctx, record, start)
    log.info("loaded set %s put in force on replica %s by %s (%d runbooks, %d files)",
             sha[:12], ctx.replica, by, len(record.runbooks), record.files)
    return Reload(True, record, previous, validation=validation)


def _store_copy(home: Path, disk: SetPaths, sha: str) -> SetPaths:
    """The set's copy under ``home/sets/<sha>``: copied to a fresh folder, checked to be
    what was validated (nobody edited a file meanwhile), then renamed into place."""
    root = home / SETS_DIR
    root.mkdir(mode=0o700, exist_ok=True)
    root.chmod(0o700)
    final = root / sha
    if not final.is_dir():
        staging = root / f".tmp-{uuid.uuid4().hex}"
        staging.mkdir(mode=0o700)
        try:
            copy = disk.copy_into(staging)
            if copy.sha256() != sha:
                raise ValueError("the files changed while they were validated: reload again")
            _private(staging)
            try:
                staging.rename(final)
            except OSError:
                if not final.is_dir():   # another reload put the same set there meanwhile
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _paths_in(final, disk)


def _paths_in(folder: Path, disk: SetPaths) -> SetPaths:
    inventory = folder / "inventory"
    if not disk.inventory_path.is_dir():
        inventory = inventory / disk.inventory_path.name
    return SetPaths(folder / "runbooks", folder / "playbooks", inventory)


def _private(folder: Path) -> None:
    """The copy is its owner's alone: folders 0700, files 0600 (0700 where the owner may
    run them: a dynamic inventory, a script); symlinks as they are."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o700)
        else:
            path.chmod(0o700 if path.stat().st_mode & 0o100 else 0o600)


def _prune(ctx: EngineContext, record: SetRecord, start: bool) -> None:
    """Remove every copy but the one in force and the one it replaced (a step begun on
    that one may still run; ``drop_replaced`` removes it once none can), and staging a
    crashed reload left. ``start``: the service is starting, no step of it runs: only
    the one in force stays. A set another replica was seen running lately stays too
    (two replicas given one home share its copies)."""
    home = ctx.config.home
    keep = {record.sha256} | ({record.replaced} if record.replaced and not start else set())
    keep |= _sets_of_other_replicas(ctx)
    now = time.time()
    for entry in (home / SETS_DIR).iterdir():
        if entry.name in keep:
            continue
        try:
            if entry.name.startswith(".tmp-") and now - entry.lstat().st_mtime < STAGING_KEPT:
                continue               # maybe a reload under way
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def _sets_of_other_replicas(ctx: EngineContext) -> set[str]:
    """The sets other replicas ran within ``SWITCH_GRACE`` (their roster lines)."""
    try:
        lines = ctx.store.replicas(seen_since=time.time() - SWITCH_GRACE)
    except Exception:  # noqa: BLE001 - StoreUnavailable: nothing pruned is worse than this
        return set()
    return {line.set_sha256 for line in lines
            if line.replica != ctx.replica and line.set_sha256}


def drop_replaced(ctx: EngineContext, now: float | None = None) -> int:
    """Remove the copy of the set the one in force replaced, once no step can be using
    it: every process of the service has had SWITCH_GRACE (at least three leases) to
    switch, and no run is running (a step begun on it before the switch would be).
    Returns 1 when it removed one. A worker's duty; cheap when there is nothing to do."""
    record = recorded_set(ctx.store, ctx.replica)
    if record is None or not record.replaced or record.replaced == record.sha256:
        return 0
    old = ctx.config.home / SETS_DIR / record.replaced
    grace = max(SWITCH_GRACE, 3 * ctx.config.lock_ttl)
    if not old.is_dir() or (now or time.time()) - record.loaded_at < grace:
        return 0
    if ctx.store.query_runs(status=RunStatus.RUNNING.value, limit=1):
        return 0
    shutil.rmtree(old, ignore_errors=True)
    log.info("removed the copy of set %s, replaced by %s", record.replaced[:12],
             record.sha256[:12])
    return 1
