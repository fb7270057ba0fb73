"""A command run without the power to read every file, so that a test of "cannot read"
holds as root too (CI runs as root). As root the command runs under ``setpriv`` with
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped: root then obeys file modes as any user
does, and still reaches the test's own 0700 temporary folder (``nobody`` could not). As
anyone else it runs as it is."""

from __future__ import annotations

import os

DROPPED = "-dac_override,-dac_read_search"


def unprivileged(argv: list[str]) -> list[str]:
    """``argv`` to run without the capabilities that bypass file permissions."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--inh-caps={DROPPED}", f"--bounding-set={DROPPED}", *argv]
