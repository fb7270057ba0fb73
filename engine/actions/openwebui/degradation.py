"""``openwebui.graceful_degradation``: the last resort, naming the direct model API
callers use while OpenWebUI is out of the path."""

from __future__ import annotations

import os

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
from engine.actions.openwebui.api import DIRECT_KEY_ENV, HTTP_TIMEOUT, error_detail, http_client


class GracefulDegradation(Action):
    """Last resort: OpenWebUI stays out of the path; callers use the direct model API.

    The engine switches ``openwebui_unavailable`` on for the target (the step is
    ``degrades: true``) and ends the incident ``degraded``; this action names what callers
    should use instead: the OpenAI-compatible API behind OpenWebUI (Ollama's ``/v1``, an
    OpenAI endpoint...) from the host var ``openwebui_direct_api_url``, after checking
    that it answers GET /models. With no direct API configured, callers switch chat off;
    if the direct API does not answer either there is nothing to degrade to and the step
    fails (the incident ends ``failed``, the mode stays on). It changes nothing on
    OpenWebUI or the model server.
    """

    name = "openwebui.graceful_degradation"
    scope = REMOTE
    timeout = 30.0

    def _check(self, ctx: ActionContext) -> tuple[str | None, list[str] | None, str]:
        """(direct API URL, its models or None when it does not answer, why)."""
        import httpx

        direct = ctx.endpoint("openwebui_direct_api_url")
        if not direct:
            return None, None, "no direct model API in the inventory (openwebui_direct_api_url)"
        direct = direct.rstrip("/")
        key = os.environ.get(DIRECT_KEY_ENV)
        try:
            with http_client(timeout=HTTP_TIMEOUT) as http:
                response = http.get(direct + "/models", headers=(
                    {"Authorization": f"Bearer {key}"} if key else None))
        except httpx.HTTPError as exc:
            return direct, None, f"{type(exc).__name__}: {exc}"
        if response.status_code != 200:
            return direct, None, error_detail(response)
        try:
            models = [str(m.get("id")) for m in response.json().get("data", []) if m.get("id")]
        except (ValueError, AttributeError):
            return direct, None, "GET /models did not answer a model list"
        return direct, models, f"{len(models)} models"

    def run(self, ctx: ActionContext) -> ActionResult:
        direct, models, why = self._check(ctx)
        if direct is None:
            return ActionResult(True, (
                f"openwebui_unavailable goes on for {ctx.target}; {why}, so callers switch "
                "chat off until OpenWebUI recovers"), data={"direct_model_api": None})
        if models is None:
            return ActionResult(False, f"the direct model API at {direct} does not answer "
                                f"either ({why}): nothing to degrade to",
                                data={"direct_model_api": direct})
        shown = ", ".join(models[:5]) + (", ..." if len(models) > 5 else "")
        return ActionResult(True, (
            f"openwebui_unavailable goes on for {ctx.target}: callers use the direct model "
            f"API at {direct} (OpenAI-compatible, answers with {why}: {shown}) until OpenWebUI "
            "recovers"), data={"direct_model_api": direct, "models": models})

    def plan(self, ctx: ActionContext) -> ActionResult:
        direct, models, why = self._check(ctx)
        if direct is None:
            return ActionResult(True, f"would switch openwebui_unavailable on for "
                                f"{ctx.target} ({why}: callers switch chat off)")
        state = f"answers now ({why})" if models is not None else f"does NOT answer ({why})"
        return ActionResult(models is not None, (
            f"would switch openwebui_unavailable on for {ctx.target} and point callers at "
            f"the direct model API {direct}, which {state}"), data={"direct_model_api": direct})
