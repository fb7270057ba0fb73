"""Prometheus metrics read from the store, so every process reports the same numbers.

The CLI, embedded applications and every ``recovery serve`` replica add to the same
counters (``store.record_outcome``) and act on the same cooldowns, approvals, switches
and degraded modes. A process-local ``prometheus_client.Counter`` would count only what
*this* process did; ``StoreCollector`` instead reads the store at every scrape, so any
of them (``recovery metrics``, ``GET /metrics``, an application's own exporter) shows
one truth. What it costs: a handful of indexed queries per scrape. With several replicas
on one store, only one replica's ``GET /metrics`` carries the counters and histograms
(``OUTCOME_FAMILIES``; engine.reporting.outcome_exporter), so no run is counted once per
replica; the gauges are the store's state, the same on every replica (aggregate them
with ``max``, not ``sum``).

The cooldown gauge is computed for the (runbook, target) pairs with an attempt started
or finished within the longest cooldown horizon (``store.attempt_keys_since``): the only
pairs a cooldown can be active for. When the store cannot be read, a scrape
yields ``infra_recovery_store_up 0`` and nothing else, never an exception: the alert
rules in ``docs/examples/recovery-engine-rules.yml`` fire on that.

Imports only ``prometheus_client`` at module level; engine modules are imported on use.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from engine.context import EngineContext
    from engine.runbooks.model import Runbook
    from engine.store.outcome_metrics import DurationRow

log = logging.getLogger(__name__)

ATTEMPTS = "infra_recovery_attempts_total"
HOST_OUTCOMES = "infra_recovery_host_outcomes_total"
DEFERRALS = "infra_recovery_deferrals_total"
DURATION = "infra_recovery_duration_seconds"
STRATEGY_DURATION = "infra_recovery_strategy_duration_seconds"
COOLDOWN = "infra_recovery_cooldown_active"
DEGRADED = "infra_degraded_mode_active"
DISABLED = "infra_recovery_disabled"
DISABLED_TARGETS = "infra_recovery_disabled_targets"
PENDING = "infra_recovery_pending_approvals"
PENDING_AGE = "infra_recovery_pending_approval_oldest_age_seconds"
INTAKE_DEPTH = "infra_recovery_intake_queue_depth"
INTAKE_AGE = "infra_recovery_intake_oldest_age_seconds"
HEARTBEAT_AGE = "infra_recovery_worker_heartbeat_age_seconds"
OPEN_INCIDENTS = "infra_recovery_open_incidents"
STORE_UP = "infra_recovery_store_up"
OUTGOING_FAILED = "infra_recovery_outgoing_alerts_failed_total"
OUTCOME_EXPORTER = "infra_recovery_outcome_exporter"
# The store's counters and histograms: exported by one replica at a time.
OUTCOME_FAMILIES = (ATTEMPTS, HOST_OUTCOMES, DEFERRALS, DURATION, STRATEGY_DURATION,
                    OUTGOING_FAILED)

# store.get_value(OUTGOING_FAILED_KEY): posts of the engine's own alerts that an
# Alertmanager did not take after the retries (engine/service/notifier.py counts them)
OUTGOING_FAILED_KEY = "notify_failed"

# store.get_value(HEARTBEAT_KEY): {holder: unix time of its last pass}
HEARTBEAT_KEY = "worker_heartbeat"
ALL_COMPONENTS = "*"      # the `component` label of a switch that covers every component
_MAX_OPEN_INCIDENTS = 1_000_000


def _families() -> dict[str, Metric]:
    """Empty families, one per metric: the schema (``describe``) and the scrape's start."""
    return {
        ATTEMPTS: CounterMetricFamily(
            ATTEMPTS, "Recovery runs by final outcome (succeeded, failed, refused, deferred, "
            "skipped, canceled), from the shared store.",
            labels=["component", "strategy", "outcome"]),
        HOST_OUTCOMES: CounterMetricFamily(
            HOST_OUTCOMES, "Hosts acted on by recovery runs, by what the run did to each (ok, "
            "changed, failed, unreachable, skipped, not_started), from the shared store; no "
            "host label: `recovery history --json` names them.",
            labels=["component", "strategy", "outcome"]),
        DEFERRALS: CounterMetricFamily(
            DEFERRALS, "Recovery runs deferred, by the gate that held them back (cooldown, "
            "lock, fleet: the blast-radius limits...), from the shared store.",
            labels=["component", "gate"]),
        DURATION: HistogramMetricFamily(
            DURATION, "Duration of executed recovery runs, from the shared store.",
            labels=["component", "strategy"]),
        STRATEGY_DURATION: HistogramMetricFamily(
            STRATEGY_DURATION, "Time a strategy's executed runs took, by final outcome "
            "(succeeded: its time to recover; failed), buckets up to 4 h, from the shared "
            "store: per-strategy success rate and p95 (docs/operations.md).",
            labels=["component", "strategy", "outcome"]),
        COOLDOWN: GaugeMetricFamily(
            COOLDOWN, "1 when the cooldown gate would defer the next attempt on this target "
            "now (pairs with a recent attempt only).", labels=["component", "target"]),
        DEGRADED: GaugeMetricFamily(
            DEGRADED, "1 while a degraded mode is on (any automatic or manual reason).",
            labels=["mode"]),
        DISABLED: GaugeMetricFamily(
            DISABLED, "1 while a kill switch turns auto-recovery off for the whole component "
            "(component=\"*\": a global switch).", labels=["component"]),
        DISABLED_TARGETS: GaugeMetricFamily(
            DISABLED_TARGETS, "Targets whose auto-recovery a target-scoped kill switch turns "
            "off (component=\"*\": every component of those targets).", labels=["component"]),
        PENDING: GaugeMetricFamily(
            PENDING, "Steps parked for an operator's approval."),
        PENDING_AGE: GaugeMetricFamily(
            PENDING_AGE, "Age of the oldest step waiting for approval (0 when none waits)."),
        INTAKE_DEPTH: GaugeMetricFamily(
            INTAKE_DEPTH, "Journaled alert deliveries waiting for a worker."),
        INTAKE_AGE: GaugeMetricFamily(
            INTAKE_AGE, "Age of the oldest journaled alert delivery (0 when the queue is empty)."),
        HEARTBEAT_AGE: GaugeMetricFamily(
            HEARTBEAT_AGE, "Seconds since the most recent pass of any worker (absent when no "
            "worker has ever reported)."),
        OPEN_INCIDENTS: GaugeMetricFamily(
            OPEN_INCIDENTS, "Incidents open or remediating.", labels=["component"]),
        OUTGOING_FAILED: CounterMetricFamily(
            OUTGOING_FAILED, "Posts of the engine's own alerts an Alertmanager did not take "
            "after the retries (each configured Alertmanager counts once per post); the next "
            "pass posts again."),
        OUTCOME_EXPORTER: GaugeMetricFamily(
            OUTCOME_EXPORTER, "1 on the one replica whose /metrics carries the store's "
            "counters and histograms (several replicas on one store: no run counted twice), "
            "0 on the others.", labels=["replica"]),
    }


