"""What happens to a journaled alert: the worker's side of the intake queue.

The webhook has already deduplicated deliveries on (fingerprint, startsAt, status) and
journaled each ``Alert`` (``alert.to_payload()`` under ``alert.dedup_key``) before its
200. Here a worker claims a batch, and for each alert:

- **firing**: open the incident of (runbook, target) or attach to the open one. The
  caller that opens or claims it hands its id to ``run`` (the worker's thread pool, or
  ``advance`` inline); an attempt already under way gets nothing more, so one firing
  episode never gets two concurrent attempts. The engine's own alerts
  (``source="infra-recovery"``) are never remediated.
- **resolved**: close the open incident of that alert (same fingerprint, and not opened
  by an episode that started after this resolve ended: a delayed resolve of an earlier
  episode is not this one's) as
  ``resolved``, cancel the steps
  waiting for approval (or queued after it), end the attempt. A running step is not
  aborted (the orchestrator stops after it, seeing the incident closed); nothing is
  started; no degraded mode is switched off (a resolve is not proof of health).

An item is acknowledged once processed, and what was made of it is kept with the
acknowledgement (a ``Delivery``: opened, attached, refused, a late copy, nothing to
close...; one per dedup key, repeats counted), so ``recovery show FINGERPRINT`` can say
why nothing happened. An item whose processing hit a storage outage is not
(``StoreUnavailable``, or a full, read-only or failing disk under the store or the
artifacts: engine.outages): its claim lapses and a worker takes it again once the
storage is back, so nothing accepted is lost. Any other error is the alert's own: logged
and recorded (audit event ``alert_failed``) and the item acknowledged, so one poison
alert cannot block the queue. Items claimed by a worker that died are given back at once
(``release_abandoned``, by the next worker to start or do its duties), not a lease later:
processed after the alerts journaled behind them, they would be judged against
incidents those had opened and fixed meanwhile.

An item re-queued by ``recovery enable --replay`` carries ``replayed_by`` (the
operator): it goes the normal way, credited to the alert "replayed by" that operator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from engine import log_context
from engine.alerts.alert import FIRING, RESOLVED, Alert
from engine.alerts.routing import is_own_alert, match_runbook
from engine.context import EngineContext
from engine.inventory import UnknownTarget
from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.liveness import holder_gone
from engine.orchestration.approvals import cancel_waiting
from engine.orchestration.attempt import advance
from engine.orchestration.settle import close_incident
from engine.orchestration.triggers import Opened, TriggerRequest, open_incident, resolve_target
from engine.outages import describe, is_outage
from engine.records import AuditEvent, Delivery, Incident
from engine.reporting.metrics import HEARTBEAT_KEY
from engine.runbooks.templating import TemplateError
from engine.store import StoreUnavailable
from engine.store.intake_journal import IntakeItem

log = logging.getLogger(__name__)

RunIncident = Callable[[str], None]
_LEASE_MARGIN = 0.8                 # past this share of the lease, others may hold our items
# A firing delivery journaled this long after its episode's resolve is not a late copy
# but the alert firing again (Prometheus sends endsAt 4 resend intervals ahead, 4 min by
# default: copies of a resolved episode stop within that).
LATE_COPY_WINDOW = 300.0


def drain(ctx: EngineContext, *, limit: int = 100, lease: float = 60.0,
          run: RunIncident | None = None) -> int:
    """Claim up to ``limit`` journaled alerts, process and acknowledge them; return how
    many were processed (acknowledged). ``run(incident_id)`` gets each incident this
    worker claimed, to advance it inline or on a pool; default: ``advance`` here.

    Items are acknowledged before an incident they claimed is handed to ``run``, so a
    long attempt advanced inline never leaves processed items to be taken again. Items
    not reached before most of the lease has passed are left (their claim lapses and a
    worker takes them), so no item is processed by two workers at once. Raises
    StoreUnavailable only when an acknowledgement cannot be written."""
    items = ctx.store.claim_intake(ctx.holder, limit, lease)
    if not items:
        return 0
    deadline = time.monotonic() + lease * _LEASE_MARGIN
    acks: list[int] = []
    kept: list[Delivery] = []
    processed = 0
    left: list[str] = []    # items an outage stopped: one line for all of them
    outage: BaseException | None = None
    for item in items:
        if time.monotonic() > deadline:
            log.info("intake: claim of %d items nearly lapsed; the rest is left to be "
                     "taken again", len(items) - processed)
            break
        try:
            with log_context.scope(fingerprint=item.dedup_key.split("|", 1)[0]):
                claimed, delivery = _process_item(ctx, item)
        except Exception as exc:  # noqa: BLE001 - one poison alert must not block the queue
            if is_outage(exc):
                left.append(item.dedup_key)
                outage = outage or exc
                continue
            log.exception("intake: alert %r could not be processed", item.dedup_key)
            try:
                _record_failure(ctx, item, exc)
            except StoreUnavailable as store_exc:
                log.warning("intake: store unavailable recording %r, left for a retry: %s",
                            item.dedup_key, store_exc)
                continue
            claimed, delivery = None, _failed_delivery(item, exc)
        acks.append(item.id)
        kept.append(delivery)
        processed += 1
        if claimed is not None:
            ctx.store.ack_intake(acks, kept)   # before anything runs: never processed twice
            acks, kept = [], []
            _hand_over(ctx, run, claimed)
    if left and outage is not None:
        log.warning("intake: storage unavailable processing %d alert(s) (%s%s), left for a "
                    "retry: %s", len(left), ", ".join(repr(k) for k in left[:3]),
                    ", ..." if len(left) > 3 else "", describe(outage))
    if acks:
        ctx.store.ack_intake(acks, kept)
    return processed


def release_abandoned(ctx: EngineContext, now: float, *, lease: float) -> int:
    """Give back to the queue, at once and at their place in it, the alerts claimed (for
    ``lease`` seconds) by a worker that died before acknowledging them
    (engine.liveness.holder_gone: its process gone from this host, or on another host
    its heartbeat stale); how many. Left to lapse, they would be taken a lease later,
    after the alerts journaled behind them, and judged against incidents those had
    opened and fixed meanwhile."""
    gone: list[tuple[str, float]] = []
    beats: dict[str, float] | None = None
    stale_before = now - 3 * ctx.config.lock_ttl
    for holder, until in ctx.store.intake_claims(now):
        if holder == ctx.holder:
            continue
        if beats is None:
            beats = ctx.store.get_value(HEARTBEAT_KEY) or {}
        beat = beats.get(holder)
        if holder_gone(holder, until - lease, float(beat) if beat else None, stale_before):
            gone.append((holder, until))
    released = ctx.store.release_intake(gone)
    if released:
        log.warning("intake: %d alert(s) claimed by worker(s) gone (%s) taken back: "
                    "processed now, in their order", released,
                    ", ".join(sorted({holder for holder, _ in gone})))
    return released


def fire(ctx: EngineContext, alert: Alert, received_at: float | None = None,
         replayed_by: str | None = None) -> Opened:
    """Open the alert's incident or attach to the open one (nothing is advanced here:
    when ``claimed``, the caller must advance it). Nothing is claimed when there is
    nothing to do: the engine's own alert, or an episode already resolved (``note``
    says which)."""
    if is_own_alert(alert.labels):
        log.debug("intake: %r is the engine's own alert: never remediated", alert.dedup_key)
        return Opened(note="the engine's own alert: never remediated")
    if _episode_resolved(ctx, alert, received_at):
        log.info("intake: %r arrived after its resolve: nothing to start", alert.dedup_key)
        return Opened(note="a late copy of an episode already resolved: nothing started")
    opened = open_incident(ctx, _request(alert, received_at, replayed_by))
    if (opened.created and opened.incident is not None
            and _episode_resolved(ctx, alert, received_at)):
        # Its resolve was processed (by another worker) between the check above and
        # the incident's creation, and found nothing to close: close it here.
        _close_resolved(ctx, opened.incident, alert)
        log.info("intake: %r resolved while its incident opened: nothing started",
                 alert.dedup_key)
        return Opened(opened.incident, note=f"opened incident {opened.incident.id}, closed "
                      "at once: its resolve was processed meanwhile; nothing started")
    if opened.incident is None:
        if opened.refused_run:
            log.info("intake: %r refused (run %s): %r", alert.dedup_key, opened.refused_run,
                     opened.refusal)
        else:
            log.debug("intake: %r: %r", alert.dedup_key, opened.refusal)
    elif not opened.claimed:
        log.debug("intake: %r attached to incident %s (%s)", alert.dedup_key,
                  opened.incident.id, opened.incident.state.value)
    else:
        log.info("intake: %r: %s", alert.dedup_key, opened.note,
                 extra={"incident_id": opened.incident.id})
    return opened


def resolve(ctx: EngineContext, alert: Alert) -> Incident | None:
    """Close the open incident of this alert as ``resolved``; return it, or None when
    no incident of this alert is open. Starts nothing, aborts no running step, and
    leaves degraded modes alone.

    The incident must be this alert's (same fingerprint): a resolve of another alert
    for the same runbook and target, or of one that attached to an incident opened
    by an operator or a probe, does not end it."""
    runbook = match_runbook(ctx.runbooks, alert.labels)
    if runbook is None:
        return None
    _remember_resolve(ctx, alert)
    try:
        target = resolve_target(ctx, runbook, _request(alert))
    except (UnknownTarget, TemplateError) as exc:
        log.debug("intake: resolve %r: no target (%r)", alert.dedup_key, exc)
        return None
    incident = ctx.store.find_open_incident(runbook.name, target)
    if incident is None:
        log.debug("intake: resolve %r: no incident open for %s on %s", alert.dedup_key,
                  runbook.name, target)
        return None
    if incident.fingerprint != alert.fingerprint:
        log.info("intake: resolve %r: incident %s is another signal's (fingerprint %r): "
                 "left open", alert.dedup_key, incident.id, incident.fingerprint)
        return None
    if incident.starts_at and alert.ends_at and alert.ends_at <= incident.starts_at:
        log.info("intake: resolve %r (ended %s): incident %s was opened by a later episode "
                 "(startsAt %s): left open", alert.dedup_key, alert.ends_at, incident.id,
                 incident.starts_at)
        return None
    return _close_resolved(ctx, incident, alert)


def _close_resolved(ctx: EngineContext, incident: Incident, alert: Alert) -> Incident | None:
    """The incident ends ``resolved``: what waits for approval is canceled, the attempt
    ends; nothing running is aborted."""
    closed = close_incident(ctx, incident, IncidentState.RESOLVED, AttemptOutcome.RESOLVED,
                            f"alert resolved (fingerprint {alert.fingerprint})",
                            expect=[IncidentState.OPEN, IncidentState.REMEDIATING])
    if closed is None:
        return None  # ended by someone else meanwhile
    for waiting in ctx.store.query_runs(incident_id=closed.id, limit=None):
        if waiting.status in (RunStatus.PENDING_APPROVAL, RunStatus.QUEUED):
            cancel_waiting(ctx, waiting, "alert resolved", None)
    log.info("intake: incident %s resolved by %r", closed.id, alert.dedup_key)
    return ctx.store.get_incident(closed.id) or closed


# -- the parts --------------------------------------------------------------------------
def _process_item(ctx: EngineContext, item: IntakeItem) -> tuple[str | None, Delivery]:
    """The id of an incident this item's alert claimed (to be advanced), else None; and
    the delivery to keep, saying what was done."""
    if not isinstance(item.payload, dict):
        raise ValueError(f"payload is {type(item.payload).__name__}, not an object")
    alert = Alert.from_payload(item.payload)
    replayed_by = item.payload.get("replayed_by") or None
    if not isinstance(alert.labels, dict):
        raise ValueError(f"labels are {type(alert.labels).__name__}, not an object")
    claimed: str | None = None
    incident: Incident | None = None
    run_id: str | None = None
    if alert.status == FIRING:
        opened = fire(ctx, alert, item.received_at, replayed_by)
        incident, run_id, outcome = opened.incident, opened.refused_run, opened.note
        if opened.claimed and incident is not None:
            claimed = incident.id
    elif alert.status == RESOLVED:
        if is_own_alert(alert.labels):
            outcome = "the engine's own alert resolved"
        else:
            incident = resolve(ctx, alert)
            outcome = (f"closed incident {incident.id} as resolved" if incident is not None
                       else "nothing of this alert open: nothing to close")
    else:
        raise ValueError(f"unknown alert status {alert.status!r}")
    # The payload is kept for a replay (engine.alerts.refused): of a firing alert that
    # reached an incident, whose attempt a kill switch may refuse. Never of one refused
    # here (no runbook, unknown target: a replay would be refused again, and a sender
    # could fill the disk with them), a late copy, or the engine's own alert.
    replayable = alert.status == FIRING and incident is not None
    return claimed, Delivery(
        fingerprint=alert.fingerprint, status=alert.status, starts_at=alert.starts_at,
        received_at=item.received_at, processed_at=time.time(), outcome=outcome,
        incident_id=incident.id if incident is not None else None, run_id=run_id,
        replayed_by=replayed_by, payload=item.payload if replayable else {})


def _failed_delivery(item: IntakeItem, exc: Exception) -> Delivery:
    payload = item.payload if isinstance(item.payload, dict) else {}
    return Delivery(
        fingerprint=str(payload.get("fingerprint") or item.dedup_key.split("|", 1)[0]),
        status=str(payload.get("status") or "?"), starts_at=None,
        received_at=item.received_at, processed_at=time.time(),
        outcome=f"could not be processed: {type(exc).__name__}: {exc}"[:500])


def _request(alert: Alert, received_at: float | None = None,
             replayed_by: str | None = None) -> TriggerRequest:
    who = f"alertmanager:{alert.receiver or '?'}"
    if replayed_by:
        who += f", replayed by {replayed_by}"
    return TriggerRequest(labels=dict(alert.labels), annotations=dict(alert.annotations),
                          trigger="alert", fingerprint=alert.fingerprint, requested_by=who,
                          received_at=received_at, starts_at=alert.starts_at or None)


def _hand_over(ctx: EngineContext, run: RunIncident | None, incident_id: str) -> None:
    """Give a claimed incident to ``run``; an error there is the attempt's, not the
    alert's (the item is acknowledged: the incident is in the store, and the workers
    take up one left remediating with nothing running)."""
    try:
        if run is not None:
            run(incident_id)
        else:
            advance(ctx, incident_id)
    except Exception as exc:  # noqa: BLE001
        if is_outage(exc):   # no traceback: the workers take it up once the store answers
            log.warning("intake: incident %s not advanced, the storage is unavailable (the "
                        "workers take it up once it answers): %s", incident_id, describe(exc))
            return
        log.exception("intake: advancing incident %s failed", incident_id)


def _record_failure(ctx: EngineContext, item: IntakeItem, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"[:500]
    ctx.store.add_event(AuditEvent(at=time.time(), actor="intake", action="alert_failed",
                                   detail={"dedup_key": item.dedup_key, "error": error}))


def _remember_resolve(ctx: EngineContext, alert: Alert) -> None:
    """So a firing delivery of the same episode processed late (a worker died holding
    it, or the store failed on it) starts nothing: one row per fingerprint, pruned with
    the rest of the store's history (``delete_before``)."""
    ended = alert.ends_at or alert.starts_at
    if ended and alert.fingerprint:
        ctx.store.mark_resolved(alert.fingerprint, ended, time.time())


def _episode_resolved(ctx: EngineContext, alert: Alert, received_at: float | None) -> bool:
    """This firing delivery is a late copy of an episode already resolved: it started
    before a resolve of the same alert ended, and was journaled before that resolve was
    processed or soon after (a lagging HA peer, a worker that died holding it).

    Episodes are told apart by time, not by equal ``startsAt``: Alertmanager merges
    updates of one alert keeping the earliest ``startsAt``, so a resolve may carry an
    earlier one than the firing notifications had. A delivery journaled more than
    ``LATE_COPY_WINDOW`` after the resolve is a new signal even with an old ``startsAt``
    (Prometheus restores an alert's start after a restart, and Alertmanager had resolved
    it meanwhile). Timestamps are normalized UTC (``...%fZ``): they compare as text."""
    if not alert.starts_at or not alert.fingerprint:
        return False
    mark = ctx.store.resolved_until(alert.fingerprint)
    if mark is None or alert.starts_at >= mark[0]:
        return False
    if received_at is not None and received_at - mark[1] > LATE_COPY_WINDOW:
        log.info("intake: %r fires again %.0f s after its resolve: a new signal",
                 alert.dedup_key, received_at - mark[1])
        return False
    return True
