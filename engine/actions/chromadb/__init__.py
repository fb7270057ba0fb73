"""ChromaDB actions.

``heartbeat`` says the server answers (plain HTTP, no chromadb import); it cannot see a
broken collection, so the runbook's verify and probe are ``collection_check``.
The strategies use the ``chromadb`` HTTP client, imported lazily inside the actions
(it is an optional extra: without it they end with a clear failure, and the engine
still imports and runs):

- ``query_retry`` (remote): heartbeat and a test query, with bounded backoff. It fixes
  nothing; it proves a transient failure has passed (or says it has not).
- ``collection_reload`` (embedded): a fresh client and fresh collection handles by name,
  in the application that registered a :class:`ChromaCollections`; a name with no
  collection on the server is reported, never created. Clients hold
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

One module per concept: ``handles`` (what an application registers), ``client`` (how the
actions reach the server), ``health`` (``heartbeat``, ``collection_check``),
``query_retry``, ``reload`` (``collection_reload``), ``rebuild`` (``index_rebuild``) and
``content`` (the digests a rebuild compares). This package is the entry point the
registry imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.actions.chromadb.handles import ChromaCollections
from engine.actions.chromadb.health import CollectionCheck, Heartbeat
from engine.actions.chromadb.query_retry import QueryRetry
from engine.actions.chromadb.rebuild import IndexRebuild
from engine.actions.chromadb.reload import CollectionReload

if TYPE_CHECKING:
    from engine.actions.registry import ActionRegistry

__all__ = ["ChromaCollections", "CollectionCheck", "CollectionReload", "Heartbeat",
           "IndexRebuild", "QueryRetry", "register"]


def register(registry: ActionRegistry) -> None:
    """Register the ChromaDB actions (the registry imports this package by name)."""
    for action in (Heartbeat(), QueryRetry(), CollectionReload(), IndexRebuild(),
                   CollectionCheck()):
        registry.register(action)
