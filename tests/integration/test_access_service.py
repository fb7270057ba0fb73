"""Who may call what on a real service, and what it leaves readable: every route with
every credential, ``/metrics`` needs a credential by default (a real Prometheus scrapes
with the metrics token and not without), artifact files are 0600, every file the service
writes in its home is private, and a service running as root says why that is a bad
idea.

Seen: ``/metrics`` open by default, listing inventory host names; ``metrics_auth``
meaning the operator token (Prometheus would hold the power to approve); artifact files
0644 inside 0700 directories; nothing said about running as root."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import httpx
import pytest

from engine.config import load_config
from tests.support.routes import CREDENTIALS, OPEN, ROUTES, harmless_call, is_console
from tests.support.steps import HELLO

# -- a real service -----------------------------------------------------------------------


def recovery(served, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], env=served.environ(),
                          capture_output=True, text=True, timeout=60)


def call(served, method: str, route: str, token: str | None) -> httpx.Response:
    """A route called as the walks call it (tests/support/routes.py), or a path as is."""
    if (method, route) in ROUTES:
        method, path, body = harmless_call((method, route))
    else:
        path, body = route, None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, served.url + path, headers=headers, json=body, timeout=30)


def issue(served, name: str, role: str, *more: str) -> str:
    added = recovery(served, "token", "add", name, "--role", role, *more, "--json")
    assert added.returncode == 0, added.stderr
    return json.loads(added.stdout)["token"]


def expected(route: tuple[str, str], credential: str) -> str:
    allowed = ROUTES[route]
    if allowed == OPEN or credential in allowed:
        return "allowed"
    if is_console(route[1]):     # no session: the login page (only some roles log in)
        from engine.security.roles import Access, roles_for

        return "403" if credential in roles_for(Access.READ) else "login"
    return "401" if credential == "none" else "403"


CONSOLE_FORMS = {"/switches/disable": {"target": "access-test", "for": "1m"},
                 "/switches/enable": {"target": "access-test"},
                 "/locks/unlock": {"target": "access-test"},
                 "/approvals/run-nope": {"decision": "reject"}}


def console_answer(served, method: str, route: str, token: str | None) -> tuple[str, int]:
    """A console route called as a browser would: logged in with ``token`` through the
    form (when the console takes it), the session's CSRF token in the form."""
    path = route.replace("<run_id>", "run-nope").replace("<incident_id>", "inc-nope")
    with httpx.Client(base_url=served.url, timeout=30) as client:
        if token:
            client.post("/login", data={"token": token, "csrf_token": _csrf(client)})
        logged_in = client.get("/").status_code == 200
        form = ({**CONSOLE_FORMS.get(path, {}), "csrf_token": _csrf(client)}
                if method == "POST" else None)
        answer = client.request(method, path, data=form)
    code = answer.status_code
    if ROUTES[(method, route)] == OPEN:     # the login form: its 401/403 is its answer
        return ("allowed" if code < 500 else str(code)), code
    if not logged_in:
        went = answer.headers.get("location", "")
        return ("login" if code == 303 and went.startswith("/login") else str(code)), code
    return ("allowed" if code not in (401, 403) and code < 500 else str(code)), code


def _csrf(client: httpx.Client) -> str:
    page = client.get("/login", follow_redirects=True).text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    return found.group(1) if found else ""


