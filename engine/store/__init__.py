"""State backends behind one interface (``base.Store``, the union of one protocol per
concept); ``open_store`` picks one by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from engine.store.base import Store, StoreUnavailable

__all__ = ["Store", "StoreUnavailable", "open_store"]


def open_store(url: str, *, base_dir: Path | None = None, synchronous: str = "NORMAL",
               retry_open: bool = False) -> Store:
    """``sqlite:///relative/or/absolute.db`` (relative to ``base_dir``) or ``sqlite:///:memory:``.
    ``retry_open``: a store that cannot be opened now is returned unavailable (each use
    raises StoreUnavailable) and opened once it can be, rather than raising here.

    The Redis backend (``redis://``) comes with the scale-out work; until then such a URL is
    a configuration error with that reason, never a silent fallback to SQLite.
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
        raise ValueError("the Redis state backend is not available yet: use sqlite:///PATH")
    raise ValueError(f"unsupported state URL {url!r}: expected sqlite:///PATH")
