"""A python action's own words (its summary: the run's reason) pass the redactor before
they leave the executor, as a playbook's do: the reason is kept in the store, printed
by ``history`` and said in the service's log, none of which may carry a secret."""

from __future__ import annotations

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
from engine.actions.registry import ActionRegistry
from engine.artifacts import RunArtifacts
from engine.executors.python import PythonExecutor
from engine.security.redaction import MASK, Redactor

SECRET = "s3cr3t-Passw0rd-for-redis"


class Leaky(Action):
    name, scope = "test.leaky", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(False, f"AUTH failed with {SECRET} on {ctx.target}")


def test_a_python_actions_reason_comes_back_redacted(tmp_path):
    registry = ActionRegistry()
    registry.register(Leaky())
    artifacts = RunArtifacts(tmp_path, "run-1", Redactor([SECRET])).create()
    result = PythonExecutor(registry).run(
        artifacts=artifacts, action="test.leaky",
        ctx=ActionContext(component="redis", target="cache-1"))
    assert SECRET not in result.reason and MASK in result.reason
    assert "on cache-1" in result.reason