@pytest.mark.slow
def test_every_route_with_every_credential_on_a_real_service(engine_env, serve):
    engine_env.runbook("shop", "strategies: [{name: a, action: test.ok}]\n")
    engine_env.runbook("other", "strategies: [{name: a, action: test.ok}]\n")
    served = serve().start()
    served.wait_ready()
    first_start = served.stdout()
    home = served.home
    assert "metrics token" in first_start and "scrape_configs" in first_start
    assert "credentials_file" in first_start

    added = recovery(served, "token", "add", "prometheus", "--role", "metrics", "--json")
    assert added.returncode == 0, added.stderr
    issued = json.loads(added.stdout)
    assert (issued["name"], issued["role"]) == ("prometheus", "metrics")
    tokens = {"none": None, "webhook": served.token,
              "metrics": issued["token"],                   # taken without a restart
              "viewer": issue(served, "vera", "viewer"),
              "app": issue(served, "shop-app", "app", "--component", "shop"),
              "operator": (home / "operator.token").read_text().strip()}
    assert issued["token"] not in (home / "tokens.json").read_text()   # its hash only
    assert stat.S_IMODE((home / "tokens.json").stat().st_mode) == 0o600

    seen = {}
    for route in ROUTES:
        for credential in CREDENTIALS:
            want = expected(route, credential)
            if is_console(route[1]):
                seen[(route, credential)] = (want, *console_answer(served, *route,
                                                                   tokens[credential]))
                continue
            answer = call(served, *route, tokens[credential])
            code = answer.status_code
            got = ("allowed" if code not in (401, 403) and code < 500 else str(code))
            seen[(route, credential)] = (want, got, code)
    wrong = {k: v for k, v in seen.items() if v[0] != v[1]}
    assert not wrong, wrong
    assert call(served, "GET", "/metrics", tokens["metrics"]).status_code == 200
    assert call(served, "GET", "/metrics", "not-a-token-0123456789").status_code == 401
    denied = call(served, "GET", "/api/v1/status", tokens["metrics"])
    assert "metrics" in denied.json()["error"] and "operator" in denied.json()["error"]

    other = httpx.post(served.url + "/api/v1/recover", json={"component": "other"},
                       headers={"Authorization": f"Bearer {tokens['app']}"}, timeout=30)
    assert other.status_code == 403 and "'shop' only" in other.json()["error"]
    listed = recovery(served, "token", "list", "--json")
    assert [t["name"] for t in json.loads(listed.stdout)] == ["prometheus", "vera",
                                                             "shop-app"]
    assert issued["token"] not in listed.stdout
    assert recovery(served, "token", "remove", "prometheus").returncode == 0
    assert call(served, "GET", "/metrics", tokens["metrics"]).status_code == 401   # at once
    assert call(served, "GET", "/metrics", (home / "metrics.token").read_text().strip()
                ).status_code == 200          # the first start's metrics token


@pytest.mark.slow
@pytest.mark.requires("root")               # the warning is for a service run as root
def test_a_service_run_as_root_warns_in_its_log_with_the_reason_and_the_way_out(serve):
    served = serve().start()
    served.wait_ready()
    log = served.stderr()
    assert "running as root" in log, log[-2000:]
    assert "dedicated user" in log and "docs/operations.md" in log


@pytest.mark.slow
def test_a_service_whose_metrics_are_open_says_so_at_its_start(engine_env, serve):
    """An upgraded recovery.yml that still spells ``metrics_auth: false`` (the old shipped
    file did) keeps /metrics open: the start says what that shows, to whom, and how to
    close it. A start with the default says nothing of it."""
    from tests.support.service import GRACE

    engine_env.write_config(webhook=f"{{workers: 1, http_workers: 1, shutdown_grace: "
                            f"{GRACE}s, graceful_timeout: 2s, metrics_auth: false}}")
    served = serve().start()
    served.wait_ready()
    assert served.get("/metrics").status_code == 200             # open indeed
    [line] = [ln for ln in served.stderr().splitlines() if "/metrics is open" in ln]
    assert "inventory host names" in line and served.url in line
    assert "metrics_auth: false" in line and "--role metrics" in line
    served.terminate()

    from engine.cli.serve import start_warnings
    from engine.service.supervisor import ServiceSettings

    engine_env.write_config()                  # the default: /metrics needs a token
    config = load_config(engine_env.config_path)
    warnings = start_warnings(config, ServiceSettings.from_config(config))
    assert not any("/metrics" in w for w in warnings), warnings


# -- artifacts on disk --------------------------------------------------------------------


