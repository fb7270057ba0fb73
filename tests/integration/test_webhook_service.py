"""The webhook under a real ``recovery serve``: its request counters with several
gunicorn http workers (prometheus_client's multiprocess mode: whichever worker answers
``/metrics`` shows the sum of all; a restart starts from an empty metrics folder, which
keeps only running services), and a notification the store could not write refused at
the door of a real service with nothing dropped afterwards. The same in the app (Flask's
test client) is in tests/unit/test_webhook_metrics.py and test_webhook_storable.py."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from engine.service.supervisor import METRICS_DIR, prepare_metrics_dir
from tests.support.alerts import good_alert, notification
from tests.support.service import GRACE, Served, Store, free_port, wait_for, webhook_token
from tests.support.storable import ALERT_FIELDS, REFUSED, RUNBOOK, hostile_body
from tests.support.webhook_counters import LIMIT, codes, observed, results, scrape
from webhook.request_metrics import REQUESTS

# -- the request counters ---------------------------------------------------------------------

def test_the_metrics_folder_keeps_only_running_services(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(30)
    root = home / METRICS_DIR
    root.mkdir()
    for pid in (dead.pid, os.getpid()):                 # a dead service, a running one
        (root / f"serve-{pid}").mkdir()
        (root / f"serve-{pid}" / "counter_1.db").write_bytes(b"x")
    (root / "stray").write_text("?")
    mine = prepare_metrics_dir(home, 999_999_999)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [f"serve-{os.getpid()}", "serve-999999999"])
    assert list(mine.iterdir()) == []
    assert stat.S_IMODE(mine.stat().st_mode) == stat.S_IMODE(root.stat().st_mode) == 0o700


# -- through a real `recovery serve` ----------------------------------------------------------


@pytest.fixture
def served(engine_env, tmp_path):
    engine_env.write_config(webhook=f"{{workers: 1, http_workers: 2, shutdown_grace: {GRACE}s, "
                            f"graceful_timeout: 2s, max_body_bytes: {LIMIT}}}")
    services: list[Served] = []

    def make() -> Served:
        s = Served(engine_env, tmp_path / "home", free_port())
        services.append(s)
        return s

    yield make
    for s in services:
        s.kill_all()


def http_workers(s: Served, n: int) -> list[int]:
    pids = wait_for(lambda: (p := sorted(w.pid for w in s.processes()["http"])) and
                    len(p) == n and p, 30)
    assert pids, f"not {n} http workers: {s.processes()}"
    return pids


def post(s: Served, body, headers) -> int:
    """A connection of its own per request: gunicorn's workers race to accept it."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(s.url + "/api/v1/alerts", content=data, timeout=10,
                      headers={"Content-Type": "application/json", **headers}).status_code


def per_process(directory: Path) -> dict[int, float]:
    """{pid: 200 answers it counted}, from each http worker's own file."""
    out = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        out[pid] = sum(s.value for m in MultiProcessCollector.merge([str(path)])
                       if m.name == REQUESTS for s in m.samples
                       if s.labels.get("code") == "200")
    return out


def assert_scrapes(s: Served, expect_codes: dict, expect_results: dict, times: int = 8):
    for _ in range(times):      # a connection each: any worker may answer
        answer = httpx.get(s.url + "/metrics", timeout=10, headers={   # its first start's
            "Authorization": f"Bearer {(s.home / 'metrics.token').read_text().strip()}"})
        assert answer.status_code == 200
        families = scrape(answer.text)
        assert codes(families) == expect_codes
        assert results(families) == expect_results
        assert observed(families) == sum(expect_codes.values())
        assert families["infra_recovery_store_up"][("infra_recovery_store_up", ())] == 1


