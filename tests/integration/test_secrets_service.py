"""Secrets never leave a real service: after alerts that run a playbook with a secret
extravar (and a ``no_log`` task) and a secret from the service's environment, a manual run
that waits for an approval given with basic auth, and failed logins and calls with tokens
one character off the real ones, no secret (the webhook, operator, metrics and viewer
tokens, the near misses, the extravar, the no_log value, the environment's password) is
in anything the service wrote: every file under RECOVERY_HOME (aside: the credential
files, which hold them by design, and the copy of the runbooks as written), its stdout
and stderr, ``/metrics``, every GET of the API and every console page. In-process, one
run: tests/integration/test_security_playbooks.py."""

from __future__ import annotations

import base64
import os
import re

import httpx

from tests.support.service import Store, wait_for

EXTRAVAR = "extravar-secret-Pw55-d41d8cd98f"
NO_LOG = "nolog-secret-Jr40-0cc175b9c0f1"   # made by a no_log task: in no file as is
ENVIRON = "env-secret-Xq81-92eb5ffee6ae"
FINAL = ("succeeded", "failed", "refused", "canceled", "interrupted")


def near_miss(token: str) -> str:
    """``token`` with its last character changed: a typo an operator makes."""
    return token[:-1] + ("x" if token[-1] != "x" else "y")


def install_runbooks(engine_env, marker) -> None:
    engine_env.playbook("use_secret.yml", """
        - hosts: all
          gather_facts: false
          tasks:
            - name: use the password
              ansible.builtin.debug:
                msg: "connecting with {{ db_password }} and {{ lookup('env', 'REDIS_PASSWORD') }}"
            - name: a task that says nothing of what it makes (no_log is honoured)
              no_log: true
              ansible.builtin.debug:
                msg: "{{ 'nolog-secret-' ~ 'Jr40-0cc175b9c0f1' }}"
            - name: fail on the secret, so that the message carries it
              ansible.builtin.assert:
                that: ["db_password | length > 0"]
                fail_msg: "bad {{ db_password }}"
    """)
    engine_env.runbook("secretive", f"""
        match: ['alertname="SecretDown"']
        target: "{{{{ labels.instance }}}}"
        strategies:
          - name: s
            playbook: use_secret.yml
            extravars: {{db_password: "{EXTRAVAR}"}}
    """)
    engine_env.runbook("demo", f"""
        component: demo
        approval_timeout: 1h
        strategies:
          - {{name: flush, action: test.touch, with: {{path: "{marker}"}},
              approval: required}}
    """)


def alert(n: int) -> dict:
    return {"status": "firing", "startsAt": "2026-01-01T00:00:00Z",
            "labels": {"alertname": "SecretDown", "instance": "cache-1.example:9121"},
            "annotations": {"summary": "x"}, "fingerprint": f"secret-{n}"}


def everything_written(home, served, client: httpx.Client, metrics: str,
                       operator: str) -> dict[str, bytes]:
    """What the service wrote or answered, by where: its files, logs, metrics, every GET
    of the API (each incident and run too) and every console page."""
    seen: dict[str, bytes] = {}
    for root, dirs, files in os.walk(home):
        # sets/: the runbooks as the operator wrote them, copied as they are (the secret
        # extravar is a literal there: the configuration, not something the service said)
        dirs[:] = [d for d in dirs if not (root == str(home) and d == "sets")]
        for name in files:
            if name.endswith(".token"):       # the credential files: them by design
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                seen[path] = f.read()
    for path in served.home.parent.glob("serve-*"):
        seen[str(path)] = path.read_bytes()
    bearer = {"Authorization": f"Bearer {operator}"}
    seen["/metrics"] = client.get("/metrics", headers={
        "Authorization": f"Bearer {metrics}"}).content
    paths = ["/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/status",
             "/api/v1/strategies", "/api/v1/degraded", "/api/v1/incidents", "/api/v1/runs",
             "/api/v1/approvals", "/api/v1/switches"]
    runs = client.get("/api/v1/runs", headers=bearer, params={"limit": 200}).json()
    incidents = client.get("/api/v1/incidents", headers=bearer).json()
    run_ids = {r["id"] for r in runs["runs"]}
    paths += [f"/api/v1/runs/{i}" for i in run_ids]
    paths += [f"/api/v1/incidents/{i['id']}" for i in incidents["incidents"]]
    for path in paths:
        answer = client.get(path, headers=bearer)
        assert answer.status_code in (200, 503), (path, answer.status_code)
        seen[path] = answer.content
    with httpx.Client(base_url=served.url, timeout=30) as browser:
        browser.post("/login", data={"token": operator, "csrf_token": csrf(browser)})
        for page in ["/", "/approvals", "/history", "/charts",
                     *(f"/runs/{i}" for i in run_ids)]:
            answer = browser.get(page)
            assert answer.status_code == 200, (page, answer.status_code)
            seen["console " + page] = answer.content
    return seen


