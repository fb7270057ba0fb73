"""The HTTP interface: Alertmanager's webhook journals before it answers, with a stated
answer for every kind of input; operators' routes need a named token."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.alerts.alert import fingerprint_of, normalize_time
from engine.config import load_config
from engine.context import EngineContext
from engine.lifecycle import RunStatus
from engine.records import DegradedReason
from engine.store.sqlite import SQLiteStore
from tests.support.alerts import good_alert, notification
from tests.support.paths import ALERTMANAGER_FIXTURES
from tests.support.steps import park_a_step
from tests.support.webhook_app import (
    ALICE,
    AS_ALICE,
    AS_BOB,
    BOB,
    HOOK,
    WEBHOOK,
    JournalDown,
    Service,
    credentials,
)
from webhook import create_app

FIXTURES = ALERTMANAGER_FIXTURES
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))
MiB = 1024 * 1024


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def service(engine_env) -> Service:
    return Service(load_config(engine_env.config_path))


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def expected_key(notification: dict, alert: dict) -> str:
    """The dedup key (fingerprint, startsAt, status), computed here from the raw JSON."""
    fingerprint = alert.get("fingerprint") or fingerprint_of(alert["labels"])
    status = alert.get("status") or notification["status"]
    return f"{fingerprint}|{normalize_time(alert.get('startsAt')) or '-'}|{status}"


# -- every fixture, dedup ------------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_every_alertmanager_fixture_is_accepted_and_journaled(service, path):
    raw = json.loads(path.read_text())
    answer = service.post_alerts(path.read_bytes())
    assert answer.status_code == 200, answer.json
    assert answer.json == {"accepted": len(raw["alerts"]), "duplicates": 0, "ignored": 0}
    rows = service.journaled()
    assert sorted(r.dedup_key for r in rows) == sorted(expected_key(raw, a)
                                                       for a in raw["alerts"])
    for row in rows:
        assert row.payload["receiver"] == raw["receiver"]
        assert row.payload["external_url"] == raw.get("externalURL", "")


def test_dedup_key_is_fingerprint_starts_at_status(service):
    service.post_alerts(fixture("01_promgen_firing_2alerts.json"))
    keys = sorted(r.dedup_key for r in service.journaled())
    # startsAt with a +09:00 offset and nanoseconds, normalized to UTC microseconds.
    assert keys == ["77219b85044057b3|2017-10-06T07:21:28.214665Z|firing",
                    "77219b85044057b4|2017-10-06T07:21:28.214665Z|firing"]


def test_empty_fingerprints_fall_back_to_label_hashes(service):
    raw = fixture("03_am_executor_legacy_no_version.json")
    assert service.post_alerts(raw).json["accepted"] == 2
    rows = service.journaled()
    fingerprints = {r.payload["fingerprint"] for r in rows}
    assert len(fingerprints) == 2                  # two alerts, two keys
    assert fingerprints == {fingerprint_of(a["labels"]) for a in raw["alerts"]}
    assert all(f.startswith("sha256:") for f in fingerprints)


def test_an_alert_without_status_takes_the_notifications(service):
    service.post_alerts(fixture("02_msteams_firing_minimal_alert_fields.json"))
    [row] = service.journaled()
    assert row.payload["status"] == "firing" and row.dedup_key.endswith("|firing")
    assert row.payload["group_key"] == '{}:{alertname="high_memory_load"}'


def test_a_repeat_is_a_duplicate_and_a_resolve_is_new(service):
    raw = fixture("01_promgen_firing_2alerts.json")
    assert service.post_alerts(raw).json == {"accepted": 2, "duplicates": 0, "ignored": 0}
    assert service.post_alerts(raw).json == {"accepted": 0, "duplicates": 2, "ignored": 0}
    assert service.depth() == 2
    resolved = copy.deepcopy(raw)
    resolved["status"] = "resolved"
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2017-10-06T16:31:28.214665326+09:00"
    assert service.post_alerts(resolved).json == {"accepted": 2, "duplicates": 0, "ignored": 0}
    assert service.post_alerts(resolved).json["duplicates"] == 2
    rows = service.journaled()
    assert len(rows) == 4
    assert sum(r.dedup_key.endswith("|resolved") for r in rows) == 2
    assert {r.payload["ends_at"] for r in rows if r.payload["status"] == "resolved"} == \
        {"2017-10-06T07:31:28.214665Z"}
    assert {r.payload["ends_at"] for r in rows if r.payload["status"] == "firing"} == {None}


def test_a_refire_after_resolving_has_a_new_starts_at_hence_a_new_key(service):
    first = good_alert("cache-1")
    refire = dict(first, startsAt="2024-05-01T11:00:00Z")
    assert service.post_alerts(notification(first)).json["accepted"] == 1
    assert service.post_alerts(notification(refire)).json["accepted"] == 1


def test_unknown_keys_are_ignored(service):
    alert = dict(good_alert("cache-1"), somethingNew={"nested": [1, 2]})
    body = notification(alert, truncatedAlerts=0, futureField={"x": 1})
    assert service.post_alerts(body).json == {"accepted": 1, "duplicates": 0, "ignored": 0}


def test_an_empty_group_is_fine(service):
    assert service.post_alerts(notification()).json == {"accepted": 0, "duplicates": 0,
                                                       "ignored": 0}


# -- not a notification: 400, nothing journaled ------------------------------------------


@pytest.mark.parametrize("body, reason", [
    (b'{"alerts": [', "not JSON"),
    (b"", "not JSON"),
    (b"\xff\xfe\x00garbage", "not JSON"),
    (b'{"alerts": [], "x": NaN}', "not JSON"),
    (b"[" * 100_000, "not JSON"),
    (json.dumps([good_alert("cache-1")]).encode(), "array"),
    (b'"alerts"', "string"),
    (json.dumps({"status": "firing", "receiver": "x"}).encode(), "alerts"),
    (json.dumps({"alerts": {"0": good_alert("cache-1")}}).encode(), "alerts"),
    (json.dumps({"alerts": "[]"}).encode(), "alerts"),
    (json.dumps({"alerts": None}).encode(), "alerts"),
    (json.dumps(notification(good_alert("cache-1"), receiver=5)).encode(), "receiver"),
    (json.dumps(notification(good_alert("cache-1"), groupLabels=["a"])).encode(),
     "groupLabels"),
    (json.dumps(notification(good_alert("cache-1"), commonLabels={"a": 1})).encode(),
     "commonLabels"),
    (json.dumps(notification(good_alert("cache-1"), version=4)).encode(), "version"),
    (json.dumps(notification(good_alert("cache-1"), version="5")).encode(), "version"),
])
def test_a_body_that_is_not_a_notification_is_a_400_with_the_reason(service, body, reason):
    answer = service.post_alerts(body)
    assert answer.status_code == 400
    assert answer.is_json and reason in answer.json["error"]
    assert service.depth() == 0


def test_a_bad_alert_among_good_ones_is_ignored_with_its_reason_logged(service, caplog):
    bad = {"status": "firing", "labels": {"instance": "SECRET-VALUE", "count": 5},
           "startsAt": "2024-05-01T10:00:00Z"}
    body = notification(good_alert("cache-1"), bad, good_alert("cache-2"))
    with caplog.at_level(logging.INFO, logger="webhook"):
        answer = service.post_alerts(body)
    assert answer.status_code == 200
    assert answer.json == {"accepted": 2, "duplicates": 0, "ignored": 1}
    assert sorted(r.payload["labels"]["instance"] for r in service.journaled()) == \
        ["cache-1", "cache-2"]
    [record] = [r for r in caplog.records if "ignored" in r.getMessage()]
    message = record.getMessage()
    assert "alert 1" in message and "'count'" in message and "not a string" in message
    assert "RedisDown" in message                              # the groupKey
    assert "SECRET-VALUE" not in caplog.text                 # label values stay out


@pytest.mark.parametrize("alert, reason", [
    ("a string", "object"),
    ({"status": "firing", "startsAt": "2024-05-01T10:00:00Z"}, "labels"),
    ({"status": "firing", "labels": {}}, "labels"),
    ({"status": "firing", "labels": ["instance", "x"]}, "labels"),
    ({"status": "firing", "labels": {"a": None}}, "labels"),
    ({"status": "pending", "labels": {"a": "b"}}, "status"),
    ({"status": "firing", "labels": {"a": "b"}, "startsAt": "yesterday"}, "startsAt"),
    ({"status": "firing", "labels": {"a": "b"}, "startsAt": 1714557600}, "startsAt"),
    ({"status": "firing", "labels": {"a": "b"}, "startsAt": "2024-05-01T10:00:00"},
     "startsAt"),                                              # no offset
    ({"status": "firing", "labels": {"a": "b"}, "annotations": {"x": 1}}, "annotations"),
    ({"status": "firing", "labels": {"a": "b"}, "fingerprint": 42}, "fingerprint"),
    # once a 500 retried forever, blocking the good alerts of the group:
    ({"status": "firing", "labels": {"a": "b"}, "startsAt": "9999-12-31T23:59:59-01:00"},
     "startsAt"),
    ({"status": "firing", "labels": {"a": "b"}, "fingerprint": "\ud800"}, "Unicode"),
    ({"status": "firing", "labels": {"a": "x" * 20_000}}, "longer than"),
    ({"status": "firing", "labels": {f"l{i}": "v" for i in range(101)}}, "labels"),
])
def test_each_kind_of_bad_alert_is_counted_not_fatal(service, caplog, alert, reason):
    with caplog.at_level(logging.INFO, logger="webhook"):
        answer = service.post_alerts(notification(alert, good_alert("cache-1")))
    assert answer.json == {"accepted": 1, "duplicates": 0, "ignored": 1}
    assert reason in caplog.text
    assert service.depth() == 1


def test_an_alert_without_status_in_a_notification_without_one_is_ignored(service):
    alert = good_alert("cache-1")
    del alert["status"]
    body = notification(alert)
    del body["status"]
    assert service.post_alerts(body).json == {"accepted": 0, "duplicates": 0, "ignored": 1}


# -- size ---------------------------------------------------------------------------------


class CountingStream(io.RawIOBase):
    """A 12 MB request body that counts what the server actually reads of it."""

    def __init__(self, size: int) -> None:
        self.size, self.pos, self.consumed = size, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:   # the test client measures the body by seeking
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = self.size if whence == 2 else offset
        return self.pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.pos)
        buffer[:n] = b" " * n
        self.pos += n
        self.consumed += n
        return n


def test_a_12_mb_body_is_a_413_without_being_read(service):
    body = CountingStream(12 * MiB)
    answer = service.client.post("/api/v1/alerts", input_stream=body, headers=HOOK,
                                 content_type="application/json")
    assert answer.status_code == 413
    assert answer.is_json and "limit" in answer.json["error"]
    assert body.consumed == 0
    assert service.depth() == 0


def test_a_12_mb_chunked_body_is_cut_off_at_the_limit(service):
    """No Content-Length (chunked; the server terminates the stream, as gunicorn does)."""
    body = CountingStream(12 * MiB)
    answer = service.client.post(
        "/api/v1/alerts", input_stream=body, headers=HOOK, content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
    assert answer.status_code == 413 and answer.is_json
    assert body.consumed <= 4 * MiB + 64 * 1024
    assert service.depth() == 0


def test_a_12_mb_notification_of_valid_json_is_refused(service):
    big = notification(*[dict(good_alert(f"h{i}"), annotations={"pad": "x" * 1000})
                         for i in range(12_000)])
    data = json.dumps(big).encode()
    assert len(data) > 12 * MiB
    assert service.post_alerts(data).status_code == 413
    assert service.depth() == 0


def test_the_limit_is_configurable(engine_env):
    engine_env.write_config(webhook="{max_body_bytes: 2048}")
    service = Service(load_config(engine_env.config_path))
    small = notification(good_alert("cache-1"))
    assert service.post_alerts(small).status_code == 200
    padded = notification(dict(good_alert("cache-2"), annotations={"pad": "x" * 3000}))
    answer = service.post_alerts(padded)
    assert answer.status_code == 413 and "2048" in answer.json["error"]
    assert service.depth() == 1


# -- credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": WEBHOOK},
    {"Authorization": f"Bearer {WEBHOOK[:-1]}"}, basic("alertmanager", "nope"),
])
def test_no_or_wrong_credentials_are_a_401(service, headers):
    answer = service.post_alerts(fixture("01_promgen_firing_2alerts.json"), headers=headers)
    assert answer.status_code == 401 and answer.is_json
    challenges = answer.headers.getlist("WWW-Authenticate")
    assert any(c.startswith("Bearer") for c in challenges)
    assert any(c.startswith("Basic") for c in challenges)
    assert service.depth() == 0


def test_basic_auth_with_the_token_as_password(service):
    answer = service.post_alerts(fixture("01_promgen_firing_2alerts.json"),
                                 headers=basic("alertmanager", WEBHOOK))
    assert answer.status_code == 200 and answer.json["accepted"] == 2


def test_an_operator_token_cannot_post_alerts(service):
    answer = service.post_alerts(fixture("01_promgen_firing_2alerts.json"), headers=AS_ALICE)
    assert answer.status_code == 403
    assert service.depth() == 0


def test_a_request_without_credentials_is_refused_before_its_body_is_read(service):
    body = CountingStream(12 * MiB)
    answer = service.client.post("/api/v1/alerts", input_stream=body,
                                 content_type="application/json")
    assert answer.status_code == 401 and body.consumed == 0


def test_every_operator_route_needs_a_named_operator(service):
    open_routes = ("/api/v1/alerts", "/api/v1/openapi.json")
    routes = [(r, m) for r in service.app.url_map.iter_rules()
              if r.rule.startswith("/api/v1/") and r.rule not in open_routes
              for m in r.methods - {"HEAD", "OPTIONS"}]
    assert len(routes) >= 6   # status, degraded, runs, runs/<id>, approvals, approvals/<id>
    for rule, method in routes:
        path = rule.rule.replace("<run_id>", "run-x")
        bare = service.client.open(path, method=method, json={"decision": "approve"})
        assert bare.status_code == 401, (path, bare.status_code)
        hook = service.client.open(path, method=method, headers=HOOK,
                                   json={"decision": "approve"})
        assert hook.status_code == 403, (path, hook.status_code)
        assert "webhook token" in hook.json["error"]
        wrong = service.client.open(path, method=method, headers=basic("alice", BOB))
        assert wrong.status_code == 401, path


def test_the_webhook_token_on_status_is_a_403_and_an_operator_gets_it(service):
    assert service.client.get("/api/v1/status", headers=HOOK).status_code == 403
    answer = service.client.get("/api/v1/status", headers=AS_ALICE)
    assert answer.status_code == 200
    assert answer.json["store"]["reachable"] is True
    assert "components" in answer.json and answer.json["pending_approvals"] == 0
    by_basic = service.client.get("/api/v1/status", headers=basic("bob", BOB))
    assert by_basic.status_code == 200


# -- hostile input is data -----------------------------------------------------------------


def test_hostile_label_values_are_journaled_verbatim(service):
    hostile = {
        "alertname": "RedisDown",
        "instance": "{{ lookup('pipe','id') }}",
        "cmd": "$(id)",
        "tick": "`id`; rm -rf / #",
        "newline": "a\nb\r\nc\x00d",
        "unicode": "\u202e\U0001f4a5",
        "big": "x" * 10_000,
    }
    alert = {"status": "firing", "labels": hostile,
             "annotations": {"summary": "{% for x in () %}{% endfor %}"},
             "startsAt": "2024-05-01T10:00:00Z"}
    answer = service.post_alerts(notification(alert))
    assert answer.json == {"accepted": 1, "duplicates": 0, "ignored": 0}
    [row] = service.journaled()
    assert row.payload["labels"] == hostile
    assert row.payload["annotations"] == alert["annotations"]
    assert row.payload["fingerprint"] == fingerprint_of(hostile)


def test_store_unavailable_is_a_503_so_alertmanager_retries(engine_env):
    config = load_config(engine_env.config_path)
    config.ensure_home()
    store = JournalDown(config.home / "recovery.db")
    service = Service(config, context=EngineContext(config, store=store))
    answer = service.post_alerts(fixture("01_promgen_firing_2alerts.json"))
    assert answer.status_code == 503 and answer.is_json
    assert "disk I/O" not in answer.json["error"]       # details go to the log
    assert service.depth() == 0


def test_a_broken_database_file_is_a_503(service):
    path = Path(service.store.path)
    service.store.close()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    answer = service.post_alerts(fixture("01_promgen_firing_2alerts.json"))
    assert answer.status_code == 503 and answer.is_json
    assert service.client.get("/readyz").status_code == 503
    assert service.client.get("/api/v1/runs", headers=AS_ALICE).status_code == 503


class RunsExplode(SQLiteStore):
    def query_runs(self, **kw):
        raise RuntimeError("/very/secret/path exploded")


def test_an_unexpected_error_is_a_bare_json_500(engine_env):
    config = load_config(engine_env.config_path)
    config.ensure_home()
    service = Service(config, context=EngineContext(
        config, store=RunsExplode(config.home / "recovery.db")))
    answer = service.client.get("/api/v1/runs", headers=AS_ALICE)
    assert answer.status_code == 500
    assert answer.json == {"error": "internal error"}
    assert b"secret" not in answer.data and b"Traceback" not in answer.data


def test_errors_are_json_never_html(service):
    for answer in (service.client.get("/nowhere"),
                   service.client.get("/api/v1/alerts", headers=HOOK),   # 405
                   service.client.put("/healthz")):
        assert answer.is_json and "error" in answer.json
        assert b"<html" not in answer.data.lower()
    assert "POST" in service.client.get("/api/v1/alerts").headers["Allow"]


# -- health --------------------------------------------------------------------------------


def test_healthz_is_always_200(service):
    answer = service.client.get("/healthz")
    assert answer.status_code == 200 and answer.json == {"ok": True}


def test_readyz_needs_a_live_worker(service):
    answer = service.client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["ready"] is False and "no worker" in answer.json["reasons"][0]
    service.store.set_value("worker_heartbeat", {"w": time.time()})
    answer = service.client.get("/readyz")
    assert answer.status_code == 200, answer.json
    assert answer.json["ready"] is True and answer.json["reasons"] == []
    service.store.set_value("worker_heartbeat", {"w": time.time() - 120})
    answer = service.client.get("/readyz")
    assert answer.status_code == 503 and "heartbeat" in answer.json["reasons"][0]


def test_metrics_need_a_metrics_or_operator_credential_and_read_the_store(service):
    service.post_alerts(fixture("01_promgen_firing_2alerts.json"))
    assert service.client.get("/metrics").status_code == 401
    assert service.client.get("/metrics", headers=HOOK).status_code == 403
    answer = service.client.get("/metrics", headers=AS_ALICE)
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain")
    text = answer.get_data(as_text=True)
    assert "infra_recovery_store_up 1.0" in text
    assert "infra_recovery_intake_queue_depth 2.0" in text
    assert service.client.get("/healthz").status_code == 200   # never behind auth


def test_metrics_can_be_opened_on_purpose(engine_env):
    engine_env.write_config(webhook="{metrics_auth: false}")
    service = Service(load_config(engine_env.config_path))
    answer = service.client.get("/metrics")
    assert answer.status_code == 200 and b"infra_recovery_store_up" in answer.data
    assert service.client.get("/api/v1/status").status_code == 401   # nothing else opens


# -- the operators' API ---------------------------------------------------------------------


@pytest.fixture
def parked(engine_env, run_incident):
    """A step parked for approval, as tests/unit/test_approvals.py makes one."""
    ctx, _, run, marker = park_a_step(engine_env, run_incident)
    return Service(ctx.config, context=ctx), run, marker


def test_pending_approvals_are_listed(parked):
    service, run, _ = parked
    answer = service.client.get("/api/v1/approvals", headers=AS_ALICE)
    assert answer.status_code == 200
    [approval] = answer.json["approvals"]
    assert approval["run_id"] == run.id and approval["status"] == "pending"
    assert approval["plan"]["action"] == "test.touch"


def test_an_approval_records_the_operators_name(parked):
    service, run, marker = parked
    answer = service.client.post(f"/api/v1/approvals/{run.id}", headers=AS_ALICE,
                                 json={"decision": "approve", "reason": "looks right"})
    assert answer.status_code == 200, answer.json
    assert answer.json["approval"]["decided_by"] == "alice"
    assert answer.json["run"]["status"] == "queued"
    decided = service.store.get_approval(run.id)
    assert decided.status == "approved" and decided.decided_by == "alice"
    assert decided.reason == "looks right"
    assert service.store.get_run(run.id).approved_by == "alice"
    assert not marker.exists()                       # approval queues; a worker runs it
    again = service.client.post(f"/api/v1/approvals/{run.id}", headers=AS_BOB,
                                json={"decision": "reject"})
    assert again.status_code == 409 and "not waiting" in again.json["error"]
    assert service.store.get_approval(run.id).decided_by == "alice"


def test_a_rejection_records_the_operators_name(parked):
    service, run, _ = parked
    answer = service.client.post(f"/api/v1/approvals/{run.id}", headers=basic("bob", BOB),
                                 json={"decision": "reject", "reason": "not now"})
    assert answer.status_code == 200
    assert service.store.get_approval(run.id).decided_by == "bob"
    assert service.store.get_run(run.id).status == RunStatus.REJECTED


@pytest.mark.parametrize("body", [
    None, "approve", ["approve"], {}, {"decision": "yes"}, {"decision": "approve", "reason": 5},
])
def test_a_bad_decision_body_is_a_400(parked, body):
    service, run, _ = parked
    data = b"{not json" if body is None else json.dumps(body)
    answer = service.client.post(f"/api/v1/approvals/{run.id}", headers=AS_ALICE, data=data,
                                 content_type="application/json")
    assert answer.status_code == 400 and answer.json["error"]
    assert service.store.get_approval(run.id).status == "pending"


def test_deciding_an_unknown_approval_is_a_404(service):
    answer = service.client.post("/api/v1/approvals/run-nope", headers=AS_ALICE,
                                 json={"decision": "approve"})
    assert answer.status_code == 404


def test_an_operator_acknowledges_an_exhausted_incident_over_http(engine_env, run_incident):
    from engine.orchestration import exhaustion

    engine_env.runbook("broken", "strategies: [{name: a, action: test.fail}]\n")
    ctx = engine_env.context()
    exhausted = run_incident(ctx, "broken", target="cache-1").incident
    service = Service(ctx.config, context=ctx)
    ack = service.client.post
    assert ack("/api/v1/incidents/inc-nope/ack", headers=AS_ALICE).status_code == 404
    assert [e.incident_id for e in exhaustion.current(ctx)] == [exhausted.id]
    answer = ack(f"/api/v1/incidents/{exhausted.id}/ack", headers=AS_ALICE)
    assert answer.status_code == 200, answer.json
    assert answer.json["acknowledged"]["incident_id"] == exhausted.id
    assert answer.json["acknowledged"]["target"] == "cache-1"
    assert exhaustion.current(ctx) == []
    [event] = [e for e in ctx.store.list_events() if e.action == "ack"]
    assert event.actor == "alice"
    again = ack(f"/api/v1/incidents/{exhausted.id}/ack", headers=AS_BOB)
    assert again.status_code == 409 and "already acknowledged" in again.json["error"]


def test_runs_are_listed_newest_first_with_filters(parked):
    service, run, _ = parked
    get = service.client.get
    answer = get("/api/v1/runs", headers=AS_ALICE)
    assert answer.status_code == 200
    assert [r["id"] for r in answer.json["runs"]] == [run.id]
    assert answer.json["runs"][0]["status"] == "pending_approval"
    assert get("/api/v1/runs?component=nothing", headers=AS_ALICE).json["runs"] == []
    assert len(get("/api/v1/runs?status=pending_approval&since=1h",
                   headers=AS_ALICE).json["runs"]) == 1
    assert get("/api/v1/runs?status=succeeded", headers=AS_ALICE).json["runs"] == []
    future = time.time() + 3600
    assert get(f"/api/v1/runs?since={future:.0f}", headers=AS_ALICE).json["runs"] == []
    assert len(get(f"/api/v1/runs?since={time.time() - 60:.3f}",
                   headers=AS_ALICE).json["runs"]) == 1
    assert len(get("/api/v1/runs?since=2000-01-01T00:00:00Z&limit=1",
                   headers=AS_ALICE).json["runs"]) == 1


@pytest.mark.parametrize("query", ["since=yesterday", "since=-5m", "limit=0", "limit=x",
                                   "limit=100000", "status=sleeping"])
def test_bad_run_queries_are_a_400(service, query):
    answer = service.client.get(f"/api/v1/runs?{query}", headers=AS_ALICE)
    assert answer.status_code == 400 and answer.json["error"]


def test_one_run_with_its_record_and_events(parked):
    service, run, _ = parked
    answer = service.client.get(f"/api/v1/runs/{run.id}", headers=AS_ALICE)
    assert answer.status_code == 200
    assert answer.json["run"]["id"] == run.id
    assert answer.json["run"]["strategy"] == "flush"
    assert answer.json["run_json"], "run.json of the parked step"
    assert isinstance(answer.json["events"], list)
    for unknown in ("run-unknown", "..", ".hidden", "a%2F..%2Fb"):
        missing = service.client.get(f"/api/v1/runs/{unknown}", headers=AS_ALICE)
        assert missing.status_code == 404 and missing.is_json, unknown


def test_degraded_modes_with_capabilities_and_reasons(parked):
    service, _, _ = parked
    answer = service.client.get("/api/v1/degraded", headers=AS_ALICE)
    assert answer.status_code == 200 and answer.json["active"] == []
    service.store.add_degraded(DegradedReason(mode="test_down", key="manual", manual=True,
                                              reason="maintenance", created_by="alice",
                                              since=time.time()))
    answer = service.client.get("/api/v1/degraded", headers=AS_ALICE)
    assert answer.json["active"] == ["test_down"]
    [mode] = [m for m in answer.json["modes"] if m["mode"] == "test_down"]
    assert mode["active"] is True and mode["manual"] is True
    assert mode["capabilities"] == {"feature": False}
    assert mode["runbooks"] == ["demo"]
    assert [r["reason"] for r in mode["reasons"]] == ["maintenance"]


def test_create_app_refuses_to_start_without_credentials(engine_env, monkeypatch):
    from engine.config import ConfigError

    monkeypatch.delenv("RECOVERY_WEBHOOK_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="no webhook token"):
        create_app(load_config(engine_env.config_path))


def test_create_app_loads_credentials_from_the_environment(engine_env, monkeypatch):
    monkeypatch.setenv("RECOVERY_WEBHOOK_TOKEN", WEBHOOK)
    monkeypatch.setenv("RECOVERY_API_TOKEN", ALICE)
    app = create_app(load_config(engine_env.config_path))
    client = app.test_client()
    body = fixture("05_dingtalk_version3.json")
    assert client.post("/api/v1/alerts", json=body, headers=HOOK).json["accepted"] == 2
    assert client.get("/api/v1/status", headers=AS_ALICE).status_code == 200


def test_bad_webhook_settings_are_a_config_error(engine_env):
    from engine.config import ConfigError

    engine_env.write_config(webhook="{max_body_bytes: lots}")
    with pytest.raises(ConfigError, match="max_body_bytes"):
        create_app(load_config(engine_env.config_path), credentials=credentials())


def test_more_alerts_than_a_notification_may_carry_are_counted_as_ignored(service):
    from webhook.notification import MAX_ALERTS

    alerts = [good_alert("cache-1") | {"labels": {"alertname": "X", "n": str(i)},
                                       "fingerprint": f"fp-{i}"}
              for i in range(MAX_ALERTS + 5)]
    answer = service.post_alerts(notification(*alerts))
    assert answer.status_code == 200
    assert answer.json == {"accepted": MAX_ALERTS, "duplicates": 0, "ignored": 5}


# -- the fast path: jsonschema only for a doubtful top level, a shallow payload ----------


@pytest.mark.parametrize("top", [
    {}, {"alerts": []}, {"alerts": None}, {"alerts": {}},
    {"alerts": [], "version": "4"}, {"alerts": [], "version": "3"},
    {"alerts": [], "version": 4}, {"alerts": [], "version": None}, {"alerts": [], "version": "5"},
    {"alerts": [], "status": "firing", "receiver": "r", "groupKey": "g", "externalURL": "u"},
    {"alerts": [], "status": None, "receiver": None, "groupKey": None, "externalURL": None},
    {"alerts": [], "status": 1}, {"alerts": [], "receiver": []}, {"alerts": [], "groupKey": {}},
    {"alerts": [], "truncatedAlerts": 0}, {"alerts": [], "truncatedAlerts": 3},
    {"alerts": [], "truncatedAlerts": None}, {"alerts": [], "truncatedAlerts": -1},
    {"alerts": [], "truncatedAlerts": True}, {"alerts": [], "truncatedAlerts": 2.0},
    {"alerts": [], "truncatedAlerts": 2.5}, {"alerts": [], "truncatedAlerts": "2"},
    {"alerts": [], "groupLabels": {"a": "b"}, "commonLabels": {}, "commonAnnotations": None},
    {"alerts": [], "groupLabels": {"a": 1}}, {"alerts": [], "commonLabels": ["a"]},
    {"alerts": [], "commonAnnotations": {"a": None}}, {"alerts": [], "unknown": {"x": 1}},
])
def test_the_quick_top_level_check_is_never_looser_than_the_schema(top):
    from webhook.notification import _VALIDATOR, _well_formed

    valid = not list(_VALIDATOR.iter_errors(top))
    if _well_formed(top):
        assert valid
    if not valid:   # and a bad one still gets jsonschema's words
        from webhook.notification import NotANotification, parse_notification

        with pytest.raises(NotANotification, match="not an Alertmanager notification"):
            parse_notification(json.dumps(top))


def test_every_alertmanager_fixture_takes_the_quick_path():
    from webhook.notification import _well_formed

    fixtures = sorted(FIXTURES.glob("*.json"))
    assert fixtures
    for path in fixtures:
        assert _well_formed(json.loads(path.read_text())), path.name


def test_the_journaled_payload_is_a_copy_equal_to_asdict():
    from dataclasses import asdict

    from webhook.notification import parse_notification

    parsed = parse_notification(json.dumps(notification(good_alert("cache-1"))))
    alert = parsed.alerts[0]
    payload = alert.to_payload()
    assert payload == asdict(alert) and list(payload) == list(asdict(alert))
    payload["labels"]["instance"] = "changed"
    payload["annotations"]["x"] = "y"
    assert alert.labels["instance"] != "changed" and "x" not in alert.annotations


def test_a_store_held_by_another_writer_is_a_503_within_store_wait_and_not_ready(engine_env):
    """Another process holds the store's write lock (a stuck CLI, a long transaction):
    a notification answers 503 once webhook.store_wait has passed (so Alertmanager
    retries, instead of timing out on a request parked for the store's own 15 s), and
    /readyz says this instance cannot take alerts."""
    engine_env.write_config(webhook="{store_wait: 300ms}")
    service = Service(load_config(engine_env.config_path))
    service.store.set_value("worker_heartbeat", {"w": time.time()})
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\n"
         "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True)\n"
         "sys.stdin.readline(); db.execute('COMMIT')", service.store.path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        answer = service.post_alerts(fixture("01_promgen_firing_2alerts.json"))
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        ready = service.client.get("/readyz")
        assert ready.status_code == 503 and ready.json["store"] == "unavailable"
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(30)
    assert service.post_alerts(fixture("01_promgen_firing_2alerts.json")).json["accepted"] == 2
    assert service.client.get("/readyz").status_code == 200
