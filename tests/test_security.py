"""Labels are data: hostile alert labels travel the whole path (runbook template ->
extravars -> a real ansible-playbook run) and stay text; they cannot pick a target
outside the inventory; secrets never land under RECOVERY_HOME."""

from __future__ import annotations

import os
import stat

import pytest

from engine.orchestration.lifecycle import IncidentState, RunStatus

HOSTILE = {
    "lookup": "{{ lookup('pipe', 'id') }}",
    "jinja_block": "{% for i in range(3) %}x{% endfor %}",
    "subshell": "$(id)",
    "semicolon": "; touch /tmp/recovery-pwned",
    "backtick": "`id`",
}


@pytest.fixture
def echo_runbook(engine_env):
    out = engine_env.root / "out"
    out.mkdir()
    engine_env.playbook("echo.yml", """
        - hosts: all
          gather_facts: false
          tasks:
            - name: write the value we were given
              ansible.builtin.copy:
                dest: "{{ out_dir }}/{{ recovery_target }}.txt"
                content: "{{ message }}"
    """)
    engine_env.runbook("echo", f"""
        match: [alertname="Echo"]
        strategies:
          - name: echo
            playbook: echo.yml
            extravars: {{message: "{{{{ labels.message }}}}", out_dir: "{out}"}}
    """)
    return out


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_label_stays_text_inside_a_real_playbook_run(engine_env, echo_runbook,
                                                             run_incident, name):
    ctx = engine_env.context()
    value = HOSTILE[name]
    opened = run_incident(ctx, None, target=None, trigger="alert",
                          labels={"alertname": "Echo", "instance": "cache-1.example:9121",
                                  "message": value})
    assert opened.incident.state == IncidentState.RECOVERED, opened.incident.reason
    written = (echo_runbook / "cache-1.txt").read_text()
    assert written == value                       # byte for byte: nothing evaluated
    assert "uid=" not in written
    assert not os.path.exists("/tmp/recovery-pwned")


def test_connection_settings_in_a_runbook_are_refused_at_load(engine_env):
    from engine.runbooks.loader import RunbookError, load_runbook

    path = engine_env.runbook("sneaky", """
        strategies:
          - name: s
            playbook: echo.yml
            extravars: {ansible_ssh_common_args: "-o ProxyCommand=evil"}
    """)
    with pytest.raises(RunbookError) as refused:
        load_runbook(path)
    assert refused.value.line == 6 and "ansible_" in refused.value.reason


@pytest.mark.parametrize("instance", ["all", "cache-*", "localhost,cache-1", "~.*",
                                      "cache-1:!cache-2", "{{ '127.0.0.1' }}",
                                      "evil.example:22"])
def test_a_label_cannot_choose_a_target_outside_the_inventory(engine_env, echo_runbook,
                                                              run_incident, instance):
    ctx = engine_env.context()
    opened = run_incident(ctx, None, target=None, trigger="alert",
                          labels={"alertname": "Echo", "instance": instance, "message": "x"})
    assert opened.incident is None and "unknown target" in opened.refusal
    assert list(echo_runbook.iterdir()) == []
    assert ctx.store.get_run(opened.refused_run).status == RunStatus.REFUSED


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
