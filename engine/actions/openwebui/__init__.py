"""OpenWebUI actions, through OpenWebUI's own HTTP API (paths as open-webui's routers
define them: ``routers/auths.py``, ``routers/configs.py``, ``main.py``):

    POST /api/v1/auths/signin     {email, password} -> {token, token_type, expires_at, role...}
    GET  /api/v1/auths/           the session's user: 200 while the bearer is valid
    GET  /api/models              {"data": [{"id": ...}, ...]}
    POST /api/chat/completions    OpenAI-style; a model that does not answer is an error
    GET|POST /api/v1/configs/models   {"DEFAULT_MODELS": "a,b" | null,
                                       "MODEL_ORDER_LIST": [...] | null}   (admin only)
    GET  /health                  {"status": true}

Endpoints come from inventory host vars (``openwebui_url``, ``openwebui_direct_api_url``),
credentials from the environment only (never labels, never artifacts):
``OPENWEBUI_EMAIL`` + ``OPENWEBUI_PASSWORD`` (signed in for a session token), or
``OPENWEBUI_API_KEY`` (an ``sk-...`` key, sent as the bearer); the remote actions need an
admin account. ``OPENWEBUI_DIRECT_API_KEY`` (optional) is sent to the direct model API.

The embedded contract (``token_refresh``): the application registers the ``httpx.Client``
it calls OpenWebUI with, ``recovery.resources.register("openwebui", client, target=...)``,
its ``base_url`` set to OpenWebUI and its bearer in ``client.headers["Authorization"]``.
``token_refresh`` signs in again and replaces that header on *that* client, so the
application's next call carries the new token; nothing else on the client is touched.

One module per concept: ``api`` (paths, credentials, sign-in, the HTTP client),
``admin`` (an admin session for the remote actions), ``health``, ``tokens``
(``token_refresh``, ``session_valid``), ``models`` (``model_failover``,
``default_model_answers``) and ``degradation`` (``graceful_degradation``). This package
is the entry point the registry imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.actions.openwebui.degradation import GracefulDegradation
from engine.actions.openwebui.health import Health
from engine.actions.openwebui.models import DefaultModelAnswers, ModelFailover
from engine.actions.openwebui.tokens import SessionValid, TokenRefresh

if TYPE_CHECKING:
    from engine.actions.registry import ActionRegistry


def register(registry: ActionRegistry) -> None:
    """Register the OpenWebUI actions (the registry imports this package by name)."""
    for action in (Health(), TokenRefresh(), SessionValid(), ModelFailover(),
                   DefaultModelAnswers(), GracefulDegradation()):
        registry.register(action)
