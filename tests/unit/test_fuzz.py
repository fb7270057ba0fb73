"""Generated input against the HTTP API, in the app (Flask's test client) on a real SQLite
store: Alertmanager-shaped, mutated and malformed notifications, and calls of every route
with any credential, id, query and body, answer 2xx, 3xx or 4xx, never a 5xx while the
store is up (tests/support/fuzz_inputs.py draws them; bench/fuzz.py sends 100,000 and
more). Then schemathesis, from the OpenAPI document the service serves, with positive
and negative cases of every operation. Bounded: a few hundred examples each."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from engine.config import load_config
from tests.support.fuzz_inputs import Request, acceptable, alert_posts, route_calls, send
from tests.support.webhook_app import AS_ALICE, HOOK, Service

BOUNDED = settings(max_examples=250, deadline=None, database=None, derandomize=False,
                   phases=[Phase.explicit, Phase.generate, Phase.shrink],
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.filter_too_much])


@pytest.fixture
def service(engine_env) -> Service:
    """The app on a real SQLite store, with a runbook the drawn alerts may match."""
    engine_env.runbook("redis", """
        match: ['alertname="RedisDown"']
        target: "{{ labels.instance }}"
        strategies: [{name: fix, action: test.ok}]
    """)
    return Service(load_config(engine_env.config_path))


def answered_well(service: Service, request: Request) -> None:
    answer = send(service.client, request)
    assert acceptable(request, answer.status_code), (
        request.method, request.path, answer.status_code, answer.get_data(as_text=True)[:500],
        request.headers, request.query, request.body[:2000])
    if answer.status_code >= 400:         # an error is JSON with a reason, never a page
        is_json = answer.mimetype == "application/json"
        assert is_json or answer.mimetype == "text/html", answer.mimetype
        if is_json and request.path != "/readyz":    # /readyz: its reasons
            assert isinstance(answer.json.get("error"), str)


@BOUNDED
@given(request=alert_posts())
def test_generated_notifications_are_answered_2xx_or_4xx(service, request):
    answered_well(service, request)


@BOUNDED
@given(request=route_calls())
def test_generated_calls_of_every_route_are_answered_2xx_3xx_or_4xx(service, request):
    answered_well(service, request)


@pytest.mark.parametrize("path", ["/api/v1/recover", "/api/v1/switches", "/api/v1/unlock",
                                  "/api/v1/approvals/run-nope"])
def test_a_body_nested_deeper_than_the_decoder_goes_is_a_400_not_a_500(service, path):
    """Found by the fuzz: the API's JSON bodies met a RecursionError, not a ValueError."""
    answer = service.client.post(path, data=b"[" * 5000 + b"]" * 5000, headers=AS_ALICE,
                                 content_type="application/json")
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert "JSON object" in answer.json["error"]


def test_the_generated_notifications_reach_the_journal(service):
    """The fuzz is not all refusals: most well-formed drawn notifications are journaled
    (or found already journaled)."""
    import time

    from tests.support.fuzz_inputs import alertmanager_notification, encode

    accepted = []

    @settings(max_examples=100, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=alertmanager_notification(wild=False))
    def post(body):
        answer = service.post_alerts(encode(body))
        assert answer.status_code in (200, 400), answer.get_data(as_text=True)
        accepted.append(answer.status_code == 200
                        and answer.json["accepted"] + answer.json["duplicates"] > 0)

    post()
    assert sum(accepted) > len(accepted) // 2, (sum(accepted), len(accepted))
    assert service.store.intake_depth(time.time())[0] > 0


# -- schemathesis, from the served OpenAPI document --------------------------------------------

@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_cases_of_every_operation_of_the_openapi_document_never_get_a_5xx(service, mode):
    """Cases schemathesis draws for each operation of the document the service serves,
    within it and outside it (``negative``), sent with a credential that may call the
    operation; an operation with nothing to get wrong has no negative cases."""
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", service.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    wrong, called = [], set()

    def call(case):
        called.add(case.operation.label)
        if case.path == "/readyz":
            return               # 503 there means "no engine worker yet": its answer
        headers = {**(case.headers or {}),
                   **(HOOK if case.path == "/api/v1/alerts" else AS_ALICE)}
        answer = case.call(headers=headers)
        if answer.status_code >= 500:
            wrong.append((case.method, case.formatted_path, answer.status_code,
                          answer.text[:300], case.query, case.body))

    for operation in operations:
        strategy = operation.as_strategy(generation_mode=GenerationMode(mode))
        try:
            settings(max_examples=15, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))(given(case=strategy)(call))()
        except Unsatisfiable:
            assert mode == "negative", operation.label
    assert wrong == []
    assert len(called) >= (20 if mode == "positive" else 10), sorted(called)
