"""In-process actions: ``base`` says what one is, ``registry`` finds them by name,
and one package per component defines them (``redis``, ``chromadb``, ``openwebui``,
``system``), one module per concept inside."""

from engine.actions.base import (
    EMBEDDED,
    REMOTE,
    Action,
    ActionContext,
    ActionResult,
    NotImplementedAction,
    PlannedAction,
)
from engine.actions.registry import ActionRegistry, UnknownAction, default_registry

__all__ = ["EMBEDDED", "REMOTE", "Action", "ActionContext", "ActionRegistry", "ActionResult",
           "NotImplementedAction", "PlannedAction", "UnknownAction", "default_registry"]
