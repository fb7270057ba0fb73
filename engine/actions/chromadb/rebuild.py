"""``chromadb.index_rebuild``: a collection's index rebuilt by copying its records into a
new collection, checking the copy and swapping the names; the original stays whenever
anything is in doubt."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from engine.actions.base import ActionContext, ActionResult
from engine.actions.chromadb.client import (
    ServerAction,
    collections_of,
    error_text,
    on_server,
    probe_query,
    registered_handles,
)
from engine.actions.chromadb.content import INCLUDE, RebuildError, digests, unchanged


# -- index_rebuild -------------------------------------------------------------------------
class IndexRebuild(ServerAction):
    """Rebuilds each collection's index by copying its records (ids, embeddings,
    metadatas, documents; ``batch_size`` at a time) into a new collection with the same
    metadata and configuration, then checks the copy (count, ``sample`` self-queries)
    and swaps the names.

    ChromaDB has no transactions and no write version, so writes during the rebuild are
    caught by content: every copied record's digest (id, metadata, document, embedding)
    is kept, the old collection is read again just before the swap and must match it
    exactly (an add, update, upsert or delete since the copy stops the rebuild: the copy
    is dropped, the original stays). After the swap the old collection (renamed
    ``NAME__replaced_<time>``; processes holding its id still write into it) is read once
    more: changed, the swap is undone; unchanged, it is deleted, so that a stale handle
    fails loudly instead of writing into an orphan (``keep_old: true`` keeps it). What is
    left is a window of milliseconds between that last read and the delete.

    A collection whose stored index no longer loads cannot be read, so it cannot be
    copied: that is a rollback's job. Handles this process registered
    (:class:`ChromaCollections`) are re-opened on the rebuilt collection as part of the
    step; other applications follow by name (``ChromaCollections.query`` does it when
    the old id is gone) or through ``collection_reload``."""

    name = "chromadb.index_rebuild"
    timeout = 1800.0

    def act(self, ctx: ActionContext, client: Any) -> ActionResult:
        names = collections_of(ctx)
        if not names:
            return ActionResult(False, "no collection named: set chromadb_collections for "
                                f"{ctx.target} in the inventory or with: {{collection: ...}}")
        done: dict[str, Any] = {}
        for name in names:
            ok, summary, data = self._rebuild(ctx, client, name)
            done[name] = data
            if not ok:
                return ActionResult(False, summary, {"collections": done})
        words = "; ".join(f"{n}: {d['copied']} records copied in {d['batches']} batches, "
                          f"{d['sample_hits']}/{d['sample']} sample queries found themselves, "
                          "no write during the rebuild"
                          + (f", old one kept as {d['kept_old']}" if d.get("kept_old") else "")
                          for n, d in done.items())
        reloaded, note = self._reload_here(ctx, names)
        return ActionResult(True, f"rebuilt {', '.join(names)} ({words}){note}; other "
                            "applications re-open the collections by name",
                            {"collections": done, "reloaded_here": reloaded})

    def _reload_here(self, ctx: ActionContext, names: list[str]) -> tuple[list[str], str]:
        """Re-opens the handles this process registered for the rebuilt collections (an
        application that embeds the engine), so it does not go on using the old ids."""
        handles = registered_handles(ctx)
        mine = [n for n in names if handles is not None and n in handles.names]
        if not mine:
            return [], ""
        try:
            handles.reload(mine)
        except Exception as exc:  # noqa: BLE001 - the rebuild stands; say what is left
            return [], (f"; this process's handles could NOT be re-opened ({error_text(exc)}): "
                        "collection_reload must follow")
        return mine, f"; this process's handles re-opened ({', '.join(mine)})"

    def _rebuild(self, ctx: ActionContext, client: Any,
                 name: str) -> tuple[bool, str, dict[str, Any]]:
        batch = max(1, int(ctx.params.get("batch_size", 500)))
        sample = max(1, int(ctx.params.get("sample", 10)))
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        data: dict[str, Any] = {"copied": 0, "batches": 0, "sample": 0, "sample_hits": 0}
        start = time.monotonic()
        try:
            old = client.get_collection(name, embedding_function=None)
            expected = old.count()
        except Exception as exc:  # noqa: BLE001
            return False, (f"cannot read {name} ({error_text(exc)}); nothing was changed: a "
                           "snapshot rollback is the next step"), data
        data.update(old_id=str(old.id), expected=expected)
        temp = f"{name}__rebuild_{stamp}"
        try:
            new = client.create_collection(temp, embedding_function=None,
                                           **_shape_of(old))
        except Exception as exc:  # noqa: BLE001
            return False, f"cannot create {temp}: {error_text(exc)}", data
        data["new_id"] = str(new.id)
        try:
            copied, sampled = self._copy(ctx, old, new, expected, batch, sample, data)
            if new.count() != len(copied):
                raise RebuildError(f"{name}: copied {len(copied)} records, the new "
                                   f"collection holds {new.count()}; the original is "
                                   "untouched")
            self._check_sample(new, sampled, data)
            ctx.log(f"{name}: reading the original again for writes since the copy")
            unchanged(old, copied, batch, f"{name} changed during the rebuild")
        except Exception as exc:  # noqa: BLE001 - the original stays; the copy goes
            _drop(client, temp)
            reason = str(exc) if isinstance(exc, RebuildError) else (
                f"cannot read {name} ({error_text(exc)}); the original is untouched: a "
                "snapshot rollback is the next step")
            return False, reason, data
        return self._swap(ctx, client, old, new, name, stamp, data, start, copied, batch)

    def _copy(self, ctx: ActionContext, old: Any, new: Any, expected: int, batch: int,
              sample: int, data: dict[str, Any]
              ) -> tuple[dict[str, str], list[tuple[str, list[float]]]]:
        """Copies the records; returns id -> digest of what was copied, and the sample."""
        every = max(1, expected // sample)
        sampled: list[tuple[str, list[float]]] = []
        copied: dict[str, str] = {}
        offset = 0
        while True:
            if ctx.cancel.is_set():
                raise RebuildError("canceled during the copy; the original is untouched")
            got = old.get(limit=batch, offset=offset, include=INCLUDE)
            ids = got["ids"]
            if not ids:
                break
            embeddings = [list(map(float, e)) for e in got["embeddings"]]
            new.add(ids=ids, embeddings=embeddings, metadatas=_or_none(got["metadatas"]),
                    documents=_or_none(got["documents"]))
            copied.update(digests(got))
            sampled += [(ids[i], embeddings[i]) for i in range(len(ids))
                        if (offset + i) % every == 0][:sample - len(sampled)]
            offset += len(ids)
            data["copied"], data["batches"] = offset, data["batches"] + 1
            ctx.log(f"{old.name}: copied {offset}/{expected}")
        if len(copied) != offset:
            raise RebuildError(f"{old.name}: {offset - len(copied)} records were read twice "
                               "(writes during the copy); the original is untouched")
        return copied, sampled

    def _check_sample(self, new: Any, sampled: list[tuple[str, list[float]]],
                      data: dict[str, Any]) -> None:
        data["sample"] = len(sampled)
        if not sampled:
            return
        answer = new.query(query_embeddings=[e for _, e in sampled], n_results=1,
                           include=["distances"])
        rows = zip(sampled, answer["ids"], answer["distances"], strict=True)
        hits = sum(1 for (rid, _), ids, dist in rows
                   if ids and (ids[0] == rid or dist[0] <= 1e-6))
        data["sample_hits"] = hits
        if hits < len(sampled):
            raise RebuildError(f"only {hits} of {len(sampled)} sample queries found their own "
                               "record in the rebuilt index; the original is untouched")

    def _swap(self, ctx: ActionContext, client: Any, old: Any, new: Any, name: str,
              stamp: str, data: dict[str, Any], start: float, copied: dict[str, str],
              batch: int) -> tuple[bool, str, dict]:
        aside, temp = f"{name}__replaced_{stamp}", f"{name}__rebuild_{stamp}"
        ctx.log(f"{name}: swapping the names")
        try:
            old.modify(name=aside)
        except Exception as exc:  # noqa: BLE001
            _drop(client, new.name)
            return False, f"cannot rename {name} aside: {error_text(exc)}; nothing changed", data
        try:
            new.modify(name=name)
            current = client.get_collection(name, embedding_function=None)
            if str(current.id) != str(new.id) or current.count() != len(copied):
                raise RebuildError(f"{name} does not answer as the rebuilt collection")
            probe_query(current)
            # Writers holding the old id wrote into it until now: nothing may be lost.
            unchanged(old, copied, batch, f"{name} was written to during the swap")
        except Exception as exc:  # noqa: BLE001 - put the original back under its name
            back = _swap_back(new, temp, old, name)
            kept = _unchanged_or_keep(client, new, temp, copied, batch)
            return False, (f"the rebuilt {name} was not put in place ({error_text(exc)}); "
                           f"{back}; {kept}"), data
        if ctx.params.get("keep_old"):
            data["kept_old"] = aside
        else:
            _drop(client, aside)
        data["seconds"] = round(time.monotonic() - start, 3)
        return True, "", data

    def plan(self, ctx: ActionContext) -> ActionResult:
        return on_server(ctx, lambda client: self._describe(ctx, client))

    def _describe(self, ctx: ActionContext, client: Any) -> ActionResult:
        names = collections_of(ctx)
        if not names:
            return ActionResult(False, "no collection named (chromadb_collections)")
        batch = max(1, int(ctx.params.get("batch_size", 500)))
        words = []
        for name in names:
            try:
                count = client.get_collection(name, embedding_function=None).count()
                words.append(f"{name} ({count} records, {-(-count // batch)} batches)")
            except Exception as exc:  # noqa: BLE001
                words.append(f"{name} (cannot open: {error_text(exc)})")
        return ActionResult(True, f"would copy {', '.join(words)} into new collections, "
                            "check counts, sample queries and that nothing was written "
                            "meanwhile, swap the names and delete the old ones")


def _swap_back(new: Any, temp: str, old: Any, name: str) -> str:
    try:
        new.modify(name=temp)
        old.modify(name=name)
    except Exception as exc:  # noqa: BLE001 - say exactly where things are
        return (f"putting the original back FAILED ({error_text(exc)}): the original is "
                f"collection id {old.id}, the copy id {new.id}")
    return f"the original is back under {name}"


def _unchanged_or_keep(client: Any, new: Any, temp: str, copied: Mapping[str, str],
                       batch: int) -> str:
    """The copy is dropped unless something was written into it while it had the name."""
    try:
        unchanged(new, copied, batch, "the copy")
    except Exception:  # noqa: BLE001 - written to, or unreadable: keep it for a person
        return f"the copy is kept as {temp} (it may hold writes made meanwhile)"
    _drop(client, temp)
    return "the copy was dropped"


def _shape_of(collection: Any) -> dict[str, Any]:
    """The metadata and index configuration a copy must share (distance space...)."""
    shape: dict[str, Any] = {}
    metadata = {k: v for k, v in (collection.metadata or {}).items()
                if not k.startswith("hnsw:")}
    if metadata:
        shape["metadata"] = metadata
    configuration = getattr(collection, "configuration_json", None) or {}
    hnsw = configuration.get("hnsw")
    if hnsw:
        shape["configuration"] = {"hnsw": dict(hnsw)}
    elif collection.metadata:
        hnsw_meta = {k: v for k, v in collection.metadata.items() if k.startswith("hnsw:")}
        if hnsw_meta:
            shape["metadata"] = {**shape.get("metadata", {}), **hnsw_meta}
    return shape


def _or_none(values: Any) -> Any:
    return None if values is None or all(v is None for v in values) else list(values)


def _drop(client: Any, name: str) -> None:
    try:
        client.delete_collection(name)
    except Exception:  # noqa: BLE001, S110 - a leftover copy is named and harmless
        pass
