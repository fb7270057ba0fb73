"""Labels are data through a real ansible-playbook run: hostile alert labels travel the
whole path (runbook template -> extravars -> the playbook) and stay text; secrets from
the environment and extravars never land under RECOVERY_HOME."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.lifecycle import IncidentState
from tests.support.echo_runbook import install_echo_runbook

HOSTILE = {
    "lookup": "{{ lookup('pipe', 'id') }}",
    "jinja_block": "{% for i in range(3) %}x{% endfor %}",
    "subshell": "$(id)",
    "semicolon": "; touch PWNED",            # PWNED: a file in the test's folder
    "backtick": "`id`",
}


@pytest.fixture
def echo_runbook(engine_env) -> Path:
    return install_echo_runbook(engine_env)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_label_stays_text_inside_a_real_playbook_run(engine_env, echo_runbook,
                                                             run_incident, name, tmp_path):
    ctx = engine_env.context()
    pwned = tmp_path / "recovery-pwned"
    value = HOSTILE[name].replace("PWNED", str(pwned))
    opened = run_incident(ctx, None, target=None, trigger="alert",
                          labels={"alertname": "Echo", "instance": "cache-1.example:9121",
                                  "message": value})
    assert opened.incident.state == IncidentState.RECOVERED, opened.incident.reason
    written = (echo_runbook / "cache-1.txt").read_text()
    assert written == value                       # byte for byte: nothing evaluated
    assert "uid=" not in written
    assert not pwned.exists()


def test_secrets_from_env_and_extravars_never_land_under_recovery_home(
        engine_env, run_incident, monkeypatch):
    monkeypatch.setenv("REDIS_PASSWORD", "env-secret-Xq81")
    monkeypatch.setenv("RECOVERY_API_TOKEN", "token-secret-Zk27")
    # not secret by name, but a password inside a URL is one
    monkeypatch.setenv("CACHE_URL", "redis://:url-secret-Qw31@127.0.0.1:1/0")
    engine_env.playbook("use_secret.yml", """
        - hosts: all
          gather_facts: true
          tasks:
            - name: use the password
              ansible.builtin.debug:
                msg: "connecting with {{ db_password }}"
            - name: show the environment
              ansible.builtin.debug:
                var: ansible_env
    """)
    engine_env.runbook("secretive", """
        strategies:
          - name: s
            playbook: use_secret.yml
            extravars: {db_password: "extravar-secret-Pw55"}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "secretive").incident
    assert incident.state == IncidentState.RECOVERED, incident.reason
    home = ctx.config.home
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    found = []
    for root, _dirs, files in os.walk(home):
        for name in files:
            data = open(os.path.join(root, name), "rb").read()
            for secret in (b"env-secret-Xq81", b"token-secret-Zk27", b"extravar-secret-Pw55",
                           b"url-secret-Qw31"):
                if secret in data:
                    found.append((name, secret))
    assert found == []
    # ...while the run really happened and its record is readable
    [run] = ctx.store.query_runs(incident_id=incident.id)
    stdout = (ctx.artifacts_dir / run.id / "stdout").read_text()
    assert "connecting with ********" in stdout