def test_artifact_files_of_a_real_playbook_run_are_0600_in_0700_folders(engine_env,
                                                                      run_incident):
    engine_env.playbook("hello.yml", HELLO)
    engine_env.runbook("hello", "strategies: [{name: hello, playbook: hello.yml}]\n")
    ctx = engine_env.context()
    old = os.umask(0o022)           # what a service started from a shell usually has
    try:
        opened = run_incident(ctx, "hello", target="localhost")
    finally:
        os.umask(old)
    [run] = ctx.store.query_runs(incident_id=opened.incident.id)
    assert run.status.value == "succeeded", run.reason
    folder = ctx.artifacts_dir / run.id
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {"run.json", "status", "rc", "stdout"} <= {p.name for p in files}
    assert any(p.parent.name == "job_events" for p in files)
    modes = {str(p.relative_to(folder)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o600"}, modes
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {"0o700"}


@pytest.mark.slow
def test_every_file_a_real_service_writes_in_its_home_is_private(engine_env, serve):
    """Started from a shell's umask (022), a service that took an alert, ran a playbook,
    answered /metrics and reloaded its set: every file under RECOVERY_HOME is its user's
    alone (the webhook's metrics files name inventory hosts; the set's copies hold the
    inventory). Seen: ``metrics/serve-*/*.db`` 0644, ``sets/`` copies 0644 and 0755."""
    from tests.support.alerts import alert_payload
    from tests.support.service import post_alerts, wait_for

    engine_env.playbook("hello.yml", HELLO)
    engine_env.runbook("hello", """
        match: [alertname="test-alert"]
        target: "{{ labels.instance }}"
        strategies: [{name: hello, playbook: hello.yml}]
    """)
    served = serve()
    old = os.umask(0o022)
    try:
        served.start()
    finally:
        os.umask(old)
    served.wait_ready()
    home = served.home
    assert post_alerts(served, alert_payload(home, "cache-1"))["accepted"] == 1
    metrics = httpx.get(served.url + "/metrics", timeout=10, headers={
        "Authorization": f"Bearer {(home / 'metrics.token').read_text().strip()}"})
    assert metrics.status_code == 200
    assert recovery(served, "reload").returncode == 0
    assert wait_for(lambda: any(
        json.loads(p.read_text()).get("status") == "succeeded"
        for p in (home / "artifacts").glob("*/run.json")), 120), served.stderr()[-2000:]
    assert list((home / "metrics").glob("serve-*/*.db")), "no metrics file written"
    assert list((home / "sets").rglob("*.yml")), "no set copy written"
    loose = {str(p.relative_to(home)): oct(stat.S_IMODE(p.lstat().st_mode))
             for p in home.rglob("*")
             if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077}
    assert loose == {}, loose
    served.terminate()


# -- a real Prometheus scrapes it as docs/examples/prometheus.yml says --------------------



@pytest.mark.requires("prometheus")
def test_a_real_prometheus_scrapes_with_the_metrics_token_and_not_without(engine_env, serve,
                                                                           tmp_path):
    import yaml

    from tests.support.examples import METRICS_TOKEN_FILE
    from tests.support.examples import PROMETHEUS as EXAMPLE
    from tests.support.service import free_port, wait_for

    served = serve().start()
    served.wait_ready()
    token = tmp_path / "recovery-metrics.token"
    token.write_text((served.home / "metrics.token").read_text())
    token.chmod(0o600)
    example = yaml.safe_load(EXAMPLE.read_text().replace(METRICS_TOKEN_FILE, str(token)))
    [job] = example["scrape_configs"]
    target = f"127.0.0.1:{served.port}"
    job.update(scrape_interval="1s", static_configs=[{"targets": [target]}])
    bare = {"job_name": "no-token", "scrape_interval": "1s",
            "static_configs": [{"targets": [target]}]}
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": [job, bare]}))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        def health() -> dict[str, dict] | None:
            try:
                found = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return None
            targets = {t["labels"]["job"]: t for t in found["data"]["activeTargets"]}
            seen = all(t["health"] != "unknown" for t in targets.values())
            return targets if len(targets) == 2 and seen else None

        targets = wait_for(health, 60, every=0.5)
        assert targets, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert targets["infra-recovery"]["health"] == "up", targets["infra-recovery"]
        assert targets["no-token"]["health"] == "down"
        assert "401" in targets["no-token"]["lastError"]
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
