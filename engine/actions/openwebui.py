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
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from typing import Any

from engine.actions.base import EMBEDDED, REMOTE, Action, ActionContext, ActionResult

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


def _http(**kw: Any) -> Any:
    import httpx

    return httpx.Client(verify=_tls(), **kw)


class Refused(Exception):
    """Why an action cannot go on, in an operator's words (a failed step, not a crash)."""


def _detail(response: Any) -> str:
    """OpenWebUI's error text (FastAPI's ``{"detail": ...}``), else the status line."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")


def _credentials() -> tuple[str, str] | None:
    email, password = os.environ.get(EMAIL_ENV), os.environ.get(PASSWORD_ENV)
    return (email, password) if email and password else None


def _sign_in(http: Any, url: str) -> dict[str, Any]:
    """A new session from OPENWEBUI_EMAIL/OPENWEBUI_PASSWORD: the sign-in answer (with the
    token, which must never reach a summary or ``data``)."""
    import httpx

    creds = _credentials()
    if creds is None:
        raise Refused(f"no credentials: set {EMAIL_ENV} and {PASSWORD_ENV} (or {API_KEY_ENV})")
    try:
        response = http.post(url, json={"email": creds[0], "password": creds[1]},
                             timeout=HTTP_TIMEOUT)
    except httpx.HTTPError as exc:
        raise Refused(f"sign-in at {url} failed: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise Refused(f"sign-in as {creds[0]} refused: {_detail(response)}")
    answer = response.json()
    if not answer.get("token"):
        raise Refused("sign-in answered without a token")
    return answer


def _base_url(ctx: ActionContext) -> str | None:
    """OpenWebUI's URL: the inventory's ``openwebui_url``, else the base URL of the client
    the application registered (the application chose it; a label never does)."""
    url = ctx.endpoint("openwebui_url")
    if url:
        return url.rstrip("/")
    client = ctx.resource("openwebui")
    base = str(getattr(client, "base_url", "") or "")
    return base.rstrip("/") or None


class Admin:
    """An authenticated session on OpenWebUI's API for the remote actions."""

    def __init__(self, ctx: ActionContext) -> None:
        url = _base_url(ctx)
        if not url:
            raise Refused(f"no openwebui_url for {ctx.target} in the inventory")
        self.url = url
        self.http = _http(base_url=url, timeout=HTTP_TIMEOUT)
        key = os.environ.get(API_KEY_ENV)
        if key:
            bearer, self.how = key, f"API key from {API_KEY_ENV}"
        else:
            try:
                answer = _sign_in(self.http, url + SIGNIN)
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
            raise Refused(f"GET {path}: {_detail(response)} (the account must be an admin)")
        if response.status_code != 200:
            raise Refused(f"GET {path}: {_detail(response)}")
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
            return False, _detail(response)
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
            raise Refused(f"POST {DEFAULTS}: {_detail(response)}")
        return self.defaults()[0]


def _remote(ctx: ActionContext, body) -> ActionResult:
    """Run ``body(admin)`` with an admin session; a refusal is a failed step with its reason,
    no URL is not applicable here."""
    if not _base_url(ctx):
        return ActionResult(False, f"no openwebui_url for {ctx.target} in the inventory",
                            not_applicable=True)
    try:
        with Admin(ctx) as admin:
            return body(admin)
    except Refused as exc:
        return ActionResult(False, str(exc))


class Health(Action):
    """GET /health answers 200. Says the server is up, not that a model answers."""

    name = "openwebui.health"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        import httpx

        url = _base_url(ctx)
        if not url:
            return ActionResult(False, f"no openwebui_url for {ctx.target} in the inventory",
                                not_applicable=True)
        try:
            with _http(timeout=3) as http:
                response = http.get(url + "/health")
        except httpx.HTTPError as exc:
            return ActionResult(False, f"health check failed: {exc}")
        return ActionResult(response.status_code == 200, f"/health {response.status_code}")

    plan = run


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


class TokenRefresh(Action):
    """Sign in again and give the new token to the application's registered client.

    Embedded: acts on the ``httpx.Client`` the application registered as ``openwebui``
    (skipped where none is). Signs in with OPENWEBUI_EMAIL/OPENWEBUI_PASSWORD (or installs
    OPENWEBUI_API_KEY), checks the new bearer against GET /api/v1/auths/ *before* it
    replaces the client's Authorization header, so a failed refresh leaves the client as
    it was. It cannot fix wrong credentials, a disabled account or API keys switched off
    on the server; the summary says which.
    """

    name = "openwebui.token_refresh"
    scope = EMBEDDED
    resource = "openwebui"
    timeout = 30.0

    def run(self, ctx: ActionContext) -> ActionResult:
        try:
            client, url = _registered_client(ctx)
            before, _ = _session(client, url)
            if _credentials() is not None:
                answer = _sign_in(client, url + SIGNIN)
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
        except Refused as exc:
            return ActionResult(False, str(exc))
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
        try:
            client, url = _registered_client(ctx)
        except Refused as exc:
            return ActionResult(False, str(exc))
        before, _ = _session(client, url)
        creds = _credentials()
        source = (f"{EMAIL_ENV}={creds[0]}" if creds else
                  API_KEY_ENV if os.environ.get(API_KEY_ENV) else None)
        if source is None:
            return ActionResult(False, f"would fail: no credentials ({EMAIL_ENV}/"
                                f"{PASSWORD_ENV} or {API_KEY_ENV}) in this environment")
        return ActionResult(True, f"would sign in at {url} with {source} and replace the "
                            f"registered client's Authorization header (its session now "
                            f"answers {before})", data={"base_url": url,
                                                        "old_session_status": before})


