"""Runbooks load into the typed model, or fail with file, line and reason."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from engine.fleet_limits import FleetLimits
from engine.runbooks.loader import RunbookError, check_runbooks, load_runbook, load_runbooks
from engine.runbooks.model import Matcher, Mode, Priority, Runbook, Verify, fleet_limits
from tests.support.paths import ROOT

RUNBOOKS_DIR = ROOT / "runbooks"
ACTIONS = {
    "redis.reconnect", "redis.flush_corrupted", "redis.sample_keys_readable", "redis.ping",
    "chromadb.query_retry", "chromadb.collection_reload", "chromadb.index_rebuild",
    "openwebui.token_refresh", "openwebui.model_failover",
    "openwebui.graceful_degradation", "system.memory_gc",
    "system.file_handle_cleanup", "system.health", "system.file_handles",
    "system.process_running", "chromadb.collection_check", "openwebui.session_valid",
    "openwebui.default_model_answers",
}
PLAYBOOKS = {"restart_service.yml", "snapshot_rollback.yml", "disk_cleanup.yml",
             "process_restart.yml"}


def write(directory: Path, text: str, name: str = "bad.yml") -> Path:
    """Write a runbook; line 1 is the first line after the opening triple quote."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_error(path: Path, **kwargs: object) -> RunbookError:
    with pytest.raises(RunbookError) as caught:
        load_runbook(path, **kwargs)  # type: ignore[arg-type]
    return caught.value


@pytest.fixture
def playbooks(tmp_path: Path) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    for name in PLAYBOOKS:
        (folder / name).write_text("- hosts: all\n  tasks: []\n")
    return folder


# --- the shipped runbooks -------------------------------------------------------------

def test_every_shipped_runbook_loads_with_known_actions_and_playbooks(playbooks: Path) -> None:
    books = load_runbooks(RUNBOOKS_DIR, known_actions=ACTIONS, playbooks_dir=playbooks)
    assert [b.name for b in books] == ["chromadb", "openwebui", "redis", "system"]
    for book in books:
        assert book.sha256 == hashlib.sha256(Path(book.path).read_bytes()).hexdigest()
        assert book.verify is not None and book.verify.action in ACTIONS
        assert book.match[-1] == (Matcher("component", "=", book.component),)
        for strategy in book.strategies:
            assert (strategy.action in ACTIONS) != (strategy.playbook in PLAYBOOKS)
            assert strategy.line > 0


def test_shipped_runbooks_agree_with_the_real_registry_and_playbooks() -> None:
    from engine.actions.registry import default_registry

    names = default_registry().names()
    books = load_runbooks(RUNBOOKS_DIR, known_actions=names,
                          playbooks_dir=RUNBOOKS_DIR.parent / "playbooks")
    assert len(books) == 4


def test_shipped_runbooks_use_every_named_action_and_playbook() -> None:
    books = load_runbooks(RUNBOOKS_DIR)
    used = {s.action or s.playbook for b in books for s in b.strategies}
    used |= {v.action for b in books for v in [b.verify, *(s.verify for s in b.strategies)] if v}
    assert used == ACTIONS | PLAYBOOKS


def test_approvals_follow_the_design_table() -> None:
    approvals = {b.name: [s.name for s in b.strategies if s.approval]
                 for b in load_runbooks(RUNBOOKS_DIR)}
    assert approvals == {
        "redis": ["flush_corrupted", "restart_service"],
        "chromadb": ["restart_service", "snapshot_rollback"],
        "openwebui": ["restart_service"],
        "system": ["process_restart"],
    }


