"""The webhook's request counters (webhook.request_metrics): what ``POST /api/v1/alerts``
answered, counted in the app (the Flask test client: per app, in memory). Through a real
``recovery serve`` with several gunicorn http workers: tests/integration/
test_webhook_service.py."""

from __future__ import annotations

import runpy

import pytest

from engine.config import load_config
from engine.context import EngineContext
from engine.reporting.metrics import render_text
from tests.support.alerts import good_alert, notification
from tests.support.paths import ROOT
from tests.support.webhook_app import AS_ALICE, HOOK, JournalDown, Service
from tests.support.webhook_counters import LIMIT, codes, observed, results, scrape
from webhook import request_metrics
from webhook.request_metrics import ALERTS, DURATION, REQUESTS, fold

# -- in one process (the Flask test client, an embedded app) ------------------------------------


@pytest.fixture
def app_service(engine_env) -> Service:
    engine_env.write_config(webhook=f"{{max_body_bytes: {LIMIT}}}")
    return Service(load_config(engine_env.config_path))


def test_every_answer_of_the_webhook_is_counted_by_code_and_result(app_service):
    s = app_service
    assert request_metrics.multiprocess_dir() is None      # the test process: in memory
    assert s.post_alerts(notification(good_alert("a"), good_alert("b"))).status_code == 200
    assert s.post_alerts(notification(good_alert("a"), {"labels": {}})).json == {
        "accepted": 0, "duplicates": 1, "ignored": 1}
    assert s.post_alerts(b"{not json").status_code == 400
    assert s.post_alerts(notification(), headers={}).status_code == 401
    assert s.post_alerts(notification(), headers=AS_ALICE).status_code == 403
    assert s.post_alerts(b"[" + b" " * LIMIT + b"]").status_code == 413
    # Not the webhook route: not counted.
    assert s.client.get("/api/v1/alerts", headers=HOOK).status_code == 405
    assert s.client.get("/healthz").status_code == 200
    assert s.client.get("/api/v1/status", headers=AS_ALICE).status_code == 200

    for _ in range(2):                                  # a scrape changes nothing
        families = scrape(s.client.get("/metrics", headers=AS_ALICE).get_data(as_text=True))
        assert codes(families) == {"200": 2, "400": 1, "401": 1, "403": 1, "413": 1,
                                   "500": 0, "503": 0}
        assert results(families) == {"accepted": 2, "duplicates": 1, "ignored": 1}
        assert observed(families) == 6
        assert families["infra_recovery_store_up"][("infra_recovery_store_up", ())] == 1


def test_a_store_down_is_counted_as_503(engine_env):
    config = load_config(engine_env.config_path)
    config.ensure_home()
    s = Service(config, context=EngineContext(
        config, store=JournalDown(config.home / "recovery.db")))
    assert s.post_alerts(notification(good_alert("a"))).status_code == 503
    families = scrape(s.client.get("/metrics", headers=AS_ALICE).get_data(as_text=True))
    assert codes(families)["503"] == 1 and codes(families)["200"] == 0
    assert results(families) == {"accepted": 0, "duplicates": 0, "ignored": 0}


def test_each_app_counts_its_own_answers_without_a_service(engine_env):
    config = load_config(engine_env.config_path)
    one, two = Service(config), Service(config)
    one.post_alerts(notification(good_alert("a")))
    for app, answered in ((one, 1), (two, 0)):
        text = app.client.get("/metrics", headers=AS_ALICE).get_data(as_text=True)
        assert codes(scrape(text))["200"] == answered


def test_the_cli_exposition_has_no_webhook_families(engine_env):
    families = scrape(render_text(engine_env.context()))
    assert not {REQUESTS, ALERTS, DURATION} & set(families)
    assert "infra_recovery_store_up" in families


def test_unknown_codes_are_folded_into_their_class():
    assert [fold(c) for c in (200, 401, 413, 503, 404, 429, 502, 302, 999)] == [
        "200", "401", "413", "503", "4xx", "4xx", "5xx", "3xx", "other"]


def test_the_gunicorn_config_reads_the_local_file_and_marks_dead_workers(tmp_path, monkeypatch):
    """engine/service/gunicorn_conf.py: ./gunicorn.conf.py still applies (as without --config), its
    child_exit still runs, and mark_process_dead drops the dead worker's live gauges."""
    seen = tmp_path / "their-child-exit"
    (tmp_path / "gunicorn.conf.py").write_text(
        "workers = 7\n_private = 1\n"
        f"def child_exit(server, worker):\n    open({str(seen)!r}, 'w').write(str(worker.pid))\n")
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    for name in ("gauge_livesum_4242.db", "counter_4242.db", "gauge_livesum_4343.db"):
        (multiproc / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(multiproc))
    conf = runpy.run_path(str(ROOT / "engine" / "service" / "gunicorn_conf.py"))
    assert conf["workers"] == 7 and "_private" not in conf

    class Worker:
        pid = 4242

    conf["child_exit"](None, Worker())
    assert seen.read_text() == "4242"
    assert sorted(p.name for p in multiproc.iterdir()) == ["counter_4242.db",
                                                          "gauge_livesum_4343.db"]
