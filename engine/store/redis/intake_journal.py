"""The intake journal in Redis (``engine.store.intake_journal.IntakeJournal``).

Keys, under the store's prefix: ``intake:stream`` (the journal, a Stream: one entry per
alert waiting, its id ``<n>-0`` where ``n`` is the item's integer id, from the counter
``intake:next``; fields ``key``, ``payload``, ``at``); ``intake:seen`` (a sorted set:
every dedup key journaled, by when it last was); claims beside the stream:
``intake:until`` (item id -> claimed-until, a sorted set) and ``intake:holder`` (item id
-> holder, a hash); ``delivery:<dedup key>`` (the kept delivery, JSON), indexed by
``processed_at`` in ``deliveries:processed``, ``deliveries-fp:<fingerprint>`` and
``deliveries-inc:<incident>`` (sorted sets of dedup keys), ids from ``deliveries:next``;
``resolved`` (fingerprint -> [ends_at, at]) and ``resolved:at`` (by ``at``, to prune).

Why the claims are not a consumer group's pending entries (tried on redis-server 7.0):
a claim's lease is the claimer's, and leases differ (a worker's 0.2 s claim lapses while
another's 10 s one holds), but XAUTOCLAIM takes one min-idle for every entry, the
claimer's: a worker claiming with a 10 s lease never got back entries a dead worker had
claimed 0.25 s before with a 0.2 s lease. Nor can a pending entry carry its own
claimed-until: XCLAIM ... TIME in the future is clamped to now (idle 1 ms), so an exact
(holder, claimed_until) pair cannot be kept in, nor listed from, XPENDING. So the Stream
is the journal (XADD keeps the order, integer ids map to stream ids one to one) and
each claim is a score and a hash field, taken and given back by small Lua scripts.

Dedup keys expire as SQLite's do: ``delete_before`` drops those last seen before its
time (the store has no retention of its own to set a TTL with). Times are the caller's
clock, as in SQLite.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from typing import Any

from engine.records import Delivery
from engine.store.intake_journal import IntakeItem, IntakeJournal, fold_deliveries
from engine.store.redis.connection import RedisConnection
from engine.store.redis.records import from_dict

# KEYS: the stream, the seen keys, the id counter. ARGV: now, repeat_after ('' for
# none), then (dedup key, '1' if firing else '0', payload JSON) per alert.
# Journals the keys not seen (and a firing one last seen more than repeat_after ago)
# in order; returns {accepted, duplicates}.
ENQUEUE = """
local now, repeat_after = tonumber(ARGV[1]), tonumber(ARGV[2])
local accepted, duplicates = 0, 0
for i = 3, #ARGV, 3 do
  local key, firing = ARGV[i], ARGV[i + 1] == '1'
  local seen = redis.call('ZSCORE', KEYS[2], key)
  local journal = true
  if seen then
    duplicates = duplicates + 1
    if repeat_after == nil or not firing or not (tonumber(seen) < now - repeat_after) then
      journal = false
    end
  else
    accepted = accepted + 1
  end
  if journal then
    redis.call('ZADD', KEYS[2], now, key)
    local n = redis.call('INCR', KEYS[3])
    redis.call('XADD', KEYS[1], n .. '-0', 'key', key, 'payload', ARGV[i + 2],
               'at', ARGV[1])
  end
end
return {accepted, duplicates}
"""

# KEYS: the stream, the claims' until, their holders. ARGV: now, until, holder, limit.
# Claims the oldest entries not claimed or whose claim lapsed (until < now); returns
# them as [id, key, payload, at, ...].
CLAIM = """
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[4])
local found, taken, start = {}, 0, '-'
while taken < limit do
  local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 200)
  if #entries == 0 then break end
  for _, entry in ipairs(entries) do
    local id = entry[1]
    local n = string.sub(id, 1, string.find(id, '-', 1, true) - 1)
    local held = redis.call('ZSCORE', KEYS[2], n)
    if not held or tonumber(held) < now then
      redis.call('ZADD', KEYS[2], ARGV[2], n)
      redis.call('HSET', KEYS[3], n, ARGV[3])
      local fields = {}
      for f = 1, #entry[2], 2 do fields[entry[2][f]] = entry[2][f + 1] end
      table.insert(found, n)
      table.insert(found, fields['key'])
      table.insert(found, fields['payload'])
      table.insert(found, fields['at'])
      taken = taken + 1
      if taken >= limit then break end
    end
  end
  start = '(' .. entries[#entries][1]
end
return found
"""

# KEYS: the claims' until, their holders. ARGV: (holder, until) pairs. Drops the claims
# that are exactly these; returns how many items they held.
RELEASE = """
local released = 0
for i = 1, #ARGV, 2 do
  for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[i + 1], ARGV[i + 1])) do
    if redis.call('HGET', KEYS[2], n) == ARGV[i] then
      redis.call('ZREM', KEYS[1], n)
      redis.call('HDEL', KEYS[2], n)
      released = released + 1
    end
  end
