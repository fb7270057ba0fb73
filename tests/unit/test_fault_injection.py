"""``RECOVERY_FAULT_AT`` (engine.fault_injection): unset, reaching a point does nothing;
armed, the N-th time a process reaches its point it SIGKILLs its whole tree, children in
process groups of their own included (as ``recovery serve`` starts them), itself last."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from engine.fault_injection import ENV, parse
from tests.support.paths import ROOT

# Starts a child in a process group of its own, says its pid, then reaches "after_journal"
# three times, saying each time it came back.
SCRIPT = textwrap.dedent("""
    import subprocess, sys
    from engine import fault_injection
    child = subprocess.Popen(["sleep", "60"], process_group=0, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    print("child", child.pid, flush=True)
    for n in range(1, 4):
        fault_injection.reached("after_journal")
        print("back", n, flush=True)
""")


def run(fault: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "RECOVERY_SERVICE_PID")}
    env["PYTHONPATH"] = str(ROOT)
    if fault is not None:
        env[ENV] = fault
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=60)


def child_gone(done: subprocess.CompletedProcess) -> bool:
    pid = int(done.stdout.split()[1])
    try:
        psutil.Process(pid).wait(10)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


@pytest.mark.parametrize("fault", [None, "", "in_request", "in_playbook:1"])
def test_unarmed_or_armed_elsewhere_it_does_nothing(fault):
    done = run(fault)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == ["back 1", "back 2", "back 3"]
    os.kill(int(done.stdout.split()[1]), 9)          # the child is still there: ours to end


def test_the_nth_time_the_point_is_reached_the_whole_tree_is_killed():
    done = run("after_journal:2")
    assert done.returncode == -9, (done.stdout, done.stderr)
    assert done.stdout.splitlines()[1:] == ["back 1"]
    assert child_gone(done)                          # its own process group: killed too


@pytest.mark.parametrize("text", ["nowhere", "in_request:0", "in_request:x", "IN_REQUEST"])
def test_a_value_that_names_no_point_is_refused(text):
    with pytest.raises(ValueError, match=ENV):
        parse(text)


def test_a_count_says_which_time():
    assert parse("in_playbook") == ("in_playbook", 1)
    assert parse("after_journal:5") == ("after_journal", 5)
    assert parse(None) is None and parse("") is None
