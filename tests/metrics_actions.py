"""Actions for tests/test_metrics.py (``action_modules: [tests.metrics_actions]``).

``demo.ok`` succeeds and ``demo.fail`` fails at once, both remote-scoped, so the
metrics tests drive real incidents without a server to act on.
"""

from __future__ import annotations

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult


class Ok(Action):
    name = "demo.ok"
    scope = REMOTE
    timeout = 5.0

    def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(True, f"ok on {ctx.target}")


class Fail(Action):
    name = "demo.fail"
    scope = REMOTE
    timeout = 5.0

    def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(False, f"still broken on {ctx.target}")


def register(registry) -> None:
    registry.register(Ok())
    registry.register(Fail())
