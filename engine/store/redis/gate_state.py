"""The gates' state in Redis (``engine.store.gate_state``), one class per gate's state:
locks (a hash per target, tokens from one counter, checked and written by Lua),
approvals, kill switches and degraded modes (a hash each, one JSON record per field,
changed with the hash WATCHed).

Keys, under the store's prefix: ``lock:<target>`` (fields of the ``Lock``; None fields
absent), ``locks`` (the set of targets with a lock row), ``fencing:lock`` (the last
token given), ``approvals`` (run id -> approval), ``switches`` (id -> switch),
``degraded`` (mode NUL key -> reason). Times are the caller's clock, as in SQLite.
Cooldowns read the attempts the incidents write (``attempts``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from engine.records import Approval, Attempt, DegradedReason, Lock, Switch
from engine.store.gate_state import Approvals, Cooldowns, DegradedModes, KillSwitches, Locks
from engine.store.redis.attempts import RedisAttemptRecords, pair
from engine.store.redis.connection import RedisConnection
from engine.store.redis.records import decode, encode

# KEYS: the lock's hash, the fencing counter, the set of locked targets.
# ARGV: now, the target, then the lock's other fields and values (no token).
# A live lock is refused (nil); else the next token, the lock written whole.
ACQUIRE_LOCK = """
local expires = redis.call('HGET', KEYS[1], 'expires_at')
if expires and tonumber(expires) > tonumber(ARGV[1]) then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'token', token, unpack(ARGV, 3))
redis.call('SADD', KEYS[3], ARGV[2])
return token
"""

# KEYS: the lock's hash. ARGV: the token, the new expiry. 1 if the token still holds it.
RENEW_LOCK = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'expires_at', ARGV[2])
return 1
"""