def csrf(client: httpx.Client) -> str:
    page = client.get("/login", follow_redirects=True).text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    return found.group(1) if found else ""


def test_no_secret_in_anything_the_service_wrote_or_answered(engine_env, serve, tmp_path,
                                                             monkeypatch):
    from tests.integration.test_access_service import issue

    marker = tmp_path / "flushed"
    install_runbooks(engine_env, marker)
    monkeypatch.setenv("REDIS_PASSWORD", ENVIRON)
    served = serve().start()
    served.wait_ready(60)
    home = served.home
    webhook = served.token
    operator = (home / "operator.token").read_text().strip()
    metrics = (home / "metrics.token").read_text().strip()
    viewer = issue(served, "vera", "viewer")
    secrets = {"webhook": webhook, "operator": operator, "metrics": metrics,
               "viewer": viewer, "extravar": EXTRAVAR, "no_log": NO_LOG, "environ": ENVIRON,
               **{f"near {k}": near_miss(v) for k, v in (("webhook", webhook),
                                                         ("operator", operator),
                                                         ("viewer", viewer))}}
    client = httpx.Client(base_url=served.url, timeout=30)

    # refused: a near miss as bearer, as basic auth, and at the console's login
    for token in (near_miss(webhook), near_miss(operator)):
        assert client.post("/api/v1/alerts", json={}, headers={
            "Authorization": f"Bearer {token}"}).status_code == 401
        basic = base64.b64encode(f"operator:{token}".encode()).decode()
        assert client.get("/api/v1/status", headers={
            "Authorization": f"Basic {basic}"}).status_code == 401
    with httpx.Client(base_url=served.url, timeout=30) as browser:
        refused = browser.post("/login", data={"token": near_miss(viewer),
                                               "csrf_token": csrf(browser)})
        assert refused.status_code in (401, 403), refused.status_code

    # alerts: a playbook run with a secret extravar, a no_log task and the environment's
    posted = client.post("/api/v1/alerts", headers={"Authorization": f"Bearer {webhook}"},
                         json={"version": "4", "status": "firing", "receiver": "r",
                               "groupKey": "g", "alerts": [alert(1)]})
    assert posted.status_code == 200 and posted.json()["accepted"] == 1, posted.text
    # a manual run that waits for an approval, approved with basic auth
    bearer = {"Authorization": f"Bearer {operator}"}
    started = client.post("/api/v1/recover", headers=bearer, json={"component": "demo"})
    assert started.status_code == 202, started.text
    pending = wait_for(lambda: client.get("/api/v1/approvals", headers=bearer)
                       .json()["approvals"], 60)
    assert pending, "no approval asked"
    basic = base64.b64encode(f"operator:{operator}".encode()).decode()
    approved = client.post(f"/api/v1/approvals/{pending[0]['run_id']}",
                           headers={"Authorization": f"Basic {basic}"},
                           json={"decision": "approve", "reason": "go"})
    assert approved.status_code == 200, approved.text

    store = Store(home)
    try:
        def settled():
            runs = store.rows("SELECT runbook, status FROM runs")
            return (store.busy() == (0, 0, 0)
                    and {"secretive", "demo"} <= {r["runbook"] for r in runs
                                                   if r["status"] in FINAL})
        assert wait_for(settled, 120, every=0.5), [tuple(r) for r in store.rows(
            "SELECT runbook, status, reason FROM runs")]
        statuses = {r["runbook"]: r["status"] for r in store.rows(
            "SELECT runbook, status FROM runs WHERE status IN ('succeeded', 'failed')")}
    finally:
        store.close()
    assert marker.exists() and statuses["demo"] == "succeeded"   # the approved run ran
    assert statuses["secretive"] == "succeeded"

    seen = everything_written(home, served, client, metrics, operator)
    client.close()
    assert served.terminate() == 0
    for path in home.parent.glob("serve-*"):     # what it said while stopping, too
        seen[str(path)] = path.read_bytes()
    leaks = sorted((name, where) for where, data in seen.items()
                   for name, secret in secrets.items() if secret.encode() in data)
    assert leaks == [], "\n".join(map(str, leaks))
    # ...and the walk saw the runs: the playbook's output is there, masked
    stdouts = [data for where, data in seen.items() if where.endswith("/stdout")]
    assert any(b"connecting with ********" in data for data in stdouts)
    assert len(seen) > 20
