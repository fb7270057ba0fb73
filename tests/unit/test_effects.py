"""What a playbook step will run per host (engine/executors/effects.py), read from a real
inventory (group_vars included) as restart_service.yml and restart_container.yml read
it: a component's own manager beats the host's, a host's own name beats the default,
extravars beat both, and whatever the playbook would refuse is refused here, with why.
(tests/integration/test_service_restart.py runs the playbooks against the same words.)"""

from __future__ import annotations

import pytest

from engine.executors.effects import describes, host_effects
from engine.inventory import Inventory

HOSTS = """\
all:
  children:
    redis:
      hosts:
        unit-1: {service_manager: systemd}
        prog-1: {service_manager: supervisor, redis_program: "redis:main",
                 supervisor_config: /etc/sv.conf}
        pod-1: {service_manager: systemd, redis_service_manager: podman,
                container_stop_timeout: 30}
        bare-1: {}
        bad-1: {service_manager: docker, redis_container: "-rm"}
        all-1: {service_manager: supervisor, redis_program: all}
        odd-1: {service_manager: runit}
        sup-1: {redis_service_manager: supervisor}
        num-1: {service_manager: systemd, redis_program: 123}
"""
GROUP_VARS = "redis_program: redis-server\nredis_container: redis\n"


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    root = tmp_path_factory.mktemp("inventory")
    (root / "hosts.yml").write_text(HOSTS)
    (root / "group_vars").mkdir()
    (root / "group_vars" / "redis.yml").write_text(GROUP_VARS)
    return Inventory(root / "hosts.yml")


def said(inventory: Inventory, hosts: list[str], extravars: dict | None = None,
         playbook: str = "restart_service.yml", component: str = "redis") -> dict[str, str]:
    return {e.host: e.text for e in host_effects(playbook, extravars or {}, component, hosts,
                                                 inventory)}


def test_each_manager_says_its_own_command(inventory: Inventory) -> None:
    assert said(inventory, ["unit-1", "prog-1", "pod-1"], {"service_default": "x"}) == {
        "unit-1": "systemctl restart redis-server on unit-1",
        "prog-1": "supervisorctl -c /etc/sv.conf restart redis:main on prog-1",
        "pod-1": "podman restart -t 30 redis on pod-1",       # redis_service_manager wins
    }


def test_an_extravar_service_name_beats_every_host_var(inventory: Inventory) -> None:
    assert said(inventory, ["unit-1"], {"service_name": "other"}) == {
        "unit-1": "systemctl restart other on unit-1"}
    assert said(inventory, ["unit-1"], {"service_component": "chromadb",
                                        "service_default": "chroma"}) == {
        "unit-1": "systemctl restart chroma on unit-1"}


@pytest.mark.parametrize(("host", "why"), [
    ("bare-1", "redis_service_manager or service_manager must be docker, podman, supervisor "
               "or systemd (got '')"),
    ("odd-1", "(got 'runit')"),
    ("bad-1", "the container name '-rm' must be a plain name"),
    ("all-1", "the program name 'all' must be a plain name, not all"),
    ("num-1", "the program name 123 must be a plain name"),   # the playbook: `is string`
    ("nowhere", "not in the inventory"),
])
def test_what_the_playbook_refuses_is_refused_in_the_plan(inventory: Inventory, host: str,
                                                         why: str) -> None:
    [effect] = host_effects("restart_service.yml", {}, "redis", [host], inventory)
    assert effect.argv == () and why in effect.refused
    assert effect.text.startswith(f"refused on {host}: ")


def test_a_label_templated_name_is_only_shown_or_refused(inventory: Inventory) -> None:
    """An extravar rendered from a label is one argv word, checked like a host's own."""
    [effect] = host_effects("restart_service.yml", {"service_name": "x; rm -rf /"}, "redis",
                            ["unit-1"], inventory)
    assert effect.refused and effect.argv == ()


def test_extravars_the_imported_plays_read_are_what_runs(inventory: Inventory) -> None:
    """restart_service.yml hands its choice to restart_container.yml / process_restart.yml
    as play vars, and extravars beat play vars: an extravar ``container``,
    ``container_runtime``, ``program`` or ``service_manager`` is what those plays act on
    (seen with ansible-playbook --check: the first play says ``docker restart redis``,
    restart_container.yml then restarts ``other``). The plan must name that command, and
    refuse where the imported play refuses."""
    assert said(inventory, ["pod-1"], {"container": "other"}) == {
        "pod-1": "podman restart -t 30 other on pod-1"}
    assert said(inventory, ["pod-1"], {"container_runtime": "docker"}) == {
        "pod-1": "docker restart -t 30 redis on pod-1"}
    assert said(inventory, ["unit-1"], {"program": "sshd"}) == {
        "unit-1": "systemctl restart sshd on unit-1"}
    # redis_service_manager (a host var) chooses podman; the extravar is what the
    # imported play would be told, but a container is restarted by restart_container.yml
    assert said(inventory, ["pod-1"], {"service_manager": "systemd"}) == {
        "pod-1": "podman restart -t 30 redis on pod-1"}
    # the component's own manager chooses supervisor; process_restart.yml is then told
    # service_manager by the extravar: systemd
    assert said(inventory, ["sup-1"], {"service_manager": "systemd"}) == {
        "sup-1": "systemctl restart redis-server on sup-1"}
    [bad] = host_effects("restart_service.yml", {"program": "all"}, "redis", ["prog-1"],
                         inventory)
    assert bad.refused and bad.argv == ()
    [bad] = host_effects("restart_service.yml", {"container": "-rm"}, "redis", ["pod-1"],
                         inventory)
    assert bad.refused and bad.argv == ()


def test_restart_container_reads_the_host_var_container_var_names(inventory: Inventory) -> None:
    extravars = {"container_var": "redis_container", "container_default": "fallback"}
    assert said(inventory, ["unit-1"], extravars, "restart_container.yml") == {
        "unit-1": "docker restart -t 10 redis on unit-1"}
    assert said(inventory, ["unit-1"], {"container_var": "redis_program"},
                "restart_container.yml")["unit-1"].startswith("refused on unit-1: container_var")


def test_a_playbook_without_a_description_says_nothing(inventory: Inventory) -> None:
    assert not describes("disk_cleanup.yml") and describes("restart_service.yml")
    assert host_effects("disk_cleanup.yml", {}, "redis", ["unit-1"], inventory) == []


def test_the_fleet_docs_examples_show_what_the_plan_says(tmp_path) -> None:
    """docs/fleet.md: each manager's inventory snippet, put in one `redis` group, gives
    exactly the plan lines the page shows."""
    import re

    import yaml

    from tests.support.paths import ROOT

    page = (ROOT / "docs" / "fleet.md").read_text()
    section = page.split("## Restarting a service", 1)[1].split("\n## ", 1)[0]
    hosts: dict = {}
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        hosts.update(yaml.safe_load(block))
    shown = re.search(r"```\n(.*?)```", section, re.S).group(1).splitlines()[1:]
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"redis": {"hosts": hosts}}}}))
    effects = host_effects("restart_service.yml", {"service_default": "redis"}, "redis",
                           sorted(hosts), Inventory(tmp_path / "hosts.yml"))
    assert [f"  {e.text}" for e in effects] == shown
    for e in effects:
        assert f"Plan: `{e.text}`." in section
