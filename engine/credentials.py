"""Who may talk to the service: the webhook token, and the operators' named tokens.

Credentials are never optional, loopback included (DESIGN.md, Security):

- The **webhook token** lets Alertmanager post alerts and nothing else. Alertmanager's
  ``http_config`` sends it as ``Authorization: Bearer <token>`` or as basic auth (any user
  name, the token as the password). From ``RECOVERY_WEBHOOK_TOKEN``, else the file
  ``RECOVERY_HOME/webhook.token``.
- **Operators** have their own named tokens, so every approval records who. The
  configuration keeps only hashes (``operators: {alice: "sha256:<hex>"}`` in
  ``recovery.yml``); ``RECOVERY_API_TOKEN`` and the file ``RECOVERY_HOME/operator.token`` each
  give one operator named ``operator`` (the environment wins over the file, the file over a
  ``recovery.yml`` entry of that name). An operator sends ``Bearer <token>``, or basic auth
  with its name as the user and the token as the password.

Every comparison is constant time, lengths included: both sides are hashed first, and the
digests compared with ``hmac.compare_digest``. The webhook token is never an operator
token: a configuration where they collide is refused (``ConfigError``), and the check is
repeated at every request.

What it cannot do: tokens travel in clear text over plain HTTP; TLS (or a
TLS-terminating proxy) is required off loopback. A token file is only as private as
``RECOVERY_HOME`` (0700) and its own mode (0600, enforced when read).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import ConfigError

if TYPE_CHECKING:
    from engine.config import Config

WEBHOOK_TOKEN_ENV = "RECOVERY_WEBHOOK_TOKEN"
API_TOKEN_ENV = "RECOVERY_API_TOKEN"
WEBHOOK_TOKEN_FILE = "webhook.token"
OPERATOR_TOKEN_FILE = "operator.token"
DEFAULT_OPERATOR = "operator"
MIN_TOKEN_LENGTH = 16

_HASH = re.compile(r"sha256:([0-9a-fA-F]{64})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")   # no ':' (basic auth's separator)
_TOKEN = re.compile(r"[\x21-\x7e]+")                       # printable ASCII, no spaces


def hash_token(token: str) -> str:
    """``sha256:<hex>``: what ``recovery.yml`` keeps for an operator's token."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _same(given: str, expected: str) -> bool:
    """Constant-time equality, whatever the lengths (both sides are hashed first)."""
    return hmac.compare_digest(_digest(given), _digest(expected))


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
class Credentials:
    """The webhook token and the operators' token hashes (name -> ``sha256:<hex>``)."""

    webhook_token: str
    operators: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.webhook_token:
            raise ConfigError("the webhook token is empty")
        normalized = {}
        for name, value in self.operators.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ConfigError(f"operators: {name!r} is not a valid operator name "
                                  "(letters, digits, '_', '.', '@', '-'; no ':')")
            if not isinstance(value, str) or not _HASH.fullmatch(value.strip()):
                raise ConfigError(f"operators: {name}: expected 'sha256:<64 hex digits>' "
                                  "(the sha256 of the token, never the token itself)")
            normalized[name] = value.strip().lower()
        mine = hash_token(self.webhook_token)
        clash = sorted(n for n, h in normalized.items() if hmac.compare_digest(h, mine))
        if clash:
            raise ConfigError(f"operator {clash[0]!r} has the webhook token as its token: the "
                              "webhook token may only post alerts; give the operator its own")
        object.__setattr__(self, "operators", normalized)

    def webhook_ok(self, authorization: str | None) -> bool:
        """The webhook token, as a bearer token or as the basic-auth password (any user)."""
        presented = parse_authorization(authorization)
        return presented is not None and _same(presented.secret, self.webhook_token)

    def operator(self, authorization: str | None) -> str | None:
        """The name of the operator whose token this is; None otherwise (the webhook token
        included, whatever the operators' hashes say)."""
        presented = parse_authorization(authorization)
        if presented is None or _same(presented.secret, self.webhook_token):
            return None
        given = hash_token(presented.secret).encode()
        found = None
        for name, expected in self.operators.items():   # every hash compared: no early exit
            match = hmac.compare_digest(given, expected.encode())
            if presented.user is not None and presented.user != name:
                match = False                              # names are not secrets
            if match and found is None:
                found = name
        return found


# -- loading ------------------------------------------------------------------------------


def load_credentials(config: Config, environ: Mapping[str, str] | None = None, *,
                     create: bool = False) -> tuple[Credentials, dict[str, str]]:
    """The credentials of this configuration, and the tokens generated now (``create``).

    With ``create`` (the first ``recovery serve``), a missing webhook token is generated
    into ``RECOVERY_HOME/webhook.token``, and when no operator exists at all, one into
    ``RECOVERY_HOME/operator.token`` (each 0600, created exclusively); they are returned
    as ``{"webhook": ..., "operator": ...}`` to be printed once. Without ``create``, no
    webhook token is a ``ConfigError``: credentials are never optional.
    """
    env = os.environ if environ is None else environ
    home = Path(config.home)
    generated: dict[str, str] = {}

    webhook = _from_env(env, WEBHOOK_TOKEN_ENV) or _read_token(home / WEBHOOK_TOKEN_FILE)
    if webhook is None and create:
        webhook = _create_token(config, home / WEBHOOK_TOKEN_FILE)
        if webhook[1]:
            generated["webhook"] = webhook[0]
        webhook = webhook[0]
    if webhook is None:
        raise ConfigError(f"no webhook token: set {WEBHOOK_TOKEN_ENV}, or write one to "
                          f"{home / WEBHOOK_TOKEN_FILE} (mode 0600); `recovery serve` "
                          "generates one on its first start")

    operators = dict(config.operators)
    from_file = _read_token(home / OPERATOR_TOKEN_FILE)
    if from_file is not None:
        operators[DEFAULT_OPERATOR] = hash_token(from_file)
    from_env = _from_env(env, API_TOKEN_ENV)
    if from_env is not None:
        operators[DEFAULT_OPERATOR] = hash_token(from_env)
    if not operators and create:
        token, new = _create_token(config, home / OPERATOR_TOKEN_FILE)
        operators[DEFAULT_OPERATOR] = hash_token(token)
        if new:
            generated["operator"] = token
    return Credentials(webhook, operators), generated


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
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the token: {exc.strerror}") from exc
    with os.fdopen(fd) as fh:
        mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
        if mode & 0o077:
            raise ConfigError(f"{path}: mode {mode:04o} lets others read or change the "
                              "token: chmod 600 it")
        text = fh.read().strip()
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
