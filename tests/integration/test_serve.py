"""``recovery serve`` as an operator starts it: real processes (the parent, gunicorn and
its workers, the engine worker processes), a real port, bounded waits, and every process
it started killed at the end, even when a test fails."""

from __future__ import annotations

import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from engine.lifecycle import IncidentState, RunStatus
from tests.support.alerts import alert_payload, touch_runbook
from tests.support.paths import ROOT
from tests.support.service import (
    GRACE,
    START,
    Served,
    command,
    context,
    hand_to_workers,
    history,
    wait_for,
    webhook_token,
)


def runs_of(served: Served, incident_id: str):
    ctx = context(served)
    try:
        return ctx.store.query_runs(incident_id=incident_id, limit=None), \
            ctx.store.get_incident(incident_id), ctx.store.list_locks()
    finally:
        ctx.store.close()


# -- start, credentials, stop ------------------------------------------------------------

@pytest.mark.slow
def test_first_start_names_the_token_files_and_sigterm_stops_everything(serve):
    """Its output goes to a file here, as to systemd's journal: kept on disk, readable
    by others. The banner names the token files (0600) and how to read them; never a
    token."""
    served = serve().start()
    took = served.wait_healthy()
    home = served.home
    tokens = {name: (home / f"{name}.token").read_text().strip()
              for name in ("webhook", "operator", "metrics")}
    for name in tokens:
        assert stat.S_IMODE((home / f"{name}.token").stat().st_mode) == 0o600
    printed = served.stdout()
    for name, token in tokens.items():
        assert token not in printed and token not in served.stderr()
        assert f"cat {home / name}.token" in printed
    assert "not shown here: this output is not a terminal" in printed
    assert f"url: {served.url}/api/v1/alerts" in printed
    assert f"credentials: <the webhook token, in {home}/webhook.token>" in printed
    assert "send_resolved: true" in printed and "type: Bearer" in printed
    assert f"curl -s {served.url}/healthz" in printed and "recovery status" in printed
    # The curl lines read the tokens from their files: they work as printed.
    line = next(ln for ln in printed.splitlines() if "/api/v1/status" in ln)
    curl = subprocess.run(["bash", "-c", line.strip().replace("curl -s", "curl -s -o /dev/null "
                                                              "-w '%{http_code}'", 1)],
                          capture_output=True, text=True, timeout=30)
    assert curl.stdout == "200", (line, curl.stdout, curl.stderr)

    served.wait_ready(20)    # an engine worker process has reported
    status = served.get("/api/v1/status",
                        headers={"Authorization": f"Bearer {tokens['operator']}"})
    assert status is not None and status.status_code == 200
    kids = served.children()
    assert len(served.gunicorn()) == 2          # master + one http worker
    assert len(served.engine_workers()) == 1
    rc, stopped = served.stop()
    assert rc == 0, served.stderr()
    assert stopped < GRACE, f"idle service took {stopped:.1f}s to stop"
    assert not served.alive(), [p.pid for p in kids if p.is_running()]
    print(f"\nfirst start healthy in {took:.2f}s; SIGTERM to exit {stopped:.2f}s")

    served.start()                              # the same home: nothing new to show
    served.wait_healthy()
    assert "credentials generated" not in served.stdout()
    assert webhook_token(home) == tokens["webhook"]
    rc, _ = served.stop()
    assert rc == 0


def test_on_a_terminal_the_first_start_shows_the_tokens(serve):
    """`make run` at a terminal: nothing keeps what is shown there, and the operator
    needs the tokens now: they are printed, once."""
    served = serve()
    shown = served.start_on_terminal()
    try:
        banner = shown.read_until("token add NAME", START)
        assert "Next:" in banner, (banner, served.stderr()[-2000:])
        home = served.home
        for name in ("webhook", "operator", "metrics"):
            assert (home / f"{name}.token").read_text().strip() in banner
        assert f"credentials: {webhook_token(home)}" in banner
        assert "not shown here" not in banner
    finally:
        served.terminate()
        shown.close()


