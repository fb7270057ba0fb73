"""What a collection holds, by content: ChromaDB has no transactions and no write
version, so ``index_rebuild`` keeps a digest of every record it copied and reads the
collection again to prove that nothing was written meanwhile."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

INCLUDE = ["embeddings", "metadatas", "documents"]


class RebuildError(Exception):
    """A rebuild stopped on purpose, with the reason an operator reads."""


def digests(got: Mapping[str, Any]) -> dict[str, str]:
    """id -> sha256 of (metadata, document, embedding) of a ``get`` page."""
    metadatas = got.get("metadatas") or [None] * len(got["ids"])
    documents = got.get("documents") or [None] * len(got["ids"])
    out = {}
    for i, rid in enumerate(got["ids"]):
        text = json.dumps([metadatas[i], documents[i], list(map(float, got["embeddings"][i]))],
                          sort_keys=True, default=str)
        out[rid] = hashlib.sha256(text.encode()).hexdigest()
    return out


def unchanged(collection: Any, copied: Mapping[str, str], batch: int, what: str) -> None:
    """Reads ``collection`` again; raises RebuildError saying how it differs from what
    was copied (records added, removed or changed)."""
    now: dict[str, str] = {}
    offset = 0
    while True:
        got = collection.get(limit=batch, offset=offset, include=INCLUDE)
        if not got["ids"]:
            break
        now.update(digests(got))
        offset += len(got["ids"])
    if now == copied:
        return
    added = len(now.keys() - copied.keys())
    removed = len(copied.keys() - now.keys())
    changed = sorted(k for k in now.keys() & copied.keys() if now[k] != copied[k])
    raise RebuildError(f"{what} ({added} added, {removed} removed, {len(changed)} changed"
                       f"{': ' + ', '.join(changed[:5]) if changed else ''}); the original "
                       "stays in place: rebuild when writes are quiet")
