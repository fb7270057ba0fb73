"""In-process actions: ``base`` says what one is, ``registry`` finds them by name,
and one module per component defines them."""

from engine.actions.base import (
    EMBEDDED,
    REMOTE,
    Action,
    ActionContext,
    ActionResult,
    NotImplementedAction,
)
from engine.actions.registry import ActionRegistry, UnknownAction, default_registry

__all__ = ["EMBEDDED", "REMOTE", "Action", "ActionContext", "ActionRegistry", "ActionResult",
           "NotImplementedAction", "UnknownAction", "default_registry"]
