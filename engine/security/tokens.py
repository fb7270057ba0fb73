"""Tokens issued by ``recovery token add``: their hashes in ``RECOVERY_HOME/tokens.json``.

A running service takes a token added here at once, and stops taking one removed at
once, without a restart: every authentication looks at the file's identity (inode,
size, times, mode: one ``stat``) and reads it again when it changed. The file,
not the store: credentials survive a lost or replaced database, and a broken store
cannot lock Alertmanager out (its 401s are never retried).

The file keeps each token's name, role, ``sha256:<hex>`` hash, and who added it when
(and, for the ``app`` role, the one component it may trigger);
never a token. It is 0600 in a 0700 home, written whole to a temporary file and renamed,
under an exclusive lock (``tokens.json.lock``) so two ``recovery token`` commands never
lose each other's change. One that others may read, or that does not parse, stops a
start with the reason (``ConfigError``); found so in a running service, it is logged
and its tokens are refused (never guessed at) until it is fixed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.config import ConfigError

TOKENS_FILE = "tokens.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedToken:
    name: str
    role: str
    hash: str                  # sha256:<hex> of the token, never the token
    created_at: float = 0.0
    created_by: str = ""
    component: str | None = None   # role app: the one component it may trigger

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["component"] is None:
            del d["component"]     # the files of other roles stay as they were
        return d


class TokenFile:
    """``RECOVERY_HOME/tokens.json``: read when it changes, changed under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, ...] | None = None
        self._tokens: tuple[IssuedToken, ...] = ()

    def tokens(self, *, strict: bool = False) -> tuple[IssuedToken, ...]:
        """The tokens now (read again only when the file changed). A file that cannot be
        used: ``ConfigError`` when ``strict``, else logged and no tokens."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return ()
        except OSError as exc:
            return self._unusable(f"{self.path}: cannot read it: {exc.strerror}", strict)
        seen = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        with self._lock:
            if seen == self._seen:
                return self._tokens
            try:
                tokens = self._read()
            except ConfigError as exc:
                self._seen, self._tokens = None, ()
                return self._unusable(str(exc), strict)
            self._seen, self._tokens = seen, tokens
            return tokens

    def add(self, token: IssuedToken) -> None:
        """Keep ``token`` (its hash); ``ConfigError`` when its name is taken."""
        with self._changing() as tokens:
            if any(t.name == token.name for t in tokens):
                raise ConfigError(f"a token named {token.name!r} exists already: remove it "
                                  "first (`recovery token remove NAME`), or pick a new name")
            tokens.append(token)

    def remove(self, name: str) -> IssuedToken | None:
        """Forget the token named ``name``; the one removed, or None."""
        with self._changing() as tokens:
            found = next((t for t in tokens if t.name == name), None)
            if found is not None:
                tokens.remove(found)
        return found

    # -- internals ----------------------------------------------------------------------
    def _unusable(self, why: str, strict: bool) -> tuple[IssuedToken, ...]:
        if strict:
            raise ConfigError(why)
        log.error("%s; its tokens are refused until it is fixed", why)
        return ()

    def _read(self) -> tuple[IssuedToken, ...]:
        text = read_private(self.path, "the token hashes")
        if text is None:
            return ()
        try:
            data = json.loads(text) if text.strip() else {"tokens": []}
            return tuple(IssuedToken(**entry) for entry in data["tokens"])
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{self.path}: not a tokens file ({type(exc).__name__}: "
                              f"{exc}); `recovery token` writes it") from None

    @contextmanager
    def _changing(self) -> Iterator[list[IssuedToken]]:
        """The tokens as a list to change; written back whole when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = os.open(self.path.with_name(self.path.name + ".lock"),
                       os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tokens = list(self._read())
            yield tokens
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fh.fileno(), 0o600)
                json.dump({"tokens": [t.to_dict() for t in tokens]}, fh, indent=2)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            os.close(lock)   # releases the flock



def read_private(path: Path, what: str) -> str | None:
    """The text of a file only its owner may read or change (a symlink is not followed);
    None when there is none; ``ConfigError`` naming ``what`` it holds otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from exc
    with os.fdopen(fd) as fh:
        mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
        if mode & 0o077:
            raise ConfigError(f"{path}: mode {mode:04o} lets others read or change {what}: "
                              "chmod 600 it")
        return fh.read()
