"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of the service's HTTP routes
(``/api/v1/*``, ``/healthz``, ``/readyz``, ``/metrics``): parameters, bodies, answers,
the two ways to present a credential (bearer, basic) and, per operation, ``x-roles``:
the roles that may call it. Served open: it describes the routes and holds no state.

Written here by hand, not derived from the routes, so a test can hold the two against
each other (tests/unit/test_openapi.py: every route and method is in it, with the roles
the role table gives, and the document validates).
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from engine.security.roles import Access
from webhook.api.blueprint import bp
from webhook.auth import requires

READERS = ["viewer", "operator"]
OPERATOR = ["operator"]
DEGRADED_READERS = ["viewer", "app", "operator"]
TRIGGERS = ["app", "operator"]

_ANY = {"type": "object", "additionalProperties": True}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}},
          "required": ["error"]}
_REFUSED = {"type": "object", "required": ["gate", "reason", "retry_at"], "properties": {
    "error": {"enum": ["refused", "deferred"]}, "gate": {"type": "string"},
    "reason": {"type": "string"}, "retry_at": {"type": ["number", "null"]},
    "incident_id": {"type": ["string", "null"]}, "run_id": {"type": ["string", "null"]}}}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": schema or _ANY}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": "#/components/schemas/Error"})


def _path(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": what,
            "schema": {"type": "string"}}


def _query(name: str, what: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": what,
            "schema": schema or {"type": "string"}}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, roles: list[str] | None, answers: dict[str, Any], *,
        parameters: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One operation; ``roles`` None: open (no credential)."""
    op: dict[str, Any] = {"summary": summary, "responses": dict(answers)}
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = body
    if roles is None:
        op["security"] = []
        op["x-roles"] = "open"
    else:
        op["x-roles"] = roles
        op["responses"].setdefault("401", {"$ref": "#/components/responses/Unauthorized"})
        op["responses"].setdefault("403", {"$ref": "#/components/responses/Forbidden"})
    return op


_LIMIT = _query("limit", "at most this many (1-1000, default 100)",
                {"type": "integer", "minimum": 1, "maximum": 1000})
_BAD = {"400": _error("a bad query or body, with the reason")}
_STORE = {"503": _error("the store is unavailable: retry later")}

PATHS: dict[str, dict[str, Any]] = {
    "/healthz": {"get": _op("the process answers", None, {"200": _json("alive")})},
    "/readyz": {"get": _op("the store answers and the workers beat", None, {
        "200": _json("ready"), "503": _json("not ready, with the reasons")})},
    "/metrics": {"get": _op("Prometheus metrics (open when webhook.metrics_auth is false)",
                            ["metrics", "viewer", "operator"], {
        "200": {"description": "the text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}})},
    "/api/v1/alerts": {"post": _op("Alertmanager's webhook: journal the alerts", ["webhook"], {
        "200": _json("journaled"), **_BAD, "413": _error("the body is over the limit"),
        **_STORE}, body=_body(_ANY))},
    "/api/v1/openapi.json": {"get": _op("this document", None, {
        "200": _json("the OpenAPI document")})},
    "/api/v1/status": {"get": _op("what the engine is doing (recovery status)", READERS, {
        "200": _json("the status report"), **_BAD, **_STORE}, parameters=[
        _query("by", "group by strategy", {"enum": ["strategy"]})])},
    "/api/v1/strategies": {"get": _op("outcomes per strategy", READERS, {
        "200": _json("the strategy report"), **_BAD, **_STORE},
        parameters=[_query("window", "a duration such as 1h")])},
    "/api/v1/degraded": {"get": _op("degraded modes, each with its capability matrix and "
                                    "reasons", DEGRADED_READERS, {
        "200": _json("the modes", {"type": "object", "properties": {
            "active": {"type": "array", "items": {"type": "string"}},
            "modes": {"type": "array", "items": _ANY},
            "problems": {"type": "array", "items": {"type": "string"}}}}), **_STORE})},
    "/api/v1/incidents": {"get": _op("incidents, newest first (recovery incidents)", READERS, {
        "200": _json("the incidents"), **_BAD, **_STORE}, parameters=[
        _query("open", "only open ones", {"type": "boolean"}),
        _query("component", "of this component"), _query("target", "on this host"),
        _query("state", "in this state", {"enum": ["open", "remediating", "recovered",
                                                   "degraded", "failed", "resolved",
                                                   "canceled"]}), _LIMIT])},
    "/api/v1/incidents/{incident_id}": {"get": _op(
        "one incident with its attempts, runs and timeline", READERS, {
            "200": _json("the incident"), "404": _error("no such incident"), **_STORE},
        parameters=[_path("incident_id", "an incident id")])},
    "/api/v1/incidents/{incident_id}/ack": {"post": _op(
        "acknowledge an exhausted incident (recovery ack)", OPERATOR, {
            "200": _json("acknowledged"), "404": _error("no such incident"),
            "409": _error("nothing to acknowledge"), **_STORE},
        parameters=[_path("incident_id", "an incident id")])},
    "/api/v1/runs": {"get": _op("runs, newest first (recovery history)", READERS, {
        "200": _json("the runs"), **_BAD, **_STORE}, parameters=[
        _query("component", "of this component"), _query("target", "on this host"),
        _query("status", "with this status"), _query("incident", "of this incident"),
        _query("since", "epoch seconds, a duration back (24h) or an RFC 3339 time"),
        _LIMIT])},
    "/api/v1/runs/{run_id}": {"get": _op(
        "one run: per-host outcome, timeline, job events, artifacts", READERS, {
            "200": _json("the run"), "404": _error("no such run"), **_STORE},
        parameters=[_path("run_id", "a run id")])},
    "/api/v1/approvals": {"get": _op("approvals (pending by default)", READERS, {
        "200": _json("the approvals"), **_BAD, **_STORE}, parameters=[
        _query("status", "which", {"enum": ["pending", "approved", "rejected", "expired",
                                             "canceled", "all"]})])},
    "/api/v1/approvals/{run_id}": {"post": _op("approve or reject a parked step", OPERATOR, {
        "200": _json("decided"), **_BAD, "404": _error("no approval for this run"),
        "409": _error("cannot be decided now (decided, expired, runbook changed)"),
        **_STORE}, parameters=[_path("run_id", "the parked run's id")], body=_body({
            "type": "object", "required": ["decision"], "properties": {
                "decision": {"enum": ["approve", "reject"]},
                "reason": {"type": "string", "maxLength": 2000}}}))},
    "/api/v1/recover": {"post": _op(
        "run a runbook by hand (recovery recover); app: its own component, no force",
        TRIGGERS, {
            "202": _json("handed to the engine workers: the gates' first answer",
                         {"type": "object", "required": ["incident_id", "run_id", "outcome"],
                          "properties": {"incident_id": {"type": ["string", "null"]},
                                         "run_id": {"type": ["string", "null"]},
                                         "outcome": {"type": "string"},
                                         "reason": {"type": "string"}}}),
            **_BAD, "409": _json("a gate refused or deferred it, or its attempt is under "
                                 "way elsewhere", _REFUSED), **_STORE},
        body=_body({"type": "object", "required": ["component"],
                    "additionalProperties": False, "properties": {
                        "component": {"type": "string"}, "strategy": {"type": "string"},
                        "target": {"type": "string", "default": "localhost"},
                        "check": {"type": "boolean", "default": False},
                        "force": {"type": "boolean", "default": False}}}))},
    "/api/v1/cancel/{ident}": {"post": _op("cancel a run or an incident (recovery cancel)",
                                           OPERATOR, {
        "200": _json("canceled"), **_BAD, "404": _error("no such run or incident"),
        "409": _error("nothing left to cancel"), **_STORE},
        parameters=[_path("ident", "a run or incident id")],
        body=_body({"type": "object", "properties": {"reason": {"type": "string"}}},
                   required=False))},
    "/api/v1/switches": {
        "get": _op("the kill switches in force", READERS, {"200": _json("the switches"),
                                                            **_STORE}),
        "post": _op("switch auto-recovery off for a scope (recovery disable)", OPERATOR, {
            "201": _json("the switch"), **_BAD, **_STORE}, body=_body({
                "type": "object", "additionalProperties": False, "properties": {
                    "component": {"type": "string"}, "target": {"type": "string"},
                    "for": {"type": "string", "default": "1h",
                            "description": "a duration, or 'never'"},
                    "reason": {"type": "string"}, "cancel_running": {"type": "boolean"}}}))},
    "/api/v1/switches/{switch_id}": {"delete": _op(
        "switch auto-recovery on again for this switch's scope (recovery enable)", OPERATOR, {
            "200": _json("removed"), "404": _error("no such switch in force"), **_STORE},
        parameters=[_path("switch_id", "a kill switch id")])},
    "/api/v1/unlock": {"post": _op("break a target's lock (recovery unlock)", OPERATOR, {
        "200": _json("broken, or there was none"), **_BAD,
        "409": _error("held for another component"), **_STORE}, body=_body({
            "type": "object", "required": ["target"], "additionalProperties": False,
            "properties": {"target": {"type": "string"}, "component": {"type": "string"}}}))},
    "/api/v1/reload": {"post": _op("put the files on disk in force (recovery reload)",
                                   OPERATOR, {
        "200": _json("in force"), "409": _json("refused whole: the problems"),
        "500": _error("the reload failed"), **_STORE})},
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "InfraFabric Recovery", "version": "1",
                 "description": "Every operation names the roles that may call it "
                                "(x-roles); a credential is a bearer token, or basic auth "
                                "with the token as the password."},
        "security": [{"bearer": []}, {"basic": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic"}},
            "schemas": {"Error": _ERROR},
            "responses": {
                "Unauthorized": _error("no credentials, or ones that match none"),
                "Forbidden": _error("the credential's role may not do this")},
        },
    }


@bp.get("/openapi.json")
@requires(Access.OPEN)
def get_openapi():
    return jsonify(document())
