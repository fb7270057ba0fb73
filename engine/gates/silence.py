"""Has the alert been silenced since it arrived?

Alertmanager does not deliver silenced alerts, but a silence created after an alert was
journaled must still stop its remediation: before each step of an alert's incident, the
configured Alertmanagers are asked (``GET /api/v2/alerts``) whether an alert with the
same labels is now silenced. A silenced alert's step is deferred (the incident stays
open; its resolve closes it). When no Alertmanager answers, the step is deferred too
(``alertmanager.when_unreachable: defer``, the default) or allowed (``allow``), and the
record says which.
"""

from __future__ import annotations

import httpx

from engine.gates.base import Decision, Gate, GateContext


def _matcher(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


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
        """(silence ids found, Alertmanagers that did not answer)."""
        params = [("filter", _matcher(k, v)) for k, v in sorted(labels.items())]
        params += [("silenced", "true"), ("inhibited", "true"), ("active", "true")]
        silenced: list[str] = []
        unreachable: list[str] = []
        for base in self.alertmanagers:
            try:
                response = httpx.get(f"{base}/api/v2/alerts", params=params,
                                     timeout=self.timeout)
                response.raise_for_status()
                found = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                unreachable.append(f"{base}: {type(exc).__name__}: {exc}"[:200])
                continue
            for alert in found:
                if alert.get("labels") == labels:
                    silenced += alert.get("status", {}).get("silencedBy") or []
        return sorted(set(silenced)), unreachable
