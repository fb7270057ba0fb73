"""What ``POST /api/v1/alerts`` answered, for ``/metrics``: counters the store does not hold.

Three families, all about the webhook route only (nothing else is counted):

- ``infra_recovery_webhook_requests_total{code}``: answers by HTTP status. The codes the
  route gives (docs/operations.md) have a label of their own: 200, 400 (not a notification), 401
  (no or wrong webhook token: Alertmanager misconfigured), 403 (an operator token), 413
  (over ``webhook.max_body_bytes``), 500, 503 (store down; Alertmanager retries). Any other
  code is folded into its class (``"4xx"``, ``"5xx"``...): at most a dozen series.
- ``infra_recovery_webhook_alerts_total{result}``: the alerts of the 200 answers, by what
  became of them (``accepted``, ``duplicates``, ``ignored``), read from the answer's JSON.
- ``infra_recovery_webhook_request_duration_seconds``: a histogram of the route's time in
  Flask (from the blueprint's ``before_request`` to its ``after_request``; the WSGI server's
  own queueing and the body's transfer before the route reads it are not in it).

Where the numbers live:

- Under ``recovery serve``, every gunicorn http worker counts what it answered in files of
  prometheus_client's multiprocess mode: ``engine.service.supervisor`` sets
  ``PROMETHEUS_MULTIPROC_DIR``
  (a private folder under ``RECOVERY_HOME``, emptied at every start) before gunicorn starts,
  so whichever worker answers ``/metrics`` sums the files of all of them, including the
  workers gunicorn has recycled since the start. The numbers start from 0 at every service
  start (a counter reset, which ``rate()`` handles).
- Anywhere else (an embedded app, the Flask test client): plain in-memory counters of this
  app, shown by this app's ``/metrics`` only. ``recovery metrics`` (the CLI) has no webhook
  to count and shows none of these families.

The cost on the request path: two hooks, one counter ``inc``, one histogram ``observe``
and, for a 200, a ``json.loads`` of the ~45-byte answer and an ``inc`` per non-zero result.
Measured (timeit of both hooks, Python 3.11): about 9 us for a 200 and 4 us for any other
answer in memory, 12-16 us and 6-7 us in multiprocess mode (each ``inc`` there writes to
an mmap'ed file under a lock). A failure here is logged and never changes the answer.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from time import perf_counter

from flask import Flask, Response, request
from prometheus_client import Counter, Histogram, values
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

REQUESTS = "infra_recovery_webhook_requests"      # exposed as ..._total
ALERTS = "infra_recovery_webhook_alerts"          # exposed as ..._total
DURATION = "infra_recovery_webhook_request_duration_seconds"
FAMILIES = (REQUESTS, ALERTS, DURATION)
EXPOSED = (REQUESTS + "_total", ALERTS + "_total", DURATION)   # the names rules may use

CODES = ("200", "400", "401", "403", "413", "500", "503")      # each a series from the start
RESULTS = ("accepted", "duplicates", "ignored")
# The intake answers in a few ms (target p99 < 20 ms); a store under load, in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

BLUEPRINT = "alerts"                  # webhook.alerts.bp: POST /api/v1/alerts only
EXTENSION = "infra_recovery_webhook_metrics"
_T0 = "infra_recovery.t0"             # the request's start, in its WSGI environ

_per_process: dict[int, WebhookMetrics] = {}   # multiprocess mode: one set per process


def multiprocess_dir() -> str | None:
    """The folder the counters of this process are written to, or None when they are in
    memory. prometheus_client decides it once, when it is first imported (from
    ``PROMETHEUS_MULTIPROC_DIR``): its value class is the truth, not the environment now."""
    if getattr(values, "ValueClass", None) is getattr(values, "MutexValue", object()):
        return None
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir")
    return path if path and os.path.isdir(path) else None


def fold(code: int) -> str:
    """The ``code`` label of an HTTP status: itself when the route gives it, else its class."""
    text = str(code)
    return text if text in CODES else f"{code // 100}xx" if 100 <= code < 600 else "other"


class WebhookMetrics:
    """The webhook's counters. Not registered anywhere: ``collectors()`` hands them to the
    registry of one ``/metrics`` answer (so no registry ever holds them twice)."""

    def __init__(self) -> None:
        self.directory = multiprocess_dir()
        self.requests = Counter(
            REQUESTS, "Answers of the Alertmanager webhook (POST /api/v1/alerts) by HTTP "
            "status; codes it does not give are folded into their class (4xx, 5xx).",
            labelnames=["code"], registry=None)
        self.alerts = Counter(
            ALERTS, "Alerts of the webhook's 200 answers by result: accepted (journaled), "
            "duplicates (already journaled), ignored (not an alert the engine can use).",
            labelnames=["result"], registry=None)
        self.duration = Histogram(
            DURATION, "Time the Alertmanager webhook (POST /api/v1/alerts) took in the app, "
            "every answer.", buckets=BUCKETS, registry=None)
        self._by_code = {int(code): self.requests.labels(code) for code in CODES}
        self._by_result = {result: self.alerts.labels(result) for result in RESULTS}

    @classmethod
    def for_this_process(cls) -> WebhookMetrics:
        """In multiprocess mode, one set per process (two sets in one process would
        overwrite each other's numbers in its files); else a new set per app."""
        if multiprocess_dir() is None:
            return cls()
        pid = os.getpid()
        if pid not in _per_process:
            _per_process.clear()            # a fork's child: its parent's set is not its own
            _per_process[pid] = cls()
        return _per_process[pid]

    # -- the request path ------------------------------------------------------------------
    def observe(self, response: Response, started: float | None) -> None:
        code = response.status_code
        (self._by_code.get(code) or self.requests.labels(fold(code))).inc()
        if started is not None:
            self.duration.observe(perf_counter() - started)
        if code == 200:
            answer = json.loads(response.get_data())
            for result, child in self._by_result.items():
                n = answer.get(result)
                if type(n) is int and n > 0:
                    child.inc(n)

    # -- a scrape ---------------------------------------------------------------------------
    def collectors(self) -> list[Collector]:
        """What to add to a ``/metrics`` registry: every process's files in multiprocess
        mode (only our families: whatever else may write there is not ours to show), else
        this app's own counters."""
        if self.directory is not None:
            return [_OurFiles(self.directory)]
        return [self.requests, self.alerts, self.duration]


class _OurFiles(Collector):
    """prometheus_client's ``MultiProcessCollector``, restricted to the webhook families."""

    def __init__(self, directory: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self._files = MultiProcessCollector(None, directory)

    def collect(self) -> Iterator[Metric]:
        for family in self._files.collect():
            if family.name in FAMILIES:
                yield family


def install(app: Flask) -> WebhookMetrics:
    """Count the answers of ``POST /api/v1/alerts`` of ``app`` (hooks on its ``alerts``
    blueprint only: no other route pays anything)."""
    metrics = WebhookMetrics.for_this_process()
    app.extensions[EXTENSION] = metrics

    def started() -> None:
        request.environ[_T0] = perf_counter()

    def answered(response: Response) -> Response:
        try:
            metrics.observe(response, request.environ.get(_T0))
        except Exception as exc:  # noqa: BLE001 - the answer is given; a metric never changes it
            log.warning("webhook metrics: not counted: %s: %s", type(exc).__name__, exc)
        return response

    app.before_request_funcs.setdefault(BLUEPRINT, []).append(started)
    app.after_request_funcs.setdefault(BLUEPRINT, []).append(answered)
    return metrics


def collectors(app: Flask) -> list[Collector]:
    metrics = app.extensions.get(EXTENSION)
    return metrics.collectors() if metrics is not None else []
