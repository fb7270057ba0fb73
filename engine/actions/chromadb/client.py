"""How the ChromaDB actions reach the server: the inventory's ``chromadb_url``, a token
from the environment, a ``chromadb.HttpClient`` (an optional extra, imported lazily),
the collections a step acts on, and the handles this process registered."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
from engine.actions.chromadb.handles import ChromaCollections

TOKEN_ENV = "CHROMADB_TOKEN"


def auth_headers() -> dict[str, str]:
    """The bearer from ``CHROMADB_TOKEN``, when the server wants one."""
    token = os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


class NotConfigured(Exception):
    """No way to reach the server from here (no endpoint, no chromadb package)."""


def http_client(ctx: ActionContext) -> Any:
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
                               headers=auth_headers() or None,
                               settings=Settings(anonymized_telemetry=False))


def on_server(ctx: ActionContext, body: Callable[[Any], ActionResult]) -> ActionResult:
    """``body(client)`` with a client of the target's server; without one, not applicable
    when nothing is configured here, failed when the server does not answer."""
    try:
        client = http_client(ctx)
    except NotConfigured as exc:
        return ActionResult(False, str(exc), not_applicable=True)
    except Exception as exc:  # noqa: BLE001 - the client raises ValueError and others
        return ActionResult(False, f"cannot reach ChromaDB of {ctx.target}: "
                            f"{type(exc).__name__}: {error_text(exc)}")
    return body(client)


class ServerAction(Action):
    """A remote action on the target's ChromaDB server: ``run`` makes the client and hands
    it to ``act``; without one it ends as :func:`on_server` says."""

    scope = REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        return on_server(ctx, lambda client: self.act(ctx, client))

    def act(self, ctx: ActionContext, client: Any) -> ActionResult:
        raise NotImplementedError


def collections_of(ctx: ActionContext, fallback: Iterable[str] = ()) -> list[str]:
    """The collections a step acts on: its params, else the host's ``chromadb_collections``
    (a list or one name), else ``fallback``. Never labels."""
    for value in (ctx.params.get("collections"), ctx.params.get("collection"),
                  ctx.host_vars.get("chromadb_collections")):
        if value:
            return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    return list(fallback)


def registered_handles(ctx: ActionContext) -> ChromaCollections | None:
    """The handles this process registered as ``chromadb``, if it registered any."""
    resource = ctx.resource("chromadb")
    return resource if isinstance(resource, ChromaCollections) else None


def probe_query(collection: Any) -> str:
    """One real query with a stored embedding (an empty collection: its count)."""
    stored = collection.get(limit=1, include=["embeddings"])
    embeddings = stored.get("embeddings")
    if embeddings is None or len(embeddings) == 0:
        return f"{collection.name}: empty, count {collection.count()}"
    answer = collection.query(query_embeddings=[list(map(float, embeddings[0]))], n_results=1)
    return f"{collection.name}: query answered {answer['ids'][0][:1]}"


def error_text(exc: Exception) -> str:
    """A client error in a summary: its text, cut at 300 characters."""
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
