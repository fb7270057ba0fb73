"""Artifacts are kept ``artifacts_retention`` (30 days by default), then removed.

Done here, by finish time from the index, not by ansible-runner's ``rotate_artifacts``
(which deletes by modification time and knows nothing of our index).
"""

from __future__ import annotations

import shutil
import time

from engine.context import EngineContext

PRUNE_EVERY = 3600.0


def prune_if_due(ctx: EngineContext, now: float | None = None) -> int:
    """Prune at most hourly, whoever asks (a worker, or any CLI command where no
    service runs): the last time is kept in the store."""
    now = now or time.time()
    if not ctx.store.claim_due("retention_pruned_at", now, PRUNE_EVERY):
        return 0
    return prune(ctx, now)


def prune(ctx: EngineContext, now: float | None = None) -> int:
    """Remove artifacts (and store rows) of what ended before the retention window."""
    now = now or time.time()
    cutoff = now - ctx.config.retention
    removed = 0
    for run_id in ctx.store.delete_before(cutoff):
        path = ctx.artifacts_dir / run_id
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed
