"""A STAND-IN for OpenWebUI (too heavy to install here): a real HTTP server on a free
loopback port that speaks the subset of OpenWebUI's API the openwebui actions use, with
OpenWebUI's paths, bodies and status codes (open-webui ``routers/auths.py``,
``routers/configs.py``, ``utils/auth.py``, ``main.py``), and faults a test switches on.

    POST /api/v1/auths/signin       {email, password} -> {token, token_type, expires_at, ...}
                                    wrong credentials: 400 {"detail": ...}
    GET  /api/v1/auths/             the session user; 401 for an expired/unknown token
    GET  /api/models                {"data": [{"id", "name", "object", "owned_by"}]}
    POST /api/chat/completions      OpenAI-style; unknown model 404, a model down 500
    GET|POST /api/v1/configs/models {"DEFAULT_MODELS", "MODEL_ORDER_LIST"}; admin only (401)
    GET  /health                    {"status": true}; 503 while ``unhealthy``

No bearer: 403 "Not authenticated"; an ``sk-`` bearer is an API key. Tokens are opaque
random strings with an expiry (OpenWebUI's are JWTs; the actions never look inside).

``DirectModelApi`` stands in for the OpenAI-compatible model server behind OpenWebUI
(Ollama's ``/v1``): GET /v1/models, POST /v1/chat/completions; ``down`` answers 503.

    webui = OpenWebUIStandin(models=["llama3", "mistral"], default="llama3").start()
    webui.expire_tokens(); webui.model_down("llama3"); webui.stop()
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INVALID_TOKEN = "Your session has expired or the token is invalid. Please sign in again."
ACCESS_PROHIBITED = "You do not have permission to access this resource."
INVALID_CRED = ("The email or password provided is incorrect. Please check for typos and try "
                "logging in again.")


def completion(model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{secrets.token_hex(6)}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": "pong"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body are two writes: no 40 ms delayed ACK

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return None

    def _route(self, method: str) -> None:
        app = self.server.app
        path = self.path.split("?", 1)[0]
        body = self._body() if method == "POST" else None
        with app.lock:
            app.requests.append((method, path))
        status, answer = app.handle(method, path, self.headers.get("Authorization"), body)
        self._send(status, answer)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: _App


class _App:
    """One server on 127.0.0.1:<free port> in a thread; subclasses answer ``handle``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self._server: _Server | None = None

    def start(self):
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.app = self
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name=type(self).__name__).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, method: str, path: str, auth: str | None,
               body: Any) -> tuple[int, Any]:
        raise NotImplementedError


@dataclass
class Model:
    id: str
    down: bool = False
    hang: float = 0.0          # seconds before it answers (a slow or stuck backend)
    completions: int = 0


@dataclass
class User:
    email: str
    password: str
    role: str = "admin"
    id: str = field(default_factory=lambda: secrets.token_hex(8))


