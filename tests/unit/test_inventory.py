"""Targets: given this inventory and this label (or --target), this host, or this refusal."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.inventory import AmbiguousTarget, Host, Inventory, UnknownTarget, strip_port
from tests.support.paths import ROOT

FLEET = """
all:
  children:
    local:
      hosts:
        localhost:
          ansible_connection: local
    redis:
      vars:
        redis_port: 6379
      hosts:
        cache-1:
          ansible_host: 10.0.0.5
          instance_aliases: ["redis-a:9121", "cache-1.prod"]
          redis_url: redis://10.0.0.5:6379/0
        cache-2:
          ansible_host: 10.0.0.6
          redis_url: redis://10.0.0.6:6379/0
    chromadb:
      hosts:
        vectors-1:
          ansible_host: "2001:db8::10"
          instance_aliases: ["[2001:db8::11]:8000"]
    web:
      children:
        webui:
          hosts:
            webui-1:
              ansible_host: 10.0.1.1
            webui-2:
              ansible_host: 10.0.1.2
"""


def write_inventory(root: Path, hosts_yml: str, group_vars: dict[str, str] | None = None) -> Path:
    """An inventory directory as we ship it: hosts.yml plus group_vars/."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "hosts.yml").write_text(textwrap.dedent(hosts_yml))
    if group_vars:
        (root / "group_vars").mkdir()
        for group, text in group_vars.items():
            (root / "group_vars" / f"{group}.yml").write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def fleet(tmp_path: Path) -> Inventory:
    return Inventory(write_inventory(tmp_path / "inventory", FLEET))


def names(hosts: list[Host]) -> list[str]:
    return [h.name for h in hosts]


# -- resolve_instance: exact matches -----------------------------------------------------


@pytest.mark.parametrize("label", ["cache-1", "cache-1:9121"])
def test_label_resolves_by_host_name(fleet: Inventory, label: str) -> None:
    assert fleet.resolve_instance(label).name == "cache-1"


@pytest.mark.parametrize("label", ["10.0.0.5", "10.0.0.5:9100", "10.0.0.5:6379"])
def test_label_resolves_by_ansible_host_with_or_without_port(fleet: Inventory, label: str) -> None:
    assert fleet.resolve_instance(label).name == "cache-1"


@pytest.mark.parametrize("label", ["redis-a", "redis-a:9121", "redis-a:1", "cache-1.prod:9121"])
def test_label_resolves_by_alias_ports_ignored_on_both_sides(fleet: Inventory, label: str) -> None:
    assert fleet.resolve_instance(label).name == "cache-1"


@pytest.mark.parametrize(
    "label",
    [
        "[2001:db8::10]:9121", "[2001:db8::10]", "2001:db8::10",
        "[2001:db8::11]:9100", "2001:db8::11",  # an alias written as [addr]:port
    ],
)
def test_ipv6_label_with_brackets_and_port(fleet: Inventory, label: str) -> None:
    assert fleet.resolve_instance(label).name == "vectors-1"


@pytest.mark.parametrize(
    ("value", "stripped"),
    [
        ("host:9121", "host"),
        ("10.0.0.5:9100", "10.0.0.5"),
        ("[::1]:6379", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),  # a bare IPv6 address is never mangled
        ("2001:db8::1", "2001:db8::1"),
        ("fe80::1:9100", "fe80::1:9100"),  # could be an address: left alone
        ("web:!db", "web:!db"),  # not a port
        ("host:", "host:"),
        ("[::1]x", "[::1]x"),
    ],
)
def test_strip_port(value: str, stripped: str) -> None:
    assert strip_port(value) == stripped


def test_resolved_host_carries_endpoint_and_groups(fleet: Inventory) -> None:
    host = fleet.resolve_instance("redis-a:9121")
    assert host.endpoint("redis") == "redis://10.0.0.5:6379/0"
    assert host.endpoint("redis_url") == "redis://10.0.0.5:6379/0"
    assert host.endpoint("chromadb") is None
    assert host.groups == ("redis",)
    assert fleet.get("webui-1").groups == ("web", "webui")  # parents included
    assert fleet.get("nope") is None


# -- resolve_instance: labels are data, never patterns -----------------------------------