def _store_up(value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(STORE_UP, "1 when the last scrape could read the state store.",
                             value=value)


class StoreCollector(Collector):
    """A custom collector: every scrape reads the store (``registry_for(ctx)`` wires it)."""

    def __init__(self, ctx: EngineContext, clock: Callable[[], float] = time.time, *,
                 one_replica: bool = False) -> None:
        self.ctx = ctx
        self.clock = clock
        # GET /metrics of a replica: the counters only while it is the exporter.
        self.one_replica = one_replica

    def describe(self) -> Iterable[Metric]:
        # Names only, no store access: registering this collector never touches the store.
        return [_store_up(1), *_families().values()]

    def collect(self) -> Iterator[Metric]:
        try:
            families = self._read(self.clock())
        except Exception as exc:  # noqa: BLE001 - a scrape must answer, whatever the store does
            log.warning("metrics: cannot read the store: %s: %s", type(exc).__name__, exc)
            yield _store_up(0)
            return
        yield _store_up(1)
        yield from families

    # -- one scrape --------------------------------------------------------------------
    def _read(self, now: float) -> list[Metric]:
        ctx, store = self.ctx, self.ctx.store
        f = _families()
        runbooks = _runbooks(ctx)
        components = sorted({rb.component for rb in runbooks})

        for row in store.counters():
            f[ATTEMPTS].add_metric([row.component, row.strategy, row.outcome], row.value)
        for row in store.host_counters():
            f[HOST_OUTCOMES].add_metric([row.component, row.strategy, row.outcome], row.value)
        for deferral in store.deferrals():
            f[DEFERRALS].add_metric([deferral.component, deferral.gate], deferral.value)
        for row in store.durations():
            f[DURATION].add_metric([row.component, row.strategy], _buckets(row), row.total)
        for row in store.strategy_durations():
            f[STRATEGY_DURATION].add_metric([row.component, row.strategy, row.outcome],
                                            _buckets(row), row.total)

        for (component, target), active in sorted(_cooldowns(ctx, runbooks, now).items()):
            f[COOLDOWN].add_metric([component, target], 1.0 if active else 0.0)

        reasons = store.degraded_reasons()
        on = {r.mode for r in reasons}
        modes = (set(ctx.config.degraded_modes) | on
                 | {rb.degraded_mode.name for rb in runbooks if rb.degraded_mode})
        for mode in sorted(modes):
            f[DEGRADED].add_metric([mode], 1.0 if mode in on else 0.0)

        switches = store.active_switches(now)
        whole = {s.component or ALL_COMPONENTS for s in switches if s.target is None}
        f[DISABLED].add_metric([ALL_COMPONENTS], 1.0 if ALL_COMPONENTS in whole else 0.0)
        for component in sorted(set(components) | (whole - {ALL_COMPONENTS})):
            off = component in whole or ALL_COMPONENTS in whole
            f[DISABLED].add_metric([component], 1.0 if off else 0.0)
        scoped: dict[str, set[str]] = {}
        for s in switches:
            if s.target is not None:
                scoped.setdefault(s.component or ALL_COMPONENTS, set()).add(s.target)
        for component, targets in sorted(scoped.items()):
            f[DISABLED_TARGETS].add_metric([component], float(len(targets)))

        pending = store.list_approvals("pending")
        f[PENDING].add_metric([], float(len(pending)))
        oldest = min((a.requested_at for a in pending), default=None)
        f[PENDING_AGE].add_metric([], max(0.0, now - oldest) if oldest is not None else 0.0)

        depth, age = store.intake_depth(now)
        f[INTAKE_DEPTH].add_metric([], float(depth))
        f[INTAKE_AGE].add_metric([], max(0.0, float(age)))

        beat = youngest_heartbeat(store.get_value(HEARTBEAT_KEY))
        if beat is not None:
            f[HEARTBEAT_AGE].add_metric([], max(0.0, now - beat))
        else:
            del f[HEARTBEAT_AGE]

        per_component = dict.fromkeys(components, 0)
        for incident in store.list_incidents(open_only=True, limit=_MAX_OPEN_INCIDENTS):
            per_component[incident.component] = per_component.get(incident.component, 0) + 1
        for component, n in sorted(per_component.items()):
            f[OPEN_INCIDENTS].add_metric([component], float(n))
        f[OUTGOING_FAILED].add_metric([], float(store.get_value(OUTGOING_FAILED_KEY) or 0))
        if not self.one_replica:
            del f[OUTCOME_EXPORTER]
        else:
            from engine.reporting.outcome_exporter import exports_outcomes

            exporting = exports_outcomes(ctx, now)
            f[OUTCOME_EXPORTER].add_metric([ctx.replica], 1.0 if exporting else 0.0)
            if not exporting:
                for name in OUTCOME_FAMILIES:
                    del f[name]
        return list(f.values())


def _buckets(row: DurationRow) -> list[tuple[str, float]]:
    buckets = [(floatToGoString(bound), count) for bound, count in row.buckets]
    if not buckets or not math.isinf(row.buckets[-1][0]):
        buckets.append(("+Inf", row.count))
    return buckets


def _runbooks(ctx: EngineContext) -> list[Runbook]:
    """The loaded runbooks; a broken runbook must not take the metrics down with it."""
    try:
        return list(ctx.runbooks)
    except Exception as exc:  # noqa: BLE001 - RunbookError and friends: reported by validate
        log.warning("metrics: runbooks not loaded (%s); per-runbook series omitted", exc)
        return []


def _cooldowns(ctx: EngineContext, runbooks: list[Runbook],
               now: float) -> dict[tuple[str, str], bool]:
    """(component, target) -> would the cooldown gate defer the next attempt now?

    Candidates are the pairs with an attempt within the longest horizon any runbook's
    cooldown looks back (window or after_failure). Several runbooks of one component on
    one target report their worst (max).
    """
    if not runbooks:
        return {}
    from engine.gates.cooldown import cooldown_state

    by_name = {rb.name: rb for rb in runbooks}
    horizon = max(max(rb.cooldown.window, rb.cooldown.after_failure) for rb in runbooks)
    store = ctx.store
    pairs = {(name, target) for name, target in store.attempt_keys_since(now - horizon)
             if name in by_name}
    out: dict[tuple[str, str], bool] = {}
    for name, target in pairs:
        rb = by_name[name]
        key = (rb.component, target)
        out[key] = out.get(key, False) or cooldown_state(store, rb, target, now) is not None
    return out


def youngest_heartbeat(value: Any) -> float | None:
    if not isinstance(value, dict):
        return None
    beats = [float(v) for v in value.values()
             if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(beats) if beats else None


# -- public --------------------------------------------------------------------------------


def registry_for(ctx: EngineContext, *extra: Collector,
                 one_replica: bool = False) -> CollectorRegistry:
    """A registry holding one ``StoreCollector`` for ``ctx`` and the ``extra`` collectors
    (``GET /metrics`` adds the webhook's request counters, ``webhook.request_metrics``).
    A family name in two collectors is a ``ValueError`` (when the collector describes
    itself), never the same family twice in one exposition. ``one_replica``: a replica's
    ``GET /metrics`` (the counters from one replica at a time)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ctx, one_replica=one_replica))
    for collector in extra:
        registry.register(collector)
    return registry


def render_text(ctx: EngineContext, *extra: Collector, one_replica: bool = False) -> str:
    """The Prometheus text exposition (``recovery metrics``, ``GET /metrics`` with
    ``one_replica``)."""
    return generate_latest(registry_for(ctx, *extra, one_replica=one_replica)).decode("utf-8")


def render_json(ctx: EngineContext) -> dict[str, list[dict[str, Any]]]:
    """``{metric name: [{"labels": {...}, "value": v}, ...]}`` (``recovery metrics --json``).

    Counters are keyed by their ``_total`` name; a histogram series is
    ``{"labels", "buckets": {le: cumulative count, ..., "+Inf": n}, "sum", "count"}``.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for family in registry_for(ctx).collect():
        if family.type == "histogram":
            series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
            for s in family.samples:
                labels = {k: v for k, v in s.labels.items() if k != "le"}
                entry = series.setdefault(tuple(sorted(labels.items())), {
                    "labels": labels, "buckets": {}, "sum": 0.0, "count": 0.0})
                if s.name.endswith("_bucket"):
                    entry["buckets"][s.labels["le"]] = s.value
                elif s.name.endswith("_sum"):
                    entry["sum"] = s.value
                elif s.name.endswith("_count"):
                    entry["count"] = s.value
            out[family.name] = list(series.values())
            continue
        name = family.name + "_total" if family.type == "counter" else family.name
        rows = out.setdefault(name, [])
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            rows.append({"labels": dict(s.labels), "value": s.value})
    return out
