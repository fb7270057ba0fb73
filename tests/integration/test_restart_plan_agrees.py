"""The plan of restart_service.yml (engine/executors/effects.py) names the command that
really runs, even where a runbook's extravars reach the play it imports: a real
ansible-runner run of the shipped playbook on a local host, its ``docker`` a recording
stand-in (tests/support/standins.py), compared with what the plan said. restart_service.yml
hands its choice to restart_container.yml as play vars, which extravars beat."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.executors.ansible import AnsibleExecutor
from engine.executors.effects import host_effects
from engine.inventory import Inventory
from engine.lifecycle import RunStatus
from engine.security.redaction import Redactor
from tests.support.ansible_fixtures import SHIPPED_PLAYBOOKS, new_run
from tests.support.standins import install_runtime, runtime_calls

pytestmark = [pytest.mark.slow]

HOSTS = """\
all:
  hosts:
    pod-1:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
      redis_service_manager: docker
      redis_container: redis
"""


@pytest.mark.parametrize("extravars", [
    {"service_default": "redis"},
    {"container": "other"},                     # beats the play var restart_service hands
    {"container_runtime": "podman"},
])
def test_what_the_plan_names_is_what_the_runtime_is_called_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extravars: dict) -> None:
    standins = SimpleNamespace(root=tmp_path / "standins", bin=tmp_path / "standins" / "bin")
    standins.bin.mkdir(parents=True)
    install_runtime(standins, "docker")
    install_runtime(standins, "podman")
    monkeypatch.setenv("PATH", f"{standins.bin}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "hosts.yml").write_text(HOSTS)
    inventory = Inventory(tmp_path / "hosts.yml")
    [effect] = host_effects("restart_service.yml", extravars, "redis", ["pod-1"], inventory)
    assert not effect.refused, effect.refused

    executor = AnsibleExecutor(SHIPPED_PLAYBOOKS, tmp_path / "hosts.yml", redactor=Redactor(),
                               tmp_root=tmp_path)
    result = executor.run(artifacts=new_run(tmp_path / "artifacts").create(),
                          playbook="restart_service.yml", limit="pod-1",
                          extravars={**extravars, "recovery_component": "redis"},
                          timeout=120)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    called = [[effect.manager, *argv] for argv in runtime_calls(standins, effect.manager)]
    assert called == [list(effect.argv)], (called, effect.text)