@pytest.mark.parametrize(
    "label",
    [
        "all",
        "*",
        "cache-*",
        "~.*",
        "redis",  # a group name is not a host
        "web",
        "localhost,evil",
        "cache-1:!x",
        "cache-1:cache-2",
        "redis:&web",
        "redis[0]",
        "{{ lookup('pipe','id') }}",
        " cache-1",
        "CACHE-1",
    ],
)
def test_hostile_or_pattern_label_resolves_to_nothing(fleet: Inventory, label: str) -> None:
    with pytest.raises(UnknownTarget) as refused:
        fleet.resolve_instance(label)
    assert refused.value.reason == (
        f"instance {label!r} matches no inventory host "
        "(by name, ansible_host or instance_aliases)"
    )
    assert str(refused.value) == refused.value.reason


@pytest.mark.parametrize("label", ["", "   "])
def test_empty_label_is_refused(fleet: Inventory, label: str) -> None:
    with pytest.raises(UnknownTarget, match="instance label is empty"):
        fleet.resolve_instance(label)


def test_unknown_label_reason_reads_at_3am(fleet: Inventory) -> None:
    with pytest.raises(UnknownTarget) as refused:
        fleet.resolve_instance("db9:9121")
    assert refused.value.reason == (
        "instance 'db9:9121' matches no inventory host (by name, ansible_host or instance_aliases)"
    )


