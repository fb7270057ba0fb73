"""What would happen, without doing it: plans for approvals, ``recovery test``, ``--check``.

``plan`` changes nothing and records nothing. ``check_runs`` records check-mode runs
(playbooks under ``--check``, python actions asked for their plan) that open no
incident, take no lock and never count toward a cooldown.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from engine.context import EngineContext
from engine.executors.effects import describes, host_effects
from engine.gates import GateContext
from engine.gates.fleet import group_share_hold, slots_in_flight
from engine.gates.lock import component_lock
from engine.lifecycle import RunStatus
from engine.orchestration.rollout import cut_batches
from engine.orchestration.step import RunCallback, beat, execute, new_run, open_record
from engine.orchestration.step_facts import StepFacts, facts_needed
from engine.orchestration.triggers import TriggerRequest, resolve_target
from engine.records import Incident, RunRecord
from engine.runbooks.approval_rules import approval_need
from engine.runbooks.model import Concurrency, Mode, Runbook, Strategy, fleet_limits
from engine.runbooks.templating import TemplateError, render_data


def plan_step(ctx: EngineContext, incident: Incident, runbook: Runbook,
              strategy: Strategy) -> dict[str, Any]:
    """The step as an approver sees it: what runs, where, with what (rendered, redacted)."""
    try:
        values = render_data(dict(strategy.extravars if strategy.playbook else strategy.params),
                             incident.labels)
    except TemplateError as exc:
        values = {"error": str(exc)}
    step: dict[str, Any] = {"strategy": strategy.name, "kind": strategy.kind,
                            "target": incident.target, "runbook": runbook.name,
                            "runbook_sha256": runbook.sha256}
    if strategy.playbook:
        step.update(playbook=strategy.playbook, extravars=values)
        if "error" not in values and describes(strategy.playbook):
            step["effect"] = [e.to_dict() for e in host_effects(
                strategy.playbook, values, runbook.component, [incident.target],
                ctx.inventory)]
    else:
        step.update(action=strategy.action, params=values)
    verify = runbook.verify_for(strategy)
    if verify is not None:
        step["verify"] = {"action": verify.action, "deadline": verify.deadline,
                          "stable_for": verify.stable_for}
    return ctx.redactor.data(step)


def plan(ctx: EngineContext, request: TriggerRequest, *,
         expand: bool = False) -> dict[str, Any]:
    """``recovery test``: runbook, resolved target, the escalation, what each gate says now.

    With ``expand``, the request's target is an operator's pattern (as ``recover
    --target``): a group lists its ``hosts`` and plans each (``per_host``); ``would``
    is their common answer, or ``mixed``."""
    from engine.alerts.routing import matching_runbooks, precedence

    matched = [] if request.runbook else matching_runbooks(ctx.runbooks, request.labels)
    runbook = ctx.runbook(request.runbook) if request.runbook else (
        matched[0] if matched else None)
    if runbook is None:
        return {"runbook": None, "reason": "no runbook matches this alert"}
    out: dict[str, Any] = {"runbook": runbook.name, "component": runbook.component,
                           "mode": runbook.mode.value, "file": runbook.path,
                           "concurrency": runbook.concurrency.value}
    if matched:
        # Every runbook the alert matches, in the order they are preferred, and why.
        out["matched"] = [{"runbook": rb.name, "file": rb.path,
                           "priority": rb.priority.name.lower(), "chosen": rb is runbook,
                           "why": "" if rb is runbook else precedence(runbook, rb)}
                          for rb in matched]
    expansion = None
    try:
        if expand and request.target:
            expansion = ctx.inventory.expand(request.target)
            target = expansion.names[0] if expansion.exact else None
        else:
            target = resolve_target(ctx, runbook, request)
        out["target"] = target if expansion is None or expansion.exact else request.target
    except Exception as exc:  # noqa: BLE001 - the plan says why, it does not crash
        out["target"] = None
        out["refused"] = f"unknown target: {exc.args[0] if exc.args else exc}"
        target = None
    if expansion is not None and "refused" not in out:
        out["hosts"] = expansion.names
    failure_type = request.failure_type or runbook.failure_type_of(request.labels)
    out["failure_type"] = failure_type
    steps = []
    chosen = None
    for strategy in runbook.strategies:
        applies = strategy.applies_to(failure_type) and (
            request.strategy in (None, strategy.name))
        steps.append({"strategy": strategy.name, "kind": strategy.kind,
                      "runs": strategy.playbook or strategy.action, "applies": applies,
                      "when": list(strategy.when), "approval": strategy.approval,
                      **approval_terms(strategy)})
        hosts = out.get("hosts") or ([target] if target else [])
        if applies and hosts and describes(strategy.playbook):
            steps[-1]["effects"] = step_effects(ctx, runbook, strategy, request.labels, hosts)
        if applies and chosen is None:
            chosen = strategy
    out["strategies"] = steps
    out["first_step"] = chosen.name if chosen else None
    if chosen and expansion is not None and not expansion.exact and "refused" not in out:
        # A group: each host is its own incident, asked its own gates.
        out["per_host"] = [_host_plan(_gates_now(ctx, runbook, chosen, host, request), host)
                           for host in expansion.names]
        _together(ctx, runbook, out["per_host"])
        if chosen.playbook:   # one Ansible run per batch (engine.orchestration.rollout)
            out["batches"] = cut_batches(list(expansion.names), chosen.serial)
            out["max_fail_percentage"] = chosen.max_fail_percentage
        verdicts = {entry["would"] for entry in out["per_host"]}
        out["would"] = verdicts.pop() if len(verdicts) == 1 else "mixed"
    elif target and chosen:
        out.update(_gates_now(ctx, runbook, chosen, target, request))
    return out


def step_effects(ctx: EngineContext, runbook: Runbook, strategy: Strategy,
                 labels: dict[str, str], hosts: list[str]) -> list[dict[str, Any]]:
    """What a playbook step will run on each host, as the inventory says
    (engine.executors.effects); empty when its playbook has no description."""
    try:
        values = render_data(dict(strategy.extravars), labels)
    except TemplateError as exc:
        return [{"host": h, "refused": str(exc), "text": f"refused on {h}: {exc}"}
                for h in hosts]
    return ctx.redactor.data([e.to_dict() for e in host_effects(
        strategy.playbook or "", values, runbook.component, hosts, ctx.inventory)])


def approval_terms(strategy: Strategy) -> dict[str, Any]:
    """A step's approval conditions and ``allow_self``, in words, where it has them."""
    terms: dict[str, Any] = {}
    if strategy.approval_when:
        terms["approval_when"] = [c.describe() for c in strategy.approval_when]
    if strategy.allow_self is not None:
        terms["allow_self"] = strategy.allow_self
    return terms


def approval_answer(runbook: Runbook, strategy: Strategy, facts: dict[str, Any] | None,
                    error: str | None) -> dict[str, Any]:
    """Would the step ask for approval, and why (the fact, its value, the rule)."""
    if strategy.approval or runbook.mode == Mode.APPROVE:
        why = ("the runbook's mode is approve" if runbook.mode == Mode.APPROVE
               else "approval: required")
        return {"asked": True, "reason": why}
    if not strategy.approval_when:
        return {"asked": False, "reason": "the step asks for none (approval: none)"}
    need = approval_need(strategy.approval_when, facts, error)
    return {"asked": need.asked, "reason": need.reason, "facts": need.facts}


def _host_plan(now: dict[str, Any], host: str) -> dict[str, Any]:
    """One host of a group's plan, with the reason of the gate that decided, if any."""
    deciding = next((g for g in now["gates"] if g["verdict"] != "allow"), None)
    return {"target": host, **now, "reason": deciding.get("reason", "") if deciding else ""}


def _together(ctx: EngineContext, runbook: Runbook, per_host: list[dict[str, Any]]) -> None:
    """Asked alone, each host of a group sees the fleet as it is now; run together, the
    fleet gate (engine.gates.fleet) counts the hosts admitted before it, and a
    ``per_component`` runbook's component lock admits one. A host the group's own earlier
    hosts would hold back is ``defer`` here too, with the reason."""
    limits = fleet_limits(ctx.config.fleet, runbook)
    now = time.time()
    busy = len(slots_in_flight(ctx.store))
    admitted: list[str] = []
    for entry in per_host:
        if entry["would"] != "allow":
            continue
        host = entry["target"]
        held = group_share_hold(ctx.store, ctx.inventory, [*admitted, host], limits, now)
        why = held[0] if held is not None else None
        if why is None and admitted and runbook.concurrency == Concurrency.PER_COMPONENT:
            why = (f"component lock {component_lock(runbook.component)} held by "
                   f"{admitted[0]} (concurrency: per_component: one at a time)")
        if why is None and busy + len(admitted) >= limits.max_in_flight:
            why = (f"fleet: {busy + len(admitted)} remediations in flight (max_in_flight "
                   f"{limits.max_in_flight})")
        if why is None:
            admitted.append(host)
            continue
        entry["would"] = "defer"
        entry["reason"] = why