def test_redis_runbook_means_what_the_design_says() -> None:
    redis = load_runbook(RUNBOOKS_DIR / "redis.yml")
    assert (redis.name, redis.component, redis.priority, redis.mode) == (
        "redis", "redis", Priority.CRITICAL, Mode.AUTO)
    assert redis.target == "{{ labels.instance }}"
    assert [s.name for s in redis.strategies] == ["reconnect", "flush_corrupted",
                                                  "restart_service"]
    reconnect, flush, restart = redis.strategies
    assert reconnect.when == ("connection_timeout", "connection_refused")
    assert flush.params == {"match": "cache:*", "max_keys": 10000}
    assert flush.when == ("corruption",) and flush.on_reject == "next"
    assert restart.playbook == "restart_service.yml" and restart.extravars == {
        "service_default": "redis"}
    assert restart.timeout == 300.0 and restart.when == ()
    assert redis.verify == Verify("redis.ping", {}, 2.0, 1.0, 60.0, 5.0)
    # the override replaces the action, keeps the runbook's timing
    assert redis.verify_for(flush) == Verify(
        "redis.sample_keys_readable", {"match": "cache:*", "require_ttl": True}, 2.0, 1.0,
        60.0, 5.0)
    assert redis.verify_for(flush).params["match"] == flush.params["match"]
    assert redis.verify_for(reconnect) == redis.verify
    assert (redis.cooldown.max_attempts, redis.cooldown.window,
            redis.cooldown.after_failure) == (3, 3600.0, 300.0)
    assert redis.degraded_mode is not None and redis.degraded_mode.name == "redis_unavailable"
    assert redis.degraded_mode.when == "exhausted"
    assert redis.approval_timeout == 3600.0
    assert redis.failure_types["RedisDown"] == "connection_refused"
    assert redis.failure_types["RedisRejectedConnections"] == "connection_refused"
    assert redis.failure_types["RedisOutOfMemory"] == "memory_pressure"
    assert [s.name for _, s in redis.strategies_for("corruption")] == [
        "flush_corrupted", "restart_service"]


def test_chromadb_rebuild_then_rollback_last() -> None:
    chroma = load_runbook(RUNBOOKS_DIR / "chromadb.yml")
    steps = [(s.name, s.action or s.playbook) for _, s in chroma.strategies_for("index_corruption")]
    assert steps == [
        ("index_rebuild", "chromadb.index_rebuild"),
        ("snapshot_rollback", "snapshot_rollback.yml"),
    ]
    assert chroma.degraded_mode is not None and chroma.degraded_mode.name == "chromadb_unavailable"


def test_openwebui_degrades_last_and_switches_the_mode_at_first_failure() -> None:
    webui = load_runbook(RUNBOOKS_DIR / "openwebui.yml")
    assert webui.strategies[-1].name == "graceful_degradation"
    assert webui.strategies[-1].degrades and webui.strategies[-1].when == ()
    assert [s.name for s in webui.strategies if s.degrades] == ["graceful_degradation"]
    assert webui.degraded_mode is not None
    assert (webui.degraded_mode.name, webui.degraded_mode.when) == ("openwebui_unavailable",
                                                                    "failing")


def test_system_failure_types_pick_one_strategy_each() -> None:
    system = load_runbook(RUNBOOKS_DIR / "system.yml")
    assert system.failure_types["HostOutOfDiskSpace"] == "disk_full"
    assert system.failure_types["HostOutOfMemory"] == "memory_pressure"
    picks = {ft: [s.name for _, s in system.strategies_for(ft)]
             for ft in ("disk_full", "memory_pressure", "file_handles_exhausted",
                        "process_hung", "process_down")}
    assert picks == {
        "disk_full": ["disk_cleanup"],
        "memory_pressure": ["memory_gc"],
        "file_handles_exhausted": ["file_handle_cleanup"],
        "process_hung": ["process_restart"],
        "process_down": ["process_restart"],
    }


# --- defaults and the model -----------------------------------------------------------

def test_minimal_runbook_gets_the_documented_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: cache
        strategies:
          - name: poke
            action: cache.poke
        verify: {action: cache.ping}
    """, "cache.yml")
    book = load_runbook(path)
    assert book == Runbook(
        name="cache", component="cache", path=str(path),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        match=((Matcher("component", "=", "cache"),),),
        strategies=book.strategies,
        verify=Verify("cache.ping"),
    )
    assert book.priority is Priority.WARNING and book.mode is Mode.AUTO
    assert book.approval_timeout == 3600.0
    # verify: only an action is required; the timing defaults are documented
    assert book.verify == Verify("cache.ping", {}, 0.0, 1.0, 60.0, 0.0)
    poke = book.strategies[0]
    assert (poke.approval, poke.on_reject, poke.timeout, poke.line) == (False, "stop", 300.0, 3)
    assert poke.verify is None and book.verify_for(poke) == book.verify


def test_match_groups_component_override_and_approval_spellings(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: cache-east
        component: cache
        priority: high
        mode: observe
        match:
          - alertname=~"Cache.*"
          - region="east"
        match_component_label: true
        approval_timeout: 90m
        strategies:
          - {name: a, action: cache.a, approval: true}
          - {name: b, action: cache.b, approval: required}
          - {name: c, action: cache.c, approval: none}
          - {name: d, action: cache.d, approval: false}
        verify: {action: cache.ping}
    """)
    book = load_runbook(path)
    assert book.component == "cache" and book.priority is Priority.HIGH
    assert book.mode is Mode.OBSERVE and book.approval_timeout == 5400.0
    assert book.match == (
        (Matcher("alertname", "=~", "Cache.*"), Matcher("region", "=", "east")),
        (Matcher("component", "=", "cache"),),
    )
    assert [s.approval for s in book.strategies] == [True, True, False, False]