def test_template_label_is_never_rendered(fleet: Inventory, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    label = f"{{{{ lookup('pipe', 'touch {marker}') }}}}"
    for resolve in (fleet.resolve_instance, fleet.resolve_pattern):
        with pytest.raises(UnknownTarget):
            resolve(label)
    assert not marker.exists()


# -- ambiguity ---------------------------------------------------------------------------


def test_alias_claimed_by_two_hosts_is_refused_naming_both(tmp_path: Path) -> None:
    inv = Inventory(write_inventory(tmp_path, """
        all:
          hosts:
            cache-1: {instance_aliases: ["redis:9121"]}
            cache-2: {instance_aliases: ["redis"]}
    """))
    with pytest.raises(AmbiguousTarget) as refused:
        inv.resolve_instance("redis:9121")
    reason = refused.value.reason
    assert "'cache-1'" in reason and "'cache-2'" in reason and "ambiguous" in reason
    with pytest.raises(AmbiguousTarget):  # an operator's --target is refused alike
        inv.resolve_pattern("redis")
    assert any("'cache-1'" in p and "'cache-2'" in p for p in inv.validate())


def test_ansible_host_shared_with_another_hosts_alias_is_refused(tmp_path: Path) -> None:
    inv = Inventory(write_inventory(tmp_path, """
        all:
          hosts:
            a: {ansible_host: 10.0.0.5}
            b: {instance_aliases: ["10.0.0.5:9100"]}
    """))
    with pytest.raises(AmbiguousTarget, match=r"host 'a' \(ansible_host\) and host 'b'"):
        inv.resolve_instance("10.0.0.5:6379")


def test_a_host_claiming_a_key_twice_is_not_ambiguous(tmp_path: Path) -> None:
    inv = Inventory(write_inventory(tmp_path, """
        all:
          hosts:
            cache-1: {ansible_host: cache-1, instance_aliases: ["cache-1:9121"]}
    """))
    assert inv.resolve_instance("cache-1:9121").name == "cache-1"
    assert inv.validate() == []


# -- localhost ---------------------------------------------------------------------------


def test_implicit_localhost_resolves_with_local_connection(tmp_path: Path) -> None:
    inv = Inventory(write_inventory(tmp_path, """
        all:
          vars: {site: lab}
          hosts:
            cache-1: {ansible_host: 10.0.0.5}
    """))
    local = inv.resolve_instance("localhost:9100")
    assert local.name == "localhost"
    assert local.vars["ansible_connection"] == "local"
    assert local.vars["site"] == "lab"  # ansible gives it `all`'s vars
    # A loopback address is the scraper's machine, not necessarily ours: never guessed.
    for loopback in ("127.0.0.1:9121", "[::1]:6379"):
        with pytest.raises(UnknownTarget):
            inv.resolve_instance(loopback)
    assert inv.get("localhost") == local
    assert inv.resolve_pattern("localhost") == [local]
    # Like ansible: the implicit localhost is not part of `all`.
    assert names(inv.hosts()) == ["cache-1"]
    assert names(inv.resolve_pattern("all")) == ["cache-1"]


def test_loopback_claimed_by_a_host_goes_to_that_host(tmp_path: Path) -> None:
    inv = Inventory(write_inventory(tmp_path, """
        all:
          hosts:
            sshd-1: {ansible_host: 127.0.0.1, ansible_port: 2222}
    """))
    assert inv.resolve_instance("127.0.0.1:9100").name == "sshd-1"
    assert inv.resolve_instance("localhost").name == "localhost"


# -- variables ---------------------------------------------------------------------------


def test_group_vars_dir_and_inline_vars_are_inherited(tmp_path: Path) -> None:
    inv = Inventory(write_inventory(
        tmp_path,
        """
        all:
          vars: {site: lab, tier: any}
          children:
            web:
              vars: {tier: web}
              children:
                webui:
                  vars: {openwebui_url: "http://webui.internal:8080"}
                  hosts:
                    webui-1: {ansible_host: 10.0.1.1}
                    webui-2: {tier: special}
        """,
        group_vars={"all": "proxy: none\n", "webui": "port: 8080\ntier: from-file\n"},
    ))
    one, two = inv.get("webui-1"), inv.get("webui-2")
    assert one.vars["site"] == "lab" and one.vars["proxy"] == "none"
    assert one.vars["port"] == 8080
    assert one.endpoint("openwebui") == "http://webui.internal:8080"
    assert one.vars["ansible_host"] == "10.0.1.1"
    assert two.vars["tier"] == "special"  # the host's own value wins
    assert one.vars["tier"] == "from-file"  # ansible's precedence: group_vars/ over inline
    assert type(one.vars["site"]) is str and type(one.vars["port"]) is int  # plain, untagged


MAGIC = [
    "groups", "hostvars", "inventory_dir", "inventory_file", "inventory_hostname",
    "inventory_hostname_short", "group_names", "playbook_dir", "omit", "ansible_facts",
    "ansible_playbook_python", "ansible_version", "ansible_config_file", "vars", "environment",
]


def test_magic_vars_are_not_host_vars(fleet: Inventory) -> None:
    for host in [*fleet.hosts(), fleet.get("localhost")]:
        assert not set(MAGIC) & set(host.vars), host.name
    assert set(fleet.get("cache-1").vars) == {
        "ansible_host", "instance_aliases", "redis_url", "redis_port",
    }


def test_host_is_immutable_hashable_and_does_not_print_its_vars(tmp_path: Path) -> None:
    inv = Inventory(write_inventory(tmp_path, """
        all:
          hosts:
            cache-1: {ansible_password: hunter2}
    """))
    host = inv.get("cache-1")
    assert "hunter2" not in repr(host)
    assert {host: 1}[host] == 1
    with pytest.raises(TypeError):
        host.vars["x"] = 1  # type: ignore[index]


# -- resolve_pattern: an operator's --target -----------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("redis", ["cache-1", "cache-2"]),
        ("web", ["webui-1", "webui-2"]),  # a parent group takes its children's hosts
        ("cache-*", ["cache-1", "cache-2"]),
        ("webui-2:cache-1", ["cache-1", "webui-2"]),  # inventory order, not pattern order
        ("redis:web:!cache-2", ["cache-1", "webui-1", "webui-2"]),
        ("all:!redis:!web:!local", ["vectors-1"]),
        ("redis:&cache-2", ["cache-2"]),
        ("redis[0]", ["cache-1"]),
        ("web[1:]", ["webui-2"]),
        ("redis[0:1]", ["cache-1", "cache-2"]),
        ("~webui-[12]", ["webui-1", "webui-2"]),
        ("10.0.0.5:6379", ["cache-1"]),  # an exact instance first
        ("redis-a", ["cache-1"]),
        ("[2001:db8::10]:22", ["vectors-1"]),
    ],
)
def test_pattern_expands_like_limit(fleet: Inventory, pattern: str, expected: list[str]) -> None:
    assert names(fleet.resolve_pattern(pattern)) == expected


@pytest.mark.parametrize("pattern", ["nothing", "db*", "redis:&web", "redis[7]", "~(", ""])
def test_pattern_matching_nothing_is_refused(fleet: Inventory, pattern: str) -> None:
    with pytest.raises(UnknownTarget) as refused:
        fleet.resolve_pattern(pattern)
    assert "--target" in refused.value.reason


def test_pattern_reason_names_the_pattern(fleet: Inventory) -> None:
    with pytest.raises(UnknownTarget) as refused:
        fleet.resolve_pattern("db*")
    assert refused.value.reason == "--target 'db*' matches no inventory host or group"


@pytest.mark.parametrize(("pattern", "unknown"), [
    ("redis:!nothing", "'nothing'"), ("redis:nosuch*", "'nosuch*'"), ("web:&dc9", "'dc9'")])
