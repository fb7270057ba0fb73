"""Named actions (``redis.reconnect``), looked up by the runbooks that name them."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from engine.actions.base import Action

BUILTIN_MODULES = ("engine.actions.redis", "engine.actions.chromadb",
                   "engine.actions.openwebui", "engine.actions.system")


class UnknownAction(KeyError):
    pass


class ActionRegistry:
    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def register(self, action: Action) -> Action:
        if not action.name or "." not in action.name:
            raise ValueError(f"action names are component.verb, got {action.name!r}")
        self._actions[action.name] = action
        return action

    def get(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            raise UnknownAction(f"no action named {name!r}") from None

    def names(self) -> set[str]:
        return set(self._actions)

    def catalogue(self) -> dict[str, dict[str, str]]:
        """Each action's name and the facts its plan reports (for the runbook loader,
        which checks an approval's conditions against them)."""
        return {name: dict(action.reports) for name, action in self._actions.items()}

    def load_modules(self, modules: Iterable[str]) -> None:
        """Import modules that define ``register(registry)`` (built-ins and plug-ins)."""
        for module_name in modules:
            module = importlib.import_module(module_name)
            module.register(self)


def default_registry(extra_modules: Iterable[str] = ()) -> ActionRegistry:
    registry = ActionRegistry()
    registry.load_modules((*BUILTIN_MODULES, *extra_modules))
    return registry
