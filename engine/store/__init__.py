"""State backends behind one interface (``base.Store``, the union of one protocol per
concept); ``open_store`` picks one by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from engine.store.base import Store, StoreRefused, StoreUnavailable
from engine.store.urls import redacted

__all__ = ["Store", "StoreRefused", "StoreUnavailable", "open_store"]


def open_store(url: str, *, base_dir: Path | None = None, synchronous: str = "NORMAL",
               retry_open: bool = False) -> Store:
    """``sqlite:///relative/or/absolute.db`` (relative to ``base_dir``), ``sqlite:///:memory:``,
    or ``redis://[user:password@]host:port/db[?prefix=P]`` (``rediss://`` for TLS; the
    credentials may come from ``RECOVERY_REDIS_USERNAME`` / ``RECOVERY_REDIS_PASSWORD``).
    ``retry_open``: a store that cannot be opened now is returned unavailable (each use
    raises StoreUnavailable) and opened once it can be, rather than raising here.

    A Redis server whose settings would lose state (no AOF, eviction, a replica) is
    refused here with every reason (``UnsafeRedisSettings``, a ValueError): the service
    does not start on it. One that cannot be reached is StoreUnavailable, or, with
    ``retry_open``, a store whose settings are checked at its first answer.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        from engine.store.sqlite import SQLiteStore

        raw = url[len("sqlite:///"):] if url.startswith("sqlite:///") else parsed.path
        if raw == ":memory:":
            return SQLiteStore(":memory:", synchronous=synchronous)
        path = Path(raw)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return SQLiteStore(path, synchronous=synchronous, retry_open=retry_open)
    if parsed.scheme in ("redis", "rediss"):
        from engine.store.redis import open_redis_store

        return open_redis_store(url, retry_open=retry_open)
    raise ValueError(f"unsupported state URL {redacted(url)!r}: expected sqlite:///PATH "
                     "or redis://host:port/db")