@pytest.mark.slow
def test_a_bind_off_loopback_needs_tls(serve, engine_env):
    served = serve()
    for bind in ("0.0.0.0:9797", "192.0.2.1:9797", "example.com:9797"):
        done = subprocess.run([sys.executable, "-m", "engine", "serve", "--bind", bind],
                              env=served.environ(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "without TLS" in done.stderr and "behind_tls_proxy" in done.stderr
        assert done.stdout == ""
    done = subprocess.run([sys.executable, "-m", "engine", "serve", "--bind", "localhost:x"],
                          env=served.environ(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is not a number" in done.stderr
    assert not (served.home / "webhook.token").exists()   # refused before anything


@pytest.mark.slow
@pytest.mark.requires("openssl")                     # makes the test certificate
def test_tls_from_the_configuration(serve, engine_env, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    engine_env.write_config(webhook=f"{{workers: 1, http_workers: 1, shutdown_grace: {GRACE}s, "
                            f"tls: {{certfile: {cert}, keyfile: {key}}}}}")
    served = serve().start()
    served.url = served.url.replace("http://", "https://")
    served.wait_healthy()
    assert f"url: {served.url}/api/v1/alerts" in served.stdout()
    answer = served.get("/healthz")             # https (the test certificate: unverified)
    assert answer is not None and answer.status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(served.url.replace("https://", "http://") + "/healthz", timeout=2)
    rc, _ = served.stop()
    assert rc == 0


@pytest.mark.slow
def test_a_port_already_taken_stops_the_start_with_the_reason(serve):
    served = serve()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", served.port))
        taken.listen()
        served.start()
        rc = served.proc.wait(30)
    assert rc == 1
    assert "the HTTP server did not start" in served.stderr()
    assert not served.alive()


# -- the process model ---------------------------------------------------------------------

@pytest.mark.slow
def test_a_child_that_dies_is_restarted(serve):
    served = serve().start()
    served.wait_healthy()
    [worker] = served.engine_workers()
    worker.kill()
    assert wait_for(lambda: [w for w in served.engine_workers() if w.pid != worker.pid], 15)
    assert "was killed by SIGKILL" in served.stderr() and "restarting" in served.stderr()

    master = psutil.Process(served.proc.pid).children()[0]
    assert "gunicorn" in command(master)
    master.kill()
    assert wait_for(lambda: [g for g in served.gunicorn() if g.pid != master.pid], 15)
    served.wait_healthy()
    served.wait_ready(20)
    rc, _ = served.stop()
    assert rc == 0 and not served.alive()


@pytest.mark.slow
def test_children_do_not_outlive_the_parent(serve):
    served = serve().start()
    served.wait_healthy()
    kids = served.children()
    assert len(kids) >= 3
    served.proc.kill()                        # the parent alone, with no chance to clean up
    served.proc.wait(5)
    gone, alive = psutil.wait_procs(kids, timeout=GRACE + 10)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]


@pytest.mark.slow
def test_sigterm_lets_a_running_step_finish_within_the_grace(serve, engine_env, tmp_path):
    started = tmp_path / "started"
    engine_env.runbook("slow", f"""
        strategies:
          - {{name: wait, action: test.sleep, with: {{seconds: 2, started: "{started}"}}}}
    """)
    served = serve().start()
    served.wait_healthy()
    incident = hand_to_workers(served, "slow")
    assert wait_for(started.exists, 20), served.stderr()
    rc, took = served.stop()
    assert rc == 0, served.stderr()
    assert took < GRACE
    runs, current, locks = runs_of(served, incident)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED]
    assert current.state == IncidentState.RECOVERED
    assert not served.alive()


@pytest.mark.slow
def test_a_step_still_running_after_the_grace_is_interrupted(serve, engine_env, tmp_path):
    started = tmp_path / "started"
    engine_env.runbook("stuck", f"""
        strategies:
          - {{name: wait, action: test.sleep, with: {{seconds: 60, started: "{started}"}}}}
    """)
    served = serve().start()
    served.wait_healthy()
    incident = hand_to_workers(served, "stuck")
    assert wait_for(started.exists, 20), served.stderr()
    rc, took = served.stop()
    assert rc == 0, served.stderr()
    assert GRACE - 0.5 < took < GRACE + 5, took
    runs, current, locks = runs_of(served, incident)
    assert [r.status for r in runs] == [RunStatus.INTERRUPTED]
    assert f"shutdown grace {GRACE}s" in runs[0].reason
    assert current.state == IncidentState.OPEN          # the next start retries it
    assert "interrupted" in current.reason
    assert locks == []                                  # released, not left to lapse
    assert not served.alive()
    print(f"\nstep past the grace: SIGTERM to exit {took:.2f}s")


# -- alerts in, remediation out ----------------------------------------------------------

def test_an_alert_is_remediated_by_an_engine_worker_process(serve, engine_env, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    touch_runbook(engine_env, markers)
    served = serve().start()
    served.wait_healthy()
    auth = {"Authorization": f"Bearer {webhook_token(served.home)}"}
    payload = alert_payload(markers, "cache-1", "cache-2")
    t0 = time.monotonic()
    answer = httpx.post(served.url + "/api/v1/alerts", json=payload, headers=auth, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 2, "duplicates": 0, "ignored": 0}
    assert wait_for(lambda: all((markers / f"{h}.marker").exists()
                                for h in ("cache-1", "cache-2")), 20), served.stderr()
    took = time.monotonic() - t0
    again = httpx.post(served.url + "/api/v1/alerts", json=payload, headers=auth, timeout=5)
    assert again.json()["duplicates"] == 2
    served.wait_ready(20)
    rc, _ = served.stop()
    assert rc == 0
    runs = [r for r in history(served) if r["runbook"] == "touchy"]
    assert sorted((r["target"], r["status"], r["trigger"]) for r in runs) == [
        ("cache-1", "succeeded", "alert"), ("cache-2", "succeeded", "alert")]
    print(f"\nalert to both markers: {took:.2f}s")


def _store_writable(db: Path) -> bool:
    """No stopped process holds the database's write lock."""
    try:
        conn = sqlite3.connect(db, timeout=0.5)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return True
    except sqlite3.OperationalError:
        return False


@pytest.mark.slow
def test_an_alert_journaled_before_a_sigkill_is_processed_once_after_restart(
        serve, engine_env, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    touch_runbook(engine_env, markers)
    served = serve().start()
    served.wait_healthy()
    served.wait_ready(20)
    # Freeze the engine workers, so the alert is journaled and certainly not processed
    # before the kill (and freeze them outside a write transaction).
    workers = served.engine_workers()
    db = served.home / "recovery.db"
    for _ in range(50):
        for w in workers:
            w.suspend()
        if _store_writable(db):
            break
        for w in workers:
            w.resume()
        time.sleep(0.05)
    else:
        pytest.fail("the engine workers kept the store locked")
    auth = {"Authorization": f"Bearer {webhook_token(served.home)}"}
    answer = httpx.post(served.url + "/api/v1/alerts", headers=auth, timeout=5,
                        json=alert_payload(markers, "cache-1",
                                           starts_at="2024-05-01T03:00:00.123456789Z"))
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    everything = [psutil.Process(served.proc.pid), *served.children()]
    for p in everything:                      # the whole service, at once
        p.kill()
    psutil.wait_procs(everything, timeout=10)
    served.proc.wait(5)
    assert not (markers / "cache-1.marker").exists()

    t0 = time.monotonic()
    served.start()
    served.wait_healthy()
    assert wait_for((markers / "cache-1.marker").exists, 30), served.stderr()
    took = time.monotonic() - t0
    time.sleep(1.5)                           # several worker passes: nothing runs twice
    rc, _ = served.stop()
    assert rc == 0
    runs = [r for r in history(served) if r["runbook"] == "touchy"]
    assert [(r["status"], r["trigger"]) for r in runs] == [("succeeded", "alert")], runs
    print(f"\nrestart to the journaled alert's marker: {took:.2f}s")


def test_make_run_starts_the_service():
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "$(STAMP)" in target.splitlines()[0]
    assert "recovery serve" in target


@pytest.mark.slow
def test_a_second_sigterm_interrupts_an_alerts_step_at_once(serve, engine_env, tmp_path):
    started = tmp_path / "started"
    engine_env.runbook("stuck", f"""
        match:
          - alertname="test-alert"
        target: "{{{{ labels.instance }}}}"
        strategies:
          - {{name: wait, action: test.sleep, with: {{seconds: 60, started: "{started}"}}}}
    """)
    served = serve().start()
    served.wait_healthy()
    auth = {"Authorization": f"Bearer {webhook_token(served.home)}"}
    answer = httpx.post(served.url + "/api/v1/alerts", headers=auth, timeout=5,
                        json=alert_payload(tmp_path, "cache-2"))
    assert answer.status_code == 200, answer.text
    assert wait_for(started.exists, 20), served.stderr()
    t0 = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    served.proc.send_signal(signal.SIGTERM)   # as a second Ctrl-C: do not wait the grace
    assert served.proc.wait(GRACE + 15) == 0, served.stderr()
    took = time.monotonic() - t0
    assert took < GRACE, took
    [run] = [r for r in history(served) if r["runbook"] == "stuck"]
    assert (run["status"], run["trigger"]) == ("interrupted", "alert")
    assert "second signal" in run["reason"]
    assert not served.alive()
    print(f"\nsecond SIGTERM to exit: {took:.2f}s")
