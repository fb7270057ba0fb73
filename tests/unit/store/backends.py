"""The backends the store tests run on, which protocols each has, and how a test (or a
process it spawns) opens one by URL.

SQLite has every protocol. Redis has those of ``engine.store.redis.BUILT`` so far, and
``open_store`` refuses it until it has them all; so the tests open it as a class made of
the parts built (``open_test_store``), and a test runs on Redis only where those parts
cover the protocols it marks it uses (``uses``). Once Redis has every protocol, this
module is ``open_store`` and every test runs on both.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from engine.store import Store, open_store
from engine.store.redis import BUILT

BACKENDS = ["sqlite", "redis"]
REDIS_SCHEMES = ("redis://", "rediss://")
RedisStoreSoFar: type = type("RedisStoreSoFar", BUILT, {
    "__doc__": "The Redis backend's parts built so far, as one store (tests only)."})


def open_test_store(url: str) -> Store:
    """The store at ``url``: ``open_store``'s, or for Redis the parts built so far."""
    if url.startswith(REDIS_SCHEMES):
        return RedisStoreSoFar(url)
    return open_store(url)


def implements(backend: str, protocols: Iterable[type]) -> bool:
    """Whether ``backend`` has every one of ``protocols`` (SQLite: the whole ``Store``)."""
    if backend == "sqlite":
        return True
    if backend == "redis":
        return all(p in RedisStoreSoFar.__mro__ for p in protocols)   # declared bases
    raise AssertionError(f"unknown backend {backend!r}")


def uses(*protocols: type) -> pytest.MarkDecorator:
    """The mark ``store_protocols`` a test (or a module's ``pytestmark``) names the store
    protocols it uses with (``with_args``: a class alone would be taken for the test)."""
    return pytest.mark.store_protocols.with_args(*protocols)
