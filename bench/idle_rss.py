"""Idle RSS of an application embedding the engine (target: < 65 MB).

A fresh interpreter does what an application does at start-up:

    from engine import Recovery
    r = Recovery.from_config(cfg)          # the shipped recovery.yml, RECOVERY_HOME in a temp dir
    r.resources.register("redis", pool)    # a stand-in object: the bench measures the engine

then sleeps 1 s and reports its resident set size (psutil) and which heavy modules got
imported (ansible, ansible_runner, chromadb, redis, httpx, flask): they should be
imported only on use. For scale it also reports a bare interpreter, and the same
application after one ``trigger()`` of an embedded action (``system.memory_gc``; the
step has run, its verify is still polling), which shows what the first recovery costs.

    .venv/bin/python bench/idle_rss.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_MB = 65.0
REPO = Path(__file__).resolve().parent.parent
HEAVY = ("ansible", "ansible_runner", "chromadb", "redis", "httpx", "flask")

PROBE = """
import json, os, sys, time
import psutil
mode, config = sys.argv[1], sys.argv[2]
if mode != "bare":
    from engine import Recovery

    r = Recovery.from_config(config)
    r.resources.register("redis", object())
    r.resources.register("system", object())
    if mode == "triggered":
        # The step runs at once; the runbook's verify then polls for ~20 s in the
        # background, which this probe does not wait for.
        r.trigger("system", failure_type="memory_pressure", target="localhost").wait(timeout=1)
time.sleep(1)
heavy = {HEAVY!r}
print(json.dumps({{
    "rss": psutil.Process().memory_info().rss,
    "heavy": sorted(m for m in heavy if m in sys.modules),
    "modules": len(sys.modules),
}}), flush=True)
os._exit(0)  # do not wait for a verify still polling in the background
"""


def probe(mode: str, config: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOVERY_")}
    env["RECOVERY_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-c", PROBE.format(HEAVY=HEAVY), mode, str(config)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} probe failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one sample per line, not three")
    args = parser.parse_args()
    reps = 1 if args.quick else 3
    config = REPO / "recovery.yml"

    print(f"idle RSS of an embedding application (median of {reps}; config {config.name}, "
          "RECOVERY_HOME in a temp dir)")
    print(f"  machine: {os.cpu_count()} cpu, load average {os.getloadavg()[0]:.2f}")
    print(f"  {'process':<44} {'RSS':>8} {'modules':>8}   heavy modules imported")
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        for mode, label in (("bare", "bare python + psutil"),
                            ("idle", "Recovery.from_config + resources.register"),
                            ("triggered", "... after one trigger() (system.memory_gc)")):
            samples = [probe(mode, config, Path(tmp) / f"home-{mode}") for _ in range(reps)]
            rss = statistics.median(s["rss"] for s in samples) / 2**20
            verdict = ""
            if mode == "idle":
                verdict = f"   target < {TARGET_MB:g} MB {'MET' if rss < TARGET_MB else 'MISSED'}"
            heavy = ", ".join(samples[-1]["heavy"]) or "none"
            print(f"  {label:<44} {rss:6.1f}MB {samples[-1]['modules']:8d}   {heavy}{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
