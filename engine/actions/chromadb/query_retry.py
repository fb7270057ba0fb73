"""``chromadb.query_retry``: proves that a transient failure has passed, or says it has
not; it changes nothing on the server."""

from __future__ import annotations

import time

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
from engine.actions.chromadb.client import (
    NotConfigured,
    collections_of,
    error_text,
    http_client,
    probe_query,
)


class QueryRetry(Action):
    """Heartbeat, then a test query on each configured collection; on failure wait and
    try again (``attempts``, default 5; delay ``backoff`` doubling up to ``max_delay``).

    It changes nothing on the server: it proves a transient failure (a restart, a
    timeout) has passed. A failure that outlasts the retries is not transient, and the
    runbook goes on to the next strategy."""

    name = "chromadb.query_retry"
    scope = REMOTE
    timeout = 60.0

    def run(self, ctx: ActionContext) -> ActionResult:
        attempts = max(1, int(ctx.params.get("attempts", 5)))
        delay = float(ctx.params.get("backoff", 0.5))
        max_delay = float(ctx.params.get("max_delay", 8.0))
        errors: list[str] = []
        start = time.monotonic()
        for attempt in range(1, attempts + 1):
            ok, summary = self._try(ctx)
            if ok:
                return ActionResult(True, f"ChromaDB answers again on {ctx.target} after "
                                    f"{attempt} tr{'y' if attempt == 1 else 'ies'}: {summary}",
                                    {"attempts": attempt, "errors": errors,
                                     "seconds": round(time.monotonic() - start, 3)})
            if summary.startswith("not applicable: "):
                return ActionResult(False, summary.removeprefix("not applicable: "),
                                    not_applicable=True)
            errors.append(summary)
            ctx.log(f"try {attempt}/{attempts} failed: {summary}")
            if attempt < attempts and ctx.cancel.wait(delay):
                return ActionResult(False, "canceled while waiting to retry",
                                    {"attempts": attempt, "errors": errors})
            delay = min(delay * 2, max_delay)
        return ActionResult(False, f"ChromaDB on {ctx.target} still failing after {attempts} "
                            f"tries over {time.monotonic() - start:.1f}s: {errors[-1]}",
                            {"attempts": attempts, "errors": errors,
                             "seconds": round(time.monotonic() - start, 3)})

    def _try(self, ctx: ActionContext) -> tuple[bool, str]:
        try:
            client = http_client(ctx)
            client.heartbeat()
            answers = [probe_query(client.get_collection(name, embedding_function=None))
                       for name in collections_of(ctx)]
        except NotConfigured as exc:
            return False, f"not applicable: {exc}"
        except Exception as exc:  # noqa: BLE001 - any client error is a failed try
            return False, f"{type(exc).__name__}: {error_text(exc)}"
        return True, "; ".join(answers) or "heartbeat answered (no collection configured)"

    def plan(self, ctx: ActionContext) -> ActionResult:
        ok, summary = self._try(ctx)
        names = ", ".join(collections_of(ctx)) or "(none configured)"
        return ActionResult(True, f"would retry a heartbeat and a test query on {names} up "
                            f"to {ctx.params.get('attempts', 5)} times; right now: "
                            f"{'ok' if ok else 'failing'}: {summary}")
