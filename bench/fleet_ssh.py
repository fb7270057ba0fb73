"""Test hosts over SSH: what a fleet costs, and a playbook over SSH against the same one
run locally.

* fleet:  start and stop of an N-host fleet (tests/support/fleet.py: a network namespace,
          a veth on a bridge and an sshd per host), a few times;
* play:   ``ansible-playbook disk_cleanup.yml`` (the shipped playbook, on an empty root
          of its own, threshold 0: every task runs, nothing to delete) by hand, on one
          host over SSH, on all N hosts over SSH in one run (forks = N), and on
          localhost (``ansible_connection: local``), interleaved so that load on the
          machine hits each alike. The first SSH run of each kind opens the connections
          that ControlPersist then shares, as a service's repeated runs would.

Needs root, ``ip`` and ``/usr/sbin/sshd`` (Debian openssh-server).

    .venv/bin/python bench/fleet_ssh.py [-n 5] [--hosts 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.executors.ansible import ansible_playbook_binary  # noqa: E402
from tests.support.fleet import Fleet  # noqa: E402

PLAYBOOK = ROOT / "playbooks" / "disk_cleanup.yml"


def timed(argv: list[str], env: dict[str, str]) -> float:
    began = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stdout[-2000:]}")
    return took


def line(kind: str, values: list[float]) -> str:
    return (f"  {kind:<16} {statistics.mean(values) * 1000:7.0f}ms "
            f"{statistics.median(values) * 1000:7.0f}ms {min(values) * 1000:7.0f}ms "
            f"{max(values) * 1000:7.0f}ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5, help="runs of each kind (default 5)")
    parser.add_argument("--hosts", type=int, default=4, help="fleet size (default 4)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        starts, stops = [], []
        for i in range(3):
            fleet = Fleet(Path(tmp) / f"f{i}", args.hosts).start()
            fleet.stop()
            assert not fleet.leftovers(), fleet.leftovers()
            starts.append(fleet.started_in or 0.0)
            stops.append(fleet.stopped_in or 0.0)
        print(f"fleet of {args.hosts} hosts (3 times)   mean  median     min     max")
        print(line("start", starts))
        print(line("stop", stops))

        fleet = Fleet(Path(tmp) / "play", args.hosts).start()
        try:
            clean = Path(tmp) / "clean"
            clean.mkdir()
            roots = {"cleanup_roots": [str(clean)], "cleanup_max_usage_percent": 0}
            inventory = fleet.write_inventory(
                Path(tmp) / "hosts.yml", groups={"fleet": [h.name for h in fleet]},
                host_vars={name: roots for name in ["localhost", *fleet.hosts]})
            binary = ansible_playbook_binary()
            env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0"}
            kinds = {
                "local": ["--limit", "localhost"],
                "ssh, 1 host": ["--limit", "h1"],
                f"ssh, {args.hosts} hosts": ["--limit", "fleet", "--forks", str(args.hosts)],
            }
            for extra in kinds.values():              # warm-up: connections, caches
                timed([binary, "-i", str(inventory), str(PLAYBOOK), *extra], env)
            times: dict[str, list[float]] = {kind: [] for kind in kinds}
            for _ in range(args.n):
                for kind, extra in kinds.items():
                    times[kind].append(timed([binary, "-i", str(inventory), str(PLAYBOOK),
                                              *extra], env))
        finally:
            fleet.stop()
        print(f"\ndisk_cleanup.yml by hand ({args.n} runs each)  mean  median     min     max")
        for kind, values in times.items():
            print(line(kind, values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
