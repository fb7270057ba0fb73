"""Who may talk to the service: every credential is a token with a name and one role.

Credentials are never optional, loopback included (docs/operations.md). Each has one
role (engine.security.roles: ``webhook`` posts alerts, ``metrics`` reads ``/metrics``,
``viewer`` reads everything, ``app`` triggers its one component and reads degraded modes,
``operator`` reads everything and acts) and comes from one of these places:

- The **webhook token** (role ``webhook``, named ``webhook``) lets Alertmanager post
  alerts and nothing else. Alertmanager's ``http_config`` sends it as ``Authorization:
  Bearer <token>`` or as basic auth (any user name, the token as the password). From
  ``RECOVERY_WEBHOOK_TOKEN``, else the file ``RECOVERY_HOME/webhook.token``.
- **Operators** have their own named tokens, so every approval records who. The
  configuration keeps only hashes (``operators: {alice: "sha256:<hex>"}`` in
  ``recovery.yml``); ``RECOVERY_API_TOKEN`` and the file ``RECOVERY_HOME/operator.token`` each
  give one operator named ``operator`` (the environment wins over the file, the file over a
  ``recovery.yml`` entry of that name). An operator sends ``Bearer <token>``, or basic auth
  with its name as the user and the token as the password.
- The **metrics token** (role ``metrics``, named ``metrics``) lets Prometheus read
  ``/metrics`` and nothing else: ``RECOVERY_METRICS_TOKEN``, else the file
  ``RECOVERY_HOME/metrics.token``.
- **Issued tokens**: ``recovery token add NAME --role ROLE`` keeps a hash in
  ``RECOVERY_HOME/tokens.json`` (engine.security.tokens), taken by a running service at once.
  The only source of ``viewer`` and ``app`` credentials; an ``app`` one carries the
  component it may trigger (``--component C``), and one that names none is ignored.

The environment, the ``*.token`` files and ``recovery.yml`` are read when the service
starts; ``tokens.json`` whenever it changes. A named credential presented by basic auth
must carry its name as the user (names are not secrets); the webhook's, any user.

Every comparison is constant time, lengths included: both sides are hashed first, and the
digests compared with ``hmac.compare_digest``, every credential's, without stopping at the
first match. One token is never two credentials: a configuration where two of different
roles share a token is refused (``ConfigError``); an issued token that repeats a
configured one is ignored (logged).

What it cannot do: tokens travel in clear text over plain HTTP; TLS (or a
TLS-terminating proxy) is required off loopback. A token file is only as private as
``RECOVERY_HOME`` (0700) and its own mode (0600, enforced when read).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import ConfigError
from engine.security.roles import ROLES
from engine.security.tokens import TOKENS_FILE, TokenFile, read_private

if TYPE_CHECKING:
    from engine.config import Config

WEBHOOK_TOKEN_ENV = "RECOVERY_WEBHOOK_TOKEN"
API_TOKEN_ENV = "RECOVERY_API_TOKEN"
METRICS_TOKEN_ENV = "RECOVERY_METRICS_TOKEN"
WEBHOOK_TOKEN_FILE = "webhook.token"
OPERATOR_TOKEN_FILE = "operator.token"
METRICS_TOKEN_FILE = "metrics.token"
CONSOLE_SECRET_FILE = "console.secret"
WEBHOOK_NAME = "webhook"
DEFAULT_OPERATOR = "operator"
DEFAULT_METRICS = "metrics"
MIN_TOKEN_LENGTH = 16
log = logging.getLogger(__name__)

_HASH = re.compile(r"sha256:([0-9a-fA-F]{64})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")   # no ':' (basic auth's separator)
_TOKEN = re.compile(r"[\x21-\x7e]+")                       # printable ASCII, no spaces


def hash_token(token: str) -> str:
    """``sha256:<hex>``: what ``recovery.yml`` keeps for an operator's token."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Presented:
    """What an ``Authorization`` header carries: a bearer token, or a basic user and password."""

    scheme: str                      # bearer | basic
    secret: str
    user: str | None = None


def parse_authorization(header: str | None) -> Presented | None:
    """``Bearer <token>`` or ``Basic base64(user:password)``; None for anything else."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if not value:
        return None
    if scheme == "bearer":
        return Presented("bearer", value)
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):   # UnicodeDecodeError is a ValueError
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        return Presented("basic", password, user)
    return None


@dataclass(frozen=True)
class Credential:
    """One credential as the service knows it: never the token, its hash."""

    name: str
    role: str
    hash: str                        # sha256:<hex>, lower case
    component: str | None = None     # role app: the one component it may trigger


def check_name(name: object, what: str = "credential") -> str:
    """A credential name (``ConfigError`` otherwise): it is recorded as who acted."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a valid {what} name (letters, digits, '_', "
                          "'.', '@', '-'; at most 64; no ':')")
    return name


