"""Host actions with psutil: the machine this process runs on.

psutil reads *this* machine only, so every action here acts or reports only for a
local target (``localhost``, or a host with ``ansible_connection: local``); for another
host it is `skipped` with the reason (host-level changes there are playbooks:
``disk_cleanup.yml``, ``process_restart.yml``). What they act on comes from the
inventory (host vars) or the runbook's ``with:``, never from alert labels.

The verify of a playbook step on another host: with ``with: {remote: playbook}`` (set
by the runbook on disk_cleanup's and process_restart's verify only) ``system.health``
and ``system.process_running`` pass for a non-local target and say that the playbook's
own check is the verification there (disk_cleanup fails unless df after the cleanup is
under the threshold; process_restart fails unless the program runs with a new pid). A
verify only runs after the step succeeded, so that check has passed; nothing watches
the host from here afterwards (no ``stable_for`` there). Never set it on a probe.

- ``system.health``: probe and verify: disk use of the cleanup roots and memory.
- ``system.memory_gc``: ``gc.collect()`` in the process that registered ``system``;
  elsewhere a report of the biggest processes only.
- ``system.file_handle_cleanup``: in an application, closes what it registered as
  closable and idle (``closables``); then open files per process against RLIMIT_NOFILE,
  raising the soft limit to the hard one for the processes an operator allowed.
- ``system.file_handles``: its verify: no watched process near its limit.
- ``system.process_running``: the verify of ``process_restart``: the program runs.

One module per concept: ``local`` (which targets are this machine, and what a step
reads from the inventory or its ``with:``), ``health``, ``memory``, ``file_handles``,
``closables`` (what an application registers for it to close) and ``processes``.
This package is the entry point the registry imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.actions.system.file_handles import FileHandleCleanup, FileHandles
from engine.actions.system.health import Health
from engine.actions.system.memory import MemoryGC
from engine.actions.system.processes import ProcessRunning

if TYPE_CHECKING:
    from engine.actions.registry import ActionRegistry


def register(registry: ActionRegistry) -> None:
    """Register the host actions (the registry imports this package by name)."""
    for action in (Health(), MemoryGC(), FileHandles(), FileHandleCleanup(),
                   ProcessRunning()):
        registry.register(action)
