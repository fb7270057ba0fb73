"""Given this alert, that runbook: priority first, then file name; never our own alerts."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine.alerts.routing import match_runbook, matching_runbooks, runbook_matches
from engine.runbooks.loader import load_runbooks
from engine.runbooks.matchers import parse_matcher
from engine.runbooks.model import Matcher, Priority, Runbook
from tests.support.paths import ROOT

RUNBOOKS_DIR = ROOT / "runbooks"


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
        ({"alertname": "RedisOutOfMemory"}, "redis", "memory_pressure", "restart_service"),
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


# -- overlaps `recovery validate` can prove ------------------------------------------------


def overlap_pairs(*books: Runbook) -> list[tuple[str, str, str]]:
    from engine.runbooks.overlaps import overlaps

    return [(o.covered.name, o.by.name, o.winner.name) for o in overlaps(books)]


def test_identical_groups_of_equal_priority_overlap_once() -> None:
    a = runbook("a", "a.yml", Priority.HIGH, 'alertname=~"Svc(Down|Slow)"',
                component_label=False)
    b = runbook("b", "b.yml", Priority.HIGH, 'alertname=~"Svc(Down|Slow)"',
                component_label=False)
    assert overlap_pairs(b, a) == [("a", "b", "a")]


def test_a_group_contained_in_another_overlaps() -> None:
    from engine.runbooks.overlaps import overlaps

    general = runbook("z-general", "z.yml", Priority.HIGH, 'alertname=~"Redis.*"')
    # more matchers, and an equality that implies the other's regex
    specific = runbook("a-specific", "a.yml", Priority.HIGH, 'alertname="RedisDown"',
                       'instance="cache-1"')
    [found] = overlaps([general, specific])
    assert (found.covered, found.by, found.winner) == (specific, general, specific)
    assert found.example == {"alertname": "RedisDown", "instance": "cache-1"}
    assert "the file name decides (a.yml sorts before z.yml)" in found.describe()
    # one matcher more (severity!="info") is a subset of the alerts: covered as well
    wider = runbook("b-wider", "b.yml", Priority.HIGH, 'alertname=~"Redis.*"',
                    component_label=False)
    narrower = runbook("c-narrower", "c.yml", Priority.HIGH, 'alertname=~"Redis.*"',
                       'severity!="info"', component_label=False)
    assert overlap_pairs(wider, narrower) == [("c-narrower", "b-wider", "b-wider")]


def test_a_lower_priority_group_covered_by_a_higher_one_never_wins() -> None:
    generic = runbook("generic", "a.yml", Priority.CRITICAL, 'alertname=~".*Down"',
                      component_label=False)
    specific = runbook("redis", "z.yml", Priority.WARNING, 'alertname="RedisDown"',
                       component_label=False)
    assert overlap_pairs(generic, specific) == [("redis", "generic", "generic")]
    # the other way round is an override, on purpose: nothing to say
    generic = runbook("generic", "a.yml", Priority.WARNING, 'alertname=~".*Down"',
                      component_label=False)
    specific = runbook("redis", "z.yml", Priority.CRITICAL, 'alertname="RedisDown"',
                       component_label=False)
    assert overlap_pairs(generic, specific) == []


@pytest.mark.parametrize(("one", "other"), [
    (['instance="cache-1"'], ['instance="cache-2"']),                 # disjoint values
    (['alertname=~"Redis.*"'], ['alertname=~"Redis.*"', 'alertname="HostDown"']),  # empty
    (['alertname="A"', 'alertname="B"'], ['alertname="A"', 'alertname="B"']),     # empty
    (['alertname=~"Redis.*"'], ['instance="cache-1"']),                # partial, not covered
    (['alertname=~"Redis.*"'], ['alertname=~"Redis(Down|Up)"']),       # not provable here
])
def test_nothing_is_reported_without_proof(one: list[str], other: list[str]) -> None:
    a = runbook("a", "a.yml", Priority.HIGH, *one, component_label=False)
    b = runbook("b", "b.yml", Priority.HIGH, *other, component_label=False)
    assert overlap_pairs(a, b) == []


def test_the_shipped_runbooks_do_not_overlap(shipped: list[Runbook]) -> None:
    from engine.runbooks.overlaps import overlaps

    assert overlaps(shipped) == []
