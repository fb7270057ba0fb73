"""ChromaDB actions: time from the start of the action to verified recovery, against a
real ``chroma run`` under a real supervisord (tests/support/chroma_server.py), own embeddings.

Per action, N runs (20; ``--quick``: 3), each one break -> action -> verify:
  query_retry        chroma stopped, started again 1 s later; query_retry until a test
                     query answers (verify: collection_check, server side)
  collection_reload  the collection dropped and re-created under its name (new id); the
                     application's registered handles re-opened; verify: collection_check
  index_rebuild      as the service runs it (no handles registered): 200 records (dim 8)
                     copied to a new collection, counts and 10 sample queries checked,
                     the original read again (digests: no write meanwhile) before and
                     after the names are swapped, old dropped; verify: collection_check
  snapshot_rollback  (``--rollback N``, default 3; 0 skips) the collection dropped; the
                     playbook stops chroma, snapshots, restores, starts it; verify:
                     collection_check. Ansible's start-up dominates it.
Prints p50, min and max in seconds. Temp RECOVERY_HOME, every wait bounded.

    .venv/bin/python bench/actions_chromadb.py [--quick] [--runs N] [--rollback N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per action")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rollback", type=int, default=3)
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    rollbacks = min(args.rollback, runs)

    import yaml

    from engine.actions.base import ActionContext
    from engine.actions.chromadb import ChromaCollections
    from engine.artifacts import RunArtifacts
    from engine.config import load_config
    from engine.context import EngineContext
    from engine.orchestration.verify import verify
    from engine.records import new_id
    from tests.support.chroma_server import ChromaServer
    from tests.support.shipped import install_runbook

    with tempfile.TemporaryDirectory(prefix="bench-chroma-") as tmp:
        tmp_path = Path(tmp)
        server = ChromaServer(tmp_path / "chroma")
        try:
            server.start()
            home = tmp_path / "home"
            for sub in ("runbooks", "playbooks", "inventory"):
                (home / sub).mkdir(parents=True)
            install_runbook("chromadb", home)
            (home / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {
                "chroma-1": server.inventory_host(chromadb_collections=["docs"])}}}))
            (home / "recovery.yml").write_text(
                "home: var\nrunbooks: runbooks\nplaybooks: playbooks\ninventory: inventory\n")
            ctx = EngineContext(load_config(home / "recovery.yml"))
            runbook = ctx.runbook("chromadb")
            handles = ChromaCollections(server.client, ["docs"])
            ctx.resources.register("chromadb", handles, target="chroma-1")

            def step(strategy: str) -> float:
                spec = runbook.strategy(strategy)
                params = dict(spec.params)
                action_ctx = ActionContext(component="chromadb", target="chroma-1",
                                           params=params, host_vars=ctx.host_vars("chroma-1"),
                                           resources=ctx.resources)
                artifacts = RunArtifacts(ctx.artifacts_dir, new_id("run"), ctx.redactor).create()
                t0 = time.perf_counter()
                if spec.playbook:
                    result = ctx.ansible.run(artifacts=artifacts, playbook=spec.playbook,
                                             limit="chroma-1", timeout=600,
                                             extravars={**spec.extravars,
                                                        "recovery_component": "chromadb"})
                    ok, why = result.status.value == "succeeded", result.reason
                else:
                    result = ctx.python.run(artifacts=artifacts, action=spec.action,
                                            ctx=action_ctx, timeout=spec.timeout)
                    ok, why = result.status.value == "succeeded", result.reason
                if not ok:
                    raise RuntimeError(f"{strategy}: {why}")
                # the first passing check, not the runbook's stable_for: that is a wait
                fast = dataclasses.replace(runbook.verify_for(spec), initial_delay=0.0,
                                           interval=0.1, stable_for=0.0)
                ok, why = verify(fast, action_ctx, ctx.python, artifacts)
                if not ok:
                    raise RuntimeError(f"{strategy} verify: {why}")
                return time.perf_counter() - t0

            figures: dict[str, list[float]] = {}
            server.populate("docs", 200)
            handles.collection("docs")
            for _ in range(runs):                       # query_retry across a restart
                server.ctl("stop", "chroma")
                timer = threading.Timer(1.0, server.ctl, ("start", "chroma"))
                timer.start()
                figures.setdefault("query_retry", []).append(step("query_retry"))
                timer.join(30)
                server.wait_healthy()
            for _ in range(runs):                       # collection_reload after re-create
                server.populate("docs", 200)
                figures.setdefault("collection_reload", []).append(step("collection_reload"))
            ctx.resources.unregister("chromadb", "chroma-1")   # as the service runs it
            for _ in range(runs):                       # index_rebuild of 200 records
                figures.setdefault("index_rebuild", []).append(step("index_rebuild"))
            if rollbacks:
                server.populate("docs", 200)
                take = RunArtifacts(ctx.artifacts_dir, new_id("run"), ctx.redactor).create()
                ctx.ansible.run(artifacts=take, playbook="snapshot_take.yml", limit="chroma-1",
                                timeout=300, extravars={"recovery_component": "chromadb",
                                                        "health_path": "/api/v2/heartbeat"})
                for _ in range(rollbacks):
                    server.client().delete_collection("docs")
                    figures.setdefault("snapshot_rollback", []).append(
                        step("snapshot_rollback"))
                    server.wait_healthy()
        finally:
            server.stop()

    print(f"ChromaDB actions, start to verified recovery (seconds), {runs} runs each "
          f"({rollbacks} for snapshot_rollback)")
    print(f"{'action':<20}{'runs':>6}{'p50':>10}{'min':>10}{'max':>10}")
    for name, values in figures.items():
        print(f"{name:<20}{len(values):>6}{statistics.median(values):>10.3f}"
              f"{min(values):>10.3f}{max(values):>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
