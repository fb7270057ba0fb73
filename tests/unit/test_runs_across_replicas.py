"""Every run visible from every replica: two recovery homes (each its own
RECOVERY_HOME and artifacts dir, as two replicas on two machines) sharing one real
``redis-server`` store. A run made from home A is listed by ``history``, ``show``,
``/api/v1/runs`` and the metrics from home B, with its per-host outcome and its events
(the account A kept in the store), and ``show`` says which replica holds its full
artifacts. With ``artifacts_dir`` shared, B reads A's artifacts themselves."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from engine.config import load_config
from tests.support.cli_env import Env
from tests.support.redis_servers import RedisServer
from tests.support.webhook_app import AS_ALICE, Service

pytestmark = pytest.mark.requires("redis-server")


@pytest.fixture
def homes(tmp_path: Path, redis_store_server: RedisServer,
          monkeypatch: pytest.MonkeyPatch) -> tuple[Env, Env]:
    """Homes A and B on one Redis store (the session's server, a prefix of its own)."""
    for name in ("RECOVERY_CONFIG", "RECOVERY_HOME", "RECOVERY_OPERATOR", "RECOVERY_REPLICA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECOVERY_STATE_URL",
                       f"{redis_store_server.url}?prefix=replicas-{uuid.uuid4().hex}:")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return Env(tmp_path / "a"), Env(tmp_path / "b")


def as_replica(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("RECOVERY_REPLICA", name)


def test_a_run_made_on_one_replica_is_shown_whole_by_the_other(
        homes: tuple[Env, Env], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = homes
    as_replica(monkeypatch, "replica-a")
    assert a.cli("recover", "-c", "svc").code == 0      # first fails, second recovers
    made = a.cli("history", "--json").json()
    assert [r["strategy"] for r in made] == ["second", "first"]

    as_replica(monkeypatch, "replica-b")
    listed = b.cli("history", "--json").json()
    assert listed == made
    by_strategy = {r["strategy"]: r for r in listed}
    assert {r["replica"] for r in listed} == {"replica-a"}
    assert [(h["host"], h["outcome"]) for h in by_strategy["first"]["hosts"]] == \
        [("localhost", "failed")]
    assert [(h["host"], h["outcome"]) for h in by_strategy["second"]["hosts"]] == \
        [("localhost", "ok")]
    assert not (b.home / "artifacts" / by_strategy["second"]["id"]).exists()

    run_id = by_strategy["second"]["id"]
    local = a.cli("show", run_id, "--json").json()
    shown = b.cli("show", run_id, "--json").json()
    assert local["artifacts"]["source"] == "artifacts"
    assert shown["artifacts"]["source"] == "store"
    assert shown["artifacts"]["replica"] == "replica-a"
    assert shown["artifacts"]["path"] == str(a.home / "artifacts" / run_id)
    assert shown["events"] and [e["event"] for e in shown["events"]] == \
        [e["event"] for e in local["events"]]
    assert any(e["event"] == "verify_check" for e in shown["events"])
    assert shown["run_json"]["hosts"] == local["run_json"]["hosts"]
    assert shown["stdout"] == local["stdout"] and shown["status"] == local["status"]

    text = b.cli("show", run_id)
    assert text.code == 0, text.err
    assert f"its full artifacts are on replica replica-a in {a.home / 'artifacts' / run_id}" \
        in text.out
    assert "localhost" in text.out and "(none)" not in text.out.split("events:")[1][:20]

    followed = b.cli("show", run_id, "--follow")     # ended: its events, then its end
    assert followed.code == 0, followed.err
    assert "verify_check" in followed.out and "ended: succeeded" in followed.out

    incident = by_strategy["second"]["incident_id"]
    timeline = b.cli("show", incident, "--json").json()
    assert any(e["kind"] == "verify" for e in timeline["entries"])   # from A's account
    assert any(e["kind"] == "gate" for e in timeline["entries"])

    metrics = b.cli("metrics")
    assert 'infra_recovery_attempts_total{component="svc",outcome="succeeded",' \
        'strategy="second"} 1.0' in metrics.out

    service = Service(load_config(b.config))
    runs = service.client.get("/api/v1/runs", headers=AS_ALICE).get_json()["runs"]
    assert [(r["id"], r["replica"], r["hosts"]) for r in runs] == \
        [(r["id"], r["replica"], r["hosts"]) for r in made]
    one = service.client.get(f"/api/v1/runs/{run_id}", headers=AS_ALICE).get_json()
    assert one["artifacts"]["replica"] == "replica-a" and one["artifacts"]["source"] == "store"
    assert [e["event"] for e in one["events"]] == [e["event"] for e in local["events"]]


def test_a_run_another_replica_has_not_ended_says_where_it_is(
        homes: tuple[Env, Env], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = homes
    as_replica(monkeypatch, "replica-a")
    assert a.cli("recover", "-c", "guarded").code == 3       # parked: no account yet
    (run,) = a.cli("history", "--json").json()
    as_replica(monkeypatch, "replica-b")
    shown = b.cli("show", run["id"], "--json").json()
    assert shown["run"]["status"] == "pending_approval"
    assert shown["artifacts"]["source"] == "record"
    assert "replica replica-a" in shown["artifacts"]["note"]
    assert "not in the store" in shown["artifacts"]["note"]


def test_with_a_shared_artifacts_dir_every_replica_reads_the_artifacts_themselves(
        homes: tuple[Env, Env], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a, b = homes
    shared = tmp_path / "shared-artifacts"
    for env in (a, b):
        env.write_config(f"artifacts_dir: {shared}\n")
    as_replica(monkeypatch, "replica-a")
    assert a.cli("recover", "-c", "svc").code == 0
    run_id = a.cli("history", "--json").json()[0]["id"]
    assert (shared / run_id / "run.json").exists()
    assert not (a.home / "artifacts" / run_id).exists()
    as_replica(monkeypatch, "replica-b")
    shown = b.cli("show", run_id, "--json").json()
    assert shown["artifacts"]["source"] == "artifacts"
    assert shown["artifacts"]["path"] == str(shared / run_id)
    assert shown["artifacts"]["note"] is None and shown["events"]
