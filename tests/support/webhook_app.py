"""The webhook app in this process (Flask's test client) on a real SQLite store, with
known credentials: the webhook token and two named operators, alice and bob."""

from __future__ import annotations

import json
import time

from engine.context import EngineContext
from engine.security.credentials import Credentials, hash_token
from engine.store import StoreUnavailable
from engine.store.sqlite import SQLiteStore
from webhook import EXTENSION, create_app

WEBHOOK = "webhook-token-0123456789abcdef"
ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefghij"
HOOK = {"Authorization": f"Bearer {WEBHOOK}"}
AS_ALICE = {"Authorization": f"Bearer {ALICE}"}
AS_BOB = {"Authorization": f"Bearer {BOB}"}


def credentials() -> Credentials:
    return Credentials(WEBHOOK, {"alice": hash_token(ALICE), "bob": hash_token(BOB)})


class Service:
    """One app on a real SQLite store in the test's engine home."""

    def __init__(self, config, context: EngineContext | None = None) -> None:
        self.app = create_app(config, context=context, credentials=credentials())
        self.client = self.app.test_client()
        self.ctx = self.app.extensions[EXTENSION].context
        self.store = self.ctx.store

    def post_alerts(self, body, headers=HOOK, **kw):
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        return self.client.post("/api/v1/alerts", data=data, headers=headers,
                                content_type="application/json", **kw)

    def depth(self) -> int:
        return self.store.intake_depth(time.time())[0]

    def journaled(self) -> list:
        return self.store.claim_intake("test", 10_000, 60)


# -- the store -----------------------------------------------------------------------------


class JournalDown(SQLiteStore):
    def enqueue_alerts(self, items, **kwargs):
        raise StoreUnavailable("disk I/O error")
