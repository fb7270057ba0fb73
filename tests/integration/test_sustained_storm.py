"""A sustained storm bounded by count against a real ``recovery serve``: 30,000 posts of
one new alert each (for hosts the inventory does not know: each is journaled and
processed into the per-minute refusal record), from 8 connections. Every answer is a
2xx, every alert is journaled, and the memory of every process of the service is flat:
the PSS (/proc/PID/smaps_rollup) of each role (parent, gunicorn master, http workers,
engine workers) once the last post is answered is within MARGIN of what it was after the
first third."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest

from tests.support.alerts import GHOST_RUNBOOK
from tests.support.service import Served, Store, pss_kb, wait_for

pytestmark = pytest.mark.slow      # 30,000 posts: a minute or two on 2 shared cores

POSTS = 30_000
CONNECTIONS = 8
BOUND = 600.0                      # s: bound on the storm (it takes 40-90 s here)
# Growth allowed per role between the first third and the end: 10 % or 3 MB, the larger
# (allocator arenas and caches settle during the first third). Measured here: at most
# +1.8 MB (engine worker, 50 MB); a leak of 250 bytes per alert over the last 20,000 would
# pass the 5 MB of the engine worker's 10 %.
MARGIN = (0.10, 3 * 1024)


def body(i: int) -> dict:
    return {"version": "4", "status": "firing", "receiver": "recovery", "groupKey": "{}:{}",
            "alerts": [{"status": "firing", "startsAt": "2026-01-01T00:00:00Z",
                        "labels": {"alertname": "GhostDown", "instance": f"ghost-{i}"},
                        "fingerprint": f"load{i:05d}"}]}


class Storm:
    """CONNECTIONS threads, each a keep-alive client posting its share of POSTS."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.answers: Counter = Counter()
        self.sent = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.post, args=(range(n, POSTS, CONNECTIONS),),
                                         daemon=True) for n in range(CONNECTIONS)]

    def post(self, share: range) -> None:
        headers = {"Authorization": f"Bearer {self.served.token}"}
        with httpx.Client(base_url=self.served.url, headers=headers, timeout=30) as client:
            for i in share:
                try:
                    status = client.post("/api/v1/alerts", json=body(i)).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with self.lock:
                    self.answers[status] += 1
                    self.sent += 1

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)


def pss_by_role(served: Served) -> dict[str, int]:
    """kB of PSS per role, each role's processes summed (a recycled worker is still one)."""
    return {role: sum(pss_kb(p.pid) for p in procs)
            for role, procs in served.processes().items()}


def test_a_sustained_storm_gets_only_2xx_and_the_memory_of_every_process_stays_flat(
        serve, engine_env):
    engine_env.runbook("ghosts", GHOST_RUNBOOK)
    served = serve().start()
    served.wait_ready()
    storm = Storm(served)
    storm.start()
    assert wait_for(lambda: storm.sent >= POSTS // 3, BOUND, every=0.05), storm.answers
    third = pss_by_role(served)
    storm.join(BOUND)
    assert storm.sent == POSTS, storm.answers
    end = pss_by_role(served)

    assert set(storm.answers) == {200}, storm.answers
    store = Store(served.home)
    try:
        assert store.seen() == POSTS
    finally:
        store.close()
    print(f"PSS kB after {POSTS // 3} posts: {third}; after {POSTS}: {end}")
    grown = {role: (third[role], end[role]) for role in third
             if end[role] > max(third[role] * (1 + MARGIN[0]), third[role] + MARGIN[1])}
    assert grown == {}, f"PSS kB (after the first third, at the end) grown past {MARGIN}"
    assert all(third[role] > 0 for role in ("parent", "master", "http", "engine")), third
    served.terminate()
