"""Stand-ins for commands that cannot run on the test hosts, put first on a host's PATH
(``Host.bin``) so a playbook over SSH calls them as it would call the real ones.

- ``install_runtime(host, "docker")``: a container runtime's CLI (Docker and Podman
  cannot run here). It records each argv, one JSON list a line, and succeeds;
  ``runtime_calls`` reads them back.
- ``install_systemctl(host)``: ``systemctl`` (systemd cannot run in a network
  namespace). Units are JSON files in ``host.root/systemd`` (``add_unit``: a name and
  the command it runs); ``start``/``stop``/``restart`` really start and stop that
  process (its pid is the unit's MainPID), ``show``/``is-active`` answer as systemctl
  does for the properties the playbooks read. A unit with ``"stuck": true`` ignores
  ``restart`` (the process keeps its pid), as a unit whose restart does nothing would.
  Every call is recorded like the runtime's (``systemctl_calls``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tests.support.fleet import Host

RUNTIME = """#!/usr/bin/python3
import json, sys
with open({log!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
"""

SYSTEMCTL = """#!/usr/bin/python3
import json, os, signal, subprocess, sys, time
UNITS = {units!r}
with open({log!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
words = [w for w in sys.argv[1:] if not w.startswith("-")]
props = [w.split("=", 1)[1] for w in sys.argv[1:] if w.startswith("--property=")]
value_only = "--value" in sys.argv[1:]
verb, names = (words[0], words[1:]) if words else ("", [])

def load(name):
    path = os.path.join(UNITS, name.removesuffix(".service") + ".json")
    if not os.path.exists(path):
        return path, None
    with open(path) as fh:
        return path, json.load(fh)

def alive(pid):
    try:
        with open(f"/proc/{{pid}}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

def start(path, unit):
    if unit.get("pid") and alive(unit["pid"]):
        return
    proc = subprocess.Popen(unit["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    unit["pid"] = proc.pid
    with open(path, "w") as fh:
        json.dump(unit, fh)

def stop(path, unit):
    pid = unit.get("pid")
    if pid and alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    unit["pid"] = 0
    with open(path, "w") as fh:
        json.dump(unit, fh)

for name in names:
    path, unit = load(name)
    if verb == "show":
        running = unit is not None and bool(unit.get("pid")) and alive(unit["pid"])
        shown = {{"Id": name, "LoadState": "loaded" if unit is not None else "not-found",
                 "ActiveState": "active" if running else "inactive",
                 "SubState": "running" if running else "dead",
                 "MainPID": str(unit["pid"] if running else 0)}}
        for key in props or shown:
            print(shown[key] if value_only else f"{{key}}={{shown[key]}}")
    elif verb == "is-active":
        running = unit is not None and bool(unit.get("pid")) and alive(unit["pid"])
        print("active" if running else "inactive")
        sys.exit(0 if running else 3)
    elif unit is None:
        print(f"Failed to {{verb}} {{name}}: Unit {{name}} not found.", file=sys.stderr)
        sys.exit(5)
    elif verb == "start":
        start(path, unit)
    elif verb == "stop":
        stop(path, unit)
    elif verb == "restart":
        if not unit.get("stuck"):
            stop(path, unit)
            start(path, unit)
    else:
        print(f"stand-in systemctl: {{verb}} is not supported", file=sys.stderr)
        sys.exit(1)
"""


def _calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def install_runtime(host: Host, runtime: str) -> None:
    """A recording ``docker`` or ``podman`` on ``host``'s PATH."""
    path = host.bin / runtime
    path.write_text(RUNTIME.format(log=str(host.root / f"{runtime}.calls")))
    path.chmod(0o755)


def runtime_calls(host: Host, runtime: str = "docker") -> list[list[str]]:
    """The argvs ``host``'s ``runtime`` stand-in was called with, oldest first."""
    return _calls(host.root / f"{runtime}.calls")


def install_systemctl(host: Host) -> None:
    """A ``systemctl`` on ``host``'s PATH over the units of ``host.root/systemd``."""
    (host.root / "systemd").mkdir(exist_ok=True)
    path = host.bin / "systemctl"
    path.write_text(SYSTEMCTL.format(units=str(host.root / "systemd"),
                                     log=str(host.root / "systemctl.calls")))
    path.chmod(0o755)


def add_unit(host: Host, name: str, argv: Sequence[str], stuck: bool = False) -> None:
    """A unit ``name`` running ``argv`` (not started: ``systemctl start name``)."""
    (host.root / "systemd" / f"{name}.json").write_text(
        json.dumps({"argv": list(argv), "pid": 0, "stuck": stuck}))


def unit_pid(host: Host, name: str) -> int:
    """The unit's MainPID as the stand-in recorded it (0: not running)."""
    return int(json.loads((host.root / "systemd" / f"{name}.json").read_text()).get("pid") or 0)


def systemctl_calls(host: Host) -> list[list[str]]:
    return _calls(host.root / "systemctl.calls")
