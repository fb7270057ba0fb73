"""The set a running service acts on: its runbooks, playbooks and inventory, validated
whole and kept as one copy, so every process of the service acts on the same files.

Why: the CLI reads the files afresh at every command, a service once; without a reload
the two disagree in silence (``recovery test`` plans what the service will not do).
``reload_set`` (``recovery reload``, ``POST /api/v1/reload``, SIGHUP to ``recovery
serve``) validates the files on disk whole (engine.validation) and, only when every part
is valid, copies them to ``RECOVERY_HOME/sets/<sha256>/`` and records that set (its hash,
when, by whom) in the store under ``loaded_set``. A set that fails is refused whole, with
the reasons, and the set in force stays.

Every process of the service holds one ``LoadedSet`` and compares it with the record
before each claim or request (one read of the store, ``EngineContext.refresh``); on a new
record it builds the new runbooks and inventory fully, then swaps one reference. A step
already under way keeps the objects (and the copy of the playbooks and inventory) it
started with. Processes load the copy, never the folders being edited, so one that
restarts meanwhile still loads the set in force, not a half-edited one.

The hash covers what the engine reads: the runbook files (``runbooks/*.yml|yaml``), every
file under playbooks/ (roles, templates, files) and the inventory (a folder: every file in
it; a file: it and the ``group_vars/`` and ``host_vars/`` beside it). Hidden files and
folders (``.git``, editor swap files) are left out. Symlinks are copied as symlinks, so a
playbook that leads out of the folder is refused in the copy as it is on disk.

The copies hold the whole inventory (host variables, keys, vault files): they are the
owner's alone (folders 0700, files 0600, 0700 where the owner may run them), and a copy
is kept only while a step may use it. The one a reload replaced goes once no step can be
on it (``drop_replaced``: every process has had ``SWITCH_GRACE`` to switch and no run is
running), at the latest at the next reload, or at the service's next start.

What it cannot do: share a set between services with different RECOVERY_HOMEs (the copy
lives in the home); a step that outlives two reloads loses its copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import Config
    from engine.context import EngineContext
    from engine.inventory import Inventory
    from engine.redaction import Redactor
    from engine.runbook import Runbook
    from engine.store.shared_values import SharedValues
    from engine.validation import SetValidation

log = logging.getLogger(__name__)

RECORD_KEY = "loaded_set"       # the store's kv key of the set in force
SETS_DIR = "sets"               # under RECOVERY_HOME: one folder per loaded set
SWITCH_GRACE = 60.0             # s (at least 3 leases): every process switched by then
STAGING_KEPT = 3600.0           # a staging folder a crashed reload left, removed after
_VARS_DIRS = ("group_vars", "host_vars")


@dataclass(frozen=True)
class SetPaths:
    """Where one set's three parts are: on disk (``of(config)``) or in a copy."""

    runbooks_dir: Path
    playbooks_dir: Path
    inventory_path: Path

    @classmethod
    def of(cls, config: Config) -> SetPaths:
        return cls(config.runbooks_dir, config.playbooks_dir, config.inventory_path)

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> SetPaths:
        return cls(Path(data["runbooks"]), Path(data["playbooks"]), Path(data["inventory"]))

    def to_dict(self) -> dict[str, str]:
        return {"runbooks": str(self.runbooks_dir), "playbooks": str(self.playbooks_dir),
                "inventory": str(self.inventory_path)}

    def files(self) -> list[tuple[str, Path]]:
        """Every file of the set as (its name in the set, its path), sorted by name."""
        from engine.runbook_loader import RunbookError, runbook_files

        found: list[tuple[str, Path]] = []
        try:
            found += [(f"runbooks/{p.name}", p) for p in runbook_files(self.runbooks_dir)]
        except RunbookError:
            pass                                   # no folder: validation says so
        found += _walk(self.playbooks_dir, "playbooks")
        inventory = self.inventory_path
        if inventory.is_dir():
            found += _walk(inventory, "inventory")
        elif inventory.exists() or inventory.is_symlink():
            found.append((f"inventory/{inventory.name}", inventory))
            for name in _VARS_DIRS:
                found += _walk(inventory.parent / name, f"inventory/{name}")
        return sorted(found)

    def sha256(self) -> str:
        """One hash over the names and contents of ``files()`` (a symlink: its target).
        OSError when a file cannot be read."""
        digest = hashlib.sha256()
        for name, path in self.files():
            digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
            if path.is_symlink():
                digest.update(b"link:" + os.fsencode(os.readlink(path)))
            else:
                digest.update(b"file:" + hashlib.sha256(path.read_bytes()).digest())
            digest.update(b"\n")
        return digest.hexdigest()

    def copy_into(self, dest: Path) -> SetPaths:
        """Copy every file of the set under ``dest`` (symlinks as symlinks); the copy's paths."""
        for name, path in self.files():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                os.symlink(os.readlink(path), target)
            else:
                shutil.copy2(path, target)
        for part in ("runbooks", "playbooks", "inventory"):
            (dest / part).mkdir(exist_ok=True)
        inventory = dest / "inventory"
        if not self.inventory_path.is_dir():
            inventory = inventory / self.inventory_path.name
        return SetPaths(dest / "runbooks", dest / "playbooks", inventory)


