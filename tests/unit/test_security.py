"""Labels are data, before anything runs: a runbook cannot set connection settings, and a
label cannot pick a target outside the inventory. Hostile labels through a real playbook
run: tests/integration/test_security_playbooks.py."""

from __future__ import annotations

import pytest

from engine.lifecycle import RunStatus
from tests.support.echo_runbook import install_echo_runbook


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
def test_a_label_cannot_choose_a_target_outside_the_inventory(engine_env, run_incident,
                                                              instance):
    out = install_echo_runbook(engine_env)
    ctx = engine_env.context()
    opened = run_incident(ctx, None, target=None, trigger="alert",
                          labels={"alertname": "Echo", "instance": instance, "message": "x"})
    assert opened.incident is None and "unknown target" in opened.refusal
    assert list(out.iterdir()) == []
    assert ctx.store.get_run(opened.refused_run).status == RunStatus.REFUSED
