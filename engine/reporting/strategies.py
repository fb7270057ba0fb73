"""Per-strategy figures: how often each strategy of each component was tried over a
window, how often it worked, how long it took, and why it last failed, so that a
strategy that keeps failing is seen at a glance (``recovery status --by-strategy``,
``GET /api/v1/strategies``: the same function answers both).

Definitions (docs/operations.md, "Figures per strategy"):
- attempts = the strategy's runs started in the window that ran and ended: succeeded,
  or failed (``failed``, ``interrupted``, ``partial``); check-mode, refused, deferred,
  skipped, parked and canceled runs do not count (the success rate of ``recovery
  status`` counts the same runs).
- success rate = succeeded / attempts (``None`` without attempts).
- median and p95 time to recover = over the durations (end - start) of the runs that
  succeeded; the median of an even count is the mean of the two middle values, p95 is
  the nearest rank (the smallest duration that 95% of them do not exceed). The store
  computes them (``StrategyRuns.success_times``), so a report reads a few rows per
  strategy however many runs there were.
- failing = at least ``FAILING_MIN_ATTEMPTS`` attempts and none succeeded: such rows
  come first.
Strategies of the loaded runbooks without attempts are listed too (attempts 0), so an
untried strategy is seen as such.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.context import EngineContext
    from engine.runbooks.model import Runbook
    from engine.store.base import Store

FAILING_MIN_ATTEMPTS = 3
FAILING_RULE = (f"failing: {FAILING_MIN_ATTEMPTS} or more attempts in the window and none "
                "succeeded")


def strategy_figures(store: Store, runbooks: Sequence[Runbook], window: float,
                     now: float) -> list[dict[str, Any]]:
    """A row per (component, strategy) tried in ``[now - window, now]`` or declared by a
    loaded runbook: failing ones first, then by component and the runbook's order."""
    since = now - window
    order: dict[tuple[str, str], int] = {}
    runbook_names: dict[tuple[str, str], list[str]] = {}
    for rb in runbooks:
        for i, strategy in enumerate(rb.strategies):
            key = (rb.component, strategy.name)
            order.setdefault(key, i)
            runbook_names.setdefault(key, []).append(rb.name)
    counts = {(c.component, c.strategy): c for c in store.strategy_counts(since, now)}
    times = {(t.component, t.strategy): t for t in store.success_times(since, now)}
    last = {(f.component, f.strategy): {"reason": f.reason, "at": f.at}
            for f in store.last_failures(since, now)}
    rows = []
    for key in set(order) | set(counts):
        count, took = counts.get(key), times.get(key)
        ok, fails = (count.succeeded, count.failed) if count else (0, 0)
        attempts = ok + fails
        rows.append({
            "component": key[0], "strategy": key[1],
            "runbooks": runbook_names.get(key, []), "loaded": key in order,
            "window": window, "attempts": attempts, "succeeded": ok, "failed": fails,
            "success_rate": ok / attempts if attempts else None,
            "median_seconds": took.median if took else None,
            "p95_seconds": took.p95 if took else None,
            "last_failure": last.get(key),
            "failing": attempts >= FAILING_MIN_ATTEMPTS and ok == 0,
        })
    rows.sort(key=lambda r: (not r["failing"], r["component"],
                             order.get((r["component"], r["strategy"]), len(order)),
                             r["strategy"]))
    return rows


def strategy_report(ctx: EngineContext, window: float | None = None,
                    now: float | None = None) -> dict[str, Any]:
    """What ``recovery status --by-strategy`` shows, as one JSON-ready dict; ``window``
    defaults to ``status_window``. A runbook set that does not load is a ``problems``
    line: the strategies tried are listed all the same."""
    from engine.runbooks.loader import RunbookError

    now = time.time() if now is None else now
    window = ctx.config.status_window if window is None else window
    problems = []
    try:
        runbooks = list(ctx.runbooks)
    except RunbookError as exc:
        runbooks = []
        problems.append(f"runbooks do not load: {exc}")
    return {"generated_at": now, "window": window, "failing_rule": FAILING_RULE,
            "problems": problems,
            "strategies": strategy_figures(ctx.store, runbooks, window, now)}
