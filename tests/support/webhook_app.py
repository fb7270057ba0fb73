"""The webhook app in this process (Flask's test client) on a real SQLite store, with
known credentials: the webhook token and two named operators, alice and bob; in a
``Service``, also the issued tokens of a viewer (vera) and of an app (shop, for the
component ``demo``), and a metrics reader."""

from __future__ import annotations

import json
import time
from pathlib import Path

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
VIEWER = "vera-token-0123456789abcdefgh"
APP = "shop-token-0123456789abcdefghi"
METRICS = "metrics-token-0123456789abcdef"
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}
AS_APP = {"Authorization": f"Bearer {APP}"}
APP_COMPONENT = "demo"
# A token per role, as the access walks present them ("none": no Authorization header).
BY_ROLE = {"none": None, "webhook": WEBHOOK, "metrics": METRICS, "viewer": VIEWER,
           "app": APP, "operator": ALICE}


def credentials(home: Path | None = None) -> Credentials:
    """The configured credentials; with ``home``, the viewer's and the app's issued into
    its tokens file too (as ``recovery token add`` does)."""
    tokens = None
    if home is not None:
        from engine.security.tokens import TOKENS_FILE, IssuedToken, TokenFile

        tokens = TokenFile(Path(home) / TOKENS_FILE)
        have = {t.name for t in tokens.tokens(strict=True)}
        for name, role, token, component in (("vera", "viewer", VIEWER, None),
                                             ("shop", "app", APP, APP_COMPONENT)):
            if name not in have:
                tokens.add(IssuedToken(name, role, hash_token(token), time.time(), "test",
                                       component))
    return Credentials(WEBHOOK, {"alice": hash_token(ALICE), "bob": hash_token(BOB)},
                       {"metrics": hash_token(METRICS)}, tokens)


class Service:
    """One app on a real SQLite store in the test's engine home."""

    def __init__(self, config, context: EngineContext | None = None) -> None:
        config.ensure_home()   # a recovery home before its tokens file
        self.app = create_app(config, context=context, credentials=credentials(config.home))
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