def test_match_component_label_false_and_empty_match(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: inert
        match: []
        match_component_label: false
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """)
    assert load_runbook(path).match == ()


# --- bad runbooks: file, line and reason ----------------------------------------------

# Each case is wrong in one way only: those that get past YAML parsing end with a valid
# runbook-level verify, so a missing verify never pre-empts the reason under test.
BAD = {
    "yaml_syntax": ("""
        name: x
        strategies:
          - name: a
            action: x.a: b
    """, 4, "YAML syntax error"),
    "yaml_unclosed_flow": ("""
        name: x
        match: ["a=b"
        strategies: []
    """, 3, "YAML syntax error"),
    "duplicate_key": ("""
        name: x
        priority: high
        name: y
        strategies:
          - {name: a, action: x.a}
    """, 3, "duplicate key 'name' (first at line 1)"),
    "duplicate_nested_key": ("""
        name: x
        strategies:
          - name: a
            action: x.a
            timeout: 5s
            timeout: 6s
    """, 6, "duplicate key 'timeout'"),
    "boolean_key": ("""
        name: x
        on: true
        strategies:
          - {name: a, action: x.a}
    """, 2, "is not a string"),
    "unknown_top_key": ("""
        name: x
        strategies:
          - {name: a, action: x.a}
        retries: 3
        verify: {action: x.ok}
    """, 4, "runbook: unknown key 'retries' (allowed: name, component"),
    "unknown_strategy_key": ("""
        name: x
        strategies:
          - name: a
            action: x.a
            approve: required
        verify: {action: x.ok}
    """, 5, "strategies[0]: unknown key 'approve' (allowed: name, action, playbook"),
    "unknown_verify_key": ("""
        name: x
        strategies:
          - {name: a, action: x.a}
        verify:
          action: x.ok
          timeout: 5s
    """, 6, "verify: unknown key 'timeout'"),
    "wrong_type_priority": ("""
        name: x
        priority: urgent
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 2, "priority: 'urgent' is not one of"),
    "wrong_type_match": ("""
        name: x
        match: alertname="X"
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 2, "is not of type 'array'"),
    "wrong_type_max_attempts": ("""
        name: x
        strategies:
          - {name: a, action: x.a}
        cooldown:
          window: 1h
          max_attempts: "3"
        verify: {action: x.ok}
    """, 6, "cooldown.max_attempts"),
    "wrong_type_approval": ("""
        name: x
        strategies:
          - name: a
            action: x.a
            approval: maybe
        verify: {action: x.ok}
    """, 5, "strategies[0].approval"),
    "missing_name": ("""
        description: nameless
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 1, "'name' is a required property"),
    "missing_strategy_name": ("""
        name: x
        strategies:
          - {name: a, action: x.a}
          - action: x.b
            timeout: 5s
        verify: {action: x.ok}
    """, 4, "strategies[1]: 'name' is a required property"),
    "bad_regex": ("""
        name: x
        match:
          - severity="page"
          - alertname=~"(Redis)\\1"
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 4, "invalid regex"),
    "bad_matcher": ("""
        name: x
        match:
          - severity="page"
          - alertname~="Redis"
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 4, "match[1]: bad matcher format"),
    "bad_target_template": ("""
        name: x
        target: "{{ labels.instance "
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 2, "target: template syntax error"),
    "sandbox_escape_in_target": ("""
        name: x
        target: "{{ ''.__class__.__mro__ }}"
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 2, "not allowed in templates"),
    "bad_template_in_extravars": ("""
        name: x
        strategies:
          - name: a
            playbook: a.yml
            extravars:
              container: redis
              note: "{% if %}"
        verify: {action: x.ok}
    """, 7, "strategies[0].extravars.note: template syntax error"),
    "both_action_and_playbook": ("""
        name: x
        strategies:
          - name: a
            action: x.a
          - name: b
            action: x.b
            playbook: b.yml
        verify: {action: x.ok}
    """, 5, "has both `action` and `playbook`"),
    "neither_action_nor_playbook": ("""
        name: x
        strategies:
          - name: a
            when: [disk_full]
        verify: {action: x.ok}
    """, 3, "needs an `action` or a `playbook`"),
    "duplicate_strategy": ("""
        name: x
        strategies:
          - name: a
            action: x.a
          - name: b
            action: x.b
          - name: a
            action: x.c
        verify: {action: x.ok}
    """, 7, "duplicate strategy name 'a' (first at line 3)"),
    "playbook_traversal": ("""
        name: x
        strategies:
          - name: a
            playbook: ../x.yml
        verify: {action: x.ok}
    """, 4, "must be a file name inside playbooks/"),
    "playbook_subdir": ("""
        name: x
        strategies:
          - name: a
            playbook: sub/x.yml
        verify: {action: x.ok}
    """, 4, "must be a file name inside playbooks/"),
    "playbook_not_yaml": ("""
        name: x
        strategies:
          - name: a
            playbook: cleanup.sh
        verify: {action: x.ok}
    """, 4, "ending in .yml or .yaml"),
    "ansible_extravar": ("""
        name: x
        strategies:
          - name: a
            playbook: a.yml
            extravars:
              container: redis
              ansible_become_password: hunter2
        verify: {action: x.ok}
    """, 7, "extravars key 'ansible_become_password' is refused"),
    "connection_extravar": ("""
        name: x
        strategies:
          - name: a
            playbook: a.yml
            extravars:
              hosts: all
        verify: {action: x.ok}
    """, 6, "extravars key 'hosts' is refused"),
    "connection_extravar_any_case": ("""
        name: x
        strategies:
          - name: a
            playbook: a.yml
            extravars:
              Remote_User: root
        verify: {action: x.ok}
    """, 6, "extravars key 'Remote_User' is refused"),
    "extravars_on_action": ("""
        name: x
        strategies:
          - name: a
            action: x.a
            extravars: {container: redis}
        verify: {action: x.ok}
    """, 5, "`extravars` are for playbooks"),
    "bad_duration": ("""
        name: x
        strategies:
          - {name: a, action: x.a}
        verify:
          action: x.ok
          deadline: 5x
    """, 6, "verify.deadline: '5x' is not a duration"),
    "zero_interval": ("""
        name: x
        strategies:
          - {name: a, action: x.a}
        verify:
          action: x.ok
          interval: 0s
    """, 6, "verify.interval: must be more than 0"),
    "bad_strategy_timeout": ("""
        name: x
        strategies:
          - name: a
            action: x.a
            timeout: soon
        verify: {action: x.ok}
    """, 5, "strategies[0].timeout: 'soon' is not a duration"),
    "bad_cooldown_window": ("""
        name: x
        strategies:
          - {name: a, action: x.a}
        cooldown:
          window: -5
        verify: {action: x.ok}
    """, 5, "cooldown.window"),
    "boolean_duration": ("""
        name: x
        approval_timeout: yes
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 2, "approval_timeout"),
    "verify_without_action": ("""
        name: x
        strategies:
          - name: a
            action: x.a
            verify:
              deadline: 10s
    """, 5, "needs an `action`"),
    "stable_for_beyond_deadline": ("""
        name: x
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok, deadline: 10s, stable_for: 1m}
    """, 4, "stable_for (60s) is longer than the deadline (10s)"),
    "extravar_not_a_name": ("""
        name: x
        strategies:
          - name: a
            playbook: a.yml
            extravars:
              container: redis
              bad-name: 1
        verify: {action: x.ok}
    """, 7, "strategies[0].extravars.bad-name: 'bad-name' does not match"),
    "bad_failure_type": ("""
        name: x
        failure_types:
          RedisDown: connection_refused
          RedisSlow: Very Slow
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 4, "failure_types.RedisSlow: 'Very Slow' does not match"),
    "bad_when_item": ("""
        name: x
        strategies:
          - name: a
            action: x.a
            when:
              - disk_full
              - [nested]
        verify: {action: x.ok}
    """, 7, "strategies[0].when[1]: ['nested'] is not of type 'string'"),
    "templated_step_target": ("""
        name: x
        strategies:
          - name: a
            action: x.a
            target: "{{ labels.instance }}"
        verify: {action: x.ok}
    """, 5, "strategies[0].target: '{{ labels.instance }}' is a template"),
    "blank_step_target": ("""
        name: x
        strategies:
          - name: a
            action: x.a
            target: "redis :dc1"
        verify: {action: x.ok}
    """, 5, "strategies[0].target: 'redis :dc1' is not a host pattern"),
    "step_target_not_a_string": ("""
        name: x
        strategies:
          - name: a
            action: x.a
            target: [redis]
        verify: {action: x.ok}
    """, 5, "strategies[0].target: ['redis'] is not of type 'string'"),
    "serial_zero": ("""
        name: x
        strategies:
          - name: a
            playbook: a.yml
            serial: 0
        verify: {action: x.ok}
    """, 5, "strategies[0].serial: 0 hosts: a batch has at least 1 host"),
    "serial_bad_percentage_in_list": ("""
        name: x
        strategies:
          - name: a
            playbook: a.yml
            serial:
              - 1
              - 150%
        verify: {action: x.ok}
    """, 7, "strategies[0].serial[1]: '150%' must be from 1% to 100%"),
    "serial_words": ("""
        name: x
        strategies:
          - name: a
            playbook: a.yml
            serial: half
        verify: {action: x.ok}
    """, 5, "strategies[0].serial: 'half' is not a percentage"),
    "serial_empty_list": ("""
        name: x
        strategies:
          - name: a
            playbook: a.yml
            serial: []
        verify: {action: x.ok}
    """, 5, "strategies[0].serial: [] should be non-empty"),
    "max_fail_percentage_over_100": ("""
        name: x
        strategies:
          - name: a
            playbook: a.yml
            max_fail_percentage: 120
        verify: {action: x.ok}
    """, 5, "strategies[0].max_fail_percentage: 120 is greater than the maximum of 100"),
    "fleet_share_not_a_share": ("""
        name: x
        fleet:
          max_in_flight: 2
          group_share: 30
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 4, "fleet.group_share: 30 must be more than 0 and at most 1"),
    "fleet_unknown_key": ("""
        name: x
        fleet:
          in_flight: 2
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 3, "fleet: unknown key 'in_flight'"),
    "fleet_bad_window": ("""
        name: x
        fleet: {group_window: 0}
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, 2, "fleet.group_window: 0 must be more than 0"),
    "empty_file": ("\n", 1, "the file is empty"),
    "root_is_a_list": ("""
        - name: x
    """, 1, "is not of type 'object'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_runbook_is_rejected_with_file_line_and_reason(tmp_path: Path, case: str) -> None:
    text, line, reason = BAD[case]
    path = write(tmp_path, text)
    error = load_error(path)
    assert error.file == str(path)
    assert error.line == line, str(error)
    assert reason in error.reason, str(error)
    assert str(error) == f"{path}:{line}: {error.reason}"


def test_a_step_may_name_a_group_target(tmp_path: Path) -> None:
    book = load_runbook(write(tmp_path, """
        name: x
        strategies:
          - name: one
            action: x.a
          - name: all_of_them
            action: x.a
            target: "redis:&dc1"
        verify: {action: x.ok}
    """))
    assert [s.target for s in book.strategies] == [None, "redis:&dc1"]


def test_a_step_says_its_batches_and_its_failure_threshold(tmp_path: Path) -> None:
    book = load_runbook(write(tmp_path, """
        name: x
        strategies:
          - name: one_batch
            playbook: a.yml
          - name: canary
            playbook: a.yml
            serial: [1, 25 %, 100%]
            max_fail_percentage: 10
          - name: halves
            playbook: a.yml
            serial: 50%
          - name: pairs
            playbook: a.yml
            serial: 2
        verify: {action: x.ok}
    """))
    assert [(s.serial, s.max_fail_percentage) for s in book.strategies] == [
        (None, 0.0), ((1, "25%", "100%"), 10.0), (("50%",), 0.0), ((2,), 0.0)]


def test_a_runbook_overrides_the_fleet_limits_it_names(tmp_path: Path) -> None:
    book = load_runbook(write(tmp_path, """
        name: x
        fleet: {max_in_flight: 2, group_share: 50%, group_window: 30m}
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """))
    assert book.fleet == {"max_in_flight": 2, "group_share": 0.5, "group_window": 1800.0}
    config = FleetLimits(forks=7)
    assert fleet_limits(config, book) == FleetLimits(
        forks=7, coalesce_window=1.0, max_in_flight=2, group_share=0.5, group_window=1800.0)
    plain = load_runbook(write(tmp_path, """
        name: y
        strategies:
          - {name: a, action: x.a}
        verify: {action: x.ok}
    """, "plain.yml"))
    assert plain.fleet == {} and fleet_limits(config, plain) == config


# --- every step is checked: a verify of its own, the runbook's, or it degrades ---------

def test_a_strategy_nobody_verifies_is_rejected_at_its_line(tmp_path: Path) -> None:
    # Exit 0 means done *and verified*: no verify anywhere is not a runbook.
    path = write(tmp_path, """
        name: x
        strategies:
          - name: checked
            action: x.a
            verify: {action: x.ok}
          - name: unchecked
            action: x.b
    """)
    error = load_error(path)
    assert (error.file, error.line) == (str(path), 6)
    assert error.reason.startswith("strategy 'unchecked' has no verify, and the runbook none")
    assert "no verify" in str(error) and str(error).startswith(f"{path}:6: ")

    alone = write(tmp_path, """
        name: x
        strategies:
          - {name: a, action: x.a}
    """, "alone.yml")
    error = load_error(alone)
    assert error.line == 3 and "strategy 'a' has no verify" in error.reason


def test_a_strategy_level_verify_alone_is_enough(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: x
        strategies:
          - name: a
            action: redis.reconnect
            verify: {action: redis.ping, interval: 0.5s}
          - name: b
            playbook: restart_container.yml
            verify: {action: redis.sample_keys_readable}
    """)
    book = load_runbook(path, known_actions=ACTIONS)
    assert book.verify is None
    a, b = book.strategies
    assert book.verify_for(a) == Verify("redis.ping", interval=0.5)
    assert book.verify_for(b) == Verify("redis.sample_keys_readable")


