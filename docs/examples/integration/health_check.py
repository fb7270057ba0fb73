"""An application's own Redis health check that triggers recovery when it fails.

The application embeds the engine (it shares the service's store, so cooldowns,
approvals and the audit trail are one) and registers the connection pool its code uses.
A failed check triggers the `redis` runbook: its `reconnect` step moves the registered
pool to the primary that answers now (the host's `redis_url` and `redis_failover_urls`
in the inventory, or Sentinel), so the application's own client works again. A passing
check tells the engine the target is healthy: its automatic degraded-mode reasons and
its exhausted alert clear.

    RECOVERY_CONFIG=recovery.yml REDIS_URL=redis://10.0.0.5:6379/0 python health_check.py

Exit 0 when Redis answers (at once, or after the recovery), else 1.
"""

from __future__ import annotations

import os
import sys

import redis

from engine import Recovery

TARGET = os.environ.get("REDIS_TARGET", "cache-1")   # this Redis's host in the inventory


def redis_answers(client: redis.Redis) -> bool:
    """The application's health check: one round trip, bounded by the pool's timeouts."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def check_once(recovery: Recovery, client: redis.Redis) -> bool:
    """Check Redis; on failure, recover and check again. Call it from your own loop."""
    if redis_answers(client):
        recovery.healthy("redis", target=TARGET)
        return True
    handle = recovery.trigger("redis", failure_type="connection_refused", target=TARGET)
    incident = handle.wait(timeout=120)     # trigger() never blocks; wait() is bounded
    if incident is None:
        print(f"recovery refused: {handle.refusal}")
        return False
    print(f"incident {incident.id}: {incident.state.value}: {incident.reason}")
    if incident.state.value == "remediating":   # a step parked for a person
        print("a step waits for approval: `recovery pending`")
    return redis_answers(client)                # the same client, on the moved pool


def main() -> int:
    recovery = Recovery.from_config(os.environ.get("RECOVERY_CONFIG", "recovery.yml"))
    pool = redis.ConnectionPool.from_url(os.environ["REDIS_URL"], socket_timeout=1,
                                         socket_connect_timeout=1)
    client = redis.Redis(connection_pool=pool)          # what the application's code uses
    recovery.resources.register("redis", pool, target=TARGET)
    try:
        ok = check_once(recovery, client)
        where = f"{pool.connection_kwargs['host']}:{pool.connection_kwargs['port']}"
        print(f"redis on {TARGET}: {'healthy' if ok else 'down'} ({where})")
        if recovery.degraded("redis_unavailable"):
            print("redis_unavailable is on: serving without the cache")
        return 0 if ok else 1
    finally:
        recovery.close()


if __name__ == "__main__":
    sys.exit(main())
