"""Has the alert been silenced since it arrived?

Alertmanager does not deliver silenced alerts, but a silence created after an alert was
journaled must still stop its remediation: before each step of an alert's incident, the
configured Alertmanagers are asked for their active silences (``GET /api/v2/silences``)
and each one's matchers are checked against the alert's labels. A silenced alert's step
is deferred (the incident stays open; its resolve closes it). When no Alertmanager
answers, the step is deferred too (``alertmanager.when_unreachable: defer``, the
default) or allowed (``allow``), and the record says which.
"""

from __future__ import annotations

import httpx

from engine.gates.base import Decision, Gate, GateContext
from engine.runbooks.matchers import MatcherError, matches_all
from engine.runbooks.model import Matcher


class SilenceGate(Gate):
    name = "silence"

    def __init__(self, alertmanagers: list[str], *, timeout: float = 2.0,
                 when_unreachable: str = "defer", recheck: float = 60.0) -> None:
        self.alertmanagers = list(alertmanagers)
        self.timeout = timeout
        self.when_unreachable = when_unreachable
        self.recheck = recheck

    def check(self, ctx: GateContext) -> Decision:
        incident = ctx.incident
        if (not self.alertmanagers or ctx.check_mode or incident is None
                or incident.trigger != "alert" or not incident.labels):
            return self.allow()
        silenced, unreachable = self._ask(incident.labels)
        if silenced:
            return self.defer(f"the alert is silenced in Alertmanager ({', '.join(silenced)})",
                              ctx.now + self.recheck)
        if unreachable and len(unreachable) == len(self.alertmanagers):
            words = f"cannot check silences: {'; '.join(unreachable)}"
            if self.when_unreachable == "allow":
                return self.allow(f"{words} (allowed by configuration)")
            return self.defer(words, ctx.now + self.recheck)
        return self.allow()

    def _ask(self, labels: dict[str, str]) -> tuple[list[str], list[str]]:
        """(ids of active silences that match these labels, Alertmanagers that did not
        answer). Silences are read directly (``GET /api/v2/silences``), not through the
        alert: a silenced alert that resolves meanwhile is no longer listed, and
        Alertmanager does not deliver its resolve either."""
        silenced: list[str] = []
        unreachable: list[str] = []
        for base in self.alertmanagers:
            try:
                response = httpx.get(f"{base}/api/v2/silences", timeout=self.timeout)
                response.raise_for_status()
                found = response.json()
                if not isinstance(found, list):
                    raise ValueError(f"expected a list of silences, got {type(found).__name__}")
            except (httpx.HTTPError, ValueError) as exc:
                unreachable.append(f"{base}: {type(exc).__name__}: {exc}"[:200])
                continue
            for silence in found:
                if (isinstance(silence, dict)
                        and (silence.get("status") or {}).get("state") == "active"
                        and _silences(silence.get("matchers") or [], labels)):
                    silenced.append(str(silence.get("id")))
        return sorted(set(silenced)), unreachable


def _silences(matchers: list[dict], labels: dict[str, str]) -> bool:
    """Alertmanager's matching: every matcher holds (a missing label is "")."""
    try:
        group = [Matcher(name=str(m["name"]),
                         op=("=~" if m.get("isRegex") else "=") if m.get("isEqual", True)
                         else ("!~" if m.get("isRegex") else "!="),
                         value=str(m.get("value", ""))) for m in matchers]
        return bool(group) and matches_all(group, labels)
    except (KeyError, TypeError, MatcherError):
        return False
