"""``recovery validate`` checks every inventory group or pattern a runbook names against
the inventory, with the file and line: a step's ``target:`` and a probe's ``targets:``.
An unknown group, a term that matches nothing, or a group without hosts is refused
before anything runs; a probe that named nothing would otherwise only log a warning
on every round of the service, and never check a host."""

from __future__ import annotations

from tests.support.cli_env import INVENTORY, Env

EMPTY_GROUP = INVENTORY + "    spare:\n      hosts: {}\n"


def test_validate_refuses_a_step_whose_group_has_no_hosts(cli_env: Env) -> None:
    (cli_env.root / "inventory" / "hosts.yml").write_text(EMPTY_GROUP)
    path = cli_env.write_runbook("fleet.yml", """\
        name: fleet
        strategies:
          - name: one
            action: test.ok
          - name: group
            action: test.ok
            target: spare
        """)
    r = cli_env.cli("validate")
    assert r.code == 2
    assert (f"{path}:5: strategy 'group': strategies[1].target 'spare' matches no host: "
            "group 'spare' has no hosts") in r.out, r.out + r.err


def test_validate_refuses_a_probe_whose_targets_name_no_host(cli_env: Env) -> None:
    (cli_env.root / "inventory" / "hosts.yml").write_text(EMPTY_GROUP)
    path = cli_env.write_runbook("probed.yml", """\
        name: probed
        strategies:
          - name: one
            action: test.ok
        probe:
          interval: 30s
          targets: webb
        """)
    r = cli_env.cli("validate")
    assert r.code == 2
    assert (f"{path}:7: probe.targets 'webb' matches no inventory host or group"
            in r.out), r.out + r.err

    path.write_text(path.read_text().replace("targets: webb", "targets: spare"))
    r = cli_env.cli("validate")
    assert r.code == 2
    assert f"{path}:7: probe.targets 'spare' matches no host: group 'spare' has no hosts" in r.out

    path.write_text(path.read_text().replace("targets: spare", "targets: web:!web-2"))
    r = cli_env.cli("validate")
    assert r.code == 0, r.out + r.err
