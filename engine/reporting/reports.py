"""Figures an operator reads: per-component health, success rate, time to recover,
alerts a kill switch refused that still fire, cooldowns, locks, degraded modes, kill
switches, approvals waiting, and the set of runbooks, playbooks and inventory in force.

Pure functions over a ``Store`` (and the runbooks and configuration), so the CLI's
``recovery status`` and the HTTP API's ``/api/v1/status`` answer the same thing. They
only read: nothing here changes state.

Definitions (the same words as docs/architecture.md):
- success rate = succeeded / (succeeded + failed) over the runs started in the window,
  check-mode runs excluded; ``interrupted`` and ``partial`` runs (some hosts failed)
  count as failed (as in the metrics' ``outcome="failed"``); skipped, refused, deferred,
  parked and canceled runs do not count.
  ``None`` when no run counts.
- mean time to recover (MTTR) = mean of ``closed_at - opened_at`` over the incidents that
  ended ``recovered`` within the window (closed in it). ``None`` when there are none.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.gates.lock import serializes
from engine.lifecycle import IncidentState, RunStatus
from engine.store.urls import redacted

if TYPE_CHECKING:
    from engine.context import EngineContext
    from engine.runbooks.model import Runbook
    from engine.store.base import Store

# How many incidents per component a report looks through (newest first).
INCIDENT_SCAN = 10_000
_FAILED = (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.PARTIAL)


def component_stats(store: Store, components: Iterable[str], window: float,
                    now: float) -> list[dict[str, Any]]:
    """Success rate, MTTR and incident counts per component over ``[now - window, now]``."""
    since = now - window
    stats = []
    for component in components:
        succeeded = failed = other = 0
        for run in store.query_runs(component=component, since=since, limit=None):
            if run.check_mode or run.started_at > now:
                continue
            if run.status == RunStatus.SUCCEEDED:
                succeeded += 1
            elif run.status in _FAILED:
                failed += 1
            else:
                other += 1
        incidents = store.list_incidents(component=component, limit=INCIDENT_SCAN)
        recovered = [i for i in incidents if i.state == IncidentState.RECOVERED
                     and i.closed_at is not None and since <= i.closed_at <= now]
        ended = [i for i in incidents if i.closed_at is not None and since <= i.closed_at <= now]
        counted = succeeded + failed
        stats.append({
            "component": component,
            "window": window,
            "runs": counted + other,
            "succeeded": succeeded,
            "failed": failed,
            "success_rate": succeeded / counted if counted else None,
            "recovered": len(recovered),
            "mttr_seconds": (sum(i.closed_at - i.opened_at for i in recovered) / len(recovered)
                             if recovered else None),
            "incidents_ended": {state.value: sum(i.state == state for i in ended)
                                for state in IncidentState if not state.is_open},
            "open_incidents": sum(i.state.is_open for i in incidents),
            "last_incident": _last(incidents),
        })
    return stats


def _last(incidents: Sequence[Any]) -> dict[str, Any] | None:
    if not incidents:
        return None
    i = incidents[0]  # newest first
    return {"id": i.id, "target": i.target, "state": i.state.value, "opened_at": i.opened_at,
            "closed_at": i.closed_at, "reason": i.reason}


def cooldowns(store: Store, runbooks: Sequence[Runbook], now: float) -> list[dict[str, Any]]:
    """(runbook, target) pairs with attempts in their window or a failure cooldown running."""
    from engine.gates.cooldown import cooldown_state

    by_name = {rb.name: rb for rb in runbooks}
    horizon = max((max(rb.cooldown.window, rb.cooldown.after_failure) for rb in runbooks),
                  default=0.0)
    pairs: dict[tuple[str, str], None] = {}
    for incident in store.list_incidents(limit=INCIDENT_SCAN):
        if incident.runbook in by_name and (incident.state.is_open
                                            or incident.updated_at >= now - horizon):
            pairs[(incident.runbook, incident.target)] = None
    rows = []
    for name, target in pairs:
        rb = by_name[name]
        cd = rb.cooldown
        attempts = store.attempts_since(name, target, now - cd.window)
        answer = cooldown_state(store, rb, target, now)
        if not attempts and answer is None:
            continue
        rows.append({
            "runbook": name, "component": rb.component, "target": target,
            "attempts": len(attempts), "max_attempts": cd.max_attempts, "window": cd.window,
            "cooling": answer is not None,
            "next_allowed_at": answer[1] if answer else None,
            "reason": answer[0] if answer else None,
        })
    return sorted(rows, key=lambda r: (not r["cooling"], r["runbook"], r["target"]))


def degraded_modes(store: Store, configured: Mapping[str, Mapping[str, Any]],
                   runbooks: Sequence[Runbook]) -> list[dict[str, Any]]:
    """Every known mode (configured, named by a runbook, or with a reason), on or off."""
    reasons = store.degraded_reasons()
    names = list(configured)
    for rb in runbooks:
        if rb.degraded_mode is not None and rb.degraded_mode.name not in names:
            names.append(rb.degraded_mode.name)
    for r in reasons:
        if r.mode not in names:
            names.append(r.mode)
    modes = []
    for name in names:
        spec = dict(configured.get(name) or {})
        mine = [r.to_dict() for r in reasons if r.mode == name]
        capabilities = dict(spec.get("capabilities") or {})
        # The matrix says what the mode switches off *when on*: said apart from what is
        # off now, so an idle mode never reads as features being off.
        switches_off = [cap for cap, stays_on in capabilities.items() if not stays_on]
        modes.append({
            "mode": name,
            "active": bool(mine),
            "manual": any(r["manual"] for r in mine),
            "description": spec.get("description", ""),
            "capabilities": capabilities,
            "switches_off": switches_off,
            "off_now": switches_off if mine else [],
            "configured": name in configured,
            "runbooks": [rb.name for rb in runbooks
                         if rb.degraded_mode is not None and rb.degraded_mode.name == name],
            "reasons": mine,
        })
    return modes


def health(stat: Mapping[str, Any], degraded_on: bool, refused: bool = False) -> str:
    """One word per component: degraded, refused (an alert a kill switch refused still
    fires), remediating, failing, ok (or idle)."""
    if degraded_on:
        return "degraded"
    if refused:
        return "refused"
    if stat["open_incidents"]:
        return "remediating"
    last = stat.get("last_incident")
    if last and last["state"] in (IncidentState.FAILED.value,):
        return "failing"
    if not stat["runs"] and not last:
        return "idle"
    return "ok"


def status_report(ctx: EngineContext, now: float | None = None) -> dict[str, Any]:
    """Everything ``recovery status`` shows, as one JSON-ready dict."""
    from engine.alerts.refused import refused_alerts
    from engine.reporting.replicas import replicas_status
    from engine.runbooks.loader import RunbookError
    from engine.store.base import StoreUnavailable
    from engine.store.state_snapshot import MIGRATION_KEY, migration_note

    now = time.time() if now is None else now
    store = ctx.store
    report: dict[str, Any] = {"generated_at": now, "window": ctx.config.status_window,
                              "problems": []}
    try:
        store.ping()
        report["store"] = {"url": redacted(ctx.config.state_url), "reachable": True,
                           "backend": _backend(ctx.config.state_url)}
    except StoreUnavailable as exc:
        report["store"] = {"url": redacted(ctx.config.state_url), "reachable": False,
                           "backend": _backend(ctx.config.state_url),
                           "error": str(exc)}
        return report
    migration = migration_note(store.get_value(MIGRATION_KEY))
    if migration:
        report["problems"].append(migration)
    try:
        runbooks = list(ctx.runbooks)
    except RunbookError as exc:
        runbooks = []
        report["problems"].append(f"runbooks do not load: {exc}")
    components = sorted({rb.component for rb in runbooks})
    modes = degraded_modes(store, ctx.config.degraded_modes, runbooks)
    on = {m["mode"] for m in modes if m["active"]}
    stats = component_stats(store, components, ctx.config.status_window, now)
    refused = [a.to_dict() for a in
               refused_alerts(store, since=now - ctx.config.status_window)]
    for stat in stats:
        mine = [rb for rb in runbooks if rb.component == stat["component"]]
        stat["runbooks"] = [rb.name for rb in mine]
        stat["degraded_modes"] = sorted({rb.degraded_mode.name for rb in mine
                                         if rb.degraded_mode is not None} & on)
        stat["refused_alerts"] = sum(r["component"] == stat["component"] for r in refused)
        stat["health"] = health(stat, bool(stat["degraded_modes"]),
                                bool(stat["refused_alerts"]))
    report["loaded_set"] = loaded_set_status(ctx, report["problems"])
    report["replicas"] = replicas_status(ctx, now)
    switches = store.active_switches(now)
    report.update({
        "refused_alerts": refused,
        "components": stats,
        "cooldowns": cooldowns(store, runbooks, now),
        "locks": [lock.to_dict() | {"serializes": serializes(lock.target)}
                  for lock in store.list_locks()],
        "degraded_modes": modes,
        "switches": [s.to_dict() | {"scope": s.scope()} for s in switches],
        "pending_approvals": len(store.list_approvals("pending")),
    })
    return report


def loaded_set_status(ctx: EngineContext, problems: list[str]) -> dict[str, Any]:
    """The set of runbooks, playbooks and inventory in force (engine.runbooks.loaded_set): its hash,
    when and by whom it was loaded, and whether the files on disk differ from it (then a
    line in ``problems`` says what to do). ``this_process``: the set the answering process
    acts on (None: the files on disk, as the CLI reads them)."""
    from engine.runbooks.loaded_set import describe, disk_differs, recorded_set

    record = recorded_set(ctx.store, ctx.replica)
    differs, disk = disk_differs(ctx.config, record)
    if differs:
        problems.append(f"the files on disk differ from the set in force ({describe(record)}): "
                        "`recovery reload` validates them and puts them in force")
    here = ctx.files.sha256
    if ctx.follow_loaded_set and record is not None and here != record.sha256:
        held = f"set {here[:12]}" if here else "the files on disk"
        problems.append(f"this process still acts on {held}, not set {record.sha256[:12]}: "
                        "it could not switch (see its log)")
    return {"sha256": record.sha256 if record else None,
            "loaded_at": record.loaded_at if record else None,
            "loaded_by": record.loaded_by if record else None,
            "runbooks": record.runbooks if record else [],
            "files": record.files if record else 0,
            "files_differ": differs, "disk_sha256": disk, "this_process": here}


def _backend(url: str) -> str:
    """``sqlite`` or ``redis`` (``rediss`` too): which backend the state URL names."""
    scheme = url.split(":", 1)[0]
    return "redis" if scheme in ("redis", "rediss") else scheme


