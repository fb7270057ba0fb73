"""ChromaDB actions.

``heartbeat`` says the server answers (plain HTTP, no chromadb import); it cannot see a
broken collection, so the runbook's verify and probe are ``collection_check``.
The strategies use the ``chromadb`` HTTP client, imported lazily inside the actions
(it is an optional extra: without it they end with a clear failure, and the engine
still imports and runs):

- ``query_retry`` (remote): heartbeat and a test query, with bounded backoff. It fixes
  nothing; it proves a transient failure has passed (or says it has not).
- ``collection_reload`` (embedded): a fresh client and fresh collection handles by name,
  in the application that registered a :class:`ChromaCollections`. Clients hold
  collection *ids*, so an application keeps querying a replaced collection (after
  ``index_rebuild``, a drop and re-create, a restore) until it re-opens it by name.
- ``index_rebuild`` (remote): copies a collection's records into a new collection,
  checks counts, a sample of queries and that no write reached the original meanwhile
  (content digests read again before and after the swap), then swaps the names; the old
  collection is deleted only once the new one answers under the name and the old one is
  still unchanged. It reads records through the API, so it cannot rebuild a collection
  whose stored index no longer loads (ChromaDB 1.x fails every read of it): it fails
  saying so, and the runbook escalates to a rollback. Handles this process registered
  are re-opened on the rebuilt collection as part of the step.
- ``collection_check`` (remote; verify): the collections answer a query, and where this
  process registered handles, they point at the collections that now carry the names.

Which collections: the step's ``with: {collection: NAME}`` (or ``collections: [...]``),
else the host variable ``chromadb_collections``; never alert labels. The endpoint is the
host variable ``chromadb_url``; a token, when the server wants one, comes from the
environment variable ``CHROMADB_TOKEN`` (sent as ``Authorization: Bearer``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from engine.actions.base import EMBEDDED, REMOTE, Action, ActionContext, ActionResult

TOKEN_ENV = "CHROMADB_TOKEN"
INCLUDE = ["embeddings", "metadatas", "documents"]


class Heartbeat(Action):
    """GET /api/v2/heartbeat (falls back to v1). Says the server answers, not that
    a collection's index is sound."""

    name = "chromadb.heartbeat"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        import httpx

        url = ctx.endpoint("chromadb_url")
        if not url:
            return ActionResult(False, f"no chromadb_url for {ctx.target} in the inventory",
                                not_applicable=True)
        try:
            with httpx.Client(timeout=3, headers=_auth_headers()) as client:
                for path in ("/api/v2/heartbeat", "/api/v1/heartbeat"):
                    response = client.get(url.rstrip("/") + path)
                    if response.status_code == 200:
                        return ActionResult(True, f"heartbeat {response.json()}")
        except httpx.HTTPError as exc:
            return ActionResult(False, f"heartbeat failed: {exc}")
        return ActionResult(False, f"heartbeat answered {response.status_code}")

    plan = run


