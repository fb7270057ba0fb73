"""The embedded mode: an application owns resources and triggers recoveries in-process.

    recovery = Recovery.from_config("recovery.yml")
    recovery.resources.register("redis", pool)
    incident = recovery.trigger("redis", failure_type="connection_timeout", target="cache-1")
    incident.wait(timeout=30)
    if recovery.degraded("redis_unavailable"): ...
    mode = recovery.degraded_mode("redis_unavailable")   # its capability matrix and reasons
    if not recovery.feature_on("cache_writes"): ...       # off in some mode that is on
    recovery.trigger("redis", "connection_timeout", strategy="restart_redis",
                     context={"check": "ping", "latency_ms": 5012})   # recorded only
    recovery.register_closable("report-files", files, close=files.close, idle=files.idle)
    [run] = recovery.check("system", strategy="file_handle_cleanup")   # what it would do

``trigger`` never blocks: steps run on background threads. The store is the one the
CLI and the service use, so cooldowns, approvals and the audit trail are shared. An
application can trigger and read; it cannot approve.

Like the service's processes, an application acts on the set of runbooks, playbooks
and inventory a reload put in force (engine.runbooks.loaded_set), not on the files on disk being
edited: its worker takes the service's queued and deferred work too. Where no set is
recorded, the files on disk.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config import Config, keep_files_private, load_config
from engine.context import EngineContext
from engine.executors import private_dirs
from engine.lifecycle import IncidentState
from engine.orchestration.attempt import advance
from engine.orchestration.settle import seen_healthy
from engine.orchestration.triggers import TriggerRequest, open_incident
from engine.records import Incident, RunRecord
from engine.reporting.degraded_mode import DegradedMode
from engine.reporting.reports import degraded_modes
from engine.resources import ResourceRegistry
from engine.service.worker import Worker

if TYPE_CHECKING:
    from engine.actions.system.closables import Closable, Closables

log = logging.getLogger(__name__)

MAX_CONTEXT_BYTES = 16384   # a trigger's context, as JSON: what a record may carry


def checked_context(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """A trigger's context as the JSON data it is recorded as, or ValueError: a mapping
    with string keys, JSON-able (no NaN), at most MAX_CONTEXT_BYTES once encoded."""
    if context is None:
        return {}
    if not isinstance(context, Mapping):
        raise ValueError(f"context must be a mapping, not {type(context).__name__}")
    if bad := [k for k in context if not isinstance(k, str)]:
        raise ValueError(f"context keys must be strings: {bad[0]!r} is not")
    try:
        text = json.dumps(dict(context), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"context must be JSON data: {exc}") from None
    except RecursionError:
        raise ValueError("context is nested too deep to record") from None
    if len(text.encode()) > MAX_CONTEXT_BYTES:
        raise ValueError(f"context is {len(text.encode())} bytes as JSON, more than "
                         f"{MAX_CONTEXT_BYTES}")
    return json.loads(text)


@dataclass
class IncidentHandle:
    """What ``trigger`` returns: the incident (or the refusal) and a way to wait for it."""

    recovery: Recovery
    incident_id: str | None
    refusal: str | None = None
    _future: Future | None = None

    @property
    def incident(self) -> Incident | None:
        if self.incident_id is None:
            return None
        return self.recovery.context.store.get_incident(self.incident_id)

    @property
    def state(self) -> str:
        incident = self.incident
        return incident.state.value if incident else "refused"

    def wait(self, timeout: float | None = 30.0) -> Incident | None:
        """Until this attempt ends (recovered, failed, degraded...) or pauses (parked,
        deferred), or ``timeout`` passes; returns the incident as it then is."""
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        if self._future is not None:
            try:
                if self._future.result(timeout):  # we ran the attempt: it has ended or paused
                    return self.incident
            except TimeoutError:
                return self.incident
            except Exception:  # noqa: BLE001 - the record says what happened; we only wait
                log.exception("recovery attempt for %s raised", self.incident_id)
                return self.incident
        while time.monotonic() < deadline:  # someone else's attempt: watch the store
            incident = self.incident
            if incident is None or incident.state != IncidentState.REMEDIATING:
                return incident
            time.sleep(0.1)
        return self.incident


class Recovery:
    def __init__(self, context: EngineContext, *, worker: bool = False) -> None:
        self.context = context
        context.follow_set_in_force()
        self._pool = ThreadPoolExecutor(max_workers=context.config.worker_threads,
                                        thread_name_prefix="recovery")
        # A run of this application killed last time left its private data dir (secrets
        # in clear): removed now; a worker also does it periodically.
        try:
            private_dirs.sweep(redactor=context.redactor)
        except Exception:  # noqa: BLE001 - never keeps the application from starting
            log.exception("could not sweep the private data dirs of dead runs")
        # An application retries its own deferred work; alerts are the service's to take.
        self._worker = Worker(context, intake=False).start() if worker else None
        self._closed = threading.Event()
        self._closables_lock = threading.Lock()

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | Config | None = None, *,
                    worker: bool = False) -> Recovery:
        """``worker=True`` also retries deferred incidents and runs approved steps here.
        Sets this process's umask to 077 (engine.config.keep_files_private): the
        application's own files are created private from now on too."""
        keep_files_private()
        config = path if isinstance(path, Config) else load_config(path)
        return cls(EngineContext(config), worker=worker)

    @property
    def resources(self) -> ResourceRegistry:
        return self.context.resources

    @property
    def closables(self) -> Closables:
        """What this application registered as closable when idle; ``file_handle_cleanup``
        closes the idle ones (registered as the resource ``closables``, for every target)."""
        from engine.actions.system.closables import Closables

        with self._closables_lock:
            found = self.resources.get(Closables.RESOURCE)
            if not isinstance(found, Closables):
                found = Closables()
                self.resources.register(Closables.RESOURCE, found)
            return found

    def register_closable(self, name: str, obj: Any, **how: Any) -> Closable:
        """``closables.register``: ``close`` (default ``obj.close``), and ``idle`` (a
        callable: True when nothing uses it) or ``last_used`` (a callable: a timestamp,
        idle ``idle_after`` seconds later) or neither (``closables.using(name)`` marks
        it busy)."""
        return self.closables.register(name, obj, **how)

    def check(self, component: str, *, target: str | None = None,
              strategy: str | None = None) -> list[RunRecord]:
        """``recover --check`` in this process, against what this application registered:
        each step (or only ``strategy``) planned, nothing changed, nothing counted. The
        check-mode runs are recorded; each one's ``reason`` says what it would do."""
        from engine.orchestration.planner import check_runs

        self.context.refresh()
        runbook = self.context.runbook(component)
        return check_runs(self.context, runbook,
                          self.context.canonical_target(self._target_of(component, target)),
                          strategy=strategy, requested_by=f"app:{os.getpid()}")

    def _target_of(self, component: str, target: str | None) -> str:
        """The target named, else the one this application registered ``component``
        for, else localhost."""
        registered = self.resources.targets(component)
        return target or (registered[0] if len(registered) == 1 else "localhost")

    def trigger(self, component: str, failure_type: str | None = None, *,
                target: str | None = None, requested_by: str | None = None,
                strategy: str | None = None,
                context: Mapping[str, Any] | None = None) -> IncidentHandle:
        """Open (or attach to) the incident and run its attempt in the background.

        The application's own health check is a probe: the kill switch refuses it and
        nothing forces it. A deferred incident goes on where a worker runs (the service,
        or this process with ``worker=True``).

        ``strategy``: the incident it opens runs that one strategy of the runbook only
        (an incident already open goes on as it is). ``context``: JSON data recorded with
        the incident and in its runs' run.json, never rendered into a template nor passed
        to an action or a playbook. A strategy the runbook lacks, or a context that is not
        JSON data with string keys or is too large, is a ValueError, before anything is
        opened."""
        self.context.refresh()    # a reload since the last call: its set from now on
        recorded = checked_context(context)
        if strategy is not None:
            names = [s.name for s in self.context.runbook(component).strategies]
            if strategy not in names:
                raise ValueError(f"runbook {component} has no strategy {strategy!r} "
                                 f"(it has: {', '.join(names)})")
        request = TriggerRequest(
            runbook=component, failure_type=failure_type,
            target=self._target_of(component, target), strategy=strategy, context=recorded,
            trigger="probe", requested_by=requested_by or f"app:{os.getpid()}")
        opened = open_incident(self.context, request)
        if opened.incident is None:
            return IncidentHandle(self, None, refusal=opened.refusal)
        if not opened.claimed:   # another attempt is under way: wait() watches the store
            return IncidentHandle(self, opened.incident.id)
        # Ours, but it may wait for a free thread: keep the claim alive meanwhile, so no
        # worker takes it for abandoned (its embedded actions need this process).
        incident_id = opened.incident.id
        keepalive = self.context.leases.hold(None, on_beat=lambda: self._touch(incident_id))
        future = self._pool.submit(self._run, incident_id, keepalive)
        return IncidentHandle(self, incident_id, _future=future)

    def _touch(self, incident_id: str) -> None:
        self.context.store.update_incident(incident_id, expect=[IncidentState.REMEDIATING])

    def _run(self, incident_id: str, keepalive) -> bool:
        keepalive.release()
        advance(self.context, incident_id)
        return True

    def healthy(self, component: str, target: str | None = None) -> int:
        """The application's health check passed: like a passing probe, it switches off
        the automatic degraded-mode reasons for that target (not a mode set by hand) and
        resolves its exhausted alert. Returns how many degraded reasons it cleared."""
        self.context.refresh()
        runbook = self.context.runbook(component)
        name = self._target_of(component, target)
        return len(seen_healthy(self.context, runbook, self.context.canonical_target(name)))

    def degraded(self, mode: str) -> bool:
        """Is this degraded mode on (for any reason: automatic or by hand)?"""
        return bool(self.context.store.degraded_reasons(mode))

    def degraded_modes(self) -> list[DegradedMode]:
        """Every known mode (configured, named by a runbook, or with a reason), on or
        off, each with its capability matrix and reasons: what ``recovery status`` shows."""
        self.context.refresh()
        return [DegradedMode.from_report(m) for m in degraded_modes(
            self.context.store, self.context.config.degraded_modes, list(self.context.runbooks))]

    def degraded_mode(self, mode: str) -> DegradedMode:
        """One mode, on or off, with its capability matrix and why it is on; a name no
        configuration, runbook or reason knows is a LookupError (a typo, not a mode)."""
        modes = self.degraded_modes()
        for found in modes:
            if found.name == mode:
                return found
        raise LookupError(f"no degraded mode {mode!r} (known: "
                          f"{', '.join(m.name for m in modes) or 'none'})")

    def feature_on(self, feature: str) -> bool:
        """Is ``feature`` on: no mode that is on switches it off? A feature no mode's
        capability matrix names is a LookupError (a typo would otherwise read as on)."""
        modes = self.degraded_modes()
        if not any(feature in m.capabilities for m in modes):
            raise LookupError(f"no degraded mode's capabilities name {feature!r}")
        return all(m.allows(feature) for m in modes)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        self._pool.shutdown(wait=True)
        self._closed.set()
