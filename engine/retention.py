"""Artifacts are kept ``artifacts_retention`` (30 days by default), then removed.

Done here, by finish time from the index, not by ansible-runner's ``rotate_artifacts``
(which deletes by modification time and knows nothing of our index).
"""

from __future__ import annotations

import shutil
import time

from engine.context import EngineContext


def prune(ctx: EngineContext, now: float | None = None) -> int:
    now = now or time.time()
    cutoff = now - ctx.config.retention
    removed = 0
    for run_id in ctx.store.delete_runs_before(cutoff):
        path = ctx.artifacts_dir / run_id
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed
