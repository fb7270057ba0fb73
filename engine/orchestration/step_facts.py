"""The facts a step's plan reports, for an approval that depends on them.

A step whose ``approval:`` has conditions (engine.runbooks.approval_rules) is planned
first: its python action's ``plan`` or its playbook under ``--check``, changing nothing,
on the incident's target. What the plan reports (``data["facts"]``) is what the approval
gate judges; a plan that fails leaves the facts undetermined, and the gate then asks a
person (fail safe), saying why. The plan's own artifacts are scratch: only the facts and
the reason are kept, in the step's run record.

Facts judged at plan time must hold at run time, so a plan may also return pins
(``data["pins"]``: an action's, or a playbook's ``set_stats`` ``recovery_pins``): the
parameters its run must use to stay within what was judged (the snapshot chosen, the
most keys a flush may delete). A step let through on its facts runs with them among its
params or extravars; only names ending in ``_pin`` are taken, so a plan can bound its run
but never replace what the runbook set.

A person approves what they were shown: a step that parks is planned then (when its
action or playbook reports facts), and what its plan judged, pins included, is kept with
the approval (``plan["judged"]``, shown by ``recovery pending``). The approved run is held
to those pins (and told who approved, ``approved_by_pin``, so its reason can say so), not
decided again at run time. A plan that could not be made is said in the pending view and
the approved run goes as the runbook says: refusing it would leave the person no way to
act when the step is most needed (its plan fails because the target is broken).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from engine.artifacts import RunArtifacts
from engine.context import EngineContext
from engine.lifecycle import RunStatus
from engine.orchestration.step import execute, new_run
from engine.records import Approval, Incident
from engine.runbooks.loader import playbook_reports
from engine.runbooks.model import Mode, Runbook, Strategy

Facts = dict[str, Any]


class StepFacts:
    """A step's facts, planned at most once and only when the approval gate asks for them
    (a step a gate before it refuses or defers is not planned): ``get`` is what the gate
    calls, ``planned`` what was found, for the run's record (None until asked)."""

    def __init__(self, ctx: EngineContext, incident: Incident, runbook: Runbook,
                 strategy: Strategy) -> None:
        self._args = (ctx, incident, runbook, strategy)
        self.planned: tuple[Facts | None, str | None] | None = None
        self.pins: dict[str, Any] = {}     # what the run must use: see the module's doc

    def get(self) -> tuple[Facts | None, str | None]:
        if self.planned is None:
            facts, error, self.pins = plan_facts(*self._args)
            self.planned = facts, error
        return self.planned

    def record(self) -> dict[str, Any] | None:
        """What the approval's conditions were judged on (and the pins its run is held
        to), for run.json; None: not asked."""
        if self.planned is None:
            return None
        return {"facts": self.planned[0], "error": self.planned[1], "pins": self.pins}


def facts_needed(runbook: Runbook, strategy: Strategy, approved_by: str | None) -> bool:
    """Only a conditional approval not yet decided needs the facts: an unconditional one
    (or ``mode: approve``) asks anyway, an approved step runs."""
    return (bool(strategy.approval_when) and not strategy.approval
            and runbook.mode != Mode.APPROVE and not approved_by)


def plan_facts(ctx: EngineContext, incident: Incident, runbook: Runbook,
               strategy: Strategy) -> tuple[Facts | None, str | None, dict[str, Any]]:
    """Plan the step on the incident's target and return (facts, None, pins), or
    (None, why, {}) when its plan did not succeed."""
    try:
        ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".facts-", dir=ctx.artifacts_dir) as scratch:
            artifacts = RunArtifacts(Path(scratch), "plan", ctx.redactor).create()
            run = new_run(ctx, incident, runbook, strategy, RunStatus.RUNNING, time.time(),
                          check_mode=True)
            result = execute(ctx, incident, runbook, strategy, run, artifacts,
                             threading.Event(), check=True)
    except Exception as exc:  # noqa: BLE001 - a plan that cannot run tells nothing: ask
        return None, f"its plan could not run: {type(exc).__name__}: {exc}", {}
    if result.status != RunStatus.SUCCEEDED:
        return None, f"its plan {result.status.value}: {result.reason}", {}
    facts, pins = result.data.get("facts"), result.data.get("pins")
    return ((dict(facts) if isinstance(facts, dict) else {}), None,
            {str(k): v for k, v in pins.items() if str(k).endswith("_pin")}
            if isinstance(pins, dict) else {})


def reports_facts(ctx: EngineContext, strategy: Strategy) -> bool:
    """Whether the step's plan reports facts (and so may pin its run): its action declares
    ``reports``, or its playbook ``recovery_reports``."""
    if strategy.playbook:
        return bool(playbook_reports(ctx.files.paths.playbooks_dir / strategy.playbook))
    return bool(ctx.registry.catalogue().get(strategy.action or ""))


def judged_for_approval(ctx: EngineContext, incident: Incident, runbook: Runbook,
                        strategy: Strategy, planned: dict[str, Any] | None
                        ) -> dict[str, Any] | None:
    """What the approver is shown the step's plan judged (facts, pins, or why there are
    none): ``planned`` when the approval gate already planned it, else planned now; None
    for a step whose plan reports nothing."""
    if planned is not None:
        return planned
    if not reports_facts(ctx, strategy):
        return None
    facts, error, pins = plan_facts(ctx, incident, runbook, strategy)
    return {"facts": facts, "error": error, "pins": pins}


def approved_pins(approval: Approval | None, by: str) -> dict[str, Any]:
    """The pins an approved run is held to: those of the plan its approver was shown
    (empty when that plan pinned nothing or could not be made), with who approved."""
    judged = (approval.plan or {}).get("judged") if approval is not None else None
    pins = judged.get("pins") if isinstance(judged, dict) else None
    if not isinstance(pins, dict) or not pins:
        return {}
    return {**{str(k): v for k, v in pins.items() if str(k).endswith("_pin")},
            "approved_by_pin": by}
