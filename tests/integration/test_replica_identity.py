"""A ``recovery serve`` named by ``RECOVERY_REPLICA``: its log says the name, its engine
workers write the replica's line in the store (the set it runs, when), and `recovery
status` run beside it with the same name shows it live on the set it put in force."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.service import GRACE, Served, free_port, started, wait_for


def test_a_named_replica_says_its_name_and_its_set(engine_env, tmp_path):
    engine_env.write_config(webhook=f"{{workers: 1, http_workers: 1, shutdown_grace: {GRACE}s, "
                            "graceful_timeout: 2s}")
    engine_env.runbook("quick", "strategies: [{name: ok, action: test.ok}]\n")
    served = Served({**engine_env.env(), "RECOVERY_REPLICA": "r-one"}, tmp_path / "home",
                    free_port(), "-v")
    try:
        started(served)

        def status() -> dict:
            done = subprocess.run([sys.executable, "-m", "engine", "status", "--json"],
                                  env=served.environ(), capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        def live_line() -> dict | None:
            report = status()
            lines = [r for r in report["replicas"]["seen"] if r["replica"] == "r-one"]
            return report if lines and lines[0]["live"] and lines[0]["set_sha256"] else None

        report = wait_for(live_line, 30)
        assert report, served.stderr()
        assert report["replicas"]["this"] == "r-one" and report["replicas"]["warning"] is None
        line = next(r for r in report["replicas"]["seen"] if r["replica"] == "r-one")
        assert line["set_sha256"] == report["loaded_set"]["sha256"]
        assert "replica r-one" in served.stderr()
        assert served.stop()[0] == 0
    finally:
        served.kill_all()
