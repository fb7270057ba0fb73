"""``/healthz``, ``/readyz`` (open routes) and ``/metrics`` (a credential by default).

- ``/healthz``: the process answers. Always 200; a load balancer restarts what fails it.
- ``/readyz``: this instance can do its job: the store can be written now (a real write,
  a success reused for 2 s: webhook.write_probe; a full disk, a database file made
  read-only or deleted under the service is not ready) and a worker has reported within
  ``webhook.ready_heartbeat_age`` seconds (30 by default). Otherwise 503 with the
  reasons, so a proxy sends Alertmanager elsewhere. A journaled alert is never lost while
  workers are down, only delayed; readiness says the delay has started.
- ``/metrics``: the Prometheus text of ``engine.reporting.metrics`` (read from the store, so every
  process shows the same numbers) and the webhook's request counters
  (``webhook.request_metrics``: under ``recovery serve`` the sum over every http worker).
  It names inventory hosts, components and degraded modes, so it needs a credential that
  may read it (``Access.READ_METRICS``: the ``metrics`` role, which can do nothing else,
  or an operator), unless ``webhook.metrics_auth`` is false.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from engine.reporting.metrics import HEARTBEAT_KEY, render_text, youngest_heartbeat
from engine.security.roles import Access
from engine.store.base import StoreUnavailable
from webhook import request_metrics
from webhook.auth import requires
from webhook.state import context_in_force, state

bp = Blueprint("health", __name__)
DEFAULT_HEARTBEAT_AGE = 30.0


@bp.get("/healthz")
@requires(Access.OPEN)
def healthz():
    return jsonify(ok=True)


@bp.get("/readyz")
@requires(Access.OPEN)
def readyz():
    ctx = state().context
    max_age = state().settings.get("ready_heartbeat_age", DEFAULT_HEARTBEAT_AGE)
    reasons: list[str] = []
    answer: dict[str, Any] = {"store": "ok", "worker_heartbeat_age": None,
                              "max_heartbeat_age": max_age}
    try:
        # Writable, within what a notification would wait: a writer stuck on the store
        # makes alerts 503, so this instance is not ready either.
        state().write_probe.check(ctx.store, state().settings.get("store_wait", 5.0))
        beats = ctx.store.get_value(HEARTBEAT_KEY)
    except StoreUnavailable as exc:   # the details go to the log: this route is open
        state().outages.failed(exc, "the readiness probe")   # said once, with the reason
        answer["store"] = "unavailable"
        reasons.append("store unavailable")
    else:
        state().outages.succeeded()
        youngest = youngest_heartbeat(beats)
        if youngest is None:
            reasons.append("no worker has reported (is `recovery serve` running its workers?)")
        else:
            age = max(0.0, time.time() - youngest)
            answer["worker_heartbeat_age"] = round(age, 3)
            if age > max_age:
                reasons.append(f"the youngest worker heartbeat is {age:.0f}s old "
                               f"(limit {max_age:g}s): workers stuck or dead")
    answer["ready"] = not reasons
    answer["reasons"] = reasons
    return jsonify(answer), 200 if not reasons else 503


@bp.get("/metrics")
@requires(Access.READ_METRICS)
def metrics():
    text = render_text(context_in_force(), *request_metrics.collectors(current_app),
                       one_replica=True)
    return Response(text, mimetype=None,
                    content_type=CONTENT_TYPE_LATEST)
