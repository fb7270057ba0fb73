"""What an in-process action is: a name, a scope, ``run`` and ``plan``.

Scope (docs/runbooks.md, "Actions and scopes"): ``embedded`` actions act on resources
that *this* process registered (a redis-py pool, a chromadb client) and are skipped
where nothing is registered; ``remote`` actions act through a server's own API and work
anywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.resources import ResourceRegistry

EMBEDDED = "embedded"
REMOTE = "remote"


@dataclass
class ActionResult:
    ok: bool
    summary: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    not_applicable: bool = False        # nothing here to act on: the step is `skipped`


@dataclass
class ActionContext:
    """Everything an action may use. Endpoints come from inventory host vars, never labels."""

    component: str
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    host_vars: Mapping[str, Any] = field(default_factory=dict)
    resources: ResourceRegistry = field(default_factory=ResourceRegistry)
    failure_type: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)   # data only
    check_mode: bool = False
    log: Callable[[str], None] = lambda message: None
    cancel: threading.Event = field(default_factory=threading.Event)

    def endpoint(self, name: str) -> str | None:
        """An endpoint such as ``redis_url`` from the target's inventory variables."""
        value = self.host_vars.get(name)
        return str(value) if value else None

    def resource(self, name: str | None = None) -> Any:
        return self.resources.get(name or self.component, self.target)


def no_endpoint(ctx: ActionContext, name: str) -> ActionResult:
    """Not applicable here: the target has no ``name`` endpoint in the inventory (an
    action never takes one from a label), so the step is `skipped`, saying so."""
    return ActionResult(False, f"no {name} for {ctx.target} in the inventory",
                        not_applicable=True)


class Action:
    """Base class: subclasses set ``name`` and ``scope`` and override ``run``/``plan``."""

    name = ""
    scope = REMOTE
    timeout = 60.0
    resource: str | None = None         # embedded: the registered resource it needs
    # The facts its plan reports in ``ActionResult.data["facts"]`` (name -> kind: bytes,
    # count, number, bool, text), that a step's `approval: {when: ...}` may test.
    reports: Mapping[str, str] = MappingProxyType({})

    def run(self, ctx: ActionContext) -> ActionResult:
        raise NotImplementedError

    def plan(self, ctx: ActionContext) -> ActionResult:
        """What ``run`` would do, changing nothing (``--check``)."""
        return ActionResult(True, f"would run {self.name} on {ctx.target}")

    def needed_resource(self) -> str:
        return self.resource or self.name.split(".", 1)[0]


class PlannedAction(Action):
    """An action whose ``plan`` walks the same path as its ``run`` and stops before it
    changes anything: one method, ``act(ctx, change)``, serves both, so what ``--check``
    reports cannot drift from what a run does."""

    def run(self, ctx: ActionContext) -> ActionResult:
        return self.act(ctx, change=True)

    def plan(self, ctx: ActionContext) -> ActionResult:
        return self.act(ctx, change=False)

    def act(self, ctx: ActionContext, change: bool) -> ActionResult:
        raise NotImplementedError


class NotImplementedAction(Action):
    """A strategy a runbook names whose code is not written yet: ends as `skipped`, said so."""

    def __init__(self, name: str, scope: str = REMOTE) -> None:
        self.name, self.scope = name, scope

    def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(False, f"action {self.name} is not implemented yet",
                            not_applicable=True)

    plan = run
