"""Outgoing alerts: what the engine tells Alertmanager about itself.

Computed from the store each time, never remembered: ``RecoveryDegradedMode`` while a
degraded mode is on, ``RecoveryExhausted`` while a (runbook, target)'s latest incident
(of the last day) ended exhausted, ``RecoveryApprovalPending`` while a step waits for a
person. Each carries ``severity`` and ``source="infra-recovery"`` (the engine never
remediates its own alerts) and an ``endsAt`` a few intervals ahead: a worker re-posts
them every ``alertmanager.notify_interval`` to every configured Alertmanager, and
Alertmanager resolves one once it stops being posted.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from engine.context import EngineContext
from engine.lifecycle import IncidentState

log = logging.getLogger(__name__)
SOURCE = "infra-recovery"
EXHAUSTED_FOR = 86400.0   # an exhausted runbook is reported for at most a day


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _alert(name: str, severity: str, labels: dict[str, str], summary: str, since: float,
           ends: float) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": severity, "source": SOURCE, **labels},
            "annotations": {"summary": summary}, "startsAt": _iso(since),
            "endsAt": _iso(ends)}


def current_alerts(ctx: EngineContext, now: float | None = None) -> list[dict[str, Any]]:
    now = now or time.time()
    ends = now + 3 * ctx.config.notify_interval
    store = ctx.store
    out: list[dict[str, Any]] = []
    by_mode: dict[str, list] = {}
    for reason in store.degraded_reasons():
        by_mode.setdefault(reason.mode, []).append(reason)
    for mode, reasons in sorted(by_mode.items()):
        first = min(reasons, key=lambda r: r.since)
        out.append(_alert("RecoveryDegradedMode", "warning", {"mode": mode},
                          f"degraded mode {mode} is on ({len(reasons)} reason(s)): "
                          f"{first.reason or first.key}", first.since or now, ends))
    latest: dict[tuple[str, str], Any] = {}
    for incident in store.list_incidents(limit=10_000):
        if incident.closed_at is not None and incident.closed_at < now - EXHAUSTED_FOR:
            continue
        key = (incident.runbook, incident.target)
        if key not in latest or incident.opened_at > latest[key].opened_at:
            latest[key] = incident
    for (runbook, target), incident in sorted(latest.items()):
        if incident.state == IncidentState.FAILED:
            out.append(_alert(
                "RecoveryExhausted", "critical",
                {"component": incident.component, "target": target, "runbook": runbook,
                 "incident": incident.id},
                f"{runbook} exhausted on {target}: {incident.reason}",
                incident.closed_at or now, ends))
    for approval in store.list_approvals("pending"):
        out.append(_alert(
            "RecoveryApprovalPending", "warning",
            {"component": approval.component, "target": approval.target,
             "run": approval.run_id, "strategy": approval.strategy},
            f"{approval.strategy} on {approval.target} waits for approval: "
            f"recovery approve {approval.run_id}", approval.requested_at or now, ends))
    return out


def post(ctx: EngineContext, alerts: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """Post to every configured Alertmanager; returns {url: error} for those that failed."""
    if not ctx.config.alertmanagers:
        return {}
    alerts = current_alerts(ctx) if alerts is None else alerts
    if not alerts:
        return {}
    failed = {}
    for base in ctx.config.alertmanagers:
        try:
            response = httpx.post(f"{base}/api/v2/alerts", json=alerts,
                                  timeout=ctx.config.alertmanager_timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            failed[base] = f"{type(exc).__name__}: {exc}"
            log.warning("outgoing alerts to %s failed: %s", base, exc)
    return failed