def _check_hashes(named: dict[str, str], what: str) -> dict[str, str]:
    normalized = {}
    for name, value in named.items():
        check_name(name, what)
        if not isinstance(value, str) or not _HASH.fullmatch(value.strip()):
            raise ConfigError(f"{what}s: {name}: expected 'sha256:<64 hex digits>' "
                              "(the sha256 of the token, never the token itself)")
        normalized[name] = value.strip().lower()
    return normalized


@dataclass(frozen=True)
class Credentials:
    """The webhook token, the operators' and the metrics readers' token hashes (name ->
    ``sha256:<hex>``), and the issued tokens (``tokens``, read when they change)."""

    webhook_token: str
    operators: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    tokens: TokenFile | None = field(default=None, compare=False)
    _configured: tuple[Credential, ...] = field(default=(), init=False, repr=False,
                                                compare=False)

    def __post_init__(self) -> None:
        if not self.webhook_token:
            raise ConfigError("the webhook token is empty")
        operators = _check_hashes(self.operators, "operator")
        metrics = _check_hashes(self.metrics, "metrics reader")
        mine = hash_token(self.webhook_token)
        clash = sorted(n for n, h in operators.items() if hmac.compare_digest(h, mine))
        if clash:
            raise ConfigError(f"operator {clash[0]!r} has the webhook token as its token: the "
                              "webhook token may only post alerts; give the operator its own")
        for name, value in metrics.items():
            if hmac.compare_digest(value, mine) or value in operators.values():
                raise ConfigError(f"metrics reader {name!r} has the token of another "
                                  "credential: the metrics token may only read /metrics; "
                                  "give it its own")
        object.__setattr__(self, "operators", operators)
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "_configured", (
            Credential(WEBHOOK_NAME, "webhook", mine),
            *(Credential(n, "operator", h) for n, h in operators.items()),
            *(Credential(n, "metrics", h) for n, h in metrics.items())))

    def configured(self) -> list[Credential]:
        """The credentials of the environment, the token files and ``recovery.yml``."""
        return list(self._configured)

    def all(self) -> list[Credential]:
        """Every credential now: the configured ones, then the issued ones (an issued
        token whose name or token repeats a configured one is ignored, logged)."""
        found = self.configured()
        if self.tokens is None:
            return found
        names, hashes = {c.name for c in found}, {c.hash for c in found}
        for issued in self.tokens.tokens():
            value = issued.hash.strip().lower()
            if issued.role not in ROLES or not _HASH.fullmatch(value):
                log.error("%s: token %r: unknown role %r or not a sha256 hash: ignored",
                          self.tokens.path, issued.name, issued.role)
            elif issued.role == "app" and not issued.component:
                log.error("%s: token %r: role app names no component: ignored",
                          self.tokens.path, issued.name)
            elif issued.name in names or value in hashes:
                log.error("%s: token %r repeats the name or the token of a configured "
                          "credential: ignored", self.tokens.path, issued.name)
            else:
                found.append(Credential(issued.name, issued.role, value,
                                        issued.component if issued.role == "app" else None))
        return found

    def identify(self, authorization: str | None) -> Credential | None:
        """The credential presented by an ``Authorization`` header; None for none (or
        for a named credential by basic auth under another user name)."""
        presented = parse_authorization(authorization)
        if presented is None:
            return None
        given = hash_token(presented.secret).encode()
        found = None
        for credential in self.all():   # every hash compared: no early exit
            match = hmac.compare_digest(given, credential.hash.encode())
            if (presented.user is not None and credential.role != "webhook"
                    and presented.user != credential.name):
                match = False                              # names are not secrets
            if match and found is None:
                found = credential
        return found

    def webhook_ok(self, authorization: str | None) -> bool:
        """A webhook credential, as a bearer token or as the basic-auth password."""
        found = self.identify(authorization)
        return found is not None and found.role == "webhook"

    def operator(self, authorization: str | None) -> str | None:
        """The name of the operator whose token this is; None otherwise (the webhook token
        included, whatever the operators' hashes say)."""
        found = self.identify(authorization)
        return found.name if found is not None and found.role == "operator" else None


# -- loading ------------------------------------------------------------------------------


