"""The Redis probe and default verify ``redis.ping``: the server answers and can serve."""

from __future__ import annotations

import threading
from typing import Any

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
from engine.actions.redis.endpoints import connect, number


class Ping(Action):
    """PING answers within the timeout, and INFO says the server can serve: not loading
    its dataset, no connection rejected since the previous check (maxclients reached),
    and, under ``maxmemory-policy noeviction``, used memory below ``max_memory_ratio`` of
    ``maxmemory`` (beyond it writes fail with OOM; with an eviction policy a full cache
    is normal and passes). It proves the server serves, not that its data is sound.
    """

    name = "redis.ping"
    scope = REMOTE
    timeout = 10.0

    def __init__(self) -> None:
        self._rejected: dict[tuple[str, str], int] = {}    # (server, run_id) -> counter
        self._lock = threading.Lock()

    def run(self, ctx: ActionContext) -> ActionResult:
        import redis

        try:
            ratio = number(ctx, "max_memory_ratio", 0.95, low=0.01, high=1)
            timeout = number(ctx, "timeout", 2, duration=True, low=0.05, high=30)
        except ValueError as exc:
            return ActionResult(False, f"refused: {exc}")
        with connect(ctx, timeout) as client:
            if client is None:
                return ActionResult(False, f"no redis_url for {ctx.target} in the inventory "
                                    "and no pool registered", not_applicable=True)
            loading = False
            try:
                client.ping()
            except redis.exceptions.BusyLoadingError:
                loading = True
            except redis.exceptions.RedisError as exc:
                return ActionResult(False, f"PING failed: {exc}")
            try:
                info = client.info()
            except redis.exceptions.RedisError as exc:
                if loading:
                    return ActionResult(False, "redis is loading its dataset", {"loading": 1})
                return ActionResult(False, f"PONG, but INFO failed: {exc}")
        return self._judge(info, ratio, loading)

    plan = run

    def _judge(self, info: dict[str, Any], ratio: float, loading: bool) -> ActionResult:
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        policy = str(info.get("maxmemory_policy", ""))
        rejected = int(info.get("rejected_connections", 0))
        data = {"role": info.get("role"), "loading": int(info.get("loading", 0)),
                "used_memory": used, "maxmemory": limit, "maxmemory_policy": policy,
                "connected_clients": info.get("connected_clients"),
                "rejected_connections": rejected}
        problems = []
        if loading or data["loading"]:
            problems.append(f"loading its dataset ({info.get('loading_loaded_perc', '?')}% "
                            f"done, about {info.get('loading_eta_seconds', '?')}s left)")
        key = (str(info.get("tcp_port", "")), str(info.get("run_id", "")))
        with self._lock:
            before = self._rejected.get(key)
            self._rejected[key] = rejected
        if before is not None and rejected > before:
            problems.append(f"rejected {rejected - before} connection(s) since the previous "
                            f"check (maxclients reached; {info.get('connected_clients')} "
                            "clients connected)")
        share = used / limit if limit else 0.0
        memory = (f"{used / 2**20:.1f} MiB used of {limit / 2**20:.1f} MiB ({share:.0%}, "
                  f"{policy})" if limit else f"{used / 2**20:.1f} MiB used, no maxmemory")
        if limit and share >= ratio and policy == "noeviction":
            problems.append(f"memory full: {memory}, writes fail with OOM")
        if problems:
            return ActionResult(False, "; ".join(problems), data)
        return ActionResult(True, f"PONG ({info.get('role')}, {memory}, "
                            f"{info.get('connected_clients')} clients)", data)
