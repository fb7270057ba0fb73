"""A runbook whose playbook writes back the label it was given: to see what a label
became on its way through template, extravars and a real ansible-playbook run."""

from __future__ import annotations

from pathlib import Path

from tests.support.engine_env import EngineEnv


def install_echo_runbook(engine_env: EngineEnv) -> Path:
    """The ``echo`` runbook (alertname Echo): its playbook writes the ``message`` label, as
    it reached the playbook, to ``<out>/<target>.txt``; ``out`` is returned (empty)."""
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