def test_a_degrading_strategy_needs_no_verify(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: x
        strategies:
          - name: reconnect
            action: redis.reconnect
            verify: {action: redis.ping}
          - name: degrade
            action: openwebui.graceful_degradation
            degrades: true
    """)
    book = load_runbook(path, known_actions=ACTIONS)
    degrade = book.strategies[1]
    assert degrade.degrades and book.verify_for(degrade) is None
    # ... but `degrades: false` is no exemption
    path.write_text(path.read_text().replace("degrades: true", "degrades: false"))
    error = load_error(path, known_actions=ACTIONS)
    assert error.line == 6 and "strategy 'degrade' has no verify" in error.reason


def test_unknown_action_is_an_error_when_actions_are_known(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: x
        strategies:
          - name: a
            action: redis.reconnect
          - name: b
            action: redis.reboot
        verify: {action: redis.ping}
    """)
    load_runbook(path)   # without the registry it is only a name
    error = load_error(path, known_actions=ACTIONS)
    assert (error.line, error.reason) == (6, "unknown action 'redis.reboot'")


def test_unknown_verify_action_is_an_error_when_actions_are_known(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: x
        strategies:
          - {name: a, action: redis.reconnect}
        verify:
          action: redis.pong
    """)
    error = load_error(path, known_actions=ACTIONS)
    assert (error.line, error.reason) == (5, "unknown action 'redis.pong'")


def test_missing_playbook_is_an_error_when_the_folder_is_known(
    tmp_path: Path, playbooks: Path
) -> None:
    path = write(tmp_path, """
        name: x
        strategies:
          - name: a
            playbook: disk_cleanup.yml
          - name: b
            playbook: nowhere.yml
        verify: {action: system.health}
    """)
    load_runbook(path)
    error = load_error(path, playbooks_dir=playbooks)
    assert error.line == 6 and "'nowhere.yml' not found" in error.reason


def test_playbook_symlink_out_of_the_folder_is_refused(tmp_path: Path, playbooks: Path) -> None:
    outside = tmp_path / "evil.yml"
    outside.write_text("- hosts: all\n")
    (playbooks / "evil.yml").symlink_to(outside)
    path = write(tmp_path, """
        name: x
        strategies:
          - name: a
            playbook: evil.yml
        verify: {action: system.health}
    """)
    error = load_error(path, playbooks_dir=playbooks)
    assert error.line == 4 and "outside" in error.reason


GOOD = """
    name: {name}
    strategies:
      - {{name: a, action: x.a}}
    verify: {{action: x.ok}}
"""


def test_runbook_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = write(elsewhere, GOOD.format(name="evil"), "evil.yml")
    link = runbooks / "evil.yml"
    link.symlink_to(target)
    write(runbooks, GOOD.format(name="fine"), "fine.yml")
    for error in (load_error(link),
                  pytest.raises(RunbookError, load_runbooks, runbooks).value):
        assert (error.file, error.line) == (str(link), 1)
        assert "outside the runbooks directory" in error.reason
    # a symlink that stays inside the folder is fine
    link.unlink()
    (runbooks / ".store").mkdir()
    (runbooks / "fine.yml").rename(runbooks / ".store" / "fine.yml")
    (runbooks / "fine.yml").symlink_to(Path(".store") / "fine.yml")
    assert [b.name for b in load_runbooks(runbooks)] == ["fine"]


def test_runbook_outside_the_given_runbooks_dir_is_refused(tmp_path: Path) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    path = write(tmp_path, GOOD.format(name="x"), "x.yml")
    error = load_error(path, runbooks_dir=runbooks)
    assert error.line == 1 and "outside the runbooks directory" in error.reason


def test_runbooks_load_sorted_by_file_name_and_names_are_unique(tmp_path: Path) -> None:
    for file, name in [("20-b.yml", "bravo"), ("10-a.yaml", "alpha"), ("30-c.yml", "charlie")]:
        write(tmp_path, GOOD.format(name=name), file)
    (tmp_path / "notes.txt").write_text("not a runbook")
    write(tmp_path, "broken: [", ".hidden.yml")
    assert [b.name for b in load_runbooks(tmp_path)] == ["alpha", "bravo", "charlie"]

    clash = write(tmp_path, "# the same name again\n" + textwrap.dedent(GOOD.format(
        name="alpha")).lstrip("\n"), "40-d.yml")
    with pytest.raises(RunbookError) as caught:
        load_runbooks(tmp_path)
    assert (caught.value.file, caught.value.line) == (str(clash), 2)
    assert "already used by 10-a.yaml" in caught.value.reason


def test_check_runbooks_reports_every_bad_file(tmp_path: Path) -> None:
    write(tmp_path, GOOD.format(name="good"), "a.yml")
    write(tmp_path, "name: b\nstrategies: [\n", "b.yml")
    write(tmp_path, "name: c\nstrategies: []\n", "c.yml")
    books, errors = check_runbooks(tmp_path)
    assert [b.name for b in books] == ["good"]
    assert [(Path(e.file).name, e.line) for e in errors] == [("b.yml", 3), ("c.yml", 2)]
    assert "should be non-empty" in errors[1].reason


def test_non_utf8_file_points_at_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_bytes(b"name: x\ndescription: caf\xe9\nstrategies: []\n")
    error = load_error(path)
    assert (error.line, error.reason) == (2, "file is not valid UTF-8")


def test_missing_file(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nope.yml")
    assert (error.line, error.reason) == (1, "no such file")


def test_sha256_changes_with_the_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.format(name="x"), "x.yml")
    first = load_runbook(path).sha256
    path.write_text(path.read_text() + "# a comment changes the hash\n")
    second = load_runbook(path).sha256
    assert first != second
    assert second == hashlib.sha256(path.read_bytes()).hexdigest()


def test_dates_stay_strings_and_merge_keys_work(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: x
        description: 2024-01-01
        strategies:
          - &base {name: a, action: x.a, timeout: 10s}
          - <<: *base
            name: b
        verify: {action: x.ok}
    """)
    book = load_runbook(path)
    assert book.description == "2024-01-01"
    assert [(s.name, s.timeout) for s in book.strategies] == [("a", 10.0), ("b", 10.0)]