end
return released
"""


def _rows(kept: list[Delivery]) -> tuple[dict[str, dict[str, Any]], dict[str, Delivery]]:
    """The batch folded (``fold_deliveries``) as the values of one record per dedup key
    (a payload only on a fingerprint's newest firing delivery); and those deliveries."""
    f = fold_deliveries(kept)
    payloads = {d.dedup_key: d.payload for d in f.newest_firing.values()}
    rows = {key: {**dataclasses.asdict(d), "dedup_key": key, "incident_id": f.incident[key],
                  "payload": payloads.get(key), "count": f.count[key],
                  "first_received_at": f.first[key].received_at,
                  "first_processed_at": f.first[key].processed_at,
                  "first_outcome": f.first[key].outcome}
            for key, d in f.last.items()}
    return rows, f.newest_firing


def _merged(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A repeat of a kept key (SQLite's upsert): counted, its latest fields replace the
    record's (the incident and the payload stay when the repeat names none); the first
    delivery's times and outcome, and the id, stay."""
    if old is None:
        return new
    return {**new, "id": old["id"], "incident_id": new["incident_id"] or old["incident_id"],
            "payload": new["payload"] if new["payload"] is not None else old["payload"],
            "count": old["count"] + new["count"],
            **{k: old[k] for k in ("first_received_at", "first_processed_at",
                                   "first_outcome")}}


def delivery_of(values: dict[str, Any]) -> Delivery:
    return from_dict(Delivery, {**values, "payload": values.get("payload") or {}})


class RedisIntakeJournal(RedisConnection, IntakeJournal):
    """The Stream journal, its claims beside it, the kept deliveries and resolve marks."""

    def _intake(self, part: str) -> str:
        return self._key("intake", part)

    def _delivery_key(self, dedup_key: str) -> str:
        return self._key("delivery", dedup_key)

    def _delivery_indexes(self, values: dict[str, Any]) -> list[str]:
        """The sorted sets a kept delivery is in, by ``processed_at``."""
        found = [self._key("deliveries", "processed"),
                 self._key("deliveries-fp", values["fingerprint"])]
        if values.get("incident_id"):
            found.append(self._key("deliveries-inc", values["incident_id"]))
        return found

    def enqueue_alerts(self, items: list[tuple[str, dict[str, Any]]], *,
                       repeat_after: float | None = None,
                       wait: float | None = None) -> tuple[int, int]:
        """One script call journals the batch: deduplication and journaling at once,
        against every process. ``wait`` bounds the connect and the answer (the script
        runs whole as soon as the server gets it; one that timed out may have run, and
        Alertmanager's retry is then a duplicate)."""
        if not items:
            return 0, 0
        args: list[Any] = [repr(time.time()), "" if repeat_after is None else repr(repeat_after)]
        for key, payload in items:
            args += [key, "1" if payload.get("status") == "firing" else "0",
                     json.dumps(payload)]
        accepted, duplicates = self._run_script("intake_enqueue", ENQUEUE, [
            self._intake("stream"), self._intake("seen"), self._intake("next")], args,
            wait=wait)
        return int(accepted), int(duplicates)

    def claim_intake(self, holder: str, limit: int, lease: float) -> list[IntakeItem]:
        if limit <= 0:
            return []
        now = time.time()
        found = self._run_script("intake_claim", CLAIM, [
            self._intake("stream"), self._intake("until"), self._intake("holder")],
            [repr(now), repr(now + lease), holder, limit])
        return [IntakeItem(int(found[i]), found[i + 1].decode(), json.loads(found[i + 2]),
                           float(found[i + 3])) for i in range(0, len(found), 4)]

    def intake_claims(self, now: float) -> list[tuple[str, float]]:
        with self._client() as client:
            claimed = client.zrangebyscore(self._intake("until"), now, "+inf",
                                           withscores=True)
            holders = client.hmget(self._intake("holder"), [n for n, _ in claimed]) \
                if claimed else []
        pairs = {(h.decode(), until) for (_, until), h in zip(claimed, holders, strict=True)
                 if h is not None}
        return sorted(pairs, key=lambda p: (p[1], p[0]))

    def release_intake(self, claims: Iterable[tuple[str, float]]) -> int:
        args: list[Any] = []
        for holder, until in claims:
            args += [holder, repr(float(until))]
        if not args:
            return 0
        return int(self._run_script("intake_release", RELEASE, [
            self._intake("until"), self._intake("holder")], args))

    def ack_intake(self, ids: Iterable[int], deliveries: Iterable[Delivery] = ()) -> None:
        """The items dropped from the stream and their claims, the deliveries kept (one
        record per dedup key, ``_merged``) and the payloads of a fingerprint's older
        deliveries dropped, in one MULTI, the records it read WATCHed."""
        ids, kept = [str(int(i)) for i in ids], list(deliveries)
        if not ids and not kept:
            return
        rows, newest_firing = _rows(kept)
        fp_indexes = [self._key("deliveries-fp", fp) for fp in newest_firing]
        with self._client() as client:   # ids for the new records, kept on a retry
            top = client.incrby(self._key("deliveries", "next"), len(rows)) if rows else 0
        # Each row's id, the same on every try (a WATCH retry must not run out of them).
        fresh_ids = dict(zip(rows, range(top - len(rows) + 1, top + 1), strict=True))

        def change(pipe: Any) -> None:
            # Every try (a WATCHed key changed: run again) hands out the same ids afresh.
            keys = [self._delivery_key(k) for k in rows]
            olds = [None if raw is None else json.loads(raw)
                    for raw in (pipe.mget(keys) if keys else [])]
            others: dict[str, dict[str, Any]] = {}   # the fingerprints' payloads dropped
            for fp, d in newest_firing.items():
                for member in pipe.zrange(self._key("deliveries-fp", fp), 0, -1):
                    key = member.decode()
                    if key != d.dedup_key and key not in rows:
                        pipe.watch(self._delivery_key(key))
                        raw = pipe.get(self._delivery_key(key))
                        if raw is not None and json.loads(raw).get("payload") is not None:
                            others[key] = {**json.loads(raw), "payload": None}
            pipe.multi()
            if ids:
                pipe.xdel(self._intake("stream"), *(f"{n}-0" for n in ids))
                pipe.zrem(self._intake("until"), *ids)
                pipe.hdel(self._intake("holder"), *ids)
            for key, old in zip(rows, olds, strict=True):
                values = _merged(old, {**rows[key], "id": fresh_ids[key]})
                if values["fingerprint"] in newest_firing and \
                        newest_firing[values["fingerprint"]].dedup_key != key:
                    values["payload"] = None
                self._put_delivery(pipe, values, old)
            for values in others.values():
                pipe.set(self._delivery_key(values["dedup_key"]), json.dumps(values))

        self._atomic([self._key("deliveries", "processed"), *fp_indexes,
                      *(self._delivery_key(k) for k in rows)], change)

    def _put_delivery(self, pipe: Any, values: dict[str, Any],
                      old: dict[str, Any] | None) -> None:
        key = values["dedup_key"]
        pipe.set(self._delivery_key(key), json.dumps(values))
        if old is not None:
            for index in set(self._delivery_indexes(old)) - set(self._delivery_indexes(values)):
                pipe.zrem(index, key)
        for index in self._delivery_indexes(values):
            pipe.zadd(index, {key: values["processed_at"]})

    def deliveries(self, *, fingerprint: str | None = None, incident_id: str | None = None,
                   limit: int | None = 100) -> list[Delivery]:
        if fingerprint is not None:
            index = self._key("deliveries-fp", fingerprint)
        elif incident_id is not None:
            index = self._key("deliveries-inc", incident_id)
        else:
            index = self._key("deliveries", "processed")
        with self._client() as client:
            keys = client.zrange(index, 0, -1)
            raws = client.mget([self._delivery_key(k.decode()) for k in keys]) if keys else []
        found = [json.loads(raw) for raw in raws if raw is not None]
        found = [v for v in found if (fingerprint is None or v["fingerprint"] == fingerprint)
                 and (incident_id is None or v.get("incident_id") == incident_id)]
        found.sort(key=lambda v: (v["processed_at"], v["id"]), reverse=True)
        if limit is not None and limit >= 0:
            found = found[:limit]
        return [delivery_of(v) for v in found]

    def intake_depth(self, now: float) -> tuple[int, float]:
        with self._client() as client:
            n = client.xlen(self._intake("stream"))
            first = client.xrange(self._intake("stream"), count=1)
        oldest = float(first[0][1][b"at"]) if first else None
        return int(n), (now - oldest) if oldest else 0.0

    def mark_resolved(self, fingerprint: str, ends_at: str, at: float) -> None:
        key = self._key("resolved")

        def change(pipe: Any) -> None:
            raw = pipe.hget(key, fingerprint)
            kept = ends_at if raw is None else max(json.loads(raw)[0], ends_at)
            pipe.multi()
            pipe.hset(key, fingerprint, json.dumps([kept, at]))
            pipe.zadd(self._key("resolved", "at"), {fingerprint: at})

        self._atomic([key], change)

    def resolved_until(self, fingerprint: str) -> tuple[str, float] | None:
        with self._client() as client:
            raw = client.hget(self._key("resolved"), fingerprint)
        if raw is None:
            return None
        ends_at, at = json.loads(raw)
        return ends_at, at
