"""System strategies: from the step starting to a verified recovery, on real processes.

For each strategy of the shipped system runbook, N times (20; 3 with ``--quick``): the
failure is set up off the clock, then the clock runs from ``open_incident`` (manual
trigger, localhost) through ``advance`` (gates, the step, its verify) until the incident
is ``recovered``. The runbook and playbooks are the shipped ones; only the verify
timings are shortened (initial_delay 0, interval 0.2 s, stable_for 0 instead of the
shipped 5-15 s, which would be most of each figure) and the cooldown widened.

- disk_cleanup: an 8 MiB tmpfs (needs root) at 84% with old temp files and logs;
  the playbook (ansible-runner) deletes the largest until under 50%; verify by
  ``system.health``.
- memory_gc: this process registered as ``system`` holds 100 MiB of garbage in
  reference cycles (gc disabled); ``gc.collect()``; verify by ``system.health``.
- file_handle_cleanup: a child with RLIMIT_NOFILE 64/4096 holding 56 files; its soft
  limit raised to 4096; verify by ``system.file_handles``.
- process_restart: a program under a real supervisord; the step parks for approval
  (off the clock); the clock runs from the approval to the program verified running
  with a new pid (playbook + ``system.process_running``).

    .venv/bin/python bench/actions_system.py [--quick] [-n 20]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: the helpers live in tests/
    sys.path.insert(0, str(ROOT))

from engine.config import load_config  # noqa: E402
from engine.context import EngineContext  # noqa: E402
from engine.lifecycle import IncidentState  # noqa: E402
from engine.orchestration.approvals import approve, claim  # noqa: E402
from engine.orchestration.attempt import advance  # noqa: E402
from engine.orchestration.triggers import TriggerRequest, open_incident  # noqa: E402
from tests.support.supervisor import Program, Supervisor  # noqa: E402
from tests.support.system_env import MIB, install_system_runbook  # noqa: E402

HOG = """
import os, resource, time
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096))
held = [open(os.devnull) for _ in range(56)]
print('ready', flush=True)
time.sleep(300)
"""


def context(root: Path, host_vars: dict) -> EngineContext:
    """A fresh config folder and store with the shipped runbook (fast verify)."""
    for folder in ("runbooks", "playbooks", "inventory"):
        (root / folder).mkdir(parents=True)
    install_system_runbook(root, host_vars, stable_for="0s")
    (root / "recovery.yml").write_text("home: var\nrunbooks: runbooks\nplaybooks: playbooks\n"
                                       "inventory: inventory\n")
    ctx = EngineContext(load_config(root / "recovery.yml", environ={}))
    ctx.runbooks  # noqa: B018 - load and parse outside the clock
    ctx.inventory.get("localhost")
    return ctx


def trigger(ctx: EngineContext, failure_type: str):
    opened = open_incident(ctx, TriggerRequest(runbook="system", target="localhost",
                                               failure_type=failure_type, trigger="manual",
                                               requested_by="bench"))
    assert opened.claimed and opened.incident is not None, opened.refusal
    return opened.incident


def recovered(ctx: EngineContext, failure_type: str) -> float:
    t0 = time.perf_counter()
    incident = advance(ctx, trigger(ctx, failure_type).id)
    took = time.perf_counter() - t0
    assert incident.state == IncidentState.RECOVERED, incident.reason
    return took


# -- scenarios: each yields seconds per run ---------------------------------------------
def disk_cleanup(root: Path, n: int) -> list[float]:
    mount = root / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        ctx = context(root / "conf", {"cleanup_roots": [str(mount / "cache"), str(mount / "logs")],
                                      "cleanup_max_usage_percent": 50})
        old = time.time() - 30 * 86400
        times = []
        for _ in range(n):
            for name, size in (("cache/big.tmp", 2 * MIB), ("cache/mid.tmp", MIB),
                               ("logs/app.log.1", MIB // 2), ("logs/app.log.2", MIB // 4),
                               ("cache/new.tmp", 2 * MIB)):
                path = mount / name
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(b"x" * size)
                if "new" not in name:
                    os.utime(path, (old, old))
            times.append(recovered(ctx, "disk_full"))
        return times
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def memory_gc(root: Path, n: int) -> list[float]:
    ctx = context(root / "conf", {})
    ctx.resources.register("system", "this process")

    class Node:
        pass

    times = []
    gc.disable()
    try:
        for _ in range(n):
            for _ in range(100):
                a, b = Node(), Node()
                a.peer, b.peer, a.payload = b, a, b"x" * MIB
            del a, b
            times.append(recovered(ctx, "memory_pressure"))
    finally:
        gc.enable()
    return times


def file_handle_cleanup(root: Path, n: int) -> list[float]:
    ctx = context(root / "conf", {"fd_watch_processes": ["fd-hog"],
                                  "fd_raise_processes": ["fd-hog"]})
    times = []
    for _ in range(n):
        child = subprocess.Popen([sys.executable, "-c",
                                  "open('/proc/self/comm','w').write('fd-hog')\n" + HOG],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            times.append(recovered(ctx, "file_handles_exhausted"))
        finally:
            child.kill()
            child.wait(10)
    return times


def process_restart(root: Path, n: int) -> list[float]:
    sup = Supervisor(root / "supervisor", {
        "worker": Program([sys.executable, "-c", "import time; time.sleep(3600)"])}).start()
    try:
        ctx = context(root / "conf", {"program": "worker", "supervisor_config": str(sup.conf)})
        times = []
        for _ in range(n):
            before = sup.wait_running("worker")
            incident = advance(ctx, trigger(ctx, "process_down").id)   # parks: off the clock
            assert incident.state == IncidentState.REMEDIATING, incident.reason
            (waiting,) = ctx.store.list_approvals("pending")
            t0 = time.perf_counter()
            approve(ctx, waiting.run_id, by="bench")
            run = claim(ctx, waiting.run_id)
            incident = advance(ctx, incident.id, resume=run)
            took = time.perf_counter() - t0
            assert incident.state == IncidentState.RECOVERED, incident.reason
            assert sup.pid("worker") not in (None, before)
            times.append(took)
        return times
    finally:
        sup.stop()


SCENARIOS: dict[str, Callable[[Path, int], list[float]]] = {
    "disk_cleanup": disk_cleanup, "memory_gc": memory_gc,
    "file_handle_cleanup": file_handle_cleanup, "process_restart": process_restart}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per strategy")
    parser.add_argument("-n", type=int, default=20, help="runs per strategy (default 20)")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args()
    n = 3 if args.quick else args.n
    print(f"# system strategies: start to verified recovery, {n} runs each "
          f"({platform.python_version()}, {os.cpu_count()} cpus, load "
          f"{os.getloadavg()[0]:.1f})")
    print("| strategy | p50 | min | max |")
    print("|---|---|---|---|")
    for name, scenario in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        if name == "disk_cleanup" and os.geteuid() != 0:
            print(f"| {name} | skipped: mounting a tmpfs needs root | | |")
            continue
        root = Path(tempfile.mkdtemp(prefix=f"bench-system-{name}-"))
        try:
            times = scenario(root, n)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        ms = [t * 1000 for t in times]
        print(f"| {name} | {statistics.median(ms):.0f} ms | {min(ms):.0f} ms | "
              f"{max(ms):.0f} ms |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