class OpenWebUIStandin(_App):
    """The OpenWebUI stand-in. ``token_ttl`` is the session lifetime (JWT_EXPIRES_IN)."""

    def __init__(self, models: list[str], default: str | None = None,
                 users: list[User] | None = None, api_keys: dict[str, str] | None = None,
                 token_ttl: float = 3600.0) -> None:
        super().__init__()
        self.models = {m: Model(m) for m in models}
        self.default_models: str | None = default
        self.model_order: list[str] | None = list(models)
        self.users = {u.email: u for u in (users or [User("admin@example.org", "s3cret-pw")])}
        self.api_keys = dict(api_keys or {})            # key -> email
        self.token_ttl = token_ttl
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (email, expires_at)
        self.issued: list[str] = []                     # every token handed out, for greps
        self.signins = 0
        self.unhealthy = False

    # -- faults ---------------------------------------------------------------------------
    def expire_tokens(self) -> None:
        """Every session token issued so far is now expired (API keys stay valid)."""
        with self.lock:
            self.tokens = {t: (e, 0.0) for t, (e, _) in self.tokens.items()}

    def model_down(self, *names: str, hang: float = 0.0) -> None:
        """The model errors (500), or with ``hang`` takes that long before it answers."""
        with self.lock:
            for name in names:
                self.models[name].down, self.models[name].hang = hang == 0.0, hang

    def model_up(self, *names: str) -> None:
        with self.lock:
            for name in names:
                self.models[name].down, self.models[name].hang = False, 0.0

    def issue(self, email: str) -> str:
        """A session token for ``email`` (what an application got when it signed in)."""
        token = "owui-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (email, time.time() + self.token_ttl)
            self.issued.append(token)
        return token

    # -- the API --------------------------------------------------------------------------
    def _user(self, auth: str | None) -> tuple[User | None, tuple[int, Any] | None]:
        if not auth or not auth.startswith("Bearer "):
            return None, (403, {"detail": "Not authenticated"})
        bearer = auth[len("Bearer "):]
        with self.lock:
            if bearer.startswith("sk-"):
                email = self.api_keys.get(bearer)
            else:
                email, expires = self.tokens.get(bearer, (None, 0.0))
                if email is not None and expires < time.time():
                    email = None
        if email is None or email not in self.users:
            return None, (401, {"detail": INVALID_TOKEN})
        return self.users[email], None

    def handle(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        if (method, path) == ("GET", "/health"):
            return (503, {"detail": "unhealthy"}) if self.unhealthy else (200, {"status": True})
        if (method, path) == ("POST", "/api/v1/auths/signin"):
            return self._signin(body or {})
        user, refused = self._user(auth)
        if refused:
            return refused
        assert user is not None
        if (method, path) == ("GET", "/api/v1/auths/"):
            return 200, {"token": auth[len("Bearer "):], "token_type": "Bearer",
                         "id": user.id, "email": user.email, "name": user.email,
                         "role": user.role}
        if (method, path) == ("GET", "/api/models"):
            with self.lock:
                ids = list(self.models)
            return 200, {"data": [{"id": m, "name": m, "object": "model", "owned_by": "ollama",
                                   "created": 0} for m in ids]}
        if (method, path) == ("POST", "/api/chat/completions"):
            return self._chat(body or {})
        if path == "/api/v1/configs/models":
            if user.role != "admin":
                return 401, {"detail": ACCESS_PROHIBITED}
            if method == "POST":
                required = {"DEFAULT_MODELS", "MODEL_ORDER_LIST"}   # pydantic: no defaults
                if not isinstance(body, dict) or not required <= set(body):
                    return 422, {"detail": "DEFAULT_MODELS and MODEL_ORDER_LIST are required"}
                with self.lock:
                    self.default_models = body["DEFAULT_MODELS"]
                    self.model_order = body["MODEL_ORDER_LIST"]
            return 200, {"DEFAULT_MODELS": self.default_models,
                         "MODEL_ORDER_LIST": self.model_order}
        return 404, {"detail": "Not Found"}

    def _signin(self, body: dict) -> tuple[int, Any]:
        user = self.users.get(str(body.get("email", "")).lower())
        if user is None or body.get("password") != user.password:
            return 400, {"detail": INVALID_CRED}
        token = self.issue(user.email)
        with self.lock:
            self.signins += 1
            expires_at = int(self.tokens[token][1])
        return 200, {"token": token, "token_type": "Bearer", "expires_at": expires_at,
                     "id": user.id, "email": user.email, "name": user.email,
                     "role": user.role, "profile_image_url": "", "permissions": {}}

    def _chat(self, body: dict) -> tuple[int, Any]:
        with self.lock:
            model = self.models.get(str(body.get("model")))
            if model is not None:
                model.completions += 1
        if model is None:
            return 404, {"detail": "Model not found"}
        if model.hang:
            time.sleep(model.hang)
        if model.down:
            return 500, {"detail": f"Ollama: 500, message='model {model.id} failed to load'"}
        return 200, completion(model.id)


class DirectModelApi(_App):
    """STAND-IN for the OpenAI-compatible model API behind OpenWebUI (Ollama's /v1)."""

    def __init__(self, models: list[str]) -> None:
        super().__init__()
        self.models = list(models)
        self.down = False

    def handle(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        if self.down:
            return 503, {"error": {"message": "model server unavailable"}}
        if (method, path) == ("GET", "/v1/models"):
            return 200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                     "owned_by": "library"} for m in self.models]}
        if (method, path) == ("POST", "/v1/chat/completions"):
            return 200, completion(str((body or {}).get("model")))
        return 404, {"error": {"message": "not found"}}
