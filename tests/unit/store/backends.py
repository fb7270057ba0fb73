"""The backends the store tests run on, which protocols each has, and how a test (or a
process it spawns) opens one by URL.

SQLite and Redis have every protocol (``engine.store.redis.RedisStore``). ``open_store``
still refuses Redis (what makes replicas safe on it comes first), so the tests open it
by its class (``open_test_store``); a test runs on each backend whose class has the
protocols it marks it uses (``uses``). Once ``open_store`` takes ``redis://``, this
module is ``open_store``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from engine.store import Store, open_store
from engine.store.redis import RedisStore

BACKENDS = ["sqlite", "redis"]
REDIS_SCHEMES = ("redis://", "rediss://")


def open_test_store(url: str) -> Store:
    """The store at ``url``: ``open_store``'s, or for Redis a ``RedisStore``."""
    if url.startswith(REDIS_SCHEMES):
        return RedisStore(url)
    return open_store(url)


def implements(backend: str, protocols: Iterable[type]) -> bool:
    """Whether ``backend`` has every one of ``protocols`` (SQLite: the whole ``Store``)."""
    if backend == "sqlite":
        return True
    if backend == "redis":
        return all(p in RedisStore.__mro__ for p in protocols)   # declared bases
    raise AssertionError(f"unknown backend {backend!r}")


def uses(*protocols: type) -> pytest.MarkDecorator:
    """The mark ``store_protocols`` a test (or a module's ``pytestmark``) names the store
    protocols it uses with (``with_args``: a class alone would be taken for the test)."""
    return pytest.mark.store_protocols.with_args(*protocols)
