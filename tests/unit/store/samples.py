"""Records for the store tests: an incident, a run, a kept delivery, with what a test
does not care about filled in."""

from __future__ import annotations

import time
from typing import Any

from engine.lifecycle import IncidentState, RunStatus
from engine.records import Delivery, Incident, RunRecord, new_id


def incident(target: str = "h1", state: IncidentState = IncidentState.REMEDIATING) -> Incident:
    return Incident(id=new_id("inc"), runbook="rb", component="c", target=target,
                    state=state, opened_at=time.time())


def run(status: RunStatus = RunStatus.RUNNING, **kw: Any) -> RunRecord:
    fields = dict(id=new_id("run"), component="c", runbook="rb", strategy="s", target="h1",
                  status=status, started_at=time.time())
    fields.update(kw)
    return RunRecord(**fields)


def delivery(fingerprint: str, status: str, starts_at: str | None, at: float, outcome: str,
             **kw: Any) -> Delivery:
    return Delivery(fingerprint=fingerprint, status=status, starts_at=starts_at,
                    received_at=at, processed_at=at, outcome=outcome, **kw)
