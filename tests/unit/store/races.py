"""Processes racing on one store: the test of a compare-and-set across processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

JOIN = 60   # seconds: bound on each racer's answer and on its exit


def race(racer: Callable[[str, Any, Any], None], url: str, n: int = 6) -> list[Any]:
    """What ``racer(url, barrier, results)`` put in ``results``, once from each of ``n``
    processes (spawned: none shares its parent's connections) that start together at
    ``barrier``. ``racer`` is a module-level function of a test module."""
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(n), mp.Queue()
    procs = [mp.Process(target=racer, args=(url, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        return [results.get(timeout=JOIN) for _ in range(n)]
    finally:
        for p in procs:
            p.join(JOIN)
            if p.is_alive():
                p.kill()
                p.join(JOIN)
