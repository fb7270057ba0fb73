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
"""

from __future__ import annotations

import hashlib
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from engine.config import Config


def default_replica(home: Path, host: str | None = None) -> str:
    """The host name and 8 hex digits of RECOVERY_HOME's path: stable and per home."""
    digest = hashlib.sha256(str(home).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    name = (host or socket.gethostname()).split(".")[0] or "host"
    return f"{name[:50]}-{digest}"


def replica_of(config: Config) -> str:
    """This process's replica name: the configured one, else the default."""
    return config.replica or default_replica(config.home)
