"""Parts of the status report (engine.reporting.reports) that more than one command prints the
same way: ``status`` and ``enable`` list the alerts a kill switch refused, ``status``
and ``degraded`` say what a degraded mode switches off."""

from __future__ import annotations

from typing import Any

from engine.cli.output import ago, alert_text, indented_table


def refused_table(rows: list[dict], t: float, prefix: str = "  ") -> str:
    """Alerts a kill switch refused (``RefusedAlert.to_dict``), one line each, under a
    heading (``prefix``). The alert's own words (its name, its fingerprint) with their
    control characters made visible."""
    return indented_table(rows, [
        ("COMPONENT", lambda r: r["component"]),
        ("TARGET", lambda r: r["target"]),
        ("ALERT", lambda r: alert_text(r["alertname"]) or "?"),
        ("FINGERPRINT", lambda r: alert_text(r["fingerprint"])),
        ("FIRING", lambda r: {True: "yes", False: "no", None: "unknown"}[r["firing"]]),
        ("REFUSED", lambda r: f"{r['refusals']}x, last {ago(r['refused_at'], t)}"),
        ("RUN", lambda r: r["run_id"]),
        ("REASON", lambda r: r["reason"]),
    ], prefix)


def capability_words(mode: dict[str, Any]) -> str:
    """A mode's capability matrix in words that cannot be misread: what it switches off
    when on (the mode is off), or what is off now (it is on)."""
    kept = [k for k, stays_on in (mode.get("capabilities") or {}).items() if stays_on]
    if mode["active"]:
        words = f"off now: {', '.join(mode['off_now']) or 'nothing'}"
        return words + (f" (still on: {', '.join(kept)})" if kept else "")
    words = f"when on, switches off: {', '.join(mode['switches_off']) or 'nothing'}"
    return words + (f" (keeps on: {', '.join(kept)})" if kept else "")
