"""An admin session on OpenWebUI's API, for the remote actions: an API key, or a sign-in
with the account from the environment."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.actions.base import ActionContext, ActionResult, no_endpoint
from engine.actions.openwebui.api import (
    API_KEY_ENV,
    CHAT,
    DEFAULTS,
    HTTP_TIMEOUT,
    MODELS,
    SIGNIN,
    Refused,
    base_url,
    error_detail,
    http_client,
    sign_in,
)


class Admin:
    """An authenticated session on OpenWebUI's API for the remote actions."""

    def __init__(self, ctx: ActionContext) -> None:
        url = base_url(ctx)
        if not url:
            raise Refused(f"no openwebui_url for {ctx.target} in the inventory")
        self.url = url
        self.http = http_client(base_url=url, timeout=HTTP_TIMEOUT)
        key = os.environ.get(API_KEY_ENV)
        if key:
            bearer, self.how = key, f"API key from {API_KEY_ENV}"
        else:
            try:
                answer = sign_in(self.http, url + SIGNIN)
            except Refused:
                self.http.close()
                raise
            bearer, self.how = answer["token"], f"signed in as {answer.get('email')}"
        self.http.headers["Authorization"] = f"Bearer {bearer}"

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def get(self, path: str) -> Any:
        import httpx

        try:
            response = self.http.get(path)
        except httpx.HTTPError as exc:
            raise Refused(f"GET {path} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code in (401, 403) and path == DEFAULTS:
            raise Refused(f"GET {path}: {error_detail(response)} (the account must be an admin)")
        if response.status_code != 200:
            raise Refused(f"GET {path}: {error_detail(response)}")
        return response.json()

    def defaults(self) -> tuple[list[str], Any]:
        """The configured default models (DEFAULT_MODELS is one comma-separated string)
        and the model order list, kept as it is when the default is switched."""
        config = self.get(DEFAULTS)
        models = [m.strip() for m in (config.get("DEFAULT_MODELS") or "").split(",") if m.strip()]
        return models, config.get("MODEL_ORDER_LIST")

    def offered(self) -> list[str]:
        return [str(m.get("id")) for m in self.get(MODELS).get("data", []) if m.get("id")]

    def answers(self, model: str, within: float) -> tuple[bool, str]:
        """Does ``model`` answer a one-token chat completion within ``within`` seconds?"""
        import httpx

        t0 = time.monotonic()
        try:
            response = self.http.post(CHAT, timeout=within, json={
                "model": model, "stream": False, "max_tokens": 1,
                "messages": [{"role": "user", "content": "ping"}]})
        except httpx.TimeoutException:
            return False, f"no answer within {within:g}s"
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        took = time.monotonic() - t0
        if response.status_code != 200:
            return False, error_detail(response)
        try:
            choices = response.json().get("choices") or []
        except ValueError:
            choices = []
        if not choices:
            return False, "answered without a completion"
        return True, f"answered in {took:.2f}s"

    def set_defaults(self, models: Sequence[str], order: Any) -> list[str]:
        import httpx

        body = {"DEFAULT_MODELS": ",".join(models), "MODEL_ORDER_LIST": order}
        try:
            response = self.http.post(DEFAULTS, json=body)
        except httpx.HTTPError as exc:
            raise Refused(f"POST {DEFAULTS} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise Refused(f"POST {DEFAULTS}: {error_detail(response)}")
        return self.defaults()[0]


def with_admin(ctx: ActionContext, body: Callable[[Admin], ActionResult]) -> ActionResult:
    """Run ``body(admin)`` with an admin session; a refusal is a failed step with its reason,
    no URL is not applicable here."""
    if not base_url(ctx):
        return no_endpoint(ctx, "openwebui_url")
    try:
        with Admin(ctx) as admin:
            return body(admin)
    except Refused as exc:
        return ActionResult(False, str(exc))
