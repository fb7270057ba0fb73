"""A refusal, recorded so that no sender can fill the disk with them.

Every refusal leaves a record: the audit shows what was not done, and why. But a broken
or hostile sender can post thousands of alerts a minute for hosts the inventory does not
know (one notification carries up to 2,000), and one record with its artifacts
directory per alert filled the disk. So refusals are counted: one record per (reason,
runbook, target or ``-``) per minute (``WINDOW``; also per trigger, gate and strategy,
which only a runbook or the engine chooses). The first refusal of its key in a minute
creates the record and its one artifacts directory (run.json: its labels, the gates'
answers, an observe-mode plan); each next one adds to its ``count`` and, for the first
``MAX_FINGERPRINTS``, links its fingerprint and incident to it, so ``recovery show
FINGERPRINT``, an incident's timeline and ``recovery enable --replay`` find it. The
metrics count every refusal, and each alert's own delivery (its timeline) names the
record and keeps its own reason in words, whatever the count.

Which refusals are counted (``counted``): every one that opens no incident (a target
the inventory does not resolve, whoever asked), and every refusal of an alert or a
probe by a gate (kill switch, observe mode) or for want of a strategy (the incident it
opened is canceled). A refusal of an operator's own command (``recovery recover``
under a kill switch, without ``--force``) keeps a record of its own: one per command,
naming who asked.

What it cannot do: the reason, labels and ``requested_by`` kept are the first
refusal's; alerts past the first ``MAX_FINGERPRINTS`` of a record are counted, not
listed (their deliveries still name the record); a key whose words hold what a sender
chose must be given a ``reason_key`` without them (an unknown target names the
instance in its reason: it is counted under "unknown target" alone).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from engine.artifacts import RunArtifacts
from engine.context import EngineContext
from engine.lifecycle import RunStatus
from engine.orchestration.step import RunCallback, end_run, keep, open_record
from engine.outages import describe
from engine.records import RunRecord
from engine.reporting.run_account import share_account

log = logging.getLogger(__name__)
WINDOW = 60.0             # seconds: one record per key per window
MAX_FINGERPRINTS = 100    # alerts (and incidents) a record lists; the rest are counted
_SEPARATOR = "\x1f"


def counted(trigger: str, *, opens_incident: bool) -> bool:
    """Whether a refusal is counted into a shared record (the module's rule)."""
    return not opens_incident or trigger != "manual"


def refusal_key(run: RunRecord, reason_key: str, now: float) -> str:
    """The record a refusal counts into: its kind and its minute."""
    return _SEPARATOR.join((run.trigger, run.gate or "-", run.runbook, run.strategy,
                            run.target, reason_key, str(int(now // WINDOW))))


def record_counted(ctx: EngineContext, run: RunRecord, details: dict[str, Any], *,
                   reason_key: str | None = None) -> RunRecord:
    """Record the refusal ``run`` (its status set to refused here), counted into the
    record of its key this minute; ``details`` go to run.json when it is the first.
    Returns the record it counts in (``run`` itself, stored, when it is the first)."""
    run.status = RunStatus.REFUSED
    run.finished_at = run.started_at if run.finished_at is None else run.finished_at
    key = refusal_key(run, run.reason if reason_key is None else reason_key, run.started_at)
    stored = ctx.store.add_refusal(run, key, max_fingerprints=MAX_FINGERPRINTS)
    if stored.id == run.id:   # the first of its minute: its one directory
        try:
            artifacts = open_record(ctx, run, details)
            artifacts.set_status(RunStatus.REFUSED.value, 0)
        except OSError as exc:
            # The store's row is the account (a full disk must not make the refusal,
            # already counted, be taken again and counted twice).
            log.warning("refusal %s: its artifacts could not be written: %s", run.id,
                        describe(exc))
        else:
            share_account(ctx, run.id, artifacts)   # its gates, for every replica
    ctx.store.record_outcome(run.component, run.strategy, "refused", None)
    return stored


def record_refusal(ctx: EngineContext, run: RunRecord, details: dict[str, Any], *,
                   resume: RunRecord | None = None, on_run: RunCallback | None = None,
                   reason_key: str | None = None) -> None:
    """Record a step the gates refused (or that no strategy handles). An alert's or a
    probe's is counted (``record_counted``); an operator's own command, or an approved
    step refused when it is taken up again (``resume``), keeps a record of its own: its
    directory, and its end as any run's."""
    if resume is None and counted(run.trigger, opens_incident=True):
        run.finished_at = time.time()
        stored = record_counted(ctx, run, details, reason_key=reason_key)
        if on_run:
            on_run(stored)
        return
    artifacts = RunArtifacts(ctx.artifacts_dir, run.id, ctx.redactor)
    keep(run.id, lambda: open_record(ctx, run, details, artifacts))
    end_run(ctx, run, artifacts, RunStatus.REFUSED, run.reason, resume, on_run)
