"""The start-up check of a Redis server's settings, against real ``redis-server``
processes started with each unsafe configuration: the problem is named, with what it
would lose; a safe server passes; with CONFIG renamed away or denied by an ACL the check
reads INFO instead and says what it cannot read. Each server starts once per module."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
import redis

from engine.store import open_store
from engine.store.redis.server_settings import (
    SOURCES,
    ServerSettings,
    UnsafeRedisSettings,
    judge,
    read_settings,
    require_safe_settings,
    settings_problems,
)
from tests.support.docs import DOCS, first_cells, sections
from tests.support.redis_servers import RedisServer, Sentinel
from tests.support.service import free_port

pytestmark = pytest.mark.requires("redis-server")

SAFE = {"appendonly": "yes", "appendfsync": "everysec", "maxmemory": "10mb",
        "maxmemory_policy": "noeviction"}
CONFIGURATIONS: dict[str, dict] = {
    "safe": SAFE,
    # maxmemory 0: an eviction policy never evicts, so only the missing AOF is a problem
    "no-aof": {"appendonly": "no", "maxmemory_policy": "allkeys-lru"},
    "evicting": {"appendonly": "yes", "maxmemory": "10mb", "maxmemory_policy": "allkeys-lru"},
    "fsync-no": {"appendonly": "yes", "appendfsync": "no"},
    "cluster": {"appendonly": "yes", "cluster_enabled": "yes"},
    "no-config": {**SAFE, "disabled": ("CONFIG",)},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Callable[[str], RedisServer]]:
    """``server(name)``: the server of that configuration, started at its first use;
    all are killed at the end of the module."""
    started: dict[str, RedisServer] = {}

    def get(name: str) -> RedisServer:
        if name not in started:
            folder = tmp_path_factory.mktemp(name)
            if name == "replica":       # of the safe one, and wrong in two more ways
                one = RedisServer(folder, replica_of=get("safe"), appendonly="no",
                                  save="900 1", maxmemory="10mb",
                                  maxmemory_policy="allkeys-lru")
            elif name == "cluster":     # its bus port said outright: by default it is
                one = RedisServer(      # port + 10000, and above 55535 it cannot start
                    folder, cluster_port=free_port(), **CONFIGURATIONS[name])
            elif name == "documented":
                one = RedisServer(folder, **documented_conf())
            elif name == "sentinel":
                one = Sentinel(folder, get("safe"), "store")
            else:
                one = RedisServer(folder, **CONFIGURATIONS[name])
            started[name] = one.start()     # one that failed to start is not kept
        return started[name]

    yield get
    for s in started.values():
        s.kill()


GUIDE_SECTION = "Redis as the store: required settings"


def documented_conf() -> dict[str, str]:
    """The redis.conf lines docs/operations.md gives, as RedisServer's settings."""
    text = sections(DOCS / "operations.md")[GUIDE_SECTION]
    block = re.search(r"^```conf\n(.*?)^```$", text, re.M | re.S).group(1)
    lines = [line.split(None, 1) for line in block.splitlines()
             if line.strip() and not line.startswith("#")]
    return {key.replace("-", "_"): value for key, value in lines}


def user_without(server: RedisServer, *denied: str) -> redis.Redis:
    """A client of an ACL user denied ``denied`` (as a managed Redis denies CONFIG)."""
    name = "no-" + "-".join(d.lower() for d in denied)
    server.client().execute_command("ACL", "SETUSER", name, "on", ">pw", "~*", "&*",
                                    "+@all", *(f"-{d.lower()}" for d in denied))
    return redis.Redis(host="127.0.0.1", port=server.port, username=name, password="pw",
                       socket_timeout=2, socket_connect_timeout=2)


def named(problems) -> dict[str, str]:
    return {p.setting: p.reason for p in problems}


def test_a_safe_server_has_no_problem(server):
    client = server("safe").client()
    assert settings_problems(client) == []
    require_safe_settings(client)
    values = read_settings(client).values       # CONFIG GET's own spelling: bytes, yes/no
    assert values["maxmemory"] == "10485760" and values["appendfsync"] == "everysec"
    assert values["role"] == "master" and values["cluster-enabled"] == "no"


@pytest.mark.parametrize("name, setting, phrases", [
    # allkeys-lru with maxmemory 0 evicts nothing: only the missing AOF is named
    ("no-aof", "appendonly", ["appendonly is no", "acknowledged alerts",
                              'no RDB snapshots either (save "")', "Set appendonly yes"]),
    ("evicting", "maxmemory-policy", ["allkeys-lru with maxmemory 10485760 bytes",
                                      "the intake stream", "noeviction"]),
    ("fsync-no", "appendfsync", ["appendfsync is no", "power loss",
                                 "redis-server alone loses nothing", "everysec"]),
    ("cluster", "cluster-enabled", ["cluster mode is enabled", "one hash slot"]),
])
def test_an_unsafe_setting_is_named_with_what_it_would_lose(server, name, setting, phrases):
    problems = named(settings_problems(server(name).client()))
    assert list(problems) == [setting]
    assert [p for p in phrases if p not in problems[setting]] == []


