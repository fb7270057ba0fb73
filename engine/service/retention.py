"""Artifacts are kept ``artifacts_retention`` (30 days by default), then removed.

Done here, by finish time from the index, not by ansible-runner's ``rotate_artifacts``
(which deletes by modification time and knows nothing of our index).

With several replicas, the index is pruned by one of them an hour, which then removes
the directories it holds; every replica also sweeps its own artifacts dir (``sweep``)
for directories older than the window whose run the index no longer knows, the runs
another replica pruned.
"""

from __future__ import annotations

import os
import shutil
import time

from engine.context import EngineContext

PRUNE_EVERY = 3600.0


def prune_if_due(ctx: EngineContext, now: float | None = None) -> int:
    """Prune at most hourly, whoever asks (a worker, or any CLI command where no
    service runs): the last time is kept in the store."""
    now = now or time.time()
    removed = 0
    if ctx.store.claim_due("retention_pruned_at", now, PRUNE_EVERY):
        removed += prune(ctx, now)
    if ctx.store.claim_due(f"retention_swept_at:{ctx.artifacts_dir}@{ctx.replica}", now,
                           PRUNE_EVERY):
        removed += sweep(ctx, now)
    return removed


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


def sweep(ctx: EngineContext, now: float | None = None) -> int:
    """Remove this artifacts dir's run directories untouched for longer than the
    retention window whose run the index no longer holds (pruned by another replica)."""
    now = now or time.time()
    cutoff = now - ctx.config.retention
    removed = 0
    try:
        entries = list(os.scandir(ctx.artifacts_dir))
    except OSError:
        return 0
    for entry in entries:
        try:
            old = entry.name.startswith("run-") and entry.is_dir(follow_symlinks=False) \
                and entry.stat(follow_symlinks=False).st_mtime < cutoff
        except OSError:
            continue
        if old and ctx.store.get_run(entry.name) is None:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed
