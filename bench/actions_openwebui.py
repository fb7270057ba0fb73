"""OpenWebUI actions: time from the start of a recovery to its verified end, per strategy.

Against the OpenWebUI STAND-IN of the tests (tests/support/openwebui_standin.py: a real HTTP
server on a loopback port speaking OpenWebUI's sign-in, models, chat-completion and
default-model API; OpenWebUI itself cannot be installed here) and the stand-in direct
model API. The shipped runbooks/openwebui.yml runs, embedded in this process as an
application would (``Recovery.from_config``, its httpx.Client registered), on a temporary
RECOVERY_HOME (SQLite). Each run uses a host of its own, so no cooldown is shared.

- token_refresh: every session token expired -> ``trigger(auth_expired)`` -> incident
  recovered (the runbook's verify: the client's session answers) -> the application's
  next call on its own client answers 200.
- model_failover: the default model answers 500 -> ``trigger(model_unavailable)`` ->
  recovered (verify: the new default answers a one-token completion, stable for 2 s, as
  the shipped runbook says: that stable_for is most of the time).
- graceful_degradation: /health down -> ``trigger(service_down)`` -> incident degraded
  and ``recovery.degraded("openwebui_unavailable")`` true (no verify: it degrades).

"action" is the action's own run (``PythonExecutor.call``) on a fresh fault, without the
engine and its verify; "to verified" is trigger() to the end the list above names.

    .venv/bin/python bench/actions_openwebui.py [--quick] [-n 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: the stand-ins live in tests/
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from engine import Recovery  # noqa: E402
from engine.actions.base import ActionContext  # noqa: E402
from engine.lifecycle import IncidentState  # noqa: E402
from tests.support.openwebui_standin import DirectModelApi, OpenWebUIStandin, User  # noqa: E402
from tests.support.shipped import install_runbook  # noqa: E402

EMAIL, PASSWORD = "bench@example.org", "bench-standin-password"
MODELS = ["primary", "fallback-a", "fallback-b"]
WAIT = 60.0          # bound on one incident


def write_home(root: Path, webui: OpenWebUIStandin, direct: DirectModelApi, n: int) -> Path:
    hosts = "".join(
        f"""    {kind}-{i}:
      ansible_connection: local
      openwebui_url: "{webui.url}"
      openwebui_direct_api_url: "{direct.url}/v1"
      openwebui_fallback_models: [fallback-a, fallback-b]
""" for kind in ("tr", "mf", "gd") for i in range(n))
    (root / "inventory").mkdir()
    (root / "inventory" / "hosts.yml").write_text(f"all:\n  hosts:\n{hosts}")
    install_runbook("openwebui", root)
    config = root / "recovery.yml"
    config.write_text("home: var\nrunbooks: runbooks\nplaybooks: playbooks\n"
                      "inventory: inventory\nworkers: {threads: 2}\n"
                      "degraded_modes:\n  openwebui_unavailable: "
                      "{capabilities: {chat_ui: false, direct_model_api: true}}\n")
    return config


def reset(webui: OpenWebUIStandin) -> None:
    webui.model_up(*MODELS)
    webui.unhealthy = False
    with webui.lock:
        webui.default_models = "primary"


def timed(fn: Callable[[], bool]) -> float:
    t0 = time.perf_counter()
    ok = fn()
    took = time.perf_counter() - t0
    if not ok:
        raise SystemExit("a run did not end as expected: see above")
    return took


def row(name: str, action: list[float], total: list[float]) -> str:
    def ms(values: list[float]) -> str:
        return (f"{statistics.median(values) * 1000:.0f} ({min(values) * 1000:.0f}-"
                f"{max(values) * 1000:.0f})")
    return f"| {name} | {len(total)} | {ms(action)} | {ms(total)} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 runs per action")
    parser.add_argument("-n", type=int, default=20, help="runs per action (default 20)")
    args = parser.parse_args()
    n = 5 if args.quick else args.n
    os.environ["OPENWEBUI_EMAIL"], os.environ["OPENWEBUI_PASSWORD"] = EMAIL, PASSWORD
    webui = OpenWebUIStandin(MODELS, default="primary", users=[User(EMAIL, PASSWORD)]).start()
    direct = DirectModelApi(MODELS).start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-openwebui-"))
    os.environ["RECOVERY_HOME"] = str(tmp / "var")
    recovery = Recovery.from_config(write_home(tmp, webui, direct, n))
    ctx = recovery.context
    client = httpx.Client(base_url=webui.url, timeout=5)
    results: dict[str, tuple[list[float], list[float]]] = {}

    def action(name: str, target: str) -> bool:
        result = ctx.python.call(name, ActionContext(
            component="openwebui", target=target, host_vars=ctx.host_vars(target),
            resources=ctx.resources))
        if not result.ok:
            print(f"  {name} on {target}: {result.summary}")
        return result.ok

    def incident(failure_type: str, target: str, state: IncidentState) -> bool:
        got = recovery.trigger("openwebui", failure_type, target=target).wait(WAIT)
        if got is None or got.state != state:
            print(f"  {failure_type} on {target}: {got.state if got else None}: "
                  f"{got.reason if got else ''}")
            return False
        return True

    def once(kind: str, target: str) -> tuple[float, float]:
        """One run: (the action alone, trigger to verified), each on a fresh fault."""
        reset(webui)
        if kind == "tr":
            client.headers["Authorization"] = f"Bearer {webui.issue(EMAIL)}"
            recovery.resources.register("openwebui", client, target=target)
            webui.expire_tokens()
            alone = timed(lambda: action("openwebui.token_refresh", target))
            webui.expire_tokens()
            total = timed(lambda: incident("auth_expired", target, IncidentState.RECOVERED)
                          and client.get("/api/models").status_code == 200)
            recovery.resources.unregister("openwebui", target)
        elif kind == "mf":
            webui.model_down("primary")
            alone = timed(lambda: action("openwebui.model_failover", target))
            reset(webui)
            webui.model_down("primary")
            total = timed(lambda: incident("model_unavailable", target,
                                           IncidentState.RECOVERED))
        else:
            webui.unhealthy = True
            alone = timed(lambda: action("openwebui.graceful_degradation", target))
            total = timed(lambda: incident("service_down", target, IncidentState.DEGRADED)
                          and recovery.degraded("openwebui_unavailable"))
        return alone, total

    try:
        for kind in ("tr", "mf", "gd"):
            runs = [once(kind, f"{kind}-{i}") for i in range(n)]
            results[kind] = ([a for a, _ in runs], [t for _, t in runs])
    finally:
        recovery.close()
        client.close()
        webui.stop()
        direct.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"OpenWebUI actions against the stand-in, {n} runs each; ms, p50 (min-max)\n")
    print("| strategy | runs | action p50 (min-max) ms | trigger to verified p50 (min-max) ms |")
    print("|---|---|---|---|")
    print(row("token_refresh -> session answers", *results["tr"]))
    print(row("model_failover -> new default answers (stable_for 2 s)", *results["mf"]))
    print(row("graceful_degradation -> incident degraded, mode on", *results["gd"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
