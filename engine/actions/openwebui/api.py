"""OpenWebUI's HTTP API as the actions use it: the paths, where the credentials come
from (the environment only), signing in, OpenWebUI's URL for a target, and an HTTP
client with a TLS context built once."""

from __future__ import annotations

import functools
import os
from typing import Any

from engine.actions.base import ActionContext

EMAIL_ENV, PASSWORD_ENV, API_KEY_ENV = "OPENWEBUI_EMAIL", "OPENWEBUI_PASSWORD", "OPENWEBUI_API_KEY"
DIRECT_KEY_ENV = "OPENWEBUI_DIRECT_API_KEY"
SIGNIN, SESSION = "/api/v1/auths/signin", "/api/v1/auths/"
MODELS, CHAT, DEFAULTS = "/api/models", "/api/chat/completions", "/api/v1/configs/models"
HTTP_TIMEOUT = 5.0          # sign-in, listings, the config: small requests
ANSWER_WITHIN = 10.0        # a model that has not answered a one-token prompt by then is down


@functools.lru_cache(maxsize=1)
def _tls() -> Any:
    """httpx's default TLS context, built once: building it per client costs 50-150 ms."""
    import httpx

    return httpx.create_ssl_context()


def http_client(**kw: Any) -> Any:
    """An ``httpx.Client`` (``kw`` as httpx takes them) sharing the one TLS context."""
    import httpx

    return httpx.Client(verify=_tls(), **kw)


class Refused(Exception):
    """Why an action cannot go on, in an operator's words (a failed step, not a crash)."""


def error_detail(response: Any) -> str:
    """OpenWebUI's error text (FastAPI's ``{"detail": ...}``), else the status line."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")


def credentials() -> tuple[str, str] | None:
    email, password = os.environ.get(EMAIL_ENV), os.environ.get(PASSWORD_ENV)
    return (email, password) if email and password else None


def sign_in(http: Any, url: str) -> dict[str, Any]:
    """A new session from OPENWEBUI_EMAIL/OPENWEBUI_PASSWORD: the sign-in answer (with the
    token, which must never reach a summary or ``data``)."""
    import httpx

    creds = credentials()
    if creds is None:
        raise Refused(f"no credentials: set {EMAIL_ENV} and {PASSWORD_ENV} (or {API_KEY_ENV})")
    try:
        response = http.post(url, json={"email": creds[0], "password": creds[1]},
                             timeout=HTTP_TIMEOUT)
    except httpx.HTTPError as exc:
        raise Refused(f"sign-in at {url} failed: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise Refused(f"sign-in as {creds[0]} refused: {error_detail(response)}")
    answer = response.json()
    if not answer.get("token"):
        raise Refused("sign-in answered without a token")
    return answer


def base_url(ctx: ActionContext) -> str | None:
    """OpenWebUI's URL: the inventory's ``openwebui_url``, else the base URL of the client
    the application registered (the application chose it; a label never does)."""
    url = ctx.endpoint("openwebui_url")
    if url:
        return url.rstrip("/")
    client = ctx.resource("openwebui")
    base = str(getattr(client, "base_url", "") or "")
    return base.rstrip("/") or None
