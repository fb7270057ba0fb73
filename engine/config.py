"""``recovery.yml`` and its environment overrides, read once into a ``Config``.

Where from: ``--config``, else ``RECOVERY_CONFIG``, else ``./recovery.yml``. Paths in the
file are relative to the file itself. ``RECOVERY_HOME``, ``RECOVERY_STATE_URL`` and
``RECOVERY_REPLICA`` win over the file. A bad file is a ``ConfigError`` with the reason
(exit code 2).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from engine.durations import parse_duration
from engine.fleet_limits import FleetLimits, FleetValueError, parse_fleet


class ConfigError(ValueError):
    pass


_DURATION = {"type": ["string", "number"]}
_FLEET = {"type": "object", "additionalProperties": False,
          "properties": {"forks": {"type": "integer", "minimum": 1},
                         "coalesce_window": _DURATION,
                         "max_in_flight": {"type": "integer", "minimum": 1},
                         "group_share": {"type": ["string", "number"]},
                         "group_window": _DURATION}}
# The engine's outgoing alerts, each switchable (engine/service/outgoing_alerts.py).
ALERT_EVENTS = ("recovery", "cooldown", "degraded_mode", "exhaustion", "in_progress")
_ALERT_ON = {"type": "object", "additionalProperties": False,
             "properties": {event: {"type": "boolean"} for event in ALERT_EVENTS}}
# A runbook's priority -> the `severity` label of its outgoing alerts.
DEFAULT_SEVERITIES = {"critical": "P0", "high": "P1", "medium": "P2", "low": "P3"}
_SEVERITIES = {"type": "object", "additionalProperties": False,
               "properties": {p: {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}
                              for p in DEFAULT_SEVERITIES}}
# A replica's name (engine.replica): a key part in the store, a word in logs.
REPLICA_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "home": {"type": "string"},
        "state_url": {"type": "string"},
        "replica": {"type": "string", "pattern": REPLICA_PATTERN},
        "state_synchronous": {"enum": ["NORMAL", "FULL", "normal", "full"]},
        "runbooks": {"type": "string"},
        "playbooks": {"type": "string"},
        "inventory": {"type": "string"},
        "artifacts_retention": _DURATION,
        "artifacts_dir": {"type": "string", "minLength": 1},
        "lock": {"type": "object", "additionalProperties": False,
                 "properties": {"lease": _DURATION}},
        "timeouts": {"type": "object", "additionalProperties": False,
                     "properties": {"playbook": _DURATION, "action": _DURATION}},
        "workers": {"type": "object", "additionalProperties": False,
                    "properties": {"poll_interval": _DURATION, "threads": {"type": "integer",
                                                                           "minimum": 1}}},
        "status_window": _DURATION,
        "action_modules": {"type": "array", "items": {"type": "string"}},
        "degraded_modes": {
            "type": "object",
            "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "description": {"type": "string"},
                    "capabilities": {"type": "object",
                                     "additionalProperties": {"type": "boolean"}},
                },
            },
        },
        "operators": {"type": "object", "additionalProperties": {"type": "string"}},
        "webhook": {"type": "object"},
        "alertmanagers": {"type": "array", "items": {"type": "string"}},
        "alertmanager": {"type": "object", "additionalProperties": False,
                         "properties": {"notify_interval": _DURATION,
                                        "when_unreachable": {"enum": ["defer", "allow"]},
                                        "timeout": _DURATION,
                                        "alert_on": _ALERT_ON,
                                        "severity_by_priority": _SEVERITIES}},
        "external_url": {"type": "string", "pattern": "^(https?://[^\\s/]+\\S*)?$"},
        "fleet": _FLEET,
        "approval": {"type": "object", "additionalProperties": False,
                     "properties": {"allow_self": {"type": "boolean"}}},
        "logging": {"type": "object", "additionalProperties": False,
                    "properties": {"format": {"enum": ["text", "json"]}}},
    },
}


@dataclass
class Config:
    base_dir: Path
    home: Path
    state_url: str
    runbooks_dir: Path
    playbooks_dir: Path
    inventory_path: Path
    path: Path | None = None
    state_synchronous: str = "NORMAL"
    retention: float = 30 * 86400.0
    lock_ttl: float = 30.0
    playbook_timeout: float = 900.0
    action_timeout: float = 60.0
    poll_interval: float = 1.0
    worker_threads: int = 2
    status_window: float = 86400.0
    action_modules: list[str] = field(default_factory=list)
    degraded_modes: dict[str, dict[str, Any]] = field(default_factory=dict)
    operators: dict[str, str] = field(default_factory=dict)
    webhook: dict[str, Any] = field(default_factory=dict)
    alertmanagers: list[str] = field(default_factory=list)
    notify_interval: float = 60.0
    silence_unreachable: str = "defer"
    alertmanager_timeout: float = 2.0
    alert_on: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(ALERT_EVENTS, True))
    severity_by_priority: dict[str, str] = field(
        default_factory=lambda: dict(DEFAULT_SEVERITIES))
    external_url: str = ""         # where people reach the API: links in outgoing alerts
    fleet: FleetLimits = field(default_factory=FleetLimits)
    # May whoever asked for a step approve it? A step's `approval: {allow_self: ...}` wins.
    approval_allow_self: bool = True
    # How `recovery serve` writes its log lines: text, or json (engine.service.log_format).
    log_format: str = "text"
    # This service's name among the replicas sharing one store (engine.replica); empty:
    # the default one, derived from the host and RECOVERY_HOME.
    replica: str = ""
    # Where runs' artifacts go: RECOVERY_HOME/artifacts, or a directory the replicas
    # share (``artifacts_dir``), so that each shows every run's whole record.
    shared_artifacts: Path | None = None

    @property
    def artifacts_dir(self) -> Path:
        return self.shared_artifacts or self.home / "artifacts"

    def ensure_home(self) -> None:
        """Make RECOVERY_HOME ours and 0700: whoever can write the store can approve.

        A new directory is created 0700. An existing one is taken over (and set 0700) only
        if it is ours and is a recovery home already (``recovery.db`` or ``artifacts/`` in
        it) or empty: ``RECOVERY_HOME=/tmp`` must never lock everyone else out of /tmp.
        """
        home = self.home
        if not home.exists() and not home.is_symlink():
            home.mkdir(parents=True, mode=0o700)
            os.chmod(home, 0o700)  # mkdir's mode is masked by the umask
        else:
            if not home.is_dir():
                raise ConfigError(f"RECOVERY_HOME {home} exists and is not a directory")
            owner = home.stat().st_uid
            if owner != os.geteuid():
                raise ConfigError(f"RECOVERY_HOME {home} is owned by uid {owner}, not us: "
                                  "refusing")
            if not is_recovery_home(home):
                raise ConfigError(f"RECOVERY_HOME {home} exists and is not a recovery home "
                                  "(choose a new or empty directory)")
            if stat.S_IMODE(home.stat().st_mode) != 0o700:
                os.chmod(home, 0o700)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


PRIVATE_UMASK = 0o077


def keep_files_private() -> int:
    """From now on this process creates files and folders for its user alone (umask
    077), whatever umask it was started with: set at the start of every ``recovery``
    command (``serve`` too, whose processes inherit it) and by ``Recovery.from_config``.
    What the engine writes itself is made private explicitly; this also covers what its
    libraries write under RECOVERY_HOME (prometheus_client's metrics files, which name
    inventory hosts) and what a step's tools write. For an application embedding the
    engine, it applies to the whole process. Returns the umask it replaced."""
    return os.umask(PRIVATE_UMASK)


def is_recovery_home(folder: Path) -> bool:
    """Empty (but for a mount's ``lost+found`` or dotfiles such as ``.gitkeep``), or
    holding what a recovery home holds (the database or the artifacts)."""
    if (folder / "recovery.db").exists() or (folder / "artifacts").is_dir():
        return True
    with os.scandir(folder) as entries:
        return all(e.name == "lost+found" or e.name.startswith(".") for e in entries)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(explicit or os.environ.get("RECOVERY_CONFIG") or "recovery.yml")


def load_config(path: str | os.PathLike[str] | None = None,
                environ: dict[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    file = config_path(path)
    if not file.exists():
        raise ConfigError(f"{file}: configuration file not found (use --config or "
                          "RECOVERY_CONFIG)")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(raw))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise ConfigError(f"{file}: {where}: {_explained(error)}")
    base = file.resolve().parent

    def rel(value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else base / p

    def seconds(value: Any, name: str) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{file}: {name}: {exc}") from exc

    home = Path(env["RECOVERY_HOME"]) if env.get("RECOVERY_HOME") else rel(raw.get("home", "var"))
    home = home.resolve()
    state_url = env.get("RECOVERY_STATE_URL") or raw.get("state_url") or (
        f"sqlite:///{home / 'recovery.db'}")
    timeouts = raw.get("timeouts", {})
    workers = raw.get("workers", {})
    try:
        fleet = FleetLimits().overridden(parse_fleet(raw.get("fleet", {})))
    except FleetValueError as exc:
        raise ConfigError(f"{file}: fleet.{exc.key}: {exc.reason}") from exc
    am = raw.get("alertmanager", {})
    replica = env.get("RECOVERY_REPLICA") or str(raw.get("replica", ""))
    if replica and not re.match(REPLICA_PATTERN, replica):
        raise ConfigError(f"RECOVERY_REPLICA / replica {replica!r}: letters, digits and "
                          "_ . - only, at most 64, starting with a letter or digit")
    return Config(
        path=file.resolve(),
        base_dir=base,
        home=home,
        state_url=state_url,
        state_synchronous=str(raw.get("state_synchronous", "NORMAL")).upper(),
        runbooks_dir=rel(raw.get("runbooks", "runbooks")),
        playbooks_dir=rel(raw.get("playbooks", "playbooks")),
        inventory_path=rel(raw.get("inventory", "inventory")),
        retention=seconds(raw.get("artifacts_retention", "30d"), "artifacts_retention"),
        lock_ttl=seconds(raw.get("lock", {}).get("lease", "30s"), "lock.lease"),
        playbook_timeout=seconds(timeouts.get("playbook", "15m"), "timeouts.playbook"),
        action_timeout=seconds(timeouts.get("action", "60s"), "timeouts.action"),
        poll_interval=seconds(workers.get("poll_interval", "1s"), "workers.poll_interval"),
        worker_threads=int(workers.get("threads", 2)),
        status_window=seconds(raw.get("status_window", "24h"), "status_window"),
        action_modules=list(raw.get("action_modules", [])),
        degraded_modes=dict(raw.get("degraded_modes", {})),
        operators=dict(raw.get("operators", {})),
        webhook=dict(raw.get("webhook", {})),
        alertmanagers=[u.rstrip("/") for u in raw.get("alertmanagers", [])],
        notify_interval=seconds(raw.get("alertmanager", {}).get("notify_interval", "60s"),
                                "alertmanager.notify_interval"),
        silence_unreachable=raw.get("alertmanager", {}).get("when_unreachable", "defer"),
        alertmanager_timeout=seconds(raw.get("alertmanager", {}).get("timeout", "2s"),
                                     "alertmanager.timeout"),
        alert_on={**dict.fromkeys(ALERT_EVENTS, True), **am.get("alert_on", {})},
        severity_by_priority={**DEFAULT_SEVERITIES, **am.get("severity_by_priority", {})},
        external_url=str(raw.get("external_url", "")).rstrip("/"),
        fleet=fleet,
        approval_allow_self=bool(raw.get("approval", {}).get("allow_self", True)),
        log_format=str(raw.get("logging", {}).get("format", "text")),
        replica=replica,
        shared_artifacts=rel(raw["artifacts_dir"]).resolve() if raw.get("artifacts_dir")
        else None,
    )


def _explained(error: jsonschema.ValidationError) -> str:
    """The schema's message, with what is accepted where its own words would not say."""
    path = [str(p) for p in error.absolute_path]
    if path[:2] == ["alertmanager", "alert_on"] and error.validator == "additionalProperties":
        return f"{error.message}; known events: {', '.join(ALERT_EVENTS)}"
    if path[:2] == ["alertmanager", "severity_by_priority"]:
        if error.validator == "additionalProperties":
            return f"{error.message}; priorities: {', '.join(DEFAULT_SEVERITIES)}"
        if error.validator in ("pattern", "type"):
            return (f"{error.instance!r} is not a severity label value (1 to 64 letters, "
                    "digits, '_', '.', '-')")
    if path == ["external_url"] and error.validator == "pattern":
        return f"{error.instance!r} is not an http(s) URL (e.g. https://recovery.example:9797)"
    return error.message
