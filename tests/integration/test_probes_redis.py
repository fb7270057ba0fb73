"""Health probes against a real ``redis-server``: a redis.ping probe sees the server
stop and opens an incident. The probes' logic, in this process: tests/unit/test_probes.py."""

from __future__ import annotations

import time

import pytest

from engine.lifecycle import IncidentState
from engine.records import DegradedReason
from engine.service import probes
from tests.support.redis_servers import RedisServer


@pytest.mark.requires("redis-server")
def test_a_real_redis_probe_sees_the_server_stop(engine_env):
    server = RedisServer(engine_env.root / "redis")
    port = server.port
    server.start()
    try:
        (engine_env.root / "inventory" / "hosts.yml").write_text(f"""
all:
  hosts:
    cache-1:
      ansible_connection: local
      redis_url: redis://127.0.0.1:{port}/0
""")
        engine_env.runbook("cache", """
            probe: {targets: cache-1, interval: 1s, failure_type: connection_refused}
            strategies: [{name: fix, action: test.fail}]
            verify: {action: redis.ping}
            degraded_mode: {name: test_down}
        """)
        ctx = engine_env.context()
        deadline = time.time() + 10
        while time.time() < deadline:                      # wait for the server to answer
            probes.run_due(ctx, time.time() + 100)
            if not ctx.store.list_incidents():
                break
        ctx.store.add_degraded(DegradedReason(mode="test_down", key="incident:old",
                                              target="cache-1"))
        probes.run_due(ctx, time.time() + 200)               # PONG: the reason clears
        assert ctx.store.degraded_reasons("test_down") == []
        opened_before = len(ctx.store.list_incidents())
        server.stop()
        probes.run_due(ctx, time.time() + 300)               # refused: an incident
        incidents = ctx.store.list_incidents()
        assert len(incidents) == opened_before + 1
        assert incidents[0].trigger == "probe" and incidents[0].state == IncidentState.FAILED
        assert ctx.store.degraded_reasons("test_down")       # exhausted: on again
    finally:
        server.kill()