def _gates_now(ctx: EngineContext, runbook: Runbook, chosen: Strategy, target: str,
               request: TriggerRequest) -> dict[str, Any]:
    """What every gate answers now for the first step on one target, changing nothing."""
    existing = ctx.store.find_open_incident(runbook.name, target)
    # An approval that depends on what the step's plan says: planned once, for the
    # approval gate and the answer below.
    facts = StepFacts(ctx, Incident(
        id="-", runbook=runbook.name, component=runbook.component, target=target,
        trigger=request.trigger, labels=dict(request.labels),
        failure_type=request.failure_type or runbook.failure_type_of(request.labels)),
        runbook, chosen) if facts_needed(runbook, chosen, None) else None
    gate_ctx = GateContext(runbook=runbook, strategy=chosen, target=target,
                           store=ctx.store, trigger=request.trigger, forced=request.force,
                           starts_attempt=existing is None or existing.attempt_id is None,
                           dry=True, holder=ctx.holder, inventory=ctx.inventory,
                           facts=facts.get if facts is not None else None)
    final, asked = ctx.gates.decide(gate_ctx)
    found, error = facts.get() if facts is not None else (None, None)
    out: dict[str, Any] = {"gates": [d.to_dict() for d in asked],
                           "would": final.verdict.value,
                           "approval": approval_answer(runbook, chosen, found, error)}
    if existing is not None:
        out["open_incident"] = existing.id
    return out


def check_runs(ctx: EngineContext, runbook: Runbook, target: str, *,
               strategy: str | None = None, diff: bool = False, requested_by: str = "",
               on_run: RunCallback | None = None) -> list[RunRecord]:
    """``recover --check``: every step in check mode; nothing changes, nothing counts."""
    incident = Incident(id="-", runbook=runbook.name, component=runbook.component,
                        target=target, trigger="manual", requested_by=requested_by)
    runs = []
    for step in runbook.strategies:
        if strategy and step.name != strategy:
            continue
        now = time.time()
        gate_ctx = GateContext(runbook=runbook, strategy=step, target=target, store=ctx.store,
                               check_mode=True, holder=ctx.holder, inventory=ctx.inventory)
        _final, asked = ctx.gates.decide(gate_ctx)
        run = new_run(ctx, incident, runbook, step, RunStatus.RUNNING, now, incident_id=None,
                      check_mode=True, reason="check mode")
        artifacts = open_record(ctx, run, {"gates": [d.to_dict() for d in asked]})
        cancel = threading.Event()
        ctx.running[run.id] = cancel
        ctx.store.add_run(run)
        if on_run:
            on_run(run)
        lease = ctx.leases.hold(None, on_beat=lambda r=run.id, c=cancel: beat(ctx, r, c))
        try:
            result = execute(ctx, incident, runbook, step, run, artifacts, cancel,
                             check=True, diff=diff)
        finally:
            lease.release()
            ctx.running.pop(run.id, None)
        run.status, run.finished_at = result.status, time.time()
        answer = approval_answer(runbook, step, result.data.get("facts") if result.ok else None,
                                 None if result.ok else f"its plan {result.status.value}: "
                                 f"{result.reason}")
        # Whether a real run would ask a person first, and why, beside what the plan did.
        run.reason = (f"{result.reason}; approval "
                      f"{'would be asked' if answer['asked'] else 'not needed'}: "
                      f"{answer['reason']}" if answer["asked"] or step.approval_when
                      else result.reason)
        ctx.store.update_run(run.id, status=result.status, reason=run.reason,
                             finished_at=run.finished_at)
        artifacts.write_run_json({"status": result.status.value, "reason": run.reason,
                                  "finished_at": run.finished_at, "result": result.data,
                                  "approval": answer})
        if on_run:
            on_run(run)
        runs.append(run)
    return runs