def test_a_pattern_term_that_matches_nothing_is_refused_not_dropped(
        fleet: Inventory, pattern: str, unknown: str) -> None:
    """Ansible would read ``redis:!nothing`` as ``redis`` with a warning: a typo in an
    exclusion must not widen what is acted on."""
    with pytest.raises(UnknownTarget) as refused:
        fleet.resolve_pattern(pattern)
    assert f"{unknown} matches no inventory host or group" in refused.value.reason


def test_an_empty_group_is_refused_with_the_reason(tmp_path: Path) -> None:
    inv = Inventory(write_inventory(tmp_path / "inv", """\
        all:
          children:
            redis:
              hosts: {cache-1: {}}
            spare: {}
        """))
    with pytest.raises(UnknownTarget) as refused:
        inv.resolve_pattern("spare", what="strategies[0].target")
    assert refused.value.reason == ("strategies[0].target 'spare' matches no host: "
                                    "group 'spare' has no hosts")


def test_expansion_says_whether_a_host_or_a_group_was_named(fleet: Inventory) -> None:
    assert fleet.expand("redis-a:9121").exact
    assert fleet.expand("redis-a:9121").names == ["cache-1"]
    group = fleet.expand("redis")
    assert not group.exact and group.names == ["cache-1", "cache-2"]


def test_groups_listing(fleet: Inventory) -> None:
    groups = fleet.groups()
    assert groups["redis"] == ["cache-1", "cache-2"]
    assert groups["web"] == groups["webui"] == ["webui-1", "webui-2"]  # children's hosts too
    assert "localhost" in groups["all"]


# -- validate, reload, quiet ---------------------------------------------------------------


def test_validate_reports_bad_aliases_and_endpoints(tmp_path: Path) -> None:
    inv = Inventory(write_inventory(tmp_path, """
        all:
          hosts:
            cache-1:
              instance_aliases: "redis-a"
              redis_url: 6379
            cache-2:
              instance_aliases: ["ok", 9121]
              chromadb_url: ["http://x"]
            cache-3:
              openwebui_url: "http://{{ ansible_host }}:8080"
    """))
    problems = "\n".join(inv.validate())
    assert "host 'cache-1': instance_aliases must be a list of non-empty strings" in problems
    assert "host 'cache-2': instance_aliases must be a list" in problems
    assert "host 'cache-1': redis_url must be a non-empty string, got int" in problems
    assert "host 'cache-2': chromadb_url must be a non-empty string, got list" in problems
    assert "host 'cache-3': openwebui_url is a template" in problems
    assert "ansible_host }}" not in problems  # endpoint values (maybe with passwords) unquoted
    # A malformed alias list is ignored whole (not iterated as characters), and said so.
    with pytest.raises(UnknownTarget, match="the inventory has 5 problem"):
        inv.resolve_instance("redis-a")
    with pytest.raises(UnknownTarget):
        inv.resolve_instance("ok")
    assert inv.get("cache-1").endpoint("redis") is None


def test_validate_reports_a_file_that_does_not_parse(tmp_path: Path, capfd) -> None:
    root = tmp_path / "inventory"
    root.mkdir()
    (root / "hosts.yml").write_text("all: [\n  broken")
    inv = Inventory(root)
    problems = inv.validate()
    assert any("hosts.yml" in p and "Unable to parse" in p for p in problems)
    # Only the implicit localhost remains, and refusals say the inventory is broken.
    assert inv.hosts() == []
    with pytest.raises(UnknownTarget, match="recovery validate"):
        inv.resolve_instance("cache-1")
    with pytest.raises(UnknownTarget):
        inv.resolve_pattern("nothing:matches")
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # ansible's warnings were captured, not printed


def test_validate_reports_a_group_vars_file_that_does_not_parse(tmp_path: Path) -> None:
    inv = Inventory(write_inventory(
        tmp_path,
        "all:\n  hosts:\n    cache-1: {ansible_host: 10.0.0.5}\n",
        group_vars={"all": "redis_url: [\n"},
    ))
    [problem] = inv.validate()
    assert problem.startswith("variables failed to load for 'cache-1', 'localhost': YAML")
    # What is written on the host itself still counts; nothing from the broken file does.
    assert dict(inv.resolve_instance("10.0.0.5").vars) == {"ansible_host": "10.0.0.5"}
    assert inv.get("localhost").vars["ansible_connection"] == "local"