class SessionValid(Action):
    """Verify of ``token_refresh``: the application's registered client is signed in
    (GET /api/v1/auths/ answers 200 with its own header)."""

    name = "openwebui.session_valid"
    scope = EMBEDDED
    resource = "openwebui"
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        try:
            client, url = _registered_client(ctx)
        except Refused as exc:
            return ActionResult(False, str(exc))
        status, user = _session(client, url)
        if status == 200:
            return ActionResult(True, f"the application's client is signed in as "
                                f"{user.get('email', '?')}")
        return ActionResult(False, f"the application's client is not signed in "
                            f"(GET {SESSION}: {status if status else 'no answer'})")

    plan = run


def _fallbacks(ctx: ActionContext) -> list[str]:
    """The fallback list: the runbook's ``with: {fallback_models: [...]}``, else the
    host var ``openwebui_fallback_models`` (a list, or one comma-separated string)."""
    raw = ctx.params.get("fallback_models") or ctx.host_vars.get("openwebui_fallback_models")
    if isinstance(raw, str):
        raw = raw.split(",")
    return [str(m).strip() for m in (raw or []) if str(m).strip()]


class ModelFailover(Action):
    """When the default model does not answer, make the next healthy fallback the default.

    Remote: reads DEFAULT_MODELS (admin API), asks the default a one-token chat
    completion; if it does not answer, tries each model of the fallback list that
    OpenWebUI offers, in order, and writes the first that answers as the new first
    default (the other defaults and MODEL_ORDER_LIST are kept). A default that answers
    again is left alone. It never switches back by itself: once the primary is healthy,
    an operator sets it again (the run's ``data`` keeps the previous default). It cannot
    help when every fallback is down, nor change a model a user picked in a chat.
    """

    name = "openwebui.model_failover"
    scope = REMOTE
    timeout = 60.0

    def run(self, ctx: ActionContext) -> ActionResult:
        fallbacks = _fallbacks(ctx)
        if not fallbacks:
            return ActionResult(False, f"no fallback models for {ctx.target}: set "
                                "openwebui_fallback_models in the inventory (or with: "
                                "{fallback_models: [...]} in the runbook)",
                                not_applicable=True)
        within = float(ctx.params.get("answer_within", ANSWER_WITHIN))
        return _remote(ctx, lambda admin: self._failover(ctx, admin, fallbacks, within))

    def _failover(self, ctx: ActionContext, admin: Admin, fallbacks: list[str],
                  within: float) -> ActionResult:
        defaults, order = admin.defaults()
        primary = defaults[0] if defaults else None
        tried: dict[str, str] = {}
        if primary:
            ok, why = admin.answers(primary, within)
            if ok:
                return ActionResult(True, f"the default model {primary!r} {why}: nothing "
                                    "switched", data={"default": primary, "switched": False})
            tried[primary] = why
        offered = set(admin.offered())
        for model in fallbacks:
            if ctx.cancel.is_set():
                return ActionResult(False, "canceled before a healthy model was found",
                                    data={"tried": tried})
            if model in tried:
                continue
            if model not in offered:
                tried[model] = "not offered by this OpenWebUI"
                continue
            ok, why = admin.answers(model, within)
            if not ok:
                tried[model] = why
                continue
            now = admin.set_defaults([model, *(d for d in defaults[1:] if d != model)], order)
            if not now or now[0] != model:
                return ActionResult(False, f"wrote {model!r} as the default model but "
                                    f"OpenWebUI now reports {now!r}", data={"tried": tried})
            was = f"{primary!r} ({tried[primary]})" if primary else "none"
            others = "; ".join(f"{m}: {w}" for m, w in tried.items() if m != primary)
            return ActionResult(True, (
                f"default model switched from {was} to {model!r} ({why}) via {admin.how}"
                + (f"; skipped {others}" if others else "")
                + ". Switch back by hand once the primary answers again."),
                data={"previous": primary, "default": model, "defaults": now,
                      "tried": tried, "switched": True})
        listed = "; ".join(f"{m}: {w}" for m, w in tried.items())
        return ActionResult(False, f"no model of the fallback list answers: {listed}",
                            data={"previous": primary, "tried": tried, "switched": False})

    def plan(self, ctx: ActionContext) -> ActionResult:
        fallbacks = _fallbacks(ctx)
        if not fallbacks:
            return self.run(ctx)

        def describe(admin: Admin) -> ActionResult:
            defaults, _ = admin.defaults()
            offered = set(admin.offered())
            listed = ", ".join(m + ("" if m in offered else " (not offered)") for m in fallbacks)
            return ActionResult(True, (
                f"would ask the default model {defaults[0] if defaults else None!r} for one "
                f"token and, if it does not answer, make the first answering model of "
                f"[{listed}] the default"), data={"defaults": defaults, "fallbacks": fallbacks})

        return _remote(ctx, describe)