@pytest.mark.slow
def test_the_counters_of_every_http_worker_add_up_in_any_scrape(served):
    s = served().start()
    s.wait_healthy()
    pids = http_workers(s, 2)
    hook = {"Authorization": f"Bearer {webhook_token(s.home)}"}
    operator = (s.home / "operator.token").read_text().strip()
    directory = s.home / METRICS_DIR / f"serve-{s.proc.pid}"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    sent = 0
    for i in range(12):
        assert post(s, notification(good_alert(f"h{i}a"), good_alert(f"h{i}b")), hook) == 200
        sent += 1
    for i in range(3):                                   # repeats: duplicates
        assert post(s, notification(good_alert(f"h{i}a"), good_alert(f"h{i}b")), hook) == 200
    assert post(s, notification(good_alert("new"), {"labels": {}}), hook) == 200
    for _ in range(3):
        assert post(s, b"{not json", hook) == 400
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert post(s, notification(good_alert("x")), headers) == 401
    assert post(s, notification(good_alert("x")), {"Authorization": f"Bearer {operator}"}) == 403
    assert post(s, b"[" + b" " * LIMIT + b"]", hook) == 413

    want_codes = {"200": 16, "400": 3, "401": 2, "403": 1, "413": 1, "500": 0, "503": 0}
    want_results = {"accepted": 25, "duplicates": 6, "ignored": 1}
    assert_scrapes(s, want_codes, want_results)
    counted = per_process(directory)
    assert set(counted) == set(pids) and sum(counted.values()) == 16
    print(f"\n200s per http worker: {counted}")

    # A worker that counted dies (gunicorn starts another): what it counted still counts,
    # and every answer now comes from a process other than the one that counted it.
    busiest = max(counted, key=counted.get)
    os.kill(busiest, signal.SIGKILL)
    assert wait_for(lambda: busiest not in (p := http_workers(s, 2)) and p, 30)
    assert_scrapes(s, want_codes, want_results)
    assert post(s, notification(good_alert("after")), hook) == 200
    want_codes["200"] += 1
    want_results["accepted"] += 1
    assert_scrapes(s, want_codes, want_results)
    assert busiest in per_process(directory)

    rc, _ = s.stop()
    assert rc == 0, s.stderr()
    assert not directory.exists()                      # a clean stop removes its folder


@pytest.mark.slow
def test_a_restart_starts_from_an_empty_metrics_folder(served):
    s = served().start()
    s.wait_healthy()
    http_workers(s, 2)
    hook = {"Authorization": f"Bearer {webhook_token(s.home)}"}
    assert post(s, notification(good_alert("a")), hook) == 200
    first = s.home / METRICS_DIR / f"serve-{s.proc.pid}"
    assert any(first.glob("counter_*.db"))

    # Killed without a chance to clean up: its folder stays behind ...
    s.remember()
    os.kill(s.proc.pid, signal.SIGKILL)
    s.proc.wait(10)
    assert wait_for(lambda: not s.alive(), 30), [p.pid for p in s.alive()]
    assert first.is_dir()

    # ... until the next start, which counts from 0 in a folder of its own.
    s.start()
    s.wait_healthy()
    pids = http_workers(s, 2)
    assert not first.exists()
    second = s.home / METRICS_DIR / f"serve-{s.proc.pid}"
    assert [p.name for p in (s.home / METRICS_DIR).iterdir()] == [second.name]
    assert_scrapes(s, {"200": 0, "500": 0, "503": 0, "400": 0, "401": 0, "403": 0,
                       "413": 0}, {"accepted": 0, "duplicates": 0, "ignored": 0}, times=3)
    assert {int(p.stem.split("_")[1]) for p in second.glob("*.db")} <= set(pids)
    rc, _ = s.stop()
    assert rc == 0, s.stderr()
    assert list((s.home / METRICS_DIR).iterdir()) == []
    assert not s.alive()


# -- what the store cannot write ----------------------------------------------------------------

@pytest.mark.slow
def test_a_lone_surrogate_receiver_is_refused_by_a_real_service_and_nothing_is_dropped(
        engine_env, serve):
    """The defect as seen: ``"receiver": "\\ud800"`` was answered 200 {"accepted": 1},
    then the worker failed inserting the run (UnicodeEncodeError), recorded
    ``alert_failed`` and discarded the alert."""
    engine_env.runbook("cache", RUNBOOK)
    served = serve().start()
    served.wait_ready()
    headers = {"Authorization": f"Bearer {served.token}",
               "Content-Type": "application/json"}

    def post(body: str) -> httpx.Response:
        return httpx.post(served.url + "/api/v1/alerts", content=body.encode(),
                          headers=headers, timeout=10)

    answer = post(hostile_body("top", "receiver", '"\\ud800"'))
    assert answer.status_code == 400, answer.text
    assert "receiver" in answer.json()["error"]
    ignored = [post(hostile_body("alert", field, REFUSED[name]))
               for field in ALERT_FIELDS for name in ("lone high surrogate", "very long")]
    assert [a.json() for a in ignored] == [{"accepted": 0, "duplicates": 0, "ignored": 1}] \
        * len(ignored)
    good = post(json.dumps(notification(good_alert("cache-1"))))
    assert good.json() == {"accepted": 1, "duplicates": 0, "ignored": 0}

    store = Store(served.home)
    try:
        assert wait_for(lambda: store.depth() == 0 and store.one(
            "SELECT COUNT(*) FROM deliveries") == 1, 20), "the good alert was not processed"
        assert store.one("SELECT COUNT(*) FROM events WHERE action = 'alert_failed'") == 0
        assert store.one("SELECT COUNT(*) FROM incidents") == 1
    finally:
        store.close()
    assert "ignored an alert" in served.stderr()
