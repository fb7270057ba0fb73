"""Which features to serve now, in-process, from the degraded modes' capability matrices.

`recovery.yml`'s `degraded_modes` say, per mode, which capabilities stay on (true) and
which go off (false) while the mode is on. A capability is on unless a mode that is on
switches it off. Ask before each use (it is one read of the shared store), or cache the
answer for a few seconds.

    RECOVERY_CONFIG=recovery.yml python feature_switches.py
"""

from __future__ import annotations

import os
import sys

from engine import Recovery


def capabilities(recovery: Recovery) -> dict[str, bool]:
    """Every capability the matrices name -> whether to serve it now."""
    serving: dict[str, bool] = {}
    for mode, spec in recovery.context.config.degraded_modes.items():
        on = recovery.degraded(mode)
        for capability, stays_on in (spec.get("capabilities") or {}).items():
            serving[capability] = serving.get(capability, True) and (stays_on or not on)
    return serving


def main() -> int:
    recovery = Recovery.from_config(os.environ.get("RECOVERY_CONFIG", "recovery.yml"))
    try:
        for capability, on in sorted(capabilities(recovery).items()):
            print(f"{capability}: {'on' if on else 'off'}")
        if not capabilities(recovery).get("cache_reads", True):
            print("reading from the database: the cache is off")
        return 0
    finally:
        recovery.close()


if __name__ == "__main__":
    sys.exit(main())
