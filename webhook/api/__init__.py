"""The HTTP API: ``/api/v1/*`` but the webhook, one blueprint (``bp``,
webhook.api.blueprint), one module per concern. Each route states its access
(engine.security.roles): reading needs ``Access.READ`` (viewer, operator), degraded
modes ``Access.READ_DEGRADED`` (viewer, app, operator), a manual run ``Access.TRIGGER``
(operator; app for its own component), a decision or a change ``Access.OPERATE``
(operator). ``g.operator`` names who, for the record.

- ``webhook.api.overview``: ``status``, ``strategies``, ``degraded``
- ``webhook.api.runs``: ``runs`` and one run (per-host outcome, timeline, job events)
- ``webhook.api.incidents``: ``incidents`` and one incident (attempts, runs), ``ack``
- ``webhook.api.approvals``: ``approvals``, approve or reject
- ``webhook.api.actions``: ``recover``, ``cancel``, ``switches``, ``unlock``, ``reload``
- ``webhook.api.openapi``: ``openapi.json``, the document of all of them

The same answers as the CLI, from the same engine functions; nothing here decides
anything itself. Answers: 400 for a bad query or body (with the reason), 404 for an
unknown run, approval or incident, 409 when something cannot be done now (with the
reason), 503 when the store is down.

Every request acts on one set of runbooks, playbooks and inventory: before it, this
process switches to the set in force (engine.runbooks.loaded_set) and keeps that set for the
whole request.
"""

from __future__ import annotations

from webhook.api import (  # the routes register on bp
    actions,
    approvals,
    incidents,
    openapi,
    overview,
    runs,
)
from webhook.api.blueprint import BadQuery, bp, parse_since

__all__ = ["BadQuery", "actions", "approvals", "bp", "incidents", "openapi", "overview",
           "parse_since", "runs"]
