"""What an application that embeds the engine registers as ``chromadb``: its client
and its collection handles, which ``collection_reload`` (and ``index_rebuild``) re-open
by name."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


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
                self._collections[name] = open_collection(self.client, name)
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

    def server_ids(self, names: Iterable[str]) -> dict[str, str | None]:
        """Collection name -> the id that name carries on the server now (None: no
        collection by that name), through a new client; changes nothing, here or there."""
        from chromadb.errors import NotFoundError

        client = self._connect()
        client.heartbeat()
        found: dict[str, str | None] = {}
        for name in names:
            try:
                found[name] = str(open_collection(client, name).id)
            except NotFoundError:
                found[name] = None
        return found

    def reload(self, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """A new client and fresh handles; the old ones stay in use until all opened.
        Returns name -> {old_id, new_id, count}."""
        wanted = list(names) if names is not None else list(self.names)
        client = self._connect()
        client.heartbeat()
        opened = {name: open_collection(client, name) for name in wanted}
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


def open_collection(client: Any, name: str) -> Any:
    """``get_collection`` without an embedding function: callers pass embeddings, and
    ChromaDB's default one downloads a model."""
    return client.get_collection(name, embedding_function=None)
