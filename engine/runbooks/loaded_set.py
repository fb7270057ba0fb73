"""The set a running service acts on: its runbooks, playbooks and inventory, validated whole
and kept as one copy, so every process of the service acts on the same files.

A reload (engine.runbooks.reload) validates the files on disk as one set, copies them to
``RECOVERY_HOME/sets/<sha256>/`` and records that set (its hash, when, by whom) in the
store under ``loaded_set:<replica>`` (engine.replica): replicas sharing one store each
have a set of their own, put in force by their own start or reload, so one replica's start
never switches another to files it may not have. Every process of the service holds one
``LoadedSet`` and compares it with the record before each claim or request (one read of
the store, ``EngineContext.refresh``); on a new record it builds the new runbooks and
inventory fully, then swaps one reference. A step already under way keeps the objects (and
the copy of the playbooks and inventory) it started with. Processes load the copy, never
the folders being edited, so one that restarts meanwhile still loads the set in force, not
a half-edited one.

The hash covers what the engine reads: the runbook files (``runbooks/*.yml|yaml``), every
file under playbooks/ (roles, templates, files) and the inventory (a folder: every file in
it; a file: it and the ``group_vars/`` and ``host_vars/`` beside it). Hidden files and
folders (``.git``, editor swap files) are left out. Symlinks are copied as symlinks, so a
playbook that leads out of the folder is refused in the copy as it is on disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.records import AsDict

if TYPE_CHECKING:
    from engine.config import Config
    from engine.inventory import Inventory
    from engine.runbooks.loader import KnownActions
    from engine.runbooks.model import Runbook
    from engine.security.redaction import Redactor
    from engine.store.shared_values import SharedValues

RECORD_KEY = "loaded_set"       # the store's kv key of the set in force: RECORD_KEY:<replica>
SETS_DIR = "sets"               # under RECOVERY_HOME: one folder per loaded set
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
        from engine.runbooks.loader import RunbookError, runbook_files

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
class SetRecord(AsDict):
    """The set in force, as the store records it (``loaded_set``)."""

    sha256: str
    loaded_at: float
    loaded_by: str
    paths: dict[str, str]                           # the copy: SetPaths.to_dict()
    runbooks: list[str] = field(default_factory=list)
    files: int = 0
    replaced: str | None = None                     # the hash of the set it replaced
    replica: str = ""                               # whose set in force (engine.replica)

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
                       replaced=str(value["replaced"]) if value.get("replaced") else None,
                       replica=str(value.get("replica") or ""))
        except (KeyError, TypeError, ValueError):
            return None


def record_key(replica: str) -> str:
    """The store's key of one replica's set in force."""
    return f"{RECORD_KEY}:{replica}"


def recorded_set(store: SharedValues, replica: str) -> SetRecord | None:
    """The set in force on ``replica``, or None when no start or reload of it has
    recorded one."""
    return SetRecord.from_value(store.get_value(record_key(replica)))


class LoadedSet:
    """One set as a process holds it: runbooks, inventory and the Ansible executor over the
    same files, each built on first use (``build()`` builds the first two at once). Never
    changed afterwards: a reload builds a new one. ``sha256`` is None for the folders on
    disk as the CLI reads them (nobody validated them as a set)."""

    def __init__(self, paths: SetPaths, *, known_actions: Callable[[], KnownActions],
                 redactor: Redactor, sha256: str | None = None,
                 runbooks: list[Runbook] | None = None, loaded_at: float | None = None) -> None:
        self.paths = paths
        self.sha256 = sha256
        self.loaded_at = loaded_at          # when that set was put in force (its record)
        self.redactor = redactor
        self._known_actions = known_actions
        self._runbooks = runbooks
        self._lock = threading.Lock()

    @property
    def runbooks(self) -> list[Runbook]:
        with self._lock:
            if self._runbooks is None:
                from engine.runbooks.loader import load_runbooks

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
