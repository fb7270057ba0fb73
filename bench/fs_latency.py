"""The file-system floor under bench/decision.py: what the audit record costs by itself.

Before a step starts, its run gets a directory in ansible-runner's layout: two mkdirs
(the run, job_events/), run.json and the first job event. This times exactly those four
operations, with no engine code, on the disk (the default RECOVERY_HOME) and on tmpfs,
so a decision-latency figure can be read against what the machine's disk allows.
Usage: .venv/bin/python bench/fs_latency.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


def measure(root: str, n: int) -> tuple[float, float]:
    base = tempfile.mkdtemp(dir=root)
    lat = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            run = os.path.join(base, f"run-{i}")
            os.mkdir(run)
            os.mkdir(os.path.join(run, "job_events"))
            with open(os.path.join(run, "run.json"), "w") as fh:
                fh.write("x" * 800)
            with open(os.path.join(run, "job_events", "1-a.json"), "w") as fh:
                fh.write("y" * 300)
            lat.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lat.sort()
    return lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 instead of 2000")
    n = 200 if parser.parse_args().quick else 2000
    print(f"file-system floor of one run's artifacts (2 mkdir + 2 file creates), {n} runs")
    print(f"  {'home':<10}{'p50':>9}{'p99':>9}")
    for name, root in (("disk", tempfile.gettempdir()), ("tmpfs", "/dev/shm")):
        if os.path.isdir(root) and os.access(root, os.W_OK):
            p50, p99 = measure(root, n)
            print(f"  {name:<10}{p50:>7.2f}ms{p99:>7.2f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
