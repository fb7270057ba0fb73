"""Everything a process needs to act, built once from the configuration.

The CLI, the service and an embedding application each build one ``EngineContext``;
heavy parts (the inventory, which imports ansible; the Ansible executor) are made on
first use, so an application that never touches a playbook never pays for them.
"""

from __future__ import annotations

import os
import socket
import threading
from functools import cached_property
from pathlib import Path

from engine.actions.registry import ActionRegistry, default_registry
from engine.config import Config
from engine.executors.python import PythonExecutor
from engine.gates import GateChain, LeaseKeeper, default_gates
from engine.inventory import Inventory
from engine.redaction import Redactor
from engine.resources import ResourceRegistry
from engine.runbook import Runbook
from engine.runbook_loader import load_runbooks
from engine.store import Store, open_store


class UnknownRunbook(LookupError):
    pass


class EngineContext:
    def __init__(self, config: Config, *, store: Store | None = None,
                 registry: ActionRegistry | None = None,
                 resources: ResourceRegistry | None = None,
                 gates: GateChain | None = None,
                 runbooks: list[Runbook] | None = None) -> None:
        self.config = config
        config.ensure_home()
        self.store = store or open_store(config.state_url, base_dir=config.base_dir,
                                         synchronous=config.state_synchronous)
        self.registry = registry or default_registry(config.action_modules)
        self.resources = resources or ResourceRegistry()
        self.resources.canonicalize_with(self.canonical_target)
        self.gates = gates or GateChain(default_gates(config))
        self.redactor = Redactor.from_environment()
        self.python = PythonExecutor(self.registry)
        self.leases = LeaseKeeper(self.store, config.lock_ttl)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._runbooks = runbooks
        self._lock = threading.Lock()
        # run id -> cancel event, for runs executing in this process
        self.running: dict[str, threading.Event] = {}

    # -- runbooks ----------------------------------------------------------------------
    @property
    def runbooks(self) -> list[Runbook]:
        with self._lock:
            if self._runbooks is None:
                self._runbooks = load_runbooks(
                    self.config.runbooks_dir, known_actions=self.registry.names(),
                    playbooks_dir=self.config.playbooks_dir)
            return self._runbooks

    def runbook(self, name: str) -> Runbook:
        """A runbook by name, else the one runbook of that component."""
        for rb in self.runbooks:
            if rb.name == name:
                return rb
        of_component = [rb for rb in self.runbooks if rb.component == name]
        if len(of_component) == 1:
            return of_component[0]
        if of_component:
            names = ", ".join(rb.name for rb in of_component)
            raise UnknownRunbook(f"component {name!r} has several runbooks ({names}): name one")
        known = ", ".join(sorted({rb.component for rb in self.runbooks}))
        raise UnknownRunbook(f"no runbook for {name!r} (components: {known})")

    # -- heavy parts, on first use -----------------------------------------------------
    @cached_property
    def inventory(self) -> Inventory:
        return Inventory(self.config.inventory_path)

    @cached_property
    def ansible(self):  # -> engine.executors.ansible.AnsibleExecutor
        from engine.executors.ansible import AnsibleExecutor

        return AnsibleExecutor(self.config.playbooks_dir, self.config.inventory_path,
                               redactor=self.redactor)

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
