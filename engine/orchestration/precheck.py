"""Healthy hosts are left alone: before a host of a group is acted on, is it failing at all?

A group target (``recover --target redis``, a step's ``target: redis``) names every host of
the group, healthy or not; restarting the healthy ones wipes their caches for nothing. So
before a host of a group is acted on, the step's verify is asked once (one check, no
polling: the question is "is it healthy now?", not "did a fix hold?"). A healthy host is
recorded as a run ``skipped`` with the reason ``healthy`` and not touched; the operator's
``--include-healthy`` acts on it anyway. A host named by itself is never prechecked: the
operator meant it.

What it cannot tell: a step without a verify (one that only degrades) has nothing to
ask, and a check that cannot run (no endpoint, nothing registered) is no proof of
health; in both cases the host is acted on, as before.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from engine.artifacts import RunArtifacts
from engine.context import EngineContext
from engine.lifecycle import RunStatus
from engine.orchestration.step import RunCallback, action_context, end_run, new_run, open_record
from engine.records import Incident, RunRecord
from engine.runbooks.model import Runbook, Strategy

HEALTHY = "healthy"    # the reason a host is left alone, as the per-host outcome says it


@dataclass(frozen=True)
class Health:
    """One precheck's answer on one host: healthy or not, and what the check said."""

    healthy: bool
    summary: str


def first_step(runbook: Runbook, strategy: str | None = None,
               failure_type: str | None = None) -> Strategy | None:
    """The step an attempt would start with: the named one, else the first that applies."""
    if strategy:
        return runbook.strategy(strategy)
    steps = runbook.strategies_for(failure_type)
    return steps[0][1] if steps else None


def check_health(ctx: EngineContext, runbook: Runbook, strategy: Strategy,
                 host: str) -> Health | None:
    """Ask the step's verify once on ``host``; None when there is nothing to ask."""
    spec = runbook.verify_for(strategy)
    if spec is None or strategy.degrades:
        return None
    incident = _probe_incident(runbook, host)
    context = action_context(ctx, incident, runbook, spec.params, threading.Event())
    result = ctx.python.call(spec.action, context, timeout=min(spec.deadline, 30.0))
    if result.not_applicable:
        return None
    return Health(bool(result.ok), f"verify {spec.action}: {result.summary}")


def record_healthy(ctx: EngineContext, runbook: Runbook, strategy: Strategy, host: str,
                   health: Health, *, trigger: str = "manual", requested_by: str = "",
                   on_run: RunCallback | None = None) -> RunRecord:
    """The record of a host left alone: a run ``skipped``, reason ``healthy: ...``, with
    its per-host outcome in run.json. No incident is opened, no lock taken, nothing run."""
    incident = _probe_incident(runbook, host, trigger=trigger, requested_by=requested_by)
    reason = (f"{HEALTHY}: {health.summary}; left alone (a host of a group already "
              "healthy is not acted on; --include-healthy acts anyway)")
    run = new_run(ctx, incident, runbook, strategy, RunStatus.SKIPPED, time.time(),
                  incident_id=None, reason=reason)
    outcome = {"hosts": [{"host": host, "outcome": "skipped", "reason": HEALTHY}]}
    artifacts: RunArtifacts = open_record(ctx, run, outcome)
    end_run(ctx, run, artifacts, RunStatus.SKIPPED, reason, None, on_run, data=outcome)
    return run


def _probe_incident(runbook: Runbook, host: str, *, trigger: str = "manual",
                    requested_by: str = "") -> Incident:
    """A stand-in incident (never stored) so a check and its record see the host."""
    return Incident(id="-", runbook=runbook.name, component=runbook.component, target=host,
                    trigger=trigger, requested_by=requested_by)
