"""The webhook's request counters (webhook.request_metrics): what ``POST /api/v1/alerts``
answered, counted in the app (the Flask test client: per app, in memory) and through a
real ``recovery serve`` with several gunicorn http workers (prometheus_client's
multiprocess mode: whichever worker answers ``/metrics`` shows the sum of all)."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from engine.config import load_config
from engine.context import EngineContext
from engine.reporting.metrics import render_text
from engine.service.supervisor import METRICS_DIR, prepare_metrics_dir
from tests.service import GRACE, Served, free_port, wait_for, webhook_token
from tests.test_webhook import (
    AS_ALICE,
    HOOK,
    JournalDown,
    Service,
    good_alert,
    notification,
)
from webhook import request_metrics
from webhook.request_metrics import ALERTS, DURATION, REQUESTS, fold

REPO = Path(__file__).resolve().parent.parent
LIMIT = 2048      # webhook.max_body_bytes in these tests


def scrape(text: str) -> dict:
    """{family name: {(sample name, sorted label items): value}}; a family twice fails."""
    out: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in out, f"family {family.name} twice in one exposition"
        out[family.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value
                            for s in family.samples}
    return out


def codes(families: dict) -> dict[str, float]:
    return {dict(labels)["code"]: v for (name, labels), v in families[REQUESTS].items()
            if name == REQUESTS + "_total"}


def results(families: dict) -> dict[str, float]:
    return {dict(labels)["result"]: v for (name, labels), v in families[ALERTS].items()
            if name == ALERTS + "_total"}


def observed(families: dict) -> float:
    return families[DURATION][(DURATION + "_count", ())]


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
    conf = runpy.run_path(str(REPO / "engine" / "gunicorn_conf.py"))
    assert conf["workers"] == 7 and "_private" not in conf

    class Worker:
        pid = 4242

    conf["child_exit"](None, Worker())
    assert seen.read_text() == "4242"
    assert sorted(p.name for p in multiproc.iterdir()) == ["counter_4242.db",
                                                          "gauge_livesum_4343.db"]


def test_the_metrics_folder_keeps_only_running_services(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
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


# -- the alert rules on these counters ---------------------------------------------------------


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package `prometheus`)")
def test_the_webhook_alert_rules_fire_when_they_should(tmp_path):
    rules = REPO / "docs" / "examples" / "recovery-engine-rules.yml"
    expr = {rule["alert"]: rule["expr"] for group in yaml.safe_load(rules.read_text())["groups"]
            for rule in group["rules"]}
    total = REQUESTS + "_total"
    refusing = json.dumps(expr_description(rules, "RecoveryEngineWebhookRefusing"))
    tests = tmp_path / "tests.yml"
    tests.write_text(textwrap.dedent(f"""\
        rule_files: [{rules}]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              - series: '{total}{{instance="a",code="200"}}'
                values: '0+10x30'
              - series: '{total}{{instance="b",code="200"}}'
                values: '0+10x30'
              - series: '{total}{{instance="a",code="401"}}'
                values: '0x10 1+1x20'
              - series: '{total}{{instance="b",code="503"}}'
                values: '0x10 0+5x20'
            promql_expr_test:
              - expr: {json.dumps(expr["RecoveryEngineWebhookRefusing"])}
                eval_time: 9m
                exp_samples: []
              - expr: {json.dumps(expr["RecoveryEngineWebhookRefusing"])}
                eval_time: 25m
                exp_samples: [{{labels: '{{}}', value: 10}}]
              - expr: {json.dumps(expr["RecoveryEngineWebhookFailing"])}
                eval_time: 9m
                exp_samples: []
              - expr: {json.dumps(rounded(expr["RecoveryEngineWebhookFailing"]))}
                eval_time: 25m
                exp_samples: [{{labels: '{{}}', value: 1923}}]
            alert_rule_test:
              - alertname: RecoveryEngineWebhookRefusing
                eval_time: 25m
                exp_alerts:
                  - exp_labels: {{severity: warning, source: infra-recovery}}
                    exp_annotations:
                      summary: "Recovery webhook refused 10 notification(s) in 10m"
                      description: {refusing}
        """))
    checked = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def rounded(expr: str) -> str:
    """The ratio in units of 1/10,000: float sums of rates differ in the last bit with the
    order promtool adds the series in, and its comparison is exact."""
    return f"round(({expr.strip()}) * 10000)"


def expr_description(rules: Path, alert: str) -> str:
    for group in yaml.safe_load(rules.read_text())["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                return rule["annotations"]["description"]
    raise KeyError(alert)
