"""Who may call what, in the app: every route states the access it needs, and the role
table gives each credential (webhook, metrics, operator) what docs/operations.md says;
the metrics role reads metrics and nothing else. The same against a real service, and
what the service leaves readable, are in tests/integration/test_access_service.py."""

from __future__ import annotations

from engine.config import load_config
from tests.support.routes import OPEN, ROUTES
from tests.support.webhook_app import credentials
from webhook import create_app


def app_routes(app) -> dict[tuple[str, str], object]:
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found[(method, rule.rule)] = app.view_functions[rule.endpoint]
    return found


def test_every_route_states_its_access_and_the_role_table_gives_what_the_docs_say(
        engine_env):
    from engine.security.roles import ROLES, Access
    from webhook.auth import access_of

    app = create_app(load_config(engine_env.config_path), credentials=credentials())
    routes = app_routes(app)
    assert set(routes) == set(ROUTES), "a route without a row here (or a row without a route)"
    for route, view in routes.items():
        access = access_of(view)
        assert access is not None, f"{route} states no access"
        roles = {role for role, granted in ROLES.items() if access in granted}
        assert (OPEN if access is Access.OPEN else roles) == ROUTES[route], (route, access)


def test_the_metrics_role_reads_metrics_and_nothing_else():
    from engine.security.roles import ROLES

    readable = {access for access in ROLES["metrics"]}
    assert [a.name for a in readable] == ["READ_METRICS"]
    assert not (ROLES["webhook"] & ROLES["metrics"])


# -- every route with every credential, in the app ----------------------------------------------

def test_every_route_with_every_credential_and_none(engine_env):
    from tests.support.routes import CREDENTIALS, answered, harmless_call, is_console
    from tests.support.webhook_app import BY_ROLE, Service

    service = Service(load_config(engine_env.config_path))
    wrong = {}
    for route in (r for r in ROUTES if not is_console(r[1])):   # the console: a session's
        method, path, body = harmless_call(route)
        for credential in CREDENTIALS:
            token = BY_ROLE[credential]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            answer = service.client.open(path, method=method, headers=headers, json=body)
            code = answer.status_code
            got = "allowed" if code not in (401, 403, 500) else str(code)   # 503: not ready
            if got != answered(route, credential):
                wrong[(route, credential)] = (code, answer.get_data(as_text=True)[:200])
    assert not wrong, wrong
