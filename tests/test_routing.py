"""Given this alert, that runbook: priority first, then file name; never our own alerts."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine.matchers import parse_matcher
from engine.routing import match_runbook, matching_runbooks, runbook_matches
from engine.runbook import Matcher, Priority, Runbook
from engine.runbook_loader import load_runbooks

RUNBOOKS_DIR = Path(__file__).resolve().parent.parent / "runbooks"


def runbook(name: str, file: str, priority: Priority, *matchers: str,
            component_label: bool = True) -> Runbook:
    groups: list[tuple[Matcher, ...]] = []
    if matchers:
        groups.append(tuple(parse_matcher(m) for m in matchers))
    if component_label:
        groups.append((Matcher("component", "=", name),))
    return Runbook(name=name, component=name, path=f"/etc/recovery/runbooks/{file}",
                   sha256="0" * 64, priority=priority, match=tuple(groups),
                   match_component_label=component_label)


@pytest.fixture(scope="module")
def shipped() -> list[Runbook]:
    return load_runbooks(RUNBOOKS_DIR)


def test_highest_priority_wins_whatever_the_file_order() -> None:
    low = runbook("a-generic", "a.yml", Priority.WARNING, 'alertname=~".*Down"')
    high = runbook("z-redis", "z.yml", Priority.CRITICAL, 'alertname="RedisDown"')
    alert = {"alertname": "RedisDown"}
    assert match_runbook([low, high], alert) is high
    assert match_runbook([high, low], alert) is high
    assert matching_runbooks([low, high], alert) == [high, low]


def test_equal_priority_goes_by_file_name_deterministically() -> None:
    books = [runbook(f"rb{i}", f"{name}.yml", Priority.HIGH, 'alertname=~"Host.*"')
             for i, name in enumerate(["30-b", "10-c", "20-a", "05-z"])]
    expected = ["05-z.yml", "10-c.yml", "20-a.yml", "30-b.yml"]
    for seed in range(5):
        shuffled = books[:]
        random.Random(seed).shuffle(shuffled)
        order = [Path(rb.path).name for rb in matching_runbooks(shuffled, {"alertname": "HostX"})]
        assert order == expected


def test_no_match_gives_none() -> None:
    rb = runbook("redis", "redis.yml", Priority.CRITICAL, 'alertname=~"Redis.*"')
    assert match_runbook([rb], {"alertname": "HostOutOfMemory"}) is None
    assert matching_runbooks([rb], {"alertname": "HostOutOfMemory"}) == []


def test_own_alerts_never_match() -> None:
    rb = runbook("redis", "redis.yml", Priority.CRITICAL, 'alertname=~".*"')
    own = {"alertname": "RecoveryExhausted", "component": "redis", "source": "infra-recovery"}
    assert not runbook_matches(rb, own)
    assert match_runbook([rb], own) is None
    assert match_runbook([rb], {**own, "source": "prometheus"}) is rb


def test_component_label_is_an_alternative_group() -> None:
    rb = runbook("redis", "redis.yml", Priority.CRITICAL, 'alertname=~"Redis.*"',
                 'severity!="info"')
    assert runbook_matches(rb, {"alertname": "AppHealthCheck", "component": "redis"})
    # the alertname group fails on severity, but the component group still holds
    assert runbook_matches(rb, {"alertname": "RedisDown", "severity": "info",
                                "component": "redis"})
    assert not runbook_matches(rb, {"alertname": "RedisDown", "severity": "info"})
    no_label = runbook("redis", "redis.yml", Priority.CRITICAL, 'alertname=~"Redis.*"',
                       component_label=False)
    assert not runbook_matches(no_label, {"alertname": "AppHealthCheck", "component": "redis"})


def test_runbook_without_groups_matches_nothing() -> None:
    rb = runbook("inert", "inert.yml", Priority.CRITICAL, component_label=False)
    assert rb.match == ()
    assert not runbook_matches(rb, {"alertname": "RedisDown"})
    assert not runbook_matches(rb, {})


@pytest.mark.parametrize(
    ("labels", "runbook_name", "failure_type", "first_strategy"),
    [
        ({"alertname": "RedisDown", "severity": "critical"}, "redis", "connection_refused",
         "reconnect"),
        ({"alertname": "RedisOutOfMemory"}, "redis", "memory_pressure", "restart_container"),
        ({"alertname": "HostOutOfDiskSpace"}, "system", "disk_full", "disk_cleanup"),
        ({"alertname": "HostOutOfMemory"}, "system", "memory_pressure", "memory_gc"),
        ({"alertname": "HostSystemdServiceCrashed"}, "system", "process_down",
         "process_restart"),
        ({"alertname": "ChromaDBIndexCorrupted"}, "chromadb", "index_corruption",
         "index_rebuild"),
        ({"alertname": "OpenWebUITokenExpired"}, "openwebui", "auth_expired", "token_refresh"),
        ({"alertname": "Whatever", "component": "chromadb", "failure_type": "query_timeout"},
         "chromadb", "query_timeout", "query_retry"),
    ],
)
def test_shipped_runbooks_route_well_known_alerts(
    shipped: list[Runbook], labels: dict[str, str], runbook_name: str,
    failure_type: str, first_strategy: str,
) -> None:
    found = match_runbook(shipped, labels)
    assert found is not None and found.name == runbook_name
    assert found.failure_type_of(labels) == failure_type
    assert found.strategies_for(failure_type)[0][1].name == first_strategy


@pytest.mark.parametrize(
    "labels",
    [
        {"alertname": "RedisMissingBackup"},               # not something we can fix
        {"alertname": "RedisDown", "severity": "info"},    # filtered by severity!="info"
        {"alertname": "Redis"},                            # anchored: not a prefix match
        {"alertname": "HostOutOfDiskSpaceSoon"},           # anchored: not a prefix match
        {"alertname": "RecoveryExhausted", "component": "redis", "source": "infra-recovery"},
        {"alertname": "RedisDown", "source": "infra-recovery"},
    ],
)
def test_shipped_runbooks_leave_other_alerts_alone(
    shipped: list[Runbook], labels: dict[str, str]
) -> None:
    assert match_runbook(shipped, labels) is None
