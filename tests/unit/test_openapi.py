"""The OpenAPI document at ``/api/v1/openapi.json`` is true: every route and method of
the service's API is in it with the roles the role table gives its access (and nothing
else is), and it is a valid OpenAPI 3.1 document."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from engine.config import load_config
from engine.security.roles import Access, roles_for
from tests.support.webhook_app import credentials
from webhook import create_app
from webhook.auth import access_of

DESCRIBED = ("api", "alerts", "health")   # blueprints the document covers (not the console)


def served_routes(app) -> dict[tuple[str, str], object]:
    """(method, OpenAPI path) -> roles, for every route of the described blueprints."""
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in DESCRIBED:
            continue
        view = app.view_functions[rule.endpoint]
        access = access_of(view)
        roles = "open" if access is Access.OPEN else sorted(roles_for(access))
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found[(method.lower(), path)] = roles
    return found


def test_every_route_is_in_the_document_with_the_roles_of_the_role_table(engine_env):
    app = create_app(load_config(engine_env.config_path), credentials=credentials())
    answer = app.test_client().get("/api/v1/openapi.json")   # open: no credential
    assert answer.status_code == 200
    document = answer.json
    described = {(method, path): (op["x-roles"] if op["x-roles"] == "open"
                                  else sorted(op["x-roles"]))
                 for path, item in document["paths"].items()
                 for method, op in item.items()}
    served = served_routes(app)
    assert len(served) >= 20
    assert described == served


def test_the_document_is_valid_openapi_3_1_with_both_credential_schemes():
    from webhook.api.openapi import document

    doc = document()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "basic"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for name in re.findall(r"{([^}]+)}", path):
                assert name in [p["name"] for p in op.get("parameters", [])], (method, path)
            if op["x-roles"] != "open":
                assert {"401", "403"} <= set(op["responses"]), (method, path)