# KEYS: the lock's hash, the set of locked targets. ARGV: the token, the target.
RELEASE_LOCK = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"""

# KEYS: the set of locked targets; ARGV: the prefix of a lock's hash. Every lock row's
# fields (a flat list each), read at once: one round trip however many locks, and one
# moment for all of them (the fleet gate counts slots with it on every step).
LIST_LOCKS = """
local found = {}
for _, target in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  found[#found + 1] = redis.call('HGETALL', ARGV[1] .. target)
end
return found
"""

# KEYS: the set of locked targets, the fencing counter. ARGV: now, the slots' prefix,
# the limit, the prefix of a lock's hash, then the lock's fields and values (no token,
# no target). Counts the live locks named prefix..., and unless ``limit`` are, takes the
# first free of prefix0, prefix1... as ACQUIRE_LOCK would: {token, live with it, n}, or
# {0, live}. At once: no other caller can take the room between the count and the take.
ACQUIRE_SLOT = """
local now, prefix, limit = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local held, busy = {}, 0
for _, target in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if string.sub(target, 1, #prefix) == prefix then
    local expires = redis.call('HGET', ARGV[4] .. target, 'expires_at')
    if expires and tonumber(expires) > now then
      held[target], busy = true, busy + 1
    end
  end
end
if busy >= limit then return {0, busy} end
for n = 0, limit - 1 do
  local target = prefix .. n
  if not held[target] then
    local token = redis.call('INCR', KEYS[2])
    redis.call('DEL', ARGV[4] .. target)
    redis.call('HSET', ARGV[4] .. target, 'token', token, 'target', target,
               unpack(ARGV, 5))
    redis.call('SADD', KEYS[1], target)
    return {token, busy + 1, n}
  end
end
return {0, busy}
"""

_LOCK_TEXT = ("target", "holder", "run_id", "component")


def _lock(fields: dict[bytes, bytes] | list[bytes]) -> Lock | None:
    """The ``Lock`` of a lock hash's fields, as HGETALL gives them to a client (a dict)
    or to a script (a flat list); None: no hash."""
    if not fields:
        return None
    pairs = (fields.items() if isinstance(fields, dict)
             else zip(fields[::2], fields[1::2], strict=True))
    got = {k.decode(): v.decode() for k, v in pairs}
    return Lock(**{k: got.get(k) for k in _LOCK_TEXT}, token=int(got["token"]),
                acquired_at=float(got["acquired_at"]), expires_at=float(got["expires_at"]))


class RedisCooldowns(RedisAttemptRecords, Cooldowns):
    """The attempts' indexes, read: by (runbook, target) and start, failed ones by finish,
    all by start and by finish."""

    def cooldown_history(self, runbook: str, target: str,
                         since: float) -> tuple[list[Attempt], Attempt | None]:
        # Both indexes in one round trip; the records in a second, only if there are any.
        who = pair(runbook, target)
        with self._client() as client:
            pipe = client.pipeline(transaction=False)
            pipe.zrangebyscore(self._key("attempts", who), since, "+inf")
            pipe.zrevrange(self._key("attempts-failed", who), 0, 0)
            recent_ids, failed_ids = pipe.execute()
        found = {a.id: a for a in self._attempts([*recent_ids, *failed_ids])}
        failed = found.get(failed_ids[0].decode()) if failed_ids else None
        return [found[i.decode()] for i in recent_ids if i.decode() in found], failed

    def attempts_since(self, runbook: str, target: str, since: float) -> list[Attempt]:
        with self._client() as client:
            ids = client.zrangebyscore(self._key("attempts", pair(runbook, target)),
                                       since, "+inf")
        return self._attempts(ids)

    def last_failed_attempt(self, runbook: str, target: str) -> Attempt | None:
        with self._client() as client:
            ids = client.zrevrange(self._key("attempts-failed", pair(runbook, target)), 0, 0)
        found = self._attempts(ids)
        return found[0] if found else None

    def attempt_keys_since(self, since: float) -> set[tuple[str, str]]:
        with self._client() as client:
            ids = {*client.zrangebyscore(self._key("attempts", "started"), since, "+inf"),
                   *client.zrangebyscore(self._key("attempts", "finished"), since, "+inf")}
        return {(a.runbook, a.target) for a in self._attempts(sorted(ids))}


class RedisLocks(RedisConnection, Locks):
    """A lock is its hash until released or broken (an expired one stays, as a row does
    in SQLite, until taken again); tokens come from ``fencing:lock``, which only grows."""

    leases_lapse_apart = True     # one replica may be cut off from Redis while others are not

    def acquire_lock(self, target: str, holder: str, ttl: float, *, run_id: str | None = None,
                     component: str | None = None) -> Lock | None:
        now = time.time()
        fields: dict[str, Any] = {"target": target, "holder": holder, "acquired_at": now,
                                  "expires_at": now + ttl, "run_id": run_id,
                                  "component": component}
        args: list[Any] = [now, target]
        for name, value in fields.items():
            if value is not None:
                args += [name, repr(value) if isinstance(value, float) else value]
        token = self._run_script("acquire_lock", ACQUIRE_LOCK, [
            self._key("lock", target), self._key("fencing", "lock"), self._key("locks")], args)
        if token is None:
            return None
        return Lock(token=int(token), **fields)

    def acquire_slot(self, prefix: str, limit: int, holder: str, ttl: float, *,
                     run_id: str | None = None,
                     component: str | None = None) -> tuple[Lock | None, int]:
        now = time.time()
        fields: dict[str, Any] = {"holder": holder, "acquired_at": now,
                                  "expires_at": now + ttl, "run_id": run_id,
                                  "component": component}
        args: list[Any] = [repr(now), prefix, limit, self._key("lock", "")]
        for name, value in fields.items():
            if value is not None:
                args += [name, repr(value) if isinstance(value, float) else value]
        token, busy, *n = self._run_script("acquire_slot", ACQUIRE_SLOT, [
            self._key("locks"), self._key("fencing", "lock")], args)
        if not token:
            return None, int(busy)
        return Lock(target=f"{prefix}{n[0]}", token=int(token), **fields), int(busy)

    def renew_lock(self, target: str, token: int, ttl: float) -> bool:
        return bool(self._run_script("renew_lock", RENEW_LOCK, [self._key("lock", target)],
                                     [token, repr(time.time() + ttl)]))

    def renew_locks(self, held: Sequence[tuple[str, int]], ttl: float) -> list[bool]:
        if not held:
            return []
        expires = repr(time.time() + ttl)
        sha = self._script("renew_lock", RENEW_LOCK).sha

        def renew(client: Any) -> list[Any]:
            # The script by its SHA, each lock its own call, sent together (a redis-py
            # pipeline of Script calls would first ask SCRIPT EXISTS: a round trip).
            pipe = client.pipeline(transaction=False)
            for target, token in held:
                pipe.evalsha(sha, 1, self._key("lock", target), token, expires)
            return pipe.execute()

        with self._client() as client:
            try:
                renewed = renew(client)
            except redis.exceptions.NoScriptError:   # a restarted server forgot it
                client.script_load(RENEW_LOCK)
                renewed = renew(client)     # renewing again to the same expiry: harmless
        return [bool(r) for r in renewed]

    def release_lock(self, target: str, token: int) -> bool:
        return bool(self._run_script("release_lock", RELEASE_LOCK, [
            self._key("lock", target), self._key("locks")], [token, target]))

    def get_lock(self, target: str) -> Lock | None:
        with self._client() as client:
            lock = _lock(client.hgetall(self._key("lock", target)))
        return lock if lock is not None and lock.expires_at > time.time() else None

    def break_lock(self, target: str) -> Lock | None:
        name = self._key("lock", target)

        def change(pipe: Any) -> Lock | None:
            lock = _lock(pipe.hgetall(name))
            if lock is not None:
                pipe.multi()
                pipe.delete(name)
                pipe.srem(self._key("locks"), target)
            return lock

        return self._atomic([name], change)

    def list_locks(self) -> list[Lock]:
        found = self._run_script("list_locks", LIST_LOCKS, [self._key("locks")],
                                 [self._key("lock", "")])
        now = time.time()
        return sorted((lock for lock in map(_lock, found)
                       if lock is not None and lock.expires_at > now), key=lambda k: k.target)


class _RecordHash(RedisConnection):
    """Records kept as JSON in one hash (``name``), read whole and changed atomically."""

    def _records(self, name: str, cls: type) -> list[Any]:
        with self._client() as client:
            return [decode(cls, raw) for raw in client.hvals(self._key(name))]

    def _remove_where(self, name: str, cls: type, field_of: Any, matches: Any) -> list[Any]:
        """Remove, atomically, the records of hash ``name`` that ``matches``; returned."""
        key = self._key(name)

        def change(pipe: Any) -> list[Any]:
            gone = [r for r in (decode(cls, raw) for raw in pipe.hvals(key)) if matches(r)]
            if gone:
                pipe.multi()
                pipe.hdel(key, *(field_of(r) for r in gone))
            return gone

        return self._atomic([key], change)


class RedisApprovals(_RecordHash, Approvals):
    """``approvals``: run id -> approval; a decision is a compare-and-set on its status."""

    def add_approval(self, approval: Approval) -> None:
        with self._client() as client:
            client.hset(self._key("approvals"), approval.run_id, encode(approval))

    def get_approval(self, run_id: str) -> Approval | None:
        with self._client() as client:
            raw = client.hget(self._key("approvals"), run_id)
        return None if raw is None else decode(Approval, raw)

    def list_approvals(self, status: str | None = "pending") -> list[Approval]:
        found = self._records("approvals", Approval)
        if status is None:
            return sorted(found, key=lambda a: a.requested_at, reverse=True)
        return sorted((a for a in found if a.status == status), key=lambda a: a.requested_at)

    def decide_approval(self, run_id: str, *, status: str, by: str | None, reason: str,
                        at: float, expect: str = "pending") -> Approval | None:
        key = self._key("approvals")

        def change(pipe: Any) -> Approval | None:
            raw = pipe.hget(key, run_id)
            approval = None if raw is None else decode(Approval, raw)
            if approval is None or approval.status != expect:
                return None
            approval.status, approval.decided_by = status, by
            approval.decided_at, approval.reason = at, reason
            pipe.multi()
            pipe.hset(key, run_id, encode(approval))
            return approval

        return self._atomic([key], change)

    def due_approvals(self, now: float) -> list[Approval]:
        return sorted((a for a in self._records("approvals", Approval)
                       if a.status == "pending" and a.expires_at <= now),
                      key=lambda a: a.expires_at)


class RedisKillSwitches(_RecordHash, KillSwitches):
    """``switches``: id -> switch, listed by when they were made."""

    def add_switch(self, switch: Switch) -> None:
        with self._client() as client:
            added = client.hsetnx(self._key("switches"), switch.id, encode(switch))
        if not added:   # as SQLite's primary key: a switch is never overwritten
            raise ValueError(f"a switch with id {switch.id!r} exists")

    def remove_switches(self, component: str | None, target: str | None) -> list[Switch]:
        gone = self._remove_where("switches", Switch, lambda s: s.id,
                                  lambda s: s.component == component and s.target == target)
        return sorted(gone, key=lambda s: s.created_at)

    def active_switches(self, now: float) -> list[Switch]:
        return sorted((s for s in self._records("switches", Switch)
                       if s.until is None or s.until > now), key=lambda s: s.created_at)


def _by_mode(reason: DegradedReason) -> tuple[str, float, str]:
    return reason.mode, reason.since, reason.key


class RedisDegradedModes(_RecordHash, DegradedModes):
    """``degraded``: (mode, key) -> reason; one reason per mode and key, the last added."""

    def add_degraded(self, reason: DegradedReason) -> None:
        with self._client() as client:
            client.hset(self._key("degraded"), f"{reason.mode}\x00{reason.key}", encode(reason))

    def clear_degraded(self, *, mode: str | None = None, target: str | None = None,
                       manual: bool | None = False) -> list[DegradedReason]:
        def matches(r: DegradedReason) -> bool:
            return ((mode is None or r.mode == mode) and (target is None or r.target == target)
                    and (manual is None or r.manual == manual))

        gone = self._remove_where("degraded", DegradedReason,
                                  lambda r: f"{r.mode}\x00{r.key}", matches)
        return sorted(gone, key=_by_mode)

    def degraded_reasons(self, mode: str | None = None) -> list[DegradedReason]:
        return sorted((r for r in self._records("degraded", DegradedReason)
                       if mode is None or r.mode == mode), key=_by_mode)
