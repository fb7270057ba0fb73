"""The figures the Charts page draws, as inline SVG geometry computed here (no chart
library, nothing fetched): per component, runs per day stacked by outcome, and each
recovered incident's time to recover. Outcomes as engine.reporting.reports counts them:
succeeded; failed (failed, interrupted, partial); other (refused, deferred, canceled...);
check-mode runs left out."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import Any

from engine.lifecycle import IncidentState, RunStatus
from engine.store.base import Store

WINDOWS = (7, 14, 30, 90)
DEFAULT_DAYS = 14
DAY = 86400.0
WIDTH, HEIGHT = 640, 200
LEFT, BOTTOM, TOP, RIGHT = 48, 28, 10, 10
INCIDENT_SCAN = 10_000
OUTCOMES = ("succeeded", "failed", "other")
_FAILED = (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.PARTIAL)


def outcome_of(status: RunStatus) -> str:
    if status == RunStatus.SUCCEEDED:
        return "succeeded"
    return "failed" if status in _FAILED else "other"


def figures(store: Store, days: int, now: float) -> list[dict[str, Any]]:
    """One figure per component with runs or recoveries in the last ``days`` days."""
    first_day = _day_start(now) - (days - 1) * DAY
    counts: dict[str, list[dict[str, int]]] = defaultdict(
        lambda: [dict.fromkeys(OUTCOMES, 0) for _ in range(days)])
    for run in store.query_runs(since=first_day, limit=None):
        if run.check_mode or not first_day <= run.started_at <= now + DAY:
            continue
        index = min(days - 1, int((run.started_at - first_day) // DAY))
        counts[run.component][index][outcome_of(run.status)] += 1
    recoveries: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for incident in store.list_incidents(limit=INCIDENT_SCAN):
        if (incident.state == IncidentState.RECOVERED and incident.closed_at is not None
                and incident.closed_at >= first_day):
            recoveries[incident.component].append(
                (incident.closed_at, max(0.0, incident.closed_at - incident.opened_at)))
    found = []
    for component in sorted(set(counts) | set(recoveries)):
        per_day = counts[component]
        found.append({"component": component,
                      "totals": {o: sum(d[o] for d in per_day) for o in OUTCOMES},
                      "runs": _run_bars(per_day, first_day),
                      "ttr": _recovery_points(sorted(recoveries[component]), first_day,
                                              days)})
    return found


def _day_start(t: float) -> float:
    return (t // DAY) * DAY          # UTC midnight


def _plot() -> tuple[float, float]:
    return WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


def _run_bars(per_day: list[dict[str, int]], first_day: float) -> dict[str, Any]:
    plot_w, plot_h = _plot()
    top = max([sum(d.values()) for d in per_day] + [1])
    slot = plot_w / len(per_day)
    bars = []
    for i, day in enumerate(per_day):
        x = LEFT + i * slot + slot * 0.15
        y = TOP + plot_h
        label = time.strftime("%Y-%m-%d", time.gmtime(first_day + i * DAY))
        for outcome in OUTCOMES:
            if not day[outcome]:
                continue
            h = plot_h * day[outcome] / top
            y -= h
            bars.append({"x": round(x, 1), "y": round(y, 1), "w": round(slot * 0.7, 1),
                         "h": round(h, 1), "outcome": outcome,
                         "text": f"{label}: {day[outcome]} {outcome}"})
    ticks = [{"x": round(LEFT + i * slot + slot / 2, 1),
              "label": time.strftime("%m-%d", time.gmtime(first_day + i * DAY))}
             for i in sorted({0, len(per_day) // 2, len(per_day) - 1})]
    return {"bars": bars, "max": top, "ticks": ticks, **_frame()}


def _recovery_points(points: list[tuple[float, float]], first_day: float,
                     days: int) -> dict[str, Any]:
    plot_w, plot_h = _plot()
    spans = [s for _, s in points]
    top = max(spans + [1.0])
    dots = [{"cx": round(LEFT + plot_w * min(1.0, (at - first_day) / (days * DAY)), 1),
             "cy": round(TOP + plot_h * (1 - s / top), 1), "seconds": s,
             "at": at} for at, s in points]
    ticks = [{"x": round(LEFT + plot_w * f, 1), "anchor": anchor,
              "label": time.strftime("%m-%d", time.gmtime(first_day + f * days * DAY))}
             for f, anchor in ((0.0, "middle"), (0.5, "middle"), (1.0, "end"))]
    return {"dots": dots, "max": top, "ticks": ticks, "count": len(spans),
            "longest": max(spans) if spans else None,
            "mean": statistics.fmean(spans) if spans else None,
            "median": statistics.median(spans) if spans else None, **_frame()}


def _frame() -> dict[str, Any]:
    plot_w, plot_h = _plot()
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "top": TOP,
            "bottom": TOP + plot_h, "right": LEFT + plot_w}
