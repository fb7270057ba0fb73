"""What a playbook step will do on each host, in words, before it runs.

Why: the approver of "restart Redis" must see ``systemctl restart redis-server on
cache-1``, not ``service_default=redis``; the playbook decides per host, from inventory
variables, so the plan (``recovery test``, ``recover --check``, an approval's plan) must
decide the same way. Each described playbook has a small description here: which host
variables it reads, in which order, and the command each choice runs. Nothing here is
templated or evaluated: values are looked up by fixed names (extravars first, as Ansible
ranks them, then the host's variables) and checked against the patterns the playbook
checks, so an alert label can at most become a name that is shown, or refused. A
playbook without a description is shown as before (its name and extravars).
tests/integration/test_service_restart.py runs the playbooks to prove the two agree.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.inventory import Inventory

RUNTIMES = ("docker", "podman")
MANAGERS = (*RUNTIMES, "supervisor", "systemd")
# The names the playbooks accept (restart_service.yml, restart_container.yml,
# process_restart.yml): never an option, never a whole supervisor group.
CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
PROGRAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*(:[A-Za-z0-9_.@-]+)?\Z")
COMPONENT_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
CONTAINER_VAR = re.compile(r"[a-z][a-z0-9_]*_container\Z")
STOP_TIMEOUT = re.compile(r"[0-9]{1,4}\Z")


@dataclass(frozen=True)
class HostEffect:
    """One host's part of a step: the command it will run, or why it will refuse."""

    host: str
    argv: tuple[str, ...] = ()
    manager: str = ""
    refused: str = ""

    @property
    def text(self) -> str:
        if self.refused:
            return f"refused on {self.host}: {self.refused}"
        return f"{shlex.join(self.argv)} on {self.host}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"host": self.host, "text": self.text}
        if self.refused:
            out["refused"] = self.refused
        else:
            out.update(manager=self.manager, argv=list(self.argv))
        return out


class _Vars:
    """A host's variables as a play sees them: extravars first, then the host's own."""

    def __init__(self, extravars: Mapping[str, Any], host_vars: Mapping[str, Any]) -> None:
        self.extra, self.host = extravars, host_vars

    def get(self, name: str, default: Any = None) -> Any:
        if name in self.extra:
            return self.extra[name]
        return self.host.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.extra or name in self.host


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _name(value: Any) -> Any:
    """A name as the playbooks test it: missing is empty, anything else as it is (a
    number is not a name: the playbooks check ``is string``)."""
    return "" if value is None else value


def _container_argv(runtime: str, stop_timeout: Any, name: Any) -> tuple[str, ...] | str:
    if runtime not in RUNTIMES:
        return f"the runtime must be docker or podman (got {runtime!r})"
    if not STOP_TIMEOUT.match(_text(stop_timeout)):
        return f"container_stop_timeout must be whole seconds (got {stop_timeout!r})"
    if not isinstance(name, str) or not CONTAINER_NAME.match(name):
        return f"the container name {name!r} must be a plain name"
    return (runtime, "restart", "-t", _text(stop_timeout), name)


def _program_argv(manager: str, name: Any, v: _Vars) -> tuple[str, ...] | str:
    if not isinstance(name, str) or not PROGRAM_NAME.match(name) or name == "all":
        return f"the program name {name!r} must be a plain name, not all"
    if manager == "systemd":
        return ("systemctl", "restart", name)
    config = _text(v.get("supervisor_config", ""))
    return (_text(v.get("supervisorctl_bin", "supervisorctl")),
            *(("-c", config) if config else ()), "restart", name)


def restart_service(host: str, v: _Vars, component: str) -> HostEffect:
    """restart_service.yml: the manager from ``<component>_service_manager`` or
    ``service_manager``; the name from ``service_name``, ``<component>_container``
    (docker, podman) or ``<component>_program`` (supervisor, systemd), or
    ``service_default``."""
    component = _text(v.get("service_component", component))
    if component and not COMPONENT_NAME.match(component):
        return HostEffect(host, refused=f"the component {component!r} is not a plain "
                                        "lower-case name")
    manager = _text(v.get(f"{component}_service_manager", v.get("service_manager", ""))
                    if component else v.get("service_manager", ""))
    if manager not in MANAGERS:
        return HostEffect(host, refused=f"{component or '<component>'}_service_manager or "
                                        "service_manager must be docker, podman, supervisor "
                                        f"or systemd (got {manager!r})")
    kind = "container" if manager in RUNTIMES else "program"
    if v.has("service_name"):
        name = _name(v.get("service_name"))
    else:
        fallback = v.get("service_default", "")
        name = _name(v.get(f"{component}_{kind}", fallback) if component else fallback)
    argv = (_container_argv(manager, v.get("container_stop_timeout", 10), name)
            if kind == "container" else _program_argv(manager, name, v))
    if isinstance(argv, str):
        return HostEffect(host, manager=manager, refused=argv)
    return _imported_play(host, v, kind, manager, name)


def _imported_play(host: str, v: _Vars, kind: str, manager: str, name: Any) -> HostEffect:
    """What the play restart_service.yml imports acts on. It hands the choice over as play
    vars (``container``/``container_runtime``, ``program``/``service_manager``), and
    extravars beat play vars: an extravar of one of those names is what that play
    restarts, whatever the first play chose, so the plan names that, or its refusal."""
    if kind == "container":
        runtime = _text(v.extra.get("container_runtime", manager))
        name = _name(v.extra.get("container", name))
        argv = _container_argv(runtime, v.get("container_stop_timeout", 10), name)
    else:
        runtime = _text(v.extra.get("service_manager", manager))
        name = _name(v.extra.get("program", name))
        argv = (_program_argv(runtime, name, v) if runtime in ("supervisor", "systemd")
                else f"process_restart.yml takes service_manager supervisor or systemd "
                     f"(got {runtime!r} from the extravars)")
    if isinstance(argv, str):
        return HostEffect(host, manager=runtime, refused=argv)
    return HostEffect(host, argv=argv, manager=runtime)


def restart_container(host: str, v: _Vars, component: str) -> HostEffect:
    """restart_container.yml: ``container``, else the host var ``container_var`` names,
    else ``container_default``; ``container_runtime`` (docker)."""
    del component  # the container comes from container_var, not the component
    var = _text(v.get("container_var", ""))
    if var and not CONTAINER_VAR.match(var):
        return HostEffect(host, refused=f"container_var {var!r} must look like <thing>_container")
    if v.has("container"):
        name = _name(v.get("container"))
    else:
        fallback = v.get("container_default", "")
        name = _name(v.get(var, fallback) if var else fallback)
    runtime = _text(v.get("container_runtime", "docker"))
    argv = _container_argv(runtime, v.get("container_stop_timeout", 10), name)
    if isinstance(argv, str):
        return HostEffect(host, manager=runtime, refused=argv)
    return HostEffect(host, argv=argv, manager=runtime)


Describer = Callable[[str, _Vars, str], HostEffect]
DESCRIBED: dict[str, Describer] = {
    "restart_service.yml": restart_service,
    "restart_container.yml": restart_container,
}


def describes(playbook: str | None) -> bool:
    """Whether the plan can say, per host, what this playbook will run."""
    return playbook in DESCRIBED


def host_effects(playbook: str, extravars: Mapping[str, Any], component: str,
                 hosts: list[str], inventory: Inventory) -> list[HostEffect]:
    """What ``playbook`` will run on each of ``hosts``, read from ``inventory`` (an
    unknown host: refused); empty when the playbook has no description."""
    describe = DESCRIBED.get(playbook)
    if describe is None:
        return []
    effects = []
    for name in hosts:
        host = inventory.get(name)
        if host is None:
            effects.append(HostEffect(name, refused="not in the inventory"))
            continue
        effects.append(describe(name, _Vars(extravars, host.vars), component))
    return effects
