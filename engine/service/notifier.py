"""Outgoing alerts: what the engine tells Alertmanager about itself.

Computed from the store each time: ``RecoveryDegradedMode`` while a degraded mode is on,
``RecoveryExhausted`` while a (runbook, target) is exhausted
(engine/orchestration/exhaustion.py: until the target recovers or an operator acknowledges
it), ``RecoveryApprovalPending`` while a step waits for a person. Labels name the condition
and nothing else (alertname, severity, ``source="infra-recovery"``, and the mode, or the
component, runbook and target), so a new incident for a target still down is the same alert;
incident and run ids and the command to run are annotations. The engine never remediates its
own alerts.

Each post carries an ``endsAt`` a few intervals ahead: a worker re-posts them every
``alertmanager.notify_interval`` to every configured Alertmanager. What was posted is
remembered in the store, so an alert whose condition ended is posted once more as
resolved (``endsAt`` now) instead of lingering until its ``endsAt``, even by another
process or after a restart; whatever changes a condition (a decision on an approval, an
exhausted target, an acknowledgement) calls ``post_soon`` so the next worker pass posts
(engine.notify_due: when).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from engine.context import EngineContext
from engine.orchestration.exhaustion import current as exhausted

log = logging.getLogger(__name__)
SOURCE = "infra-recovery"
POSTED = "notify_posted"         # what it posted: {identity: {"alert": ..., "ends": ...}}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _alert(name: str, severity: str, labels: dict[str, str], annotations: dict[str, str],
           since: float, ends: float) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": severity, "source": SOURCE, **labels},
            "annotations": annotations, "startsAt": _iso(since), "endsAt": _iso(ends)}


def identity(alert: dict[str, Any]) -> str:
    """An alert's identity is its label set, as for Alertmanager."""
    canonical = json.dumps(sorted(alert["labels"].items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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
        out.append(_alert("RecoveryDegradedMode", "warning", {"mode": mode}, {
            "summary": f"degraded mode {mode} is on ({len(reasons)} reason(s)): "
                       f"{first.reason or first.key}"}, first.since or now, ends))
    for gone in exhausted(ctx):
        out.append(_alert(
            "RecoveryExhausted", "critical",
            {"component": gone.component, "runbook": gone.runbook, "target": gone.target},
            {"summary": f"{gone.runbook} exhausted on {gone.target}: {gone.reason}",
             "incident": gone.incident_id,
             "command": f"recovery ack {gone.incident_id}  (once handled; it also resolves "
                        "when the target recovers)"},
            gone.since or now, ends))
    for approval in store.list_approvals("pending"):
        out.append(_alert(
            "RecoveryApprovalPending", "warning",
            {"component": approval.component, "runbook": approval.runbook,
             "target": approval.target},
            {"summary": f"{approval.strategy} on {approval.target} waits for approval",
             "incident": approval.incident_id or "", "run": approval.run_id,
             "strategy": approval.strategy,
             "command": f"recovery approve {approval.run_id}  (or --reject)"},
            approval.requested_at or now, ends))
    return out


def post(ctx: EngineContext, now: float | None = None) -> dict[str, str]:
    """Post what fires now, and as resolved what fired at the last post and ended since,
    to every configured Alertmanager; returns {url: error} for those that failed. A
    resolve that did not reach them all is posted again next time (until the ``endsAt``
    it was last posted with has passed: Alertmanager has resolved it by then)."""
    if not ctx.config.alertmanagers:
        return {}
    now = now or time.time()
    firing = {identity(a): a for a in current_alerts(ctx, now)}
    posted = ctx.store.get_value(POSTED) or {}
    ended = {key: dict(entry["alert"], endsAt=_iso(now)) for key, entry in posted.items()
             if key not in firing and entry["ends"] > now}
    batch = [*firing.values(), *ended.values()]
    if not batch:
        return {}
    failed = {}
    for base in ctx.config.alertmanagers:
        try:
            response = httpx.post(f"{base}/api/v2/alerts", json=batch,
                                  timeout=ctx.config.alertmanager_timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            failed[base] = f"{type(exc).__name__}: {exc}"
            log.warning("outgoing alerts to %s failed: %s", base, exc)
    ends = now + 3 * ctx.config.notify_interval
    remembered = {key: {"alert": alert, "ends": ends} for key, alert in firing.items()}
    if failed:
        remembered.update({key: posted[key] for key in ended})
    ctx.store.set_value(POSTED, remembered)
    return failed
