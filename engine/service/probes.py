"""Health probes: the workers check each probed runbook's hosts by themselves, so
recovery works without Alertmanager too.

Every ``probe.interval`` per (runbook, host), one check (the probe's action, or the
runbook's verify action) runs once, without polling. A failing check opens an incident
(or attaches to the open one) with ``trigger: probe`` and the probe's failure type; a
passing one clears the automatic degraded-mode reasons for that host (never a mode
switched on by hand) and resolves its exhausted alert. A check that cannot run here
(not applicable) does neither.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from engine.actions.base import ActionContext
from engine.context import EngineContext
from engine.inventory import UnknownTarget
from engine.orchestration.triggers import TriggerRequest, open_incident

log = logging.getLogger(__name__)


def run_due(ctx: EngineContext, now: float | None = None,
            run: Callable[[str], None] | None = None) -> int:
    """Run the probes whose time has come; returns how many checks ran. ``run`` takes
    the id of an incident this opened and claimed (default: advance it here)."""
    from engine.orchestration.attempt import advance
    from engine.orchestration.settle import seen_healthy

    run = run or (lambda incident_id: advance(ctx, incident_id))
    now = now or time.time()
    checks = 0
    for runbook in ctx.runbooks:
        probe = runbook.probe
        if probe is None:
            continue
        try:
            hosts = ctx.inventory.resolve_pattern(probe.targets)
        except UnknownTarget as exc:
            log.warning("probe of %s: %s", runbook.name, exc)
            continue
        for host in hosts:
            key = f"probe:{runbook.name}:{host.name}"
            if not ctx.store.claim_due(key, now, probe.interval):
                continue   # not due, or another worker took this round
            checks += 1
            result = ctx.python.call(probe.action, ActionContext(
                component=runbook.component, target=host.name, params=dict(probe.params),
                host_vars=dict(host.vars), resources=ctx.resources))
            if result.not_applicable:
                log.info("probe %s on %s cannot run here: %s", probe.action, host.name,
                         result.summary)
            elif result.ok:
                seen_healthy(ctx, runbook, host.name)
            else:
                opened = open_incident(ctx, TriggerRequest(
                    runbook=runbook.name, target=host.name, trigger="probe",
                    failure_type=probe.failure_type,
                    requested_by=f"probe:{probe.action}"))
                if opened.claimed and opened.incident is not None:
                    run(opened.incident.id)
    return checks