class DefaultModelAnswers(Action):
    """Verify of ``model_failover``, and the runbook's verify (so the probe's check): the
    configured default model answers a one-token chat completion. GET /health answers 200
    while every model is down, so only this may switch ``openwebui_unavailable`` off."""

    name = "openwebui.default_model_answers"
    scope = REMOTE
    timeout = 20.0

    def run(self, ctx: ActionContext) -> ActionResult:
        within = float(ctx.params.get("answer_within", ANSWER_WITHIN))

        def check(admin: Admin) -> ActionResult:
            defaults, _ = admin.defaults()
            if not defaults:
                return ActionResult(False, "no default model is configured")
            ok, why = admin.answers(defaults[0], within)
            return ActionResult(ok, f"default model {defaults[0]!r}: {why}")

        return _remote(ctx, check)

    plan = run


class GracefulDegradation(Action):
    """Last resort: OpenWebUI stays out of the path; callers use the direct model API.

    The engine switches ``openwebui_unavailable`` on for the target (the step is
    ``degrades: true``) and ends the incident ``degraded``; this action names what callers
    should use instead: the OpenAI-compatible API behind OpenWebUI (Ollama's ``/v1``, an
    OpenAI endpoint...) from the host var ``openwebui_direct_api_url``, after checking
    that it answers GET /models. With no direct API configured, callers switch chat off;
    if the direct API does not answer either there is nothing to degrade to and the step
    fails (the incident ends ``failed``, the mode stays on). It changes nothing on
    OpenWebUI or the model server.
    """

    name = "openwebui.graceful_degradation"
    scope = REMOTE
    timeout = 30.0

    def _check(self, ctx: ActionContext) -> tuple[str | None, list[str] | None, str]:
        """(direct API URL, its models or None when it does not answer, why)."""
        import httpx

        direct = ctx.endpoint("openwebui_direct_api_url")
        if not direct:
            return None, None, "no direct model API in the inventory (openwebui_direct_api_url)"
        direct = direct.rstrip("/")
        key = os.environ.get(DIRECT_KEY_ENV)
        try:
            with _http(timeout=HTTP_TIMEOUT) as http:
                response = http.get(direct + "/models", headers=(
                    {"Authorization": f"Bearer {key}"} if key else None))
        except httpx.HTTPError as exc:
            return direct, None, f"{type(exc).__name__}: {exc}"
        if response.status_code != 200:
            return direct, None, _detail(response)
        try:
            models = [str(m.get("id")) for m in response.json().get("data", []) if m.get("id")]
        except (ValueError, AttributeError):
            return direct, None, "GET /models did not answer a model list"
        return direct, models, f"{len(models)} models"

    def run(self, ctx: ActionContext) -> ActionResult:
        direct, models, why = self._check(ctx)
        if direct is None:
            return ActionResult(True, (
                f"openwebui_unavailable goes on for {ctx.target}; {why}, so callers switch "
                "chat off until OpenWebUI recovers"), data={"direct_model_api": None})
        if models is None:
            return ActionResult(False, f"the direct model API at {direct} does not answer "
                                f"either ({why}): nothing to degrade to",
                                data={"direct_model_api": direct})
        shown = ", ".join(models[:5]) + (", ..." if len(models) > 5 else "")
        return ActionResult(True, (
            f"openwebui_unavailable goes on for {ctx.target}: callers use the direct model "
            f"API at {direct} (OpenAI-compatible, answers with {why}: {shown}) until OpenWebUI "
            "recovers"), data={"direct_model_api": direct, "models": models})

    def plan(self, ctx: ActionContext) -> ActionResult:
        direct, models, why = self._check(ctx)
        if direct is None:
            return ActionResult(True, f"would switch openwebui_unavailable on for "
                                f"{ctx.target} ({why}: callers switch chat off)")
        state = f"answers now ({why})" if models is not None else f"does NOT answer ({why})"
        return ActionResult(models is not None, (
            f"would switch openwebui_unavailable on for {ctx.target} and point callers at "
            f"the direct model API {direct}, which {state}"), data={"direct_model_api": direct})


def register(registry) -> None:
    for action in (Health(), TokenRefresh(), SessionValid(), ModelFailover(),
                   DefaultModelAnswers(), GracefulDegradation()):
        registry.register(action)
