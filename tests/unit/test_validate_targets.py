"""``recovery validate`` checks every inventory group or pattern a runbook names against
the inventory, with the file and line: a step's ``target:`` and a probe's ``targets:``.
An unknown group, a term that matches nothing, or a group without hosts is refused
before anything runs; a probe that named nothing would otherwise only log a warning
on every round of the service, and never check a host."""

from __future__ import annotations

import pytest

from tests.support.cli_env import INVENTORY, Env

STEP = """\
    name: fleet
    strategies:
      - name: one
        action: test.ok
      - name: group
        action: test.ok
        target: {pattern}
    """

PROBE = """\
    name: fleet
    strategies:
      - name: one
        action: test.ok
    probe:
      interval: 30s
      targets: {pattern}
    """

REFUSED = [
    ("web:&nosuch", "'web:&nosuch': 'nosuch' matches no inventory host or group"),
    ("webb", "'webb' matches no inventory host or group"),
    ("spare", "'spare' matches no host: group 'spare' has no hosts"),
]


def _validate(cli_env: Env, runbook: str, pattern: str):
    # `spare`: a group without hosts
    (cli_env.root / "inventory" / "hosts.yml").write_text(
        INVENTORY + "    spare:\n      hosts: {}\n")
    path = cli_env.write_runbook("fleet.yml", runbook.replace("{pattern}", pattern))
    return path, cli_env.cli("validate")


@pytest.mark.parametrize(("runbook", "where"), [
    (STEP, "5: strategy 'group': strategies[1].target"),   # the step's line
    (PROBE, "7: probe.targets"),                            # the line of targets:
])
@pytest.mark.parametrize(("pattern", "reason"), REFUSED)
def test_validate_refuses_a_target_that_selects_no_host(
        cli_env: Env, runbook: str, where: str, pattern: str, reason: str) -> None:
    path, r = _validate(cli_env, runbook, pattern)
    assert r.code == 2
    assert f"{path}:{where} {reason}" in r.out, r.out + r.err


@pytest.mark.parametrize("runbook", [STEP, PROBE])
def test_validate_accepts_a_pattern_that_selects_hosts(cli_env: Env, runbook: str) -> None:
    _, r = _validate(cli_env, runbook, "web:!web-2")
    assert r.code == 0, r.out + r.err