def test_missing_inventory_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    inv = Inventory(tmp_path / "nowhere")
    assert inv.validate() == [f"inventory {tmp_path / 'nowhere'} does not exist"]
    assert inv.resolve_instance("localhost").name == "localhost"


def test_reload_reads_the_file_again(tmp_path: Path) -> None:
    root = write_inventory(tmp_path, "all:\n  hosts:\n    cache-1:\n")
    inv = Inventory(root)
    with pytest.raises(UnknownTarget):
        inv.resolve_instance("cache-9")
    (root / "hosts.yml").write_text("all:\n  hosts:\n    cache-9:\n")
    with pytest.raises(UnknownTarget):  # parsed once: no re-read behind our back
        inv.resolve_instance("cache-9")
    inv.reload()
    assert inv.resolve_instance("cache-9").name == "cache-9"
    assert inv.get("cache-1") is None


def test_concurrent_readers_and_reload(fleet: Inventory) -> None:
    def work(i: int) -> list[str]:
        if i % 25 == 0:
            fleet.reload()
        return names(fleet.resolve_pattern("redis:web:!cache-2")) + [
            fleet.resolve_instance("10.0.0.6:9121").name
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(200)))
    assert all(r == ["cache-1", "webui-1", "webui-2", "cache-2"] for r in results)


def test_unmatched_pattern_prints_nothing(fleet: Inventory, capfd) -> None:
    fleet.hosts()
    capfd.readouterr()
    with pytest.raises(UnknownTarget):
        fleet.resolve_pattern("nothing:matches")
    assert capfd.readouterr() == ("", "")


# -- the shipped inventory ---------------------------------------------------------------


def test_shipped_inventory_parses_and_validates() -> None:
    inv = Inventory(ROOT / "inventory")
    assert inv.validate() == []
    local = inv.get("localhost")
    assert local.groups == ("local",)
    assert local.vars["ansible_connection"] == "local"
    assert local.vars["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    assert {"redis", "chromadb", "openwebui"} <= set(inv.groups())
    for component in ("redis", "chromadb", "openwebui"):
        members = inv.resolve_pattern(component)
        assert members and all(h.endpoint(component) for h in members)


def test_shipped_examples_cannot_reach_real_hosts() -> None:
    documentation = [ipaddress.ip_network(n) for n in
                     ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    for host in Inventory(ROOT / "inventory").hosts():
        if host.name == "localhost":
            continue
        assert host.name.endswith(".example"), host.name
        address = ipaddress.ip_address(host.vars["ansible_host"])
        assert any(address in net for net in documentation), host.name
        for key in ("redis_url", "chromadb_url", "openwebui_url"):
            if url := host.endpoint(key):
                assert str(address) in url


def test_shipped_example_fleet_shares_its_vars_through_group_vars() -> None:
    """The example groups have hosts; what a group shares comes from group_vars/ (a
    host's own value wins), and every service_manager is one restart_service.yml takes."""
    inv = Inventory(ROOT / "inventory")
    for group in ("redis", "chromadb", "openwebui", "docker_hosts"):
        assert inv.resolve_pattern(group), group
    assert inv.get("cache-1.example").vars["redis_container"] == "redis-cache-1"
    assert inv.get("cache-2.example").vars["redis_container"] == "redis"   # the group's
    for host in inv.resolve_pattern("docker_hosts"):
        assert host.vars["container_runtime"] == "docker"
        assert host.vars["service_manager"] == "docker"
    vectors = inv.get("vectors-1.example").vars
    assert vectors["service_manager"] == "supervisor" and vectors["chromadb_program"]
    assert vectors["chromadb_persist_dir"].startswith(vectors["snapshot_roots"][0] + "/")
    for host in inv.hosts():
        assert host.vars.get("service_manager", "docker") in (
            "docker", "podman", "supervisor", "systemd"), host.name


# -- cost: ansible only when used ----------------------------------------------------------


def test_importing_and_constructing_does_not_import_ansible() -> None:
    code = textwrap.dedent(f"""
        import sys
        import engine.inventory
        inv = engine.inventory.Inventory({str(ROOT / "inventory")!r})
        assert not [m for m in sys.modules if m == "ansible" or m.startswith("ansible.")], \\
            sorted(m for m in sys.modules if m.startswith("ansible"))
        inv.resolve_instance("localhost")
        assert "ansible" in sys.modules
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"  # and ansible printed nothing
