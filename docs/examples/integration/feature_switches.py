"""Which features to serve now, in-process, from the degraded modes' capability matrices.

`recovery.yml`'s `degraded_modes` say, per mode, which capabilities stay on (true) and
which go off (false) while the mode is on. A capability is on unless a mode that is on
switches it off: `recovery.feature_on(name)`. `recovery.degraded_modes()` gives each mode
with its matrix and, while it is on, why (the incident and target, or who set it by
hand, and since when). Ask before each use (one read of the shared store), or cache the
answer for a few seconds.

    RECOVERY_CONFIG=recovery.yml python feature_switches.py
"""

from __future__ import annotations

import os
import sys
import time

from engine import Recovery


def main() -> int:
    recovery = Recovery.from_config(os.environ.get("RECOVERY_CONFIG", "recovery.yml"))
    try:
        modes = recovery.degraded_modes()
        for capability in sorted({c for mode in modes for c in mode.capabilities}):
            print(f"{capability}: {'on' if recovery.feature_on(capability) else 'off'}")
        for mode in modes:
            for why in mode.reasons:
                by = f"incident {why.incident_id} on {why.target}" if why.incident_id else why.who
                print(f"{mode.name} is on since {time.ctime(why.since)} ({by}): "
                      f"{why.reason or 'no reason given'}; off: {', '.join(mode.off_now)}")
        if not recovery.feature_on("cache_reads"):
            print("reading from the database: the cache is off")
        return 0
    finally:
        recovery.close()


if __name__ == "__main__":
    sys.exit(main())
