"""Outgoing alerts: posting what engine/service/outgoing_alerts.py says fires, to every
configured Alertmanager, from a worker's duties pass (never from a step).

Each post carries an ``endsAt`` a few intervals ahead: a worker re-posts them every
``alertmanager.notify_interval``. What was posted is remembered in the store, so an alert
whose condition ended is posted once more as resolved (``endsAt`` now) instead of
lingering until its ``endsAt``, even by another process or after a restart; whatever
changes a condition (a decision on an approval, an exhausted target, an acknowledgement)
calls ``post_soon`` so the next worker pass posts (engine.notify_due: when).

A ``RecoverySucceeded`` is posted once, with its own ``endsAt`` (a few minutes after the
recovery), and never resolved early: the incidents told are remembered in the store
(``notify_told``), so neither the next pass, another process nor a restart tells it
again. An Alertmanager that does not answer is asked ``ATTEMPTS`` times, each bounded by
``alertmanager.timeout``; then the post counts as failed
(``infra_recovery_outgoing_alerts_failed_total``) and the next pass tries again. A
remediation never waits for any of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import httpx

from engine.context import EngineContext
from engine.reporting.metrics import OUTGOING_FAILED_KEY
from engine.service.outgoing_alerts import current_alerts, iso, recovered_alerts

log = logging.getLogger(__name__)
POSTED = "notify_posted"         # what it posted: {identity: {"alert": ..., "ends": ...}}
TOLD = "notify_told"             # RecoverySucceeded told: {incident id: its endsAt}
ATTEMPTS = 2                     # per Alertmanager and post
__all__ = ["current_alerts", "identity", "post"]


def identity(alert: dict[str, Any]) -> str:
    """An alert's identity is its label set, as for Alertmanager."""
    canonical = json.dumps(sorted(alert["labels"].items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _deliver(ctx: EngineContext, base: str, batch: list[dict[str, Any]]) -> str | None:
    """Post ``batch`` to one Alertmanager, at most ATTEMPTS times; the last error, or None."""
    error = None
    for attempt in range(ATTEMPTS):
        try:
            response = httpx.post(f"{base}/api/v2/alerts", json=batch,
                                  timeout=ctx.config.alertmanager_timeout)
            response.raise_for_status()
            return None
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < ATTEMPTS:
                time.sleep(min(0.2, ctx.config.alertmanager_timeout))
    log.warning("outgoing alerts to %s failed after %d attempts: %s", base, ATTEMPTS, error)
    return error


def _count_failed(ctx: EngineContext, failed: int) -> None:
    if failed:
        ctx.store.update_value(OUTGOING_FAILED_KEY, lambda n: int(n or 0) + failed)


def _told(ctx: EngineContext, told: dict[str, float], now: float) -> None:
    """Remember the recoveries told (and forget those whose endsAt passed)."""
    def put(old: dict | None) -> dict:
        kept = {k: v for k, v in (old or {}).items() if v > now}
        return {**kept, **told}

    ctx.store.update_value(TOLD, put)


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
    ended = {key: dict(entry["alert"], endsAt=iso(now)) for key, entry in posted.items()
             if key not in firing and entry["ends"] > now}
    told = ctx.store.get_value(TOLD) or {}
    once = [r for r in recovered_alerts(ctx, now) if r.incident_id not in told]
    batch = [*firing.values(), *ended.values(), *(r.alert for r in once)]
    if not batch:
        return {}
    failed = {}
    for base in ctx.config.alertmanagers:
        if (error := _deliver(ctx, base, batch)) is not None:
            failed[base] = error
    _count_failed(ctx, len(failed))
    if once and len(failed) < len(ctx.config.alertmanagers):
        _told(ctx, {r.incident_id: r.ends for r in once}, now)
    ends = now + 3 * ctx.config.notify_interval
    resolved = set() if failed else set(ended)     # a resolve not taken by all: again

    def remember(old: dict | None) -> dict:
        # Merged, not overwritten: another process's post meanwhile keeps what it posted.
        kept = {key: entry for key, entry in (old or {}).items()
                if key not in resolved and key not in firing and entry["ends"] > now}
        return {**kept, **{key: {"alert": alert, "ends": ends}
                           for key, alert in firing.items()}}

    ctx.store.update_value(POSTED, remember)
    return failed