def test_a_volatile_policy_names_the_locks_it_would_evict(server):
    evicting = server("evicting")
    evicting.client().config_set("maxmemory-policy", "volatile-ttl")
    try:
        reason = named(settings_problems(evicting.client()))["maxmemory-policy"]
        assert "volatile-ttl" in reason and "locks" in reason and "expire" in reason
    finally:
        evicting.client().config_set("maxmemory-policy", "allkeys-lru")


def test_a_replica_is_refused_with_every_other_problem_listed(server):
    replica = server("replica")
    problems = named(settings_problems(replica.client()))
    assert list(problems) == ["role", "appendonly", "maxmemory-policy"]
    assert "replica (role slave)" in problems["role"]
    assert "RDB snapshots (save 900 1)" in problems["appendonly"]
    with pytest.raises(UnsafeRedisSettings) as refused:
        require_safe_settings(replica.client())
    message = str(refused.value)
    assert message.startswith("refusing Redis as the state store")
    assert all(f"- {reason}" in message for reason in problems.values())
    assert [p.setting for p in refused.value.problems] == list(problems)


def test_a_sentinel_is_not_a_data_server(server):
    problems = named(settings_problems(server("sentinel").client()))
    assert "Sentinel" in problems["role"]


def test_with_config_renamed_away_info_is_read_and_appendfsync_is_said_unreadable(server):
    client = server("no-config").client()
    with pytest.raises(redis.ResponseError):
        client.config_get("appendonly")                        # CONFIG is really gone
    problems = settings_problems(client)
    assert [(p.setting, p.unread) for p in problems] == [("appendfsync", True)]
    assert "appendfsync cannot be read: CONFIG GET refused (unknown command 'CONFIG'" \
        in problems[0].reason
    assert "INFO does not report it" in problems[0].reason
    with pytest.raises(UnsafeRedisSettings, match="appendfsync cannot be read"):
        require_safe_settings(client)
    require_safe_settings(client, checked_elsewhere={"appendfsync"})


def test_the_store_url_declares_what_was_checked_elsewhere(server):
    url = server("no-config").url
    with pytest.raises(UnsafeRedisSettings, match="appendfsync cannot be read"):
        open_store(url)
    store = open_store(f"{url}?checked_elsewhere=appendfsync&prefix=declared:")
    store.set_value("k", 1)
    assert store.get_value("k") == 1
    store.close()


def test_info_reads_what_config_get_reads(server):
    """INFO's 1/0 and numbers come out as CONFIG GET spells them."""
    for name in ("safe", "evicting", "no-aof", "cluster"):
        s = server(name)
        by_config = dict(read_settings(s.client()).values)
        by_info = read_settings(user_without(s, "CONFIG"))
        assert set(by_info.unread) == {"appendfsync", "save"}
        assert {k: v for k, v in by_config.items() if k not in by_info.unread} \
            == by_info.values, name


def test_an_acl_denying_config_still_finds_unsafe_settings(server):
    problems = named(settings_problems(user_without(server("no-aof"), "CONFIG")))
    assert list(problems) == ["appendonly"]                  # from INFO's aof_enabled:0
    assert "restart or crash loses every write since" in problems["appendonly"]
    problems = named(settings_problems(user_without(server("evicting"), "CONFIG")))
    assert "allkeys-lru with maxmemory 10485760 bytes" in problems["maxmemory-policy"]


def test_a_read_setting_that_is_unsafe_is_refused_whatever_was_checked_elsewhere(server):
    client = user_without(server("evicting"), "CONFIG")
    with pytest.raises(UnsafeRedisSettings) as refused:
        require_safe_settings(client, checked_elsewhere={"appendfsync", "maxmemory-policy"})
    assert [p.setting for p in refused.value.problems] == ["maxmemory-policy"]


def test_with_neither_config_nor_info_every_setting_is_said_unreadable(server):
    problems = settings_problems(user_without(server("safe"), "CONFIG", "INFO"))
    assert all(p.unread for p in problems)
    assert [p.setting for p in problems] == ["role", "version", "cluster-enabled",
                                             "appendonly", "maxmemory", "maxmemory-policy"]
    assert all("INFO refused" in p.reason for p in problems)


def test_an_unreachable_server_is_not_a_settings_problem(tmp_path):
    nobody = RedisServer(tmp_path / "never-started")
    with pytest.raises(redis.ConnectionError):
        settings_problems(nobody.client(timeout=0.5))


@pytest.mark.parametrize("version, refused", [("6.0.16", True), ("6.2.0", False),
                                              ("7.0.15", False), ("5.0.14", True)])
def test_a_server_older_than_6_2_is_refused(version, refused):
    """The machine has one Redis version: the older ones as what INFO would say."""
    values = {"version": version, "role": "master", "cluster-enabled": "no",
              "appendonly": "yes", "appendfsync": "always", "save": "",
              "maxmemory": "0", "maxmemory-policy": "noeviction"}
    problems = named(judge(ServerSettings(values, {})))
    assert ("version" in problems) is refused
    if refused:
        assert f"Redis {version} is too old" in problems["version"]
        assert "needs Redis 6.2 or later" in problems["version"]


def test_the_documented_settings_are_the_checked_ones_and_pass(server):
    table = first_cells(sections(DOCS / "operations.md")[GUIDE_SECTION])
    assert sorted(table) == sorted(s for s in SOURCES if s != "save")
    assert documented_conf()["appendonly"] == "yes"
    assert settings_problems(server("documented").client()) == []