def _walk(root: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    """Files under ``root`` (not hidden), named ``prefix/relative/path``; a symlink to a
    folder is one entry (not followed)."""
    if not root.is_dir():
        return
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        rel = here.relative_to(root)
        for name in list(dirs):
            if name.startswith(".") or (here / name).is_symlink():
                dirs.remove(name)
                if not name.startswith("."):
                    yield f"{prefix}/{(rel / name).as_posix()}", here / name
        dirs.sort()
        for name in sorted(names):
            if not name.startswith("."):
                yield f"{prefix}/{(rel / name).as_posix()}", here / name


@dataclass(frozen=True)
class SetRecord:
    """The set in force, as the store records it (``loaded_set``)."""

    sha256: str
    loaded_at: float
    loaded_by: str
    paths: dict[str, str]                           # the copy: SetPaths.to_dict()
    runbooks: list[str] = field(default_factory=list)
    files: int = 0
    replaced: str | None = None                     # the hash of the set it replaced

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def path(self) -> Path:
        """The folder of the copy."""
        return Path(self.paths["runbooks"]).parent

    @classmethod
    def from_value(cls, value: Any) -> SetRecord | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(sha256=str(value["sha256"]), loaded_at=float(value["loaded_at"]),
                       loaded_by=str(value.get("loaded_by") or ""),
                       paths={k: str(v) for k, v in dict(value["paths"]).items()},
                       runbooks=[str(n) for n in value.get("runbooks") or []],
                       files=int(value.get("files") or 0),
                       replaced=str(value["replaced"]) if value.get("replaced") else None)
        except (KeyError, TypeError, ValueError):
            return None


def recorded_set(store: SharedValues) -> SetRecord | None:
    """The set in force, or None when no service or reload has recorded one."""
    return SetRecord.from_value(store.get_value(RECORD_KEY))


class LoadedSet:
    """One set as a process holds it: runbooks, inventory and the Ansible executor over the
    same files, each built on first use (``build()`` builds the first two at once). Never
    changed afterwards: a reload builds a new one. ``sha256`` is None for the folders on
    disk as the CLI reads them (nobody validated them as a set)."""

    def __init__(self, paths: SetPaths, *, known_actions: Callable[[], Iterable[str]],
                 redactor: Redactor, sha256: str | None = None,
                 runbooks: list[Runbook] | None = None) -> None:
        self.paths = paths
        self.sha256 = sha256
        self.redactor = redactor
        self._known_actions = known_actions
        self._runbooks = runbooks
        self._lock = threading.Lock()

    @property
    def runbooks(self) -> list[Runbook]:
        with self._lock:
            if self._runbooks is None:
                from engine.runbook_loader import load_runbooks

                self._runbooks = load_runbooks(
                    self.paths.runbooks_dir, known_actions=self._known_actions(),
                    playbooks_dir=self.paths.playbooks_dir)
            return self._runbooks

    @cached_property
    def inventory(self) -> Inventory:
        from engine.inventory import Inventory

        return Inventory(self.paths.inventory_path)

    @cached_property
    def ansible(self):  # -> engine.executors.ansible.AnsibleExecutor
        from engine.executors.ansible import AnsibleExecutor

        return AnsibleExecutor(self.paths.playbooks_dir, self.paths.inventory_path,
                               redactor=self.redactor)

    def build(self) -> LoadedSet:
        """Load the runbooks and parse the inventory now (RunbookError when they do not
        load), so a process switches to a set that is whole."""
        self.runbooks  # noqa: B018
        self.inventory.hosts()
        return self


# -- reload -----------------------------------------------------------------------------


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
    from engine.validation import validate_set

    config = ctx.config
    disk = SetPaths.of(config)
    previous = recorded_set(ctx.store)
    try:
        sha = disk.sha256()
    except OSError as exc:
        return Reload(False, previous, previous, reason=f"cannot read the set: {exc}")
    validation = validate_set(disk, known_actions=ctx.registry.names(),
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
        _prune(config.home, previous, start)
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
                       replaced=previous.sha256 if previous is not None else None)
    ctx.store.set_value(RECORD_KEY, record.to_dict())
    _prune(config.home, record, start)
    log.info("loaded set %s put in force by %s (%d runbooks, %d files)", sha[:12], by,
             len(record.runbooks), record.files)
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


def _prune(home: Path, record: SetRecord, start: bool) -> None:
    """Remove every copy but the one in force and the one it replaced (a step begun on
    that one may still run; ``drop_replaced`` removes it once none can), and staging a
    crashed reload left. ``start``: the service is starting, no step of it runs: only
    the one in force stays."""
    keep = {record.sha256} | ({record.replaced} if record.replaced and not start else set())
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


def drop_replaced(ctx: EngineContext, now: float | None = None) -> int:
    """Remove the copy of the set the one in force replaced, once no step can be using
    it: every process of the service has had SWITCH_GRACE (at least three leases) to
    switch, and no run is running (a step begun on it before the switch would be).
    Returns 1 when it removed one. A worker's duty; cheap when there is nothing to do."""
    from engine.lifecycle import RunStatus

    record = recorded_set(ctx.store)
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


def disk_differs(config: Config, record: SetRecord | None) -> tuple[bool, str | None]:
    """(the files on disk differ from the set in force, their hash); the hash is None
    when they cannot be read. No record: they differ from nothing."""
    try:
        sha = SetPaths.of(config).sha256()
    except OSError:
        return record is not None, None
    return record is not None and sha != record.sha256, sha


def describe(record: SetRecord | None) -> str:
    """One line: the set in force, for logs and the CLI."""
    if record is None:
        return "no set recorded"
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(record.loaded_at))
    return f"set {record.sha256[:12]} loaded {stamp} by {record.loaded_by}"
