"""Read the degraded modes over HTTP, from an application that does not embed the engine.

`GET /api/v1/degraded` on `recovery serve` answers every mode with `active` and
`off_now` (the capabilities it switches off now). It needs an operator token: today the
operator role that reads the state also approves, so keep the token as you would an
operator's (a file only the application's user reads; `recovery token add NAME --role
operator` issues one in its own name).

    RECOVERY_URL=http://127.0.0.1:9797 RECOVERY_TOKEN_FILE=/etc/myapp/recovery.token \
        python degraded_over_http.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx


def switched_off(base_url: str, token: str) -> dict[str, list[str]]:
    """Each mode that is on -> the capabilities it switches off now."""
    response = httpx.get(f"{base_url}/api/v1/degraded", timeout=5,
                         headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    return {mode["mode"]: mode["off_now"] for mode in response.json()["modes"]
            if mode["active"]}


def main() -> int:
    token = Path(os.environ["RECOVERY_TOKEN_FILE"]).read_text().strip()
    try:
        off = switched_off(os.environ.get("RECOVERY_URL", "http://127.0.0.1:9797"), token)
    except httpx.HTTPError as exc:
        # The engine unreachable says nothing about Redis or ChromaDB: keep serving as
        # the last answer said, and retry.
        print(f"degraded modes unknown ({exc}): keeping the last answer")
        return 1
    if not off:
        print("no degraded mode is on")
    for mode, capabilities in sorted(off.items()):
        print(f"{mode} is on: switch off {', '.join(capabilities)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
