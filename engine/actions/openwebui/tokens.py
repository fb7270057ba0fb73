"""The embedded ``openwebui.token_refresh`` and its verify ``openwebui.session_valid``:
the application's own ``httpx.Client`` gets a fresh bearer, checked before it is
installed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from engine.actions.base import EMBEDDED, Action, ActionContext, ActionResult
from engine.actions.openwebui.api import (
    API_KEY_ENV,
    EMAIL_ENV,
    HTTP_TIMEOUT,
    PASSWORD_ENV,
    SESSION,
    SIGNIN,
    Refused,
    credentials,
    sign_in,
)


def _registered_client(ctx: ActionContext) -> tuple[Any, str]:
    """The application's registered ``httpx.Client`` and the OpenWebUI URL it talks to."""
    import httpx

    client = ctx.resource("openwebui")
    if not isinstance(client, httpx.Client):
        raise Refused(f"the registered 'openwebui' resource is a {type(client).__name__}, "
                      "not an httpx.Client: nothing to give a token to")
    url = str(client.base_url).rstrip("/") or ctx.endpoint("openwebui_url")
    if not url:
        raise Refused(f"the registered client has no base_url and {ctx.target} no "
                      "openwebui_url in the inventory")
    return client, url.rstrip("/")


def _session(client: Any, url: str, bearer: str | None = None) -> tuple[int | None, dict]:
    """GET /api/v1/auths/ with the client's own header (or ``bearer``): status and user."""
    import httpx

    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    try:
        response = client.get(url + SESSION, headers=headers, timeout=HTTP_TIMEOUT)
    except httpx.HTTPError:
        return None, {}
    try:
        user = response.json() if response.status_code == 200 else {}
    except ValueError:
        user = {}
    return response.status_code, user if isinstance(user, dict) else {}


def _on_app_client(ctx: ActionContext,
                   body: Callable[[Any, str], ActionResult]) -> ActionResult:
    """``body(client, url)`` with the application's registered client and the URL it talks
    to; a refusal, finding the client or in ``body``, is a failed step with its reason."""
    try:
        client, url = _registered_client(ctx)
        return body(client, url)
    except Refused as exc:
        return ActionResult(False, str(exc))


class AppClientAction(Action):
    """An embedded action on the ``httpx.Client`` the application registered as
    ``openwebui`` (skipped where none is): ``run`` hands the client and its URL to ``act``."""

    scope = EMBEDDED
    resource = "openwebui"

    def run(self, ctx: ActionContext) -> ActionResult:
        return _on_app_client(ctx, lambda client, url: self.act(ctx, client, url))

    def act(self, ctx: ActionContext, client: Any, url: str) -> ActionResult:
        raise NotImplementedError


class TokenRefresh(AppClientAction):
    """Sign in again and give the new token to the application's registered client.

    Embedded: acts on the ``httpx.Client`` the application registered as ``openwebui``
    (skipped where none is). Signs in with OPENWEBUI_EMAIL/OPENWEBUI_PASSWORD (or installs
    OPENWEBUI_API_KEY), checks the new bearer against GET /api/v1/auths/ *before* it
    replaces the client's Authorization header, so a failed refresh leaves the client as
    it was. It cannot fix wrong credentials, a disabled account or API keys switched off
    on the server; the summary says which.
    """

    name = "openwebui.token_refresh"
    timeout = 30.0

    def act(self, ctx: ActionContext, client: Any, url: str) -> ActionResult:
        before, _ = _session(client, url)
        if credentials() is not None:
            answer = sign_in(client, url + SIGNIN)
            bearer, how = answer["token"], "signed in again"
            expires_at = answer.get("expires_at")
        elif os.environ.get(API_KEY_ENV):
            bearer, how, expires_at = os.environ[API_KEY_ENV], f"installed {API_KEY_ENV}", None
        else:
            raise Refused(f"no credentials: set {EMAIL_ENV} and {PASSWORD_ENV} (or "
                          f"{API_KEY_ENV}) in the application's environment")
        after, user = _session(client, url, bearer)
        if after != 200:
            raise Refused(f"{how}, but OpenWebUI rejects the new bearer too "
                          f"(GET {SESSION}: {after}); the client is left as it was")
        client.headers["Authorization"] = f"Bearer {bearer}"
        expiry = (f", valid until {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires_at))}"
                  if expires_at else ", no expiry")
        was = ("rejected" if before in (401, 403) else "unanswered" if before is None
               else f"answering {before}")
        return ActionResult(True, (
            f"{how} at {url} as {user.get('email', '?')} (role {user.get('role', '?')}) and "
            f"gave the application's client the new token{expiry}; its old one was {was}"),
            data={"base_url": url, "account": user.get("email"), "role": user.get("role"),
                  "expires_at": expires_at, "old_session_status": before,
                  "method": "signin" if how == "signed in again" else "api_key"})

    def plan(self, ctx: ActionContext) -> ActionResult:
        return _on_app_client(ctx, self._describe)

    def _describe(self, client: Any, url: str) -> ActionResult:
        before, _ = _session(client, url)
        creds = credentials()
        source = (f"{EMAIL_ENV}={creds[0]}" if creds else
                  API_KEY_ENV if os.environ.get(API_KEY_ENV) else None)
        if source is None:
            return ActionResult(False, f"would fail: no credentials ({EMAIL_ENV}/"
                                f"{PASSWORD_ENV} or {API_KEY_ENV}) in this environment")
        return ActionResult(True, f"would sign in at {url} with {source} and replace the "
                            f"registered client's Authorization header (its session now "
                            f"answers {before})", data={"base_url": url,
                                                        "old_session_status": before})


class SessionValid(AppClientAction):
    """Verify of ``token_refresh``: the application's registered client is signed in
    (GET /api/v1/auths/ answers 200 with its own header)."""

    name = "openwebui.session_valid"
    timeout = 10.0

    def act(self, ctx: ActionContext, client: Any, url: str) -> ActionResult:
        status, user = _session(client, url)
        if status == 200:
            return ActionResult(True, f"the application's client is signed in as "
                                f"{user.get('email', '?')}")
        return ActionResult(False, f"the application's client is not signed in "
                            f"(GET {SESSION}: {status if status else 'no answer'})")

    def plan(self, ctx: ActionContext) -> ActionResult:
        return self.run(ctx)