def load_credentials(config: Config, environ: Mapping[str, str] | None = None, *,
                     create: bool = False) -> tuple[Credentials, dict[str, str]]:
    """The credentials of this configuration, and the tokens generated now (``create``).

    With ``create`` (``recovery serve`` at its start), a missing webhook token is
    generated into ``RECOVERY_HOME/webhook.token``; when no operator exists at all, one
    into ``RECOVERY_HOME/operator.token``; when ``/metrics`` needs a credential
    (``webhook.metrics_auth``, true by default) and no metrics one exists at all, one
    into ``RECOVERY_HOME/metrics.token`` (each 0600, created exclusively). They are
    returned as ``{"webhook": ..., "operator": ..., "metrics": ...}`` to be printed once.
    Without ``create``, no webhook token is a ``ConfigError``: credentials are never
    optional. A tokens file that cannot be used is a ``ConfigError`` too.
    """
    env = os.environ if environ is None else environ
    home = Path(config.home)
    generated: dict[str, str] = {}

    def ensure(path: Path, what: str) -> str:
        token, new = _create_token(config, path)
        if new:
            generated[what] = token
        return token

    webhook = _from_env(env, WEBHOOK_TOKEN_ENV) or _read_token(home / WEBHOOK_TOKEN_FILE)
    if webhook is None and create:
        webhook = ensure(home / WEBHOOK_TOKEN_FILE, "webhook")
    if webhook is None:
        raise ConfigError(f"no webhook token: set {WEBHOOK_TOKEN_ENV}, or write one to "
                          f"{home / WEBHOOK_TOKEN_FILE} (mode 0600); `recovery serve` "
                          "generates one on its first start")
    tokens = TokenFile(home / TOKENS_FILE)
    issued = tokens.tokens(strict=True)

    operators = dict(config.operators)
    from_file = _read_token(home / OPERATOR_TOKEN_FILE)
    if from_file is not None:
        operators[DEFAULT_OPERATOR] = hash_token(from_file)
    from_env = _from_env(env, API_TOKEN_ENV)
    if from_env is not None:
        operators[DEFAULT_OPERATOR] = hash_token(from_env)
    if not operators and create and not any(t.role == "operator" for t in issued):
        operators[DEFAULT_OPERATOR] = hash_token(ensure(home / OPERATOR_TOKEN_FILE,
                                                        "operator"))

    metrics: dict[str, str] = {}
    reader = _from_env(env, METRICS_TOKEN_ENV) or _read_token(home / METRICS_TOKEN_FILE)
    if (reader is None and create and metrics_auth(config)
            and not any(t.role == "metrics" for t in issued)):
        reader = ensure(home / METRICS_TOKEN_FILE, "metrics")
    if reader is not None:
        metrics[DEFAULT_METRICS] = hash_token(reader)
    return Credentials(webhook, operators, metrics, tokens), generated


def console_secret(config: Config) -> str:
    """The key that signs the console's session cookies: ``RECOVERY_HOME/console.secret``
    (0600), generated on first use, so every worker and every restart shares it (a new
    key logs everyone out: delete the file to do that on purpose)."""
    return _create_token(config, Path(config.home) / CONSOLE_SECRET_FILE)[0]


def metrics_auth(config: Config) -> bool:
    """Whether ``/metrics`` needs a credential (``webhook.metrics_auth``, true unless set
    false: the metrics name inventory hosts)."""
    return config.webhook.get("metrics_auth", True) is not False


def _check_token(token: str, where: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise ConfigError(f"{where}: a token is printable ASCII without spaces")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"{where}: a token of {len(token)} characters is too easy to "
                          f"guess (at least {MIN_TOKEN_LENGTH}; e.g. "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return token


def _from_env(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return _check_token(value, name) if value else None


def _read_token(path: Path) -> str | None:
    text = read_private(path, "the token")
    if text is None:
        return None
    text = text.strip()
    if not text:
        raise ConfigError(f"{path}: the token file is empty")
    return _check_token(text, str(path))


def _create_token(config: Config, path: Path) -> tuple[str, bool]:
    """A new token in ``path`` (0600, O_EXCL), or the one another process wrote first."""
    config.ensure_home()
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(20):   # another process is writing it: its token, once written
            try:
                existing = _read_token(path)
            except ConfigError:
                existing = None
            if existing is not None:
                return existing, False
            time.sleep(0.05)
        existing = _read_token(path)   # the reason why, if it is still unusable
        if existing is None:
            raise ConfigError(f"{path}: vanished while being created") from None
        return existing, False
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, True
