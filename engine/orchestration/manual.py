"""A run asked for over HTTP (``POST /api/v1/recover``): opened in the request, run by
the service's engine workers, never in the request.

A request worker that gunicorn recycles (a timeout, a crash) must never take a half-run
playbook with it (engine.service.supervisor), so the request only opens the incident
(or takes over the deferred one, as ``recovery recover`` does: engine.orchestration.triggers)
and hands it to the workers: open, due now. The first free engine worker claims it
(``claim_due_incident``, as any deferred incident whose time has come; its ``--force``
and ``--strategy`` stay on the incident), asks the gates and runs the step. The request
then waits, bounded, for the gates' first answer (the attempt's first run record), so a
kill switch or a cooldown is a 409 at once; a step still not started when the wait ends
is answered as queued (the workers are busy; it starts when one is free).

A check-mode run opens no incident and changes nothing: it runs on a thread of the
request's process (its record beats a lease, so a process gone mid-way leaves it marked
interrupted by the workers, like any dead process's run).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from engine.context import EngineContext
from engine.lifecycle import IncidentState
from engine.orchestration.triggers import Opened, TriggerRequest, open_incident
from engine.records import Incident, RunRecord

POLL = 0.1


@dataclass
class Handed:
    """What became of a request: refused or attached before any gate, or handed over."""

    opened: Opened
    handed: bool = False              # the workers run its attempt from here on
    earlier: frozenset[str] = frozenset()   # the incident's runs before it was handed over


def hand_to_workers(ctx: EngineContext, request: TriggerRequest) -> Handed:
    """Open (or take over) the incident of ``request`` and leave its attempt to the
    workers: open, due now. Not handed when refused (unknown runbook, strategy or
    target: ``opened.refusal``) or when its attempt is under way elsewhere."""
    opened = open_incident(ctx, request)
    if opened.refusal or not opened.claimed or opened.incident is None:
        return Handed(opened)
    by = request.requested_by or request.trigger
    earlier = frozenset(r.id for r in ctx.store.query_runs(incident_id=opened.incident.id,
                                                           limit=None))
    queued = ctx.store.update_incident(
        opened.incident.id, expect=[IncidentState.REMEDIATING], state=IncidentState.OPEN,
        next_try_at=time.time(), forced=request.force,   # kept: the worker's attempt is it
        reason=f"asked by {by}: queued for a worker")
    if queued is None:   # touched since it was claimed (canceled at once): as it stands
        opened.incident = ctx.store.get_incident(opened.incident.id) or opened.incident
        return Handed(opened)
    opened.incident = queued
    return Handed(opened, handed=True, earlier=earlier)


def first_answer(ctx: EngineContext, handed: Handed,
                 wait: float) -> tuple[Incident | None, RunRecord | None]:
    """The incident and the first run its attempt recorded once handed over (what the
    gates said: running, parked, deferred, refused; told apart from its earlier runs by
    id, not by time: a worker of another replica keeps another clock), waiting at most
    ``wait`` seconds; the run is None when no worker took the incident up in time."""
    assert handed.opened.incident is not None
    incident_id = handed.opened.incident.id
    deadline = time.monotonic() + wait
    while True:
        runs = [r for r in ctx.store.query_runs(incident_id=incident_id, limit=None)
                if r.id not in handed.earlier]
        incident = ctx.store.get_incident(incident_id)
        if runs:
            return incident, min(runs, key=lambda r: (r.started_at, r.id))
        if incident is None or incident.closed_at is not None or time.monotonic() >= deadline:
            return incident, None
        time.sleep(POLL)


def check_in_background(ctx: EngineContext, runbook: str, target: str, *,
                        strategy: str | None, requested_by: str,
                        wait: float) -> RunRecord | None:
    """Start ``recover --check`` on a thread; its first run record (None when none began
    within ``wait`` seconds)."""
    from engine.orchestration.planner import check_runs

    rb = ctx.runbook(runbook)
    with ctx.pinned() as loaded:   # the caller's set: the thread keeps it
        pass
    first: list[RunRecord] = []
    started = threading.Event()

    def on_run(run: RunRecord) -> None:
        if not first:
            first.append(run)
            started.set()

    def work() -> None:
        try:
            with ctx.pinned(loaded):
                check_runs(ctx, rb, target, strategy=strategy, requested_by=requested_by,
                           on_run=on_run)
        finally:
            started.set()

    threading.Thread(target=work, daemon=True, name=f"check-{rb.name}-{target}").start()
    started.wait(wait)
    return first[0] if first else None
