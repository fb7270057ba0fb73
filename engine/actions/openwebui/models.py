"""The default model: ``openwebui.model_failover`` makes the next answering fallback the
default; ``openwebui.default_model_answers`` verifies that the default answers."""

from __future__ import annotations

from types import MappingProxyType

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
from engine.actions.openwebui.admin import Admin, with_admin
from engine.actions.openwebui.api import ANSWER_WITHIN


def _fallbacks(ctx: ActionContext) -> list[str]:
    """The fallback list: the runbook's ``with: {fallback_models: [...]}``, else the
    host var ``openwebui_fallback_models`` (a list, or one comma-separated string)."""
    raw = ctx.params.get("fallback_models") or ctx.host_vars.get("openwebui_fallback_models")
    if isinstance(raw, str):
        raw = raw.split(",")
    return [str(m).strip() for m in (raw or []) if str(m).strip()]


class ModelFailover(Action):
    """When the default model does not answer, make the next healthy fallback the default.

    Remote: reads DEFAULT_MODELS (admin API), asks the default a one-token chat
    completion; if it does not answer, tries each model of the fallback list that
    OpenWebUI offers, in order, and writes the first that answers as the new first
    default (the other defaults and MODEL_ORDER_LIST are kept). A default that answers
    again is left alone. It never switches back by itself: once the primary is healthy,
    an operator sets it again (the run's ``data`` keeps the previous default). It cannot
    help when every fallback is down, nor change a model a user picked in a chat.
    """

    name = "openwebui.model_failover"
    scope = REMOTE
    timeout = 60.0
    # Would a run change OpenWebUI's configuration (its default model)? Its plan asks the
    # default for one token: `approval: {when: [{fact: changes_config, is_true: true}]}`.
    reports = MappingProxyType({"changes_config": "bool"})

    def run(self, ctx: ActionContext) -> ActionResult:
        fallbacks = _fallbacks(ctx)
        if not fallbacks:       # not applicable here, whatever else the step says
            return ActionResult(False, f"no fallback models for {ctx.target}: set "
                                "openwebui_fallback_models in the inventory (or with: "
                                "{fallback_models: [...]} in the runbook)",
                                not_applicable=True)
        within = float(ctx.params.get("answer_within", ANSWER_WITHIN))
        return with_admin(ctx, lambda admin: self._failover(ctx, admin, fallbacks, within))

    def _failover(self, ctx: ActionContext, admin: Admin, fallbacks: list[str],
                  within: float) -> ActionResult:
        defaults, order = admin.defaults()
        primary = defaults[0] if defaults else None
        tried: dict[str, str] = {}
        if primary:
            ok, why = admin.answers(primary, within)
            if ok:
                return ActionResult(True, f"the default model {primary!r} {why}: nothing "
                                    "switched", data={"default": primary, "switched": False})
            tried[primary] = why
        offered = set(admin.offered())
        for model in fallbacks:
            if ctx.cancel.is_set():
                return ActionResult(False, "canceled before a healthy model was found",
                                    data={"tried": tried})
            if model in tried:
                continue
            if model not in offered:
                tried[model] = "not offered by this OpenWebUI"
                continue
            ok, why = admin.answers(model, within)
            if not ok:
                tried[model] = why
                continue
            now = admin.set_defaults([model, *(d for d in defaults[1:] if d != model)], order)
            if not now or now[0] != model:
                return ActionResult(False, f"wrote {model!r} as the default model but "
                                    f"OpenWebUI now reports {now!r}", data={"tried": tried})
            was = f"{primary!r} ({tried[primary]})" if primary else "none"
            others = "; ".join(f"{m}: {w}" for m, w in tried.items() if m != primary)
            return ActionResult(True, (
                f"default model switched from {was} to {model!r} ({why}) via {admin.how}"
                + (f"; skipped {others}" if others else "")
                + ". Switch back by hand once the primary answers again."),
                data={"previous": primary, "default": model, "defaults": now,
                      "tried": tried, "switched": True})
        listed = "; ".join(f"{m}: {w}" for m, w in tried.items())
        return ActionResult(False, f"no model of the fallback list answers: {listed}",
                            data={"previous": primary, "tried": tried, "switched": False})

    def plan(self, ctx: ActionContext) -> ActionResult:
        fallbacks = _fallbacks(ctx)
        if not fallbacks:
            return self.run(ctx)

        within = float(ctx.params.get("answer_within", ANSWER_WITHIN))

        def describe(admin: Admin) -> ActionResult:
            defaults, _ = admin.defaults()
            offered = set(admin.offered())
            listed = ", ".join(m + ("" if m in offered else " (not offered)") for m in fallbacks)
            primary = defaults[0] if defaults else None
            answers, why = admin.answers(primary, within) if primary else (False, "none set")
            # As a run goes: a default that answers is left alone; else the first offered
            # fallback that answers is written (whether one will is known only then).
            changes = not answers and any(m in offered and m != primary for m in fallbacks)
            then = ("it answers now: nothing would be switched" if answers else
                    f"now: {why}; a run would make the first answering model of "
                    f"[{listed}] the default" if changes else
                    f"now: {why}; no model of [{listed}] is offered to switch to")
            return ActionResult(True, f"would ask the default model {primary!r} for one "
                                f"token ({then})", data={
                "defaults": defaults, "fallbacks": fallbacks,
                "facts": {"changes_config": changes}})

        return with_admin(ctx, describe)


class DefaultModelAnswers(Action):
    """Verify of ``model_failover``, and the runbook's verify (so the probe's check): the
    configured default model answers a one-token chat completion. GET /health answers 200
    while every model is down, so only this may switch ``openwebui_unavailable`` off."""

    name = "openwebui.default_model_answers"
    scope = REMOTE
    timeout = 20.0

    def run(self, ctx: ActionContext) -> ActionResult:
        within = float(ctx.params.get("answer_within", ANSWER_WITHIN))

        def check(admin: Admin) -> ActionResult:
            defaults, _ = admin.defaults()
            if not defaults:
                return ActionResult(False, "no default model is configured")
            ok, why = admin.answers(defaults[0], within)
            return ActionResult(ok, f"default model {defaults[0]!r}: {why}")

        return with_admin(ctx, check)

    plan = run
