"""When the engine's own alerts go out next (engine.service.notifier says what they are).

A worker posts them every ``alertmanager.notify_interval``, one process at a time: the
time of the last post is claimed in the store (``claim_post``). Whatever changes a
condition they report (a decision on an approval, an exhausted target, an
acknowledgement) calls ``post_soon``, so the next worker pass posts whatever the interval.
"""

from __future__ import annotations

import logging

from engine.context import EngineContext

log = logging.getLogger(__name__)
POSTED_AT = "notify_posted_at"   # the store's key: when the last post was claimed


def post_soon(ctx: EngineContext) -> None:
    """A condition changed: the next worker pass posts, whatever the interval (the claim
    of the last post is given up; a resolve then reaches Alertmanager at once). Never
    raises: it runs on the remediation path (a step's start and end, where a raise would
    skip the release of its lock), and a hint the store refused costs only the wait
    until the next ``notify_interval``."""
    if not ctx.config.alertmanagers:
        return
    try:
        ctx.store.set_value(POSTED_AT, None)
    except Exception as exc:  # noqa: BLE001 - the post comes at the interval instead
        log.warning("outgoing alerts: could not ask for an early post (they go out at the "
                    "next interval): %s", exc)


def claim_post(ctx: EngineContext, now: float) -> bool:
    """True when this process is to post now: the interval has passed since the last
    post (or ``post_soon`` gave it up) and no other process claimed it first."""
    return ctx.store.claim_due(POSTED_AT, now, ctx.config.notify_interval)
