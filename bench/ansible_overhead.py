"""Engine overhead over a bare ``ansible-playbook`` run (target: < 10 %).

One local one-task playbook (``ansible.builtin.debug``, ``connection: local``) is run
N times each, interleaved so that load on the machine hits all three alike:

* bare:     ``ansible-playbook -i hosts.yml one.yml --limit localhost`` (subprocess,
            the venv's ansible-playbook, output discarded);
* executor: ``AnsibleExecutor.run`` (ansible-runner, fresh private data dir, extravars
            file, redacted event copies, artifacts);
* engine:   the whole manual recover path, ``open_incident`` + ``advance`` (gates, lock
            lease, run record, artifacts, the executor, the runbook's verify, the incident
            closed). A runbook must verify its steps, so the verify is included: a trivial
            python action (``bench.ok``) that passes on its first poll, a few ms.

A warm-up run of each is not counted. Everything lives in a temporary directory with
its own RECOVERY_HOME; the runbook's cooldown is opened wide so ten attempts on
localhost are allowed.

    .venv/bin/python bench/ansible_overhead.py [--quick] [-n 10] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
from engine.actions.registry import default_registry
from engine.artifacts import RunArtifacts
from engine.config import load_config
from engine.context import EngineContext
from engine.executors.ansible import ansible_playbook_binary
from engine.executors.private_dirs import default_tmp_root
from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration.attempt import advance
from engine.orchestration.triggers import TriggerRequest, open_incident
from engine.records import new_id

TARGET_PCT = 10.0

PLAYBOOK = """\
- name: One task
  hosts: all
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
"""

INVENTORY = """\
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""

RUNBOOK = """\
name: bench
component: bench
strategies:
  - name: one_task
    playbook: one.yml
cooldown: {max_attempts: 1000, window: 1h, after_failure: 1s}
# Included in the engine's time (a few ms): passes on the first poll, no initial delay.
verify: {action: bench.ok, interval: 0.05s}
"""


class Ok(Action):
    """The runbook's verify: a trivial python action, healthy at once."""

    name = "bench.ok"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(True, "ok")


def build(root: Path) -> EngineContext:
    for folder in ("runbooks", "playbooks", "inventory", "home"):
        (root / folder).mkdir()
    (root / "playbooks" / "one.yml").write_text(PLAYBOOK)
    (root / "inventory" / "hosts.yml").write_text(INVENTORY)
    (root / "runbooks" / "bench.yml").write_text(RUNBOOK)
    (root / "recovery.yml").write_text(
        "home: home\nrunbooks: runbooks\nplaybooks: playbooks\ninventory: inventory/hosts.yml\n")
    registry = default_registry()
    registry.register(Ok())
    return EngineContext(load_config(root / "recovery.yml", environ={}), registry=registry)


def run_bare(root: Path) -> None:
    # The same Ansible settings the executor uses (local temp on tmpfs where there is one,
    # no colour, no retry files), so the comparison measures the engine, not the settings.
    local_tmp = Path(tempfile.mkdtemp(dir=default_tmp_root()))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCAL_TEMP=str(local_tmp))
    try:
        subprocess.run(
            [ansible_playbook_binary(), "-i", str(root / "inventory" / "hosts.yml"),
             str(root / "playbooks" / "one.yml"), "--limit", "localhost"],
            cwd=root / "playbooks", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=True, timeout=120, env=env)
    finally:
        shutil.rmtree(local_tmp, ignore_errors=True)


def run_executor(ctx: EngineContext) -> None:
    artifacts = RunArtifacts(ctx.artifacts_dir, new_id("run"), ctx.redactor).create()
    result = ctx.ansible.run(artifacts=artifacts, playbook="one.yml", limit="localhost",
                             extravars={}, timeout=120)
    assert result.status == RunStatus.SUCCEEDED, result.reason


def run_engine(ctx: EngineContext) -> None:
    opened = open_incident(ctx, TriggerRequest(runbook="bench", target="localhost",
                                               trigger="manual", requested_by="bench"))
    assert opened.claimed, opened.refusal
    incident = advance(ctx, opened.incident.id)
    assert incident.state == IncidentState.RECOVERED, incident.reason


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 of each")
    parser.add_argument("-n", type=int, default=10, help="runs of each kind")
    parser.add_argument("--profile", action="store_true",
                        help="print cProfile's top entries for the engine runs")
    args = parser.parse_args()
    n = 2 if args.quick else args.n

    results: dict[str, list[float]] = {"bare": [], "executor": [], "engine": []}
    profiler = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory(prefix="bench-ansible-") as tmp:
        root = Path(tmp)
        ctx = build(root)
        kinds: dict[str, Callable[[], None]] = {
            "bare": lambda: run_bare(root),
            "executor": lambda: run_executor(ctx),
            "engine": lambda: run_engine(ctx),
        }
        for fn in kinds.values():  # warm-up: imports, inventory parse, page cache
            fn()
        for i in range(n):
            order = list(kinds) if i % 2 == 0 else list(reversed(kinds))
            for kind in order:
                if profiler and kind == "engine":
                    profiler.enable()
                results[kind].append(timed(kinds[kind]))
                if profiler and kind == "engine":
                    profiler.disable()
        ctx.store.close()

    bare_mean = statistics.fmean(results["bare"])
    bare_median = statistics.median(results["bare"])
    print(f"engine overhead over bare ansible-playbook: one local debug task, {n} runs each, "
          "interleaved")
    print(f"  machine: {os.cpu_count()} cpu, load average {os.getloadavg()[0]:.2f}")
    print(f"  {'kind':<9} {'mean':>8} {'median':>8} {'min':>8} {'max':>8} {'overhead':>9} "
          f"{'(median)':>9}   target < {TARGET_PCT:g} %")
    for kind, values in results.items():
        mean, median = statistics.fmean(values), statistics.median(values)
        over = (mean - bare_mean) / bare_mean * 100
        over_median = (median - bare_median) / bare_median * 100
        verdict = "" if kind == "bare" else ("MET" if over < TARGET_PCT else "MISSED")
        print(f"  {kind:<9} {mean * 1000:6.0f}ms {median * 1000:6.0f}ms "
              f"{min(values) * 1000:6.0f}ms {max(values) * 1000:6.0f}ms "
              f"{over:+8.1f}% {over_median:+8.1f}%   {verdict}")
    if profiler:
        for key in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(20)
            print(f"--- profile of the engine runs, by {key} ---")
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
