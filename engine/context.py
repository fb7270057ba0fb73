"""Everything a process needs to act, built once from the configuration.

The CLI, the service and an embedding application each build one ``EngineContext``;
heavy parts (the inventory, which imports ansible; the Ansible executor) are made on
first use, so an application that never touches a playbook never pays for them.

The runbooks, the inventory and the Ansible executor come from one ``LoadedSet``
(engine.runbooks.loaded_set): the folders on disk, read afresh by every CLI command, or, in the
processes of a service (``follow_loaded_set``), the set recorded in force by the last
reload. ``refresh()`` switches such a process to a newer record (whole: built first, then
one reference swapped); ``pinned()`` keeps one thread on the set it began with, so a step
or a request never mixes two sets.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.actions.registry import ActionRegistry, default_registry
from engine.config import Config
from engine.executors.python import PythonExecutor
from engine.gates import GateChain, LeaseKeeper, default_gates
from engine.inventory import Inventory
from engine.replica import replica_of
from engine.resources import ResourceRegistry
from engine.runbooks.loaded_set import LoadedSet, SetPaths, SetRecord, describe, recorded_set
from engine.runbooks.model import Runbook
from engine.security.redaction import Redactor
from engine.store import Store, StoreUnavailable, open_store

log = logging.getLogger(__name__)


class UnknownRunbook(LookupError):
    pass


class EngineContext:
    def __init__(self, config: Config, *, store: Store | None = None,
                 registry: ActionRegistry | None = None,
                 resources: ResourceRegistry | None = None,
                 gates: GateChain | None = None,
                 runbooks: list[Runbook] | None = None,
                 follow_loaded_set: bool = False, retry_store_open: bool = False) -> None:
        self.config = config
        config.ensure_home()
        # retry_store_open: a service's process comes up with its store unavailable
        # (and answers so) rather than not at all; the store opens once it can.
        self.store = store or open_store(config.state_url, base_dir=config.base_dir,
                                         synchronous=config.state_synchronous,
                                         retry_open=retry_store_open)
        self.registry = registry or default_registry(config.action_modules)
        self.resources = resources or ResourceRegistry()
        self.resources.canonicalize_with(self.canonical_target)
        self.gates = gates or GateChain(default_gates(config))
        self.redactor = Redactor.from_environment()
        self.python = PythonExecutor(self.registry)
        self.leases = LeaseKeeper(self.store, config.lock_ttl)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        # Which replica among those sharing the store (engine.replica): its set in force.
        self.replica = replica_of(config)
        # run id -> cancel event, for runs executing in this process
        self.running: dict[str, threading.Event] = {}
        self.follow_loaded_set = follow_loaded_set
        self._set = LoadedSet(SetPaths.of(config), known_actions=self.registry.catalogue,
                              redactor=self.redactor, runbooks=runbooks)
        self._pins = threading.local()
        self._refused: set[str] = set()     # recorded sets this process could not build
        if follow_loaded_set:
            try:
                record = recorded_set(self.store, self.replica)
            except StoreUnavailable as exc:   # the files on disk until refresh() can read it
                log.warning("the set in force could not be read: %s", exc)
                record = None
            if record is not None and record.path.is_dir():
                self._set = self._set_of(record)   # built on first use, as from disk

    # -- the set: runbooks, inventory, playbooks -----------------------------------------
    @property
    def files(self) -> LoadedSet:
        """The set this thread acts on: the one it pinned, else the one in force here."""
        pinned = getattr(self._pins, "set", None)
        return pinned if pinned is not None else self._set

    @property
    def held_set(self) -> LoadedSet:
        """The set in force in this process (whatever a thread pinned): what a replica
        says it runs."""
        return self._set

    @contextmanager
    def pinned(self, loaded: LoadedSet | None = None) -> Iterator[LoadedSet]:
        """Keep this thread on the set in force now (or on ``loaded``: another thread's,
        working for it) until the block ends (a step, a request), whatever ``refresh``
        does meanwhile. Nested: the outer pin holds."""
        if getattr(self._pins, "set", None) is not None:
            yield self._pins.set
            return
        self._pins.set = loaded if loaded is not None else self._set
        try:
            yield self._pins.set
        finally:
            self._pins.set = None

    def refresh(self) -> bool:
        """In a service's process: switch to the set the store records in force, if it is
        not the one held (one read of the store when nothing changed). The new set is built
        whole before the swap; one that does not build is logged once and the old one
        stays. True when this call switched."""
        if not self.follow_loaded_set:
            return False
        record = recorded_set(self.store, self.replica)
        if record is None or record.sha256 == self._set.sha256 or record.sha256 in self._refused:
            return False
        try:
            if not record.path.is_dir():
                raise FileNotFoundError(f"its copy {record.path} is gone")
            new = self._set_of(record).build()
        except Exception as exc:  # noqa: BLE001 - RunbookError, OSError...: keep the old set
            self._refused.add(record.sha256)
            held = f"set {self._set.sha256[:12]}" if self._set.sha256 else "the files on disk"
            log.error("cannot switch to %s: %s; staying on %s", describe(record),
                      " ".join(str(exc).split()) or type(exc).__name__, held)
            return False
        self._set = new
        log.info("switched to %s", describe(record))
        return True

    def follow_set_in_force(self) -> None:
        """From now on, act on the set recorded in force (as a service's processes do),
        not on the files on disk: for a CLI command whose effect a service carries out
        (an approval it queues). No record: the files on disk, as before."""
        self.follow_loaded_set = True
        self.refresh()

    def _set_of(self, record: SetRecord) -> LoadedSet:
        return LoadedSet(SetPaths.from_dict(record.paths), sha256=record.sha256,
                         loaded_at=record.loaded_at, known_actions=self.registry.catalogue,
                         redactor=self.redactor)

    @property
    def runbooks(self) -> list[Runbook]:
        return self.files.runbooks

    def find_runbook(self, name: str) -> Runbook | None:
        """The runbook of exactly this name in this thread's set, else None."""
        return next((rb for rb in self.runbooks if rb.name == name), None)

    def runbook(self, name: str) -> Runbook:
        """A runbook by name, else the one runbook of that component."""
        books = self.runbooks
        for rb in books:
            if rb.name == name:
                return rb
        of_component = [rb for rb in books if rb.component == name]
        if len(of_component) == 1:
            return of_component[0]
        if of_component:
            names = ", ".join(rb.name for rb in of_component)
            raise UnknownRunbook(f"component {name!r} has several runbooks ({names}): name one")
        known = ", ".join(sorted({rb.component for rb in books}))
        raise UnknownRunbook(f"no runbook for {name!r} (components: {known})")

    # -- heavy parts, on first use -----------------------------------------------------
    @property
    def inventory(self) -> Inventory:
        return self.files.inventory

    @property
    def ansible(self):  # -> engine.executors.ansible.AnsibleExecutor
        return self.files.ansible

    @property
    def artifacts_dir(self) -> Path:
        return self.config.artifacts_dir

    def canonical_target(self, name: str) -> str:
        """The inventory name of ``name`` (itself, an alias, an ``ansible_host``), else ``name``."""
        from engine.inventory import UnknownTarget

        if self.inventory.get(name) is not None:
            return name
        try:
            return self.inventory.resolve_instance(name).name
        except UnknownTarget:
            return name

    def host_vars(self, target: str) -> dict:
        host = self.inventory.get(target)
        return dict(host.vars) if host is not None else {}
