"""Which replica this process is: the name a run record carries, so that with several
``recovery serve`` replicas an operator reading the history on one knows which one ran
a run and holds its full artifacts.

``RECOVERY_REPLICA`` names it; without it, the machine's host name (replicas on one
machine should each be given a name, or their runs are told apart by artifacts
directory only).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

REPLICA_ENV = "RECOVERY_REPLICA"


def replica_name(environ: Mapping[str, str] | None = None) -> str:
    """This process's replica name: ``RECOVERY_REPLICA``, else the host name."""
    env = os.environ if environ is None else environ
    return (env.get(REPLICA_ENV) or "").strip() or socket.gethostname()
