"""Whether a Redis server's settings keep the store's state: checked at start-up, so a
service that would lose acknowledged alerts, approvals or locks refuses to start and says
why, rather than finding out after Redis restarts or fills up.

What the store needs, and why each, in the words of ``SettingProblem.reason``:

- ``appendonly yes``: only the append-only file keeps each acknowledged write; RDB
  snapshots (``save``) keep what was written up to the last snapshot.
- ``appendfsync everysec`` or ``always``: with ``no`` the operating system flushes the
  file when it likes, and a power loss takes the writes it had not flushed yet.
- ``maxmemory-policy noeviction`` when ``maxmemory`` is set: every other policy deletes
  keys to make room, without a word. With ``maxmemory 0`` nothing is evicted.
- a primary: a replica refuses writes, or keeps them to itself until its next sync.
- Redis 6.2 or later: the oldest the store is meant for (its journal is a Stream, its
  claims small Lua scripts); an older server is refused rather than trusted untested.
- no cluster mode: the store's Lua scripts change several keys at once, which a cluster
  allows only within one hash slot; keys sharing one slot all live on one node, so a
  cluster would add nothing but ``CROSSSLOT`` errors. Refused outright.

Each setting is read with ``CONFIG GET`` and, where that is refused (renamed away on
managed Redis, or denied by an ACL), from ``INFO``. ``appendfsync`` is in no ``INFO``
section: without ``CONFIG GET`` it cannot be read, and that is said (``unread``) rather
than guessed; an operator who checked it another way names it in ``checked_elsewhere``.
A server that cannot be reached is not a settings problem: its ``ConnectionError``
propagates to the caller.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import redis

MINIMUM_VERSION = (6, 2, 0)       # the oldest the store is meant for

# setting -> (its CONFIG GET parameter, its INFO field); None where there is none.
SOURCES: dict[str, tuple[str | None, str | None]] = {
    "version": (None, "redis_version"),
    "role": (None, "role"),
    "cluster-enabled": ("cluster-enabled", "cluster_enabled"),
    "appendonly": ("appendonly", "aof_enabled"),
    "appendfsync": ("appendfsync", None),
    "save": ("save", None),                  # only to say what RDB alone would keep
    "maxmemory": ("maxmemory", "maxmemory"),
    "maxmemory-policy": ("maxmemory-policy", "maxmemory_policy"),
}
YES_NO_FIELDS = ("cluster_enabled", "aof_enabled")    # INFO says 1/0 where CONFIG says yes/no


@dataclass(frozen=True)
class ServerSettings:
    """What the server said: each setting's value (as ``CONFIG GET`` spells it), or, for
    one it would not say, why not in ``unread``."""

    values: Mapping[str, str]
    unread: Mapping[str, str]


@dataclass(frozen=True)
class SettingProblem:
    """One setting that would lose state, or that could not be read (``unread``)."""

    setting: str
    reason: str
    unread: bool = False

    def __str__(self) -> str:
        return self.reason


class UnsafeRedisSettings(ValueError):
    """The server's settings would lose state: a configuration error listing every
    problem, one per line."""

    def __init__(self, problems: list[SettingProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"- {p.reason}" for p in problems)
        super().__init__("refusing Redis as the state store: its settings would lose "
                         f"state or cannot be read:\n{lines}")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_settings(client: redis.Redis) -> ServerSettings:
    """Every setting of ``SOURCES``: ``CONFIG GET`` first, ``INFO`` where it is refused
    or does not know the parameter. A ``ConnectionError`` propagates."""
    config_refused = info_refused = None
    try:
        info = dict(client.info())
    except redis.exceptions.ResponseError as exc:        # not ConnectionError: that propagates
        info, info_refused = {}, f"INFO refused ({exc})"
    if info.get("redis_mode") == "sentinel":
        info["role"] = "sentinel"
    values: dict[str, str] = {}
    unread: dict[str, str] = {}
    for setting, (parameter, field) in SOURCES.items():
        why = []
        if parameter is not None and config_refused is None:
            try:
                answer = {_text(k): _text(v) for k, v in client.config_get(parameter).items()}
            except redis.exceptions.ResponseError as exc:
                config_refused, answer = f"CONFIG GET refused ({str(exc).strip()})", {}
            if parameter in answer:
                values[setting] = answer[parameter]
                continue
        if parameter is not None:
            why.append(config_refused or "CONFIG GET does not know it")
        if field is not None and field in info:
            raw = info[field]
            values[setting] = ("yes" if raw else "no") if field in YES_NO_FIELDS else _text(raw)
            continue
        why.append(info_refused or "INFO does not report it")
        unread[setting] = "; ".join(why)
    return ServerSettings(values, unread)


def _version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split(".")[:3])
    except ValueError:
        return None


def _unread(settings: ServerSettings, setting: str, matters: str) -> SettingProblem:
    return SettingProblem(setting, f"{setting} cannot be read: {settings.unread[setting]}. "
                          f"{matters}", unread=True)


def _version_problems(s: ServerSettings) -> list[SettingProblem]:
    needs = (f"The store needs Redis {'.'.join(map(str, MINIMUM_VERSION[:2]))} or later "
             "(its intake journal is a Stream, its claims Lua scripts; older servers are "
             "not tested).")
    if "version" in s.unread:
        return [_unread(s, "version", needs)]
    text = s.values["version"]
    number = _version(text)
    if number is None:
        return [SettingProblem("version", f"the Redis version {text!r} is not a version "
                               f"number this check understands. {needs}", unread=True)]
    if number < MINIMUM_VERSION:
        return [SettingProblem("version", f"Redis {text} is too old. {needs} Upgrade to "
                               "Redis 6.2 or later.")]
    return []


def _role_problems(s: ServerSettings) -> list[SettingProblem]:
    if "role" in s.unread:
        return [_unread(s, "role", "The store must be a primary: a replica refuses writes.")]
    role = s.values["role"]
    if role == "master":
        return []
    if role == "sentinel":
        return [SettingProblem("role", "this is a Redis Sentinel, not a data server: point "
                               "RECOVERY_STATE_URL at the primary it monitors.")]
    return [SettingProblem("role", f"this server is a replica (role {role}): a replica "
                           "refuses writes, or with replica-read-only no keeps them to "
                           "itself until its next sync from the primary erases them. Point "
                           "RECOVERY_STATE_URL at the primary.")]


def _cluster_problems(s: ServerSettings) -> list[SettingProblem]:
    why = ("The store's Lua scripts change several keys at once, which a cluster allows "
           "only within one hash slot, and keys sharing one slot all live on one node: a "
           "cluster adds nothing but CROSSSLOT errors.")
    if "cluster-enabled" in s.unread:
        return [_unread(s, "cluster-enabled", why)]
    if s.values["cluster-enabled"] == "yes":
        return [SettingProblem("cluster-enabled", f"cluster mode is enabled. {why} Use a "
                               "standalone primary (cluster-enabled no).")]
    return []


LOST = ("acknowledged alerts (Alertmanager does not send them again), approvals, "
        "cooldowns, kill switches and lock fencing tokens (a token handed out twice lets a "
        "stalled run write again)")


def _persistence_problems(s: ServerSettings) -> list[SettingProblem]:
    if "appendonly" in s.unread:
        return [_unread(s, "appendonly", f"Without appendonly yes a restart loses {LOST}.")]
    if s.values["appendonly"] != "yes":
        save = s.values.get("save")
        kept = ("at best RDB snapshots keep what was written up to the last one, so a "
                "restart or crash loses every write since" if save is None else
                f"RDB snapshots (save {save}) keep only what was written up to the last "
                "snapshot, so a restart or crash loses every write since" if save.strip()
                else "no RDB snapshots either (save \"\"), so a restart loses everything")
        return [SettingProblem("appendonly", f"appendonly is {s.values['appendonly']}: "
                               f"{kept}: {LOST}. Set appendonly yes.")]
    if "appendfsync" in s.unread:
        return [_unread(s, "appendfsync", "With appendfsync no a power loss loses the "
                        "writes the operating system had not flushed; everysec or always "
                        "is needed: check it another way (a managed Redis's "
                        "console).")]
    fsync = s.values["appendfsync"]
    if fsync not in ("everysec", "always"):
        return [SettingProblem("appendfsync", f"appendfsync is {fsync}: Redis leaves "
                               "flushing the append-only file to the operating system "
                               "(about every 30 s on Linux), so a power loss or kernel crash "
                               f"loses the writes of those last seconds: {LOST}. A crash of "
                               "redis-server alone loses nothing. Set appendfsync everysec "
                               "(at most about a second lost on a power loss) or always.")]
    return []


def _eviction_problems(s: ServerSettings) -> list[SettingProblem]:
    policy = s.values.get("maxmemory-policy")
    if policy == "noeviction":
        return []
    evicts = "With any policy but noeviction, a full Redis deletes the store's keys silently."
    if "maxmemory" in s.unread:
        if policy is None:
            return [_unread(s, "maxmemory", evicts),
                    _unread(s, "maxmemory-policy", evicts)]
        return [_unread(s, "maxmemory", f"maxmemory-policy is {policy}. {evicts}")]
    limit = s.values["maxmemory"]
    if limit == "0":
        return []
    if policy is None:
        return [_unread(s, "maxmemory-policy", f"maxmemory is {limit} bytes. {evicts}")]
    victims = ("keys with an expiry: locks, dedup keys and cooldown windows, before they "
               "expire (a lock evicted early lets a second run act on the same host)"
               if policy.startswith("volatile-") else
               "any key: the intake stream, incidents, approvals, locks")
    return [SettingProblem("maxmemory-policy", f"maxmemory-policy is {policy} with "
                           f"maxmemory {limit} bytes: once memory is full Redis deletes "
                           f"{victims}, without a word. Set maxmemory-policy noeviction "
                           "(a full Redis then refuses writes, which the service reports "
                           "as Redis unavailable, losing nothing) or maxmemory 0.")]


def judge(settings: ServerSettings) -> list[SettingProblem]:
    """Every problem in ``settings``, in the order an operator fixes them: what server
    it is, then what it keeps."""
    return [*_role_problems(settings), *_version_problems(settings),
            *_cluster_problems(settings), *_persistence_problems(settings),
            *_eviction_problems(settings)]


def settings_problems(client: redis.Redis) -> list[SettingProblem]:
    """The server's settings that would lose state or cannot be read; empty when safe."""
    return judge(read_settings(client))


def require_safe_settings(client: redis.Redis, *,
                          checked_elsewhere: Collection[str] = ()) -> None:
    """Raise ``UnsafeRedisSettings`` listing every problem. A setting the server would
    not show (``unread``) passes only when named in ``checked_elsewhere``: the operator
    checked it another way (a managed Redis's console). A setting read as unsafe is
    refused whatever ``checked_elsewhere`` says."""
    problems = [p for p in settings_problems(client)
                if not (p.unread and p.setting in checked_elsewhere)]
    if problems:
        raise UnsafeRedisSettings(problems)
