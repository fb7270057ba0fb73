"""The system runbook, in this process: which strategy each failure type picks, each step
verified by its own check (on a fleet host, the playbook steps by their playbooks), and
what process_running refuses. Its actions against real processes and a real supervisord
are in tests/integration/test_actions_system_processes.py; disk_cleanup, which mounts a
tmpfs, in tests/integration/test_disk_cleanup.py."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from engine.actions.base import ActionContext
from engine.actions.registry import default_registry
from engine.cli import main
from engine.runbooks.loader import load_runbook
from tests.support.paths import ROOT
from tests.support.system_env import (
    install_system_runbook,
)


# -- recovery test: which strategy for which failure type --------------------------------
def test_recovery_test_names_the_strategy_for_each_failure_type(engine_env):
    install_system_runbook(engine_env.root, {})
    picks = {}
    for failure in ("disk_full", "memory_pressure", "file_handles_exhausted", "process_hung",
                    "process_down"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--config", str(engine_env.config_path), "test", "-c", "system",
                         "-f", failure, "--json"])
        assert code == 0
        plan = json.loads(out.getvalue())
        picks[failure] = (plan["first_step"], plan["would"])
    assert picks == {"disk_full": ("disk_cleanup", "allow"),
                     "memory_pressure": ("memory_gc", "allow"),
                     "file_handles_exhausted": ("file_handle_cleanup", "allow"),
                     "process_hung": ("process_restart", "park"),
                     "process_down": ("process_restart", "park")}


def test_the_shipped_runbook_verifies_each_step_with_its_own_check():
    book = load_runbook(ROOT / "runbooks" / "system.yml")
    verifies = {s.name: (book.verify_for(s).action, book.verify_for(s).params)
                for s in book.strategies}
    assert verifies == {"disk_cleanup": ("system.health", {"checks": ["disk"],
                                                           "remote": "playbook"}),
                        "memory_gc": ("system.health", {"checks": ["memory"]}),
                        "file_handle_cleanup": ("system.file_handles", {}),
                        "process_restart": ("system.process_running", {"remote": "playbook"})}


def test_on_a_fleet_host_the_playbook_steps_are_verified_by_their_playbooks():
    """psutil cannot see an SSH host of the fleet. The playbook steps' verify accepts the
    playbook's own check there (disk_cleanup.yml fails unless df is under the threshold
    after it; process_restart.yml unless the program has a new pid), so a cleanup or an
    approved restart that worked is not recorded failed. Nothing else passes blind: the
    runbook's verify (what a probe runs) and the local-only steps' verify still cannot
    run there."""
    book = load_runbook(ROOT / "runbooks" / "system.yml")
    registry = default_registry()
    host = {"ansible_host": "10.0.0.5", "cleanup_roots": ["/var/tmp"], "program": "web"}

    def check(spec):
        return registry.get(spec.action).run(ActionContext(
            component="system", target="web-1", params=dict(spec.params), host_vars=host))

    results = {s.name: check(book.verify_for(s)) for s in book.strategies}
    for name in ("disk_cleanup", "process_restart"):
        assert results[name].ok and not results[name].not_applicable, results[name].summary
        assert "web-1 is not this machine" in results[name].summary
        assert "playbook checked" in results[name].summary
    assert "disk use is under the threshold" in results["disk_cleanup"].summary
    assert "new pid" in results["process_restart"].summary
    for name in ("memory_gc", "file_handle_cleanup"):
        assert results[name].not_applicable and not results[name].ok
    probe = check(book.verify)
    assert probe.not_applicable and not probe.ok
    # `remote: playbook` never makes a memory check pass on another host
    memory = registry.get("system.health").run(ActionContext(
        component="system", target="web-1", host_vars=host,
        params={"checks": ["memory"], "remote": "playbook"}))
    assert memory.not_applicable and not memory.ok
    # threshold 0 ("every old match") is not checked by the playbook: not verified
    cleanup = next(s for s in book.strategies if s.name == "disk_cleanup")
    host["cleanup_max_usage_percent"] = 0
    zero = check(book.verify_for(cleanup))
    assert not zero.ok and "threshold is 0" in zero.summary


@pytest.mark.parametrize("program", ["workers:", "workers:*", "-c", "all", "a:b:c", "web\n"])
def test_process_running_refuses_a_whole_group_or_an_option(program):
    result = default_registry().get("system.process_running").run(ActionContext(
        component="system", target="localhost", host_vars={"program": program}))
    assert result.not_applicable and "no valid `program`" in result.summary


@pytest.mark.parametrize("action", ["system.health", "system.memory_gc",
                                    "system.file_handles", "system.file_handle_cleanup",
                                    "system.process_running"])
def test_another_hosts_processes_are_not_read_from_here(action):
    """psutil sees this machine: for a remote host each action says so and is skipped."""
    result = default_registry().get(action).run(ActionContext(
        component="system", target="web-1.example", host_vars={"program": "web"}))
    assert result.not_applicable and "web-1.example" in result.summary


# -- closables: what an embedding application registered ----------------------------------
def test_closables_close_only_the_idle_ones_and_say_why_the_others_stay(tmp_path):
    """Real files in this process: one idle by its check, one inside ``using``, one
    whose idle check raises (left open: a broken check is no licence to close), one
    used a moment ago. Check mode closes nothing; the run closes the idle one only and
    counts the descriptor it gave back."""
    from engine.actions.system.closables import Closables
    from engine.actions.system.file_handles import own_fds

    files = {n: open(tmp_path / n, "w") for n in ("idle", "busy", "broken", "recent")}
    closables = Closables()
    closables.register("idle", files["idle"], idle=lambda: True)
    closables.register("busy", files["busy"], idle=lambda: True)
    closables.register("broken", files["broken"], idle=lambda: 1 / 0)
    closables.register("recent", files["recent"], idle_after=600)
    try:
        with closables.using("busy") as held:
            assert held is files["busy"]
            planned = {c.name: c.describe() for c in closables.close_idle(False, own_fds)}
            assert not any(f.closed for f in files.values())
            done = {c.name: c.describe() for c in closables.close_idle(True, own_fds)}
        assert re.fullmatch(r"left recent open: used \d+s ago \(idle after 600s\)",
                            planned.pop("recent"))
        assert planned == {"idle": "would close idle (idle by its check)",
                           "busy": "left busy open: in use (1 inside using())",
                           "broken": "left broken open: its idle check raised "
                                     "ZeroDivisionError: division by zero"}
        assert done["idle"] == "closed idle (idle by its check; 1 fd(s) freed)"
        assert [n for n, f in files.items() if f.closed] == ["idle"]
        assert {n: d for n, d in done.items() if n not in ("idle", "recent")} == {
            n: d for n, d in planned.items() if n != "idle"}
    finally:
        for f in files.values():
            f.close()


def test_a_closable_needs_a_way_to_close_and_one_way_to_tell_it_is_idle():
    from engine.actions.system.closables import Closables

    closables = Closables()
    with pytest.raises(TypeError, match="no close given"):
        closables.register("thing", object())
    with pytest.raises(ValueError, match="idle or last_used, not both"):
        closables.register("both", io.StringIO(), idle=lambda: True, last_used=lambda: 0.0)
    assert closables.names() == []
