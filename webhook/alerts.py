"""``POST /api/v1/alerts``: Alertmanager's webhook. Authenticate, parse, journal, answer.

Nobody watches this path, so it does as little as it can and never loses what it
accepts: the alerts are committed to the store's intake queue (deduplicated on
fingerprint, startsAt, status) *before* the 200; the workers take them from there. It
never runs a remediation. Answers (docs/operations.md): 200 ``{"accepted", "duplicates",
"ignored"}``; 400 with the reason for a body that is not a notification at all; 401
without the webhook token (403 for a credential of another role: only ``webhook`` posts
alerts); 413 over
``webhook.max_body_bytes`` (refused on its Content-Length, before the body is read); 503
when the store is down, which Alertmanager retries.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from engine import fault_injection
from engine.alerts.alert import printable
from engine.security.roles import Access
from engine.store.base import StoreUnavailable
from webhook.auth import requires
from webhook.notification import MAX_ALERTS, NotANotification, parse_notification
from webhook.state import state

log = logging.getLogger(__name__)
LOGGED_REASONS = 10   # bad alerts logged one by one per notification; the rest summed up
bp = Blueprint("alerts", __name__)


@bp.post("/api/v1/alerts")
@requires(Access.POST_ALERTS)
def receive_alerts():
    body = read_body()
    try:
        parsed = parse_notification(body)
    except NotANotification as exc:
        log.info("webhook: refused a notification (%d bytes): %s", len(body), exc)
        return jsonify(error=str(exc)), 400
    group = printable(parsed.group_key)
    for reason in parsed.ignored[:LOGGED_REASONS]:   # a summary, not a line per bad alert
        log.warning("webhook: ignored an alert of group %s: %s", group, reason)
    if parsed.ignored_count > LOGGED_REASONS:
        log.warning("webhook: group %s: %d alert(s) ignored in all (%d past the limit of "
                    "%d per notification)", group, parsed.ignored_count, parsed.beyond_limit,
                    MAX_ALERTS)
    accepted = duplicates = 0
    fault_injection.reached("in_request")        # test-only: a no-op unless armed
    if parsed.alerts:
        try:
            accepted, duplicates = state().context.store.enqueue_alerts(
                [(alert.dedup_key, alert.to_payload()) for alert in parsed.alerts],
                repeat_after=state().settings["repeat_signal_after"],
                wait=state().settings["store_wait"])
        except StoreUnavailable as exc:
            state().outages.failed(exc, "journaling alerts (answered 503)")   # said once
            log.debug("webhook: cannot journal %d alert(s) of group %s: %s",
                      len(parsed.alerts), group, exc)
            response = jsonify(error="the store is unavailable: alerts not accepted, "
                                     "retry later")
            response.status_code = 503
            response.headers["Retry-After"] = "5"
            return response
    fault_injection.reached("after_journal")     # test-only: a no-op unless armed
    if parsed.alerts:
        state().outages.succeeded()
    log.debug("webhook: group %s: %d accepted, %d duplicate(s), %d ignored",
              group, accepted, duplicates, parsed.ignored_count)
    return jsonify(accepted=accepted, duplicates=duplicates, ignored=parsed.ignored_count)


def read_body(chunk: int = 64 * 1024) -> bytes:
    """The request body, at most MAX_CONTENT_LENGTH bytes, else RequestEntityTooLarge (413).

    Flask refuses a Content-Length over the limit before anything is read. A chunked body
    (no Content-Length; the server terminates the stream) is read up to the limit: one
    byte more is a 413, never a body silently cut at the limit (which ``get_data`` gives).
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    stream = request.stream   # raises the 413 itself for a Content-Length over the limit
    parts, total = [], 0
    while True:
        data = stream.read(chunk)   # past a chunked body's limit: raises the 413
        if not data:
            return b"".join(parts)
        total += len(data)
        if total > limit:
            raise RequestEntityTooLarge()
        parts.append(data)
