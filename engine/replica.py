"""Which replica a process belongs to, when several ``recovery serve`` share one store.

Why: on a shared store (Redis) what a start or a reload does must be this service's
alone. A replica's name keys the set of runbooks it has in force (engine.runbooks.loaded_set)
and its line in the store's roster of replicas (engine.store.replicas), which `recovery
status` reads to say which replicas run which set. Every process of one service (its
parent, http workers, engine workers, a CLI command run with the same configuration and
home) has the same name, so ``recovery reload`` on a host reloads that host's service.

The name: ``replica`` in recovery.yml or ``RECOVERY_REPLICA``; by default the host name
and a short hash of RECOVERY_HOME (``host-1a2b3c4d``): stable across restarts and
distinct for two services on one host with two homes. Two services given the same name
are one replica to the store (their sets overwrite each other): name them apart.

``recovery serve`` writes its name in RECOVERY_HOME (``REPLICA_FILE``) as it starts, and a
process given no name takes that one: a ``recovery reload`` or ``status`` run without the
RECOVERY_REPLICA the service was started with then acts on that service's replica, not on
a default-named one no service runs. The service itself never reads the file (its name
comes from its configuration): a restart without RECOVERY_REPLICA is the default again.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import Config

REPLICA_FILE = "replica"     # in RECOVERY_HOME: the name the service there started with


def default_replica(home: Path, host: str | None = None) -> str:
    """The host name and 8 hex digits of RECOVERY_HOME's path: stable and per home."""
    digest = hashlib.sha256(str(home).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    name = (host or socket.gethostname()).split(".")[0] or "host"
    return f"{name[:50]}-{digest}"


def serving_replica(config: Config) -> str:
    """The name ``recovery serve`` runs as: the configured one, else the default."""
    return config.replica or default_replica(config.home)


def record_serving_replica(config: Config) -> str:
    """Write the serving name into RECOVERY_HOME (0600, replaced whole) before any of the
    service's processes start; the name."""
    name = serving_replica(config)
    config.ensure_home()
    path = config.home / REPLICA_FILE
    tmp = path.with_name(f".{REPLICA_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
    os.replace(tmp, path)
    return name


def recorded_replica(home: Path) -> str | None:
    """The name the last ``recovery serve`` in ``home`` started with (None: none, or not
    a valid name)."""
    from engine.config import REPLICA_PATTERN

    try:
        name = (home / REPLICA_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if re.fullmatch(REPLICA_PATTERN, name) else None


def replica_of(config: Config) -> str:
    """This process's replica name: the configured one (RECOVERY_REPLICA, then
    ``replica``), else the one the service in RECOVERY_HOME started with, else the
    default."""
    return config.replica or recorded_replica(config.home) or default_replica(config.home)