# -- what an application registers -------------------------------------------------------
class ChromaCollections:
    """What an application registers as ``chromadb``: how to make a client, and the
    collections it uses, by name.

        handles = ChromaCollections(lambda: chromadb.HttpClient(host, port), ["docs"])
        recovery.resources.register("chromadb", handles, target="vectors-1")
        handles.collection("docs").query(query_embeddings=[...], n_results=5)

    ``collection_reload`` calls :meth:`reload`: a new client, every collection re-opened
    by name, swapped in under a lock so a query never sees half of it. :meth:`query`
    also re-opens a collection once by itself when the server says its id is gone (it
    was replaced); a handle to a replaced collection that still exists needs the reload.
    """

    def __init__(self, connect: Callable[[], Any], names: Iterable[str]) -> None:
        self._connect = connect
        self.names = list(names)
        self._lock = threading.RLock()
        self.client: Any = None
        self._collections: dict[str, Any] = {}

    def collection(self, name: str) -> Any:
        """The current handle of ``name`` (opened on first use)."""
        with self._lock:
            if name not in self._collections:
                if self.client is None:
                    self.client = self._connect()
                self._collections[name] = _open(self.client, name)
                if name not in self.names:
                    self.names.append(name)
            return self._collections[name]

    def query(self, name: str, **query: Any) -> Any:
        """``collection(name).query(**query)``; when it fails and the name now belongs
        to another collection (it was replaced), re-opens it by name and asks once more."""
        from chromadb.errors import ChromaError

        held = self.collection(name)
        try:
            return held.query(**query)
        except ChromaError:
            if str(self.reload([name])[name]["new_id"]) == str(held.id):
                raise                       # the same collection: a real failure
            return self.collection(name).query(**query)

    def ids(self) -> dict[str, str]:
        """Collection name -> the id the handle holds now (open handles only)."""
        with self._lock:
            return {name: str(c.id) for name, c in self._collections.items()}

    def reload(self, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """A new client and fresh handles; the old ones stay in use until all opened.
        Returns name -> {old_id, new_id, count}."""
        wanted = list(names) if names is not None else list(self.names)
        client = self._connect()
        client.heartbeat()
        opened = {name: _open(client, name) for name in wanted}
        report = {}
        with self._lock:
            for name, fresh in opened.items():
                old = self._collections.get(name)
                report[name] = {"old_id": str(old.id) if old is not None else None,
                                "new_id": str(fresh.id), "count": fresh.count()}
            self.client = client
            self._collections.update(opened)
            self.names = list(dict.fromkeys([*self.names, *wanted]))
        return report


def _open(client: Any, name: str) -> Any:
    """``get_collection`` without an embedding function: callers pass embeddings, and
    ChromaDB's default one downloads a model."""
    return client.get_collection(name, embedding_function=None)


# -- shared helpers ------------------------------------------------------------------------
def _auth_headers() -> dict[str, str]:
    token = os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


class NotConfigured(Exception):
    """No way to reach the server from here (no endpoint, no chromadb package)."""


def _client(ctx: ActionContext) -> Any:
    """A chromadb.HttpClient for the inventory's ``chromadb_url``. Raises NotConfigured
    (with the reason) or the client's own error when the server does not answer."""
    url = ctx.endpoint("chromadb_url")
    if not url:
        raise NotConfigured(f"no chromadb_url for {ctx.target} in the inventory")
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError:
        raise NotConfigured("the chromadb package is not installed "
                            "(pip install '.[chromadb]')") from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotConfigured(f"chromadb_url of {ctx.target} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 8000)
    return chromadb.HttpClient(host=parts.hostname, port=port, ssl=parts.scheme == "https",
                               headers=_auth_headers() or None,
                               settings=Settings(anonymized_telemetry=False))


def _connected(ctx: ActionContext) -> tuple[Any, ActionResult | None]:
    """(client, None), or (None, the result to return): not applicable when nothing is
    configured here, failed when the server does not answer."""
    try:
        return _client(ctx), None
    except NotConfigured as exc:
        return None, ActionResult(False, str(exc), not_applicable=True)
    except Exception as exc:  # noqa: BLE001 - the client raises ValueError and others
        return None, ActionResult(False, f"cannot reach ChromaDB of {ctx.target}: "
                                  f"{type(exc).__name__}: {_error(exc)}")


def _collections(ctx: ActionContext, fallback: Iterable[str] = ()) -> list[str]:
    """The collections a step acts on: its params, else the host's ``chromadb_collections``
    (a list or one name), else ``fallback``. Never labels."""
    for value in (ctx.params.get("collections"), ctx.params.get("collection"),
                  ctx.host_vars.get("chromadb_collections")):
        if value:
            return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    return list(fallback)


def _handles(ctx: ActionContext) -> ChromaCollections | None:
    resource = ctx.resource("chromadb")
    return resource if isinstance(resource, ChromaCollections) else None


def _probe_query(collection: Any) -> str:
    """One real query with a stored embedding (an empty collection: its count)."""
    stored = collection.get(limit=1, include=["embeddings"])
    embeddings = stored.get("embeddings")
    if embeddings is None or len(embeddings) == 0:
        return f"{collection.name}: empty, count {collection.count()}"
    answer = collection.query(query_embeddings=[list(map(float, embeddings[0]))], n_results=1)
    return f"{collection.name}: query answered {answer['ids'][0][:1]}"


def _error(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


# -- query_retry ---------------------------------------------------------------------------
class QueryRetry(Action):
    """Heartbeat, then a test query on each configured collection; on failure wait and
    try again (``attempts``, default 5; delay ``backoff`` doubling up to ``max_delay``).

    It changes nothing on the server: it proves a transient failure (a restart, a
    timeout) has passed. A failure that outlasts the retries is not transient, and the
    runbook goes on to the next strategy."""

    name = "chromadb.query_retry"
    scope = REMOTE
    timeout = 60.0

    def run(self, ctx: ActionContext) -> ActionResult:
        attempts = max(1, int(ctx.params.get("attempts", 5)))
        delay = float(ctx.params.get("backoff", 0.5))
        max_delay = float(ctx.params.get("max_delay", 8.0))
        errors: list[str] = []
        start = time.monotonic()
        for attempt in range(1, attempts + 1):
            ok, summary = self._try(ctx)
            if ok:
                return ActionResult(True, f"ChromaDB answers again on {ctx.target} after "
                                    f"{attempt} tr{'y' if attempt == 1 else 'ies'}: {summary}",
                                    {"attempts": attempt, "errors": errors,
                                     "seconds": round(time.monotonic() - start, 3)})
            if summary.startswith("not applicable: "):
                return ActionResult(False, summary.removeprefix("not applicable: "),
                                    not_applicable=True)
            errors.append(summary)
            ctx.log(f"try {attempt}/{attempts} failed: {summary}")
            if attempt < attempts and ctx.cancel.wait(delay):
                return ActionResult(False, "canceled while waiting to retry",
                                    {"attempts": attempt, "errors": errors})
            delay = min(delay * 2, max_delay)
        return ActionResult(False, f"ChromaDB on {ctx.target} still failing after {attempts} "
                            f"tries over {time.monotonic() - start:.1f}s: {errors[-1]}",
                            {"attempts": attempts, "errors": errors,
                             "seconds": round(time.monotonic() - start, 3)})

    def _try(self, ctx: ActionContext) -> tuple[bool, str]:
        try:
            client = _client(ctx)
            client.heartbeat()
            answers = [_probe_query(client.get_collection(name, embedding_function=None))
                       for name in _collections(ctx)]
        except NotConfigured as exc:
            return False, f"not applicable: {exc}"
        except Exception as exc:  # noqa: BLE001 - any client error is a failed try
            return False, f"{type(exc).__name__}: {_error(exc)}"
        return True, "; ".join(answers) or "heartbeat answered (no collection configured)"

    def plan(self, ctx: ActionContext) -> ActionResult:
        ok, summary = self._try(ctx)
        names = ", ".join(_collections(ctx)) or "(none configured)"
        return ActionResult(True, f"would retry a heartbeat and a test query on {names} up "
                            f"to {ctx.params.get('attempts', 5)} times; right now: "
                            f"{'ok' if ok else 'failing'}: {summary}")


# -- collection_reload ---------------------------------------------------------------------
class CollectionReload(Action):
    """Embedded: replaces the registered :class:`ChromaCollections`' client and re-opens
    each collection by name, so this application follows a rebuilt or restored
    collection. It cannot bring back a collection that no longer exists under its name
    (that is a rollback) and does nothing for other processes' handles."""

    name = "chromadb.collection_reload"
    scope = EMBEDDED
    resource = "chromadb"
    timeout = 60.0

    def run(self, ctx: ActionContext) -> ActionResult:
        handles = _handles(ctx)
        if handles is None:
            return ActionResult(False, "the registered chromadb resource is not a "
                                "ChromaCollections: nothing here can re-open collections",
                                not_applicable=True)
        names = _collections(ctx, handles.names)
        if not names:
            return ActionResult(False, "no collection to reload: none opened and none "
                                "configured")
        try:
            report = handles.reload(names)
        except Exception as exc:  # noqa: BLE001 - the handles in use stay as they were
            return ActionResult(False, f"reload failed, the old handles stay in use: "
                                f"{type(exc).__name__}: {_error(exc)}")
        moved = [n for n, r in report.items() if r["old_id"] != r["new_id"]]
        words = ", ".join(f"{n} ({r['count']} records)" for n, r in report.items())
        return ActionResult(True, f"re-opened {words} with a new client"
                            + (f"; {', '.join(moved)} now point at a new collection id"
                               if moved else "; the ids did not change"),
                            {"collections": report, "moved": moved})

    def plan(self, ctx: ActionContext) -> ActionResult:
        handles = _handles(ctx)
        if handles is None:
            return ActionResult(False, "the registered chromadb resource is not a "
                                "ChromaCollections", not_applicable=True)
        names = _collections(ctx, handles.names)
        return ActionResult(True, f"would make a new client and re-open {', '.join(names)} by "
                            f"name (handles now: {handles.ids()})")


# -- index_rebuild -------------------------------------------------------------------------
class IndexRebuild(Action):
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
    scope = REMOTE
    timeout = 1800.0

    def run(self, ctx: ActionContext) -> ActionResult:
        client, failed = _connected(ctx)
        if failed is not None:
            return failed
        names = _collections(ctx)
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
        handles = _handles(ctx)
        mine = [n for n in names if handles is not None and n in handles.names]
        if not mine:
            return [], ""
        try:
            handles.reload(mine)
        except Exception as exc:  # noqa: BLE001 - the rebuild stands; say what is left
            return [], (f"; this process's handles could NOT be re-opened ({_error(exc)}): "
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
            return False, (f"cannot read {name} ({_error(exc)}); nothing was changed: a "
                           "snapshot rollback is the next step"), data
        data.update(old_id=str(old.id), expected=expected)
        temp = f"{name}__rebuild_{stamp}"
        try:
            new = client.create_collection(temp, embedding_function=None,
                                           **_shape_of(old))
        except Exception as exc:  # noqa: BLE001
            return False, f"cannot create {temp}: {_error(exc)}", data
        data["new_id"] = str(new.id)
        try:
            copied, sampled = self._copy(ctx, old, new, expected, batch, sample, data)
            if new.count() != len(copied):
                raise RebuildError(f"{name}: copied {len(copied)} records, the new "
                                   f"collection holds {new.count()}; the original is "
                                   "untouched")
            self._check_sample(new, sampled, data)
            ctx.log(f"{name}: reading the original again for writes since the copy")
            _unchanged(old, copied, batch, f"{name} changed during the rebuild")
        except Exception as exc:  # noqa: BLE001 - the original stays; the copy goes
            _drop(client, temp)
            reason = str(exc) if isinstance(exc, RebuildError) else (
                f"cannot read {name} ({_error(exc)}); the original is untouched: a "
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
            copied.update(_digests(got))
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
            return False, f"cannot rename {name} aside: {_error(exc)}; nothing changed", data
        try:
            new.modify(name=name)
            current = client.get_collection(name, embedding_function=None)
            if str(current.id) != str(new.id) or current.count() != len(copied):
                raise RebuildError(f"{name} does not answer as the rebuilt collection")
            _probe_query(current)
            # Writers holding the old id wrote into it until now: nothing may be lost.
            _unchanged(old, copied, batch, f"{name} was written to during the swap")
        except Exception as exc:  # noqa: BLE001 - put the original back under its name
            back = _swap_back(new, temp, old, name)
            kept = _unchanged_or_keep(client, new, temp, copied, batch)
            return False, (f"the rebuilt {name} was not put in place ({_error(exc)}); "
                           f"{back}; {kept}"), data
        if ctx.params.get("keep_old"):
            data["kept_old"] = aside
        else:
            _drop(client, aside)
        data["seconds"] = round(time.monotonic() - start, 3)
        return True, "", data

    def plan(self, ctx: ActionContext) -> ActionResult:
        client, failed = _connected(ctx)
        if failed is not None:
            return failed
        names = _collections(ctx)
        if not names:
            return ActionResult(False, "no collection named (chromadb_collections)")
        batch = max(1, int(ctx.params.get("batch_size", 500)))
        words = []
        for name in names:
            try:
                count = client.get_collection(name, embedding_function=None).count()
                words.append(f"{name} ({count} records, {-(-count // batch)} batches)")
            except Exception as exc:  # noqa: BLE001
                words.append(f"{name} (cannot open: {_error(exc)})")
        return ActionResult(True, f"would copy {', '.join(words)} into new collections, "
                            "check counts, sample queries and that nothing was written "
                            "meanwhile, swap the names and delete the old ones")


class RebuildError(Exception):
    """A rebuild stopped on purpose, with the reason an operator reads."""


def _digests(got: Mapping[str, Any]) -> dict[str, str]:
    """id -> sha256 of (metadata, document, embedding) of a ``get`` page."""
    metadatas = got.get("metadatas") or [None] * len(got["ids"])
    documents = got.get("documents") or [None] * len(got["ids"])
    out = {}
    for i, rid in enumerate(got["ids"]):
        text = json.dumps([metadatas[i], documents[i], list(map(float, got["embeddings"][i]))],
                          sort_keys=True, default=str)
        out[rid] = hashlib.sha256(text.encode()).hexdigest()
    return out


def _unchanged(collection: Any, copied: Mapping[str, str], batch: int, what: str) -> None:
    """Reads ``collection`` again; raises RebuildError saying how it differs from what
    was copied (records added, removed or changed)."""
    now: dict[str, str] = {}
    offset = 0
    while True:
        got = collection.get(limit=batch, offset=offset, include=INCLUDE)
        if not got["ids"]:
            break
        now.update(_digests(got))
        offset += len(got["ids"])
    if now == copied:
        return
    added = len(now.keys() - copied.keys())
    removed = len(copied.keys() - now.keys())
    changed = sorted(k for k in now.keys() & copied.keys() if now[k] != copied[k])
    raise RebuildError(f"{what} ({added} added, {removed} removed, {len(changed)} changed"
                       f"{': ' + ', '.join(changed[:5]) if changed else ''}); the original "
                       "stays in place: rebuild when writes are quiet")


def _swap_back(new: Any, temp: str, old: Any, name: str) -> str:
    try:
        new.modify(name=temp)
        old.modify(name=name)
    except Exception as exc:  # noqa: BLE001 - say exactly where things are
        return (f"putting the original back FAILED ({_error(exc)}): the original is "
                f"collection id {old.id}, the copy id {new.id}")
    return f"the original is back under {name}"


def _unchanged_or_keep(client: Any, new: Any, temp: str, copied: Mapping[str, str],
                       batch: int) -> str:
    """The copy is dropped unless something was written into it while it had the name."""
    try:
        _unchanged(new, copied, batch, "the copy")
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


# -- collection_check (verify) -------------------------------------------------------------
class CollectionCheck(Action):
    """Verify: each configured collection opens by name and answers a query; where this
    process registered :class:`ChromaCollections`, its handles must point at those same
    collections. A stale handle is reported as not verifiable here (the verify fails at
    once) so the runbook goes on to ``collection_reload``. ``with: {handles: false}``
    checks the server side only (the data answers under the names), whatever this
    process holds: the verify of a step that acts on the server, and the probe."""

    name = "chromadb.collection_check"
    scope = REMOTE
    timeout = 15.0

    def run(self, ctx: ActionContext) -> ActionResult:
        client, failed = _connected(ctx)
        if failed is not None:
            return failed
        handles = _handles(ctx)
        names = _collections(ctx, handles.names if handles else ())
        held = handles.ids() if handles and ctx.params.get("handles", True) else {}
        answers, stale = [], []
        try:
            client.heartbeat()
            for name in names:
                current = client.get_collection(name, embedding_function=None)
                answers.append(_probe_query(current))
                if name in held and held[name] != str(current.id):
                    stale.append(f"{name} (handle {held[name][:8]}, now {str(current.id)[:8]})")
        except Exception as exc:  # noqa: BLE001
            return ActionResult(False, f"{type(exc).__name__}: {_error(exc)}")
        if stale:
            return ActionResult(False, "this process's handles still point at replaced "
                                f"collections: {', '.join(stale)}; collection_reload must "
                                "follow", {"stale": stale}, not_applicable=True)
        return ActionResult(True, "; ".join(answers) or "heartbeat answered (no collection "
                            "configured)")

    plan = run


def register(registry) -> None:
    for action in (Heartbeat(), QueryRetry(), CollectionReload(), IndexRebuild(),
                   CollectionCheck()):
        registry.register(action)
