"""When the engine's own alerts go out next (engine.service.notifier says what they are).

A worker posts them every ``alertmanager.notify_interval``, one process at a time: the
time of the last post is claimed in the store (``claim_post``). Whatever changes a
condition they report (a decision on an approval, an exhausted target, an
acknowledgement) calls ``post_soon``, so the next worker pass posts whatever the interval.
"""

from __future__ import annotations

from engine.context import EngineContext

POSTED_AT = "notify_posted_at"   # the store's key: when the last post was claimed


def post_soon(ctx: EngineContext) -> None:
    """A condition changed: the next worker pass posts, whatever the interval (the claim
    of the last post is given up; a resolve then reaches Alertmanager at once)."""
    if ctx.config.alertmanagers:
        ctx.store.set_value(POSTED_AT, None)


def claim_post(ctx: EngineContext, now: float) -> bool:
    """True when this process is to post now: the interval has passed since the last
    post (or ``post_soon`` gave it up) and no other process claimed it first."""
    return ctx.store.claim_due(POSTED_AT, now, ctx.config.notify_interval)
