"""Redis keyspace work, on the target's primary: the strategy ``redis.flush_corrupted``
(delete keys without a TTL that match a namespace pattern, SCAN only) and the verify
``redis.sample_keys_readable`` (keys read back whole; with ``require_ttl``, no key of the
namespace left without a TTL: the proof that the flush fixed what it was run for).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
from engine.actions.redis.endpoints import number, primary_client

SAMPLE = 10                      # key names shown in a plan or a record
_GLOB = "*?[\\"                   # where a SCAN pattern stops being a literal prefix
SEPARATORS = ":/.|#_-"           # what ends a namespace prefix (cache: app/ v1.)
CENSUS_LIMIT = 1000              # keys without a TTL counted (at least) before giving up


def _text(key: Any) -> str:
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    return text if len(text) <= 120 else text[:117] + "..."


def namespace_pattern(pattern: str) -> str:
    """``pattern`` if it names one namespace of keys: its literal text before the first
    ``*?[\\`` ends in a separator (``:/.|#_-``) after at least one other character
    (``cache:*``, ``app/v1.*``), or it has no wildcard at all (one key). ValueError with
    the reason otherwise: ``*``, ``c*``, ``cache*``, ``?ache:*``, ``:*``
    could reach keys of other namespaces, or every key."""
    if not pattern:
        raise ValueError("`match` (a key pattern such as cache:*) is required")
    cut = next((i for i, c in enumerate(pattern) if c in _GLOB), None)
    if cut is None:
        return pattern
    prefix = pattern[:cut]
    if not prefix or prefix[-1] not in SEPARATORS or not prefix.strip(SEPARATORS):
        shown = f"literal prefix {prefix!r}" if prefix else "no literal prefix"
        raise ValueError(f"pattern {pattern!r} has {shown}: the text before the first "
                         f"wildcard must name a namespace and end in one of {SEPARATORS} "
                         "(cache:*), or the flush could reach keys of other namespaces")
    return pattern


def _pattern(ctx: ActionContext) -> str:
    """The runbook's ``match`` pattern, limited to one namespace (``namespace_pattern``):
    a flush never reaches keys outside it, and never all of them."""
    return namespace_pattern(str(ctx.params.get("match") or ""))


@dataclass
class Census:
    """Keys matching a pattern, by TTL, as one SCAN saw them (reads only)."""

    without_ttl: int = 0
    with_ttl: int = 0
    sample: list[str] = field(default_factory=list)   # names without a TTL
    complete: bool = False       # the SCAN went round the whole keyspace


def census(client: Any, pattern: str, batch: int, limit: int,
           cancel: threading.Event) -> Census:
    """Count the keys matching ``pattern`` with and without a TTL (SCAN + PTTL, never
    KEYS), stopping once more than ``limit`` without a TTL were found, or on ``cancel``.
    A key that vanished meanwhile (PTTL -2) counts in neither."""
    seen, cursor = Census(), 0
    while seen.without_ttl <= limit and not cancel.is_set():
        cursor, keys = client.scan(cursor, match=pattern, count=batch)
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
        for key, ttl in zip(keys, pipe.execute(), strict=True):
            if ttl == -1:
                seen.without_ttl += 1
                if len(seen.sample) < SAMPLE:
                    seen.sample.append(_text(key))
            elif ttl >= 0:
                seen.with_ttl += 1
        if cursor == 0:
            seen.complete = True
            break
    return seen


# Deletes the given keys that have no TTL, atomically per batch (a key given a TTL since
# the SCAN is kept); returns the names it deleted.
_FLUSH = """
local gone = {}
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) == -1 then
    redis.call('UNLINK', key)
    gone[#gone + 1] = key
  end
end
return gone
"""


class FlushCorrupted(Action):
    """Delete the keys that match ``match`` and have no TTL, at most ``max_keys`` per run.

    SCAN in batches of ``batch`` (never KEYS, never FLUSHALL/FLUSHDB); each batch is
    checked and deleted (UNLINK) by one Lua script, so a key given a TTL meanwhile is
    kept. Keys with a TTL are the cache working as designed and are never touched; a
    TTL-less key under a cache prefix is the corruption this removes (a write that lost
    its EXPIRE). Refuses a pattern that does not name one namespace
    (``namespace_pattern``). It acts on the target's primary (see ``primary_client``).

    A run that stops at the cap counts what is left (SCAN + PTTL) and FAILS with "N more
    remain" when anything is: part of the corruption removed is not a recovery, and the
    incident must not read ``recovered``. The runbook then escalates (or a person
    approves another run, or raises ``max_keys``).

    Its plan pins ``max_keys_pin``: the keys it counted. A run let through without a
    person because that count was under an approval rule deletes at most that many, and,
    when more have appeared since, fails saying so: deleting more needs approval. A run a
    person approved is held to the count of the plan they were shown the same way
    (``approved_by_pin`` names them), and fails saying what remains: approve again.
    """

    name = "redis.flush_corrupted"
    # How many keys a run would delete (capped): `approval: {when: [{fact: keys_to_delete,
    # over: 1000}]}` asks a person only for a big flush.
    reports = MappingProxyType({"keys_to_delete": "count"})
    scope = REMOTE
    timeout = 120.0

    def _limits(self, ctx: ActionContext) -> tuple[str, int, int]:
        pattern = _pattern(ctx)
        cap = int(number(ctx, "max_keys", 10000, low=1, high=1_000_000))
        batch = int(number(ctx, "batch", 500, low=1, high=10_000))
        return pattern, cap, batch

    @staticmethod
    def _judged(ctx: ActionContext, cap: int) -> int | None:
        """The keys its plan counted when an approval was judged on them (the pin), when
        that is under the cap: a run must not delete more than was judged."""
        if "max_keys_pin" not in ctx.params:
            return None
        pinned = int(number(ctx, "max_keys_pin", 0, low=0, high=1_000_000))
        return pinned if pinned < cap else None

    def run(self, ctx: ActionContext) -> ActionResult:
        import redis

        try:
            pattern, cap, batch = self._limits(ctx)
            judged = self._judged(ctx, cap)
        except ValueError as exc:
            return ActionResult(False, f"refused: {exc}")
        cap = cap if judged is None else judged
        deleted, checked, batches, sample = 0, 0, 0, []
        started = time.monotonic()
        with primary_client(ctx) as (client, where):
            if client is None:
                return ActionResult(False, f"cannot flush: {where}")
            script = client.register_script(_FLUSH)
            cursor, keys = 0, []
            try:
                while deleted < cap:
                    if ctx.cancel.is_set():
                        break
                    cursor, keys = client.scan(cursor, match=pattern, count=batch)
                    batches += 1
                    while keys and deleted < cap:
                        chunk, keys = keys[:cap - deleted], keys[cap - deleted:]
                        checked += len(chunk)
                        gone = script(keys=chunk)
                        deleted += len(gone)
                        sample += [_text(k) for k in gone[:SAMPLE - len(sample)]]
                    if cursor == 0:
                        break
            except redis.exceptions.RedisError as exc:
                return ActionResult(False, f"flush on {where} failed after deleting "
                                    f"{deleted} key(s): {exc}",
                                    {"deleted": deleted, "server": where})
            # (a pin of 0 scans nothing: the count below says whether any appeared)
            stopped = deleted >= cap and (cursor != 0 or bool(keys) or batches == 0)
            left = Census(complete=True)
            try:
                if stopped and not ctx.cancel.is_set():
                    left = census(client, pattern, batch, max(cap, CENSUS_LIMIT),
                                  ctx.cancel)
            except redis.exceptions.RedisError as exc:
                left = Census()
                ctx.log(f"counting what the cap left failed: {exc}")
        capped = stopped and (left.without_ttl > 0 or not left.complete)
        kept = checked - deleted         # had a TTL (or vanished) when checked
        data = {"server": where, "match": pattern, "deleted": deleted, "cap": cap,
                "capped": capped, "remaining": left.without_ttl if capped else 0,
                "remaining_counted": left.complete, "checked": checked,
                "kept_with_ttl": kept, "batches": batches, "sample": sample,
                "seconds": round(time.monotonic() - started, 3)}
        what = (f"deleted {deleted} key(s) without a TTL matching {pattern!r} on {where} "
                f"(SCAN, {batches} batch(es) of {batch}); {kept} matching key(s) with a TTL "
                "left alone")
        if ctx.cancel.is_set():
            return ActionResult(False, f"stopped after deleting {deleted} key(s) without a "
                                f"TTL matching {pattern!r} on {where}", data)
        if capped:
            if not left.complete:
                more = "an unknown number of keys without a TTL may remain (not counted)"
            elif left.without_ttl > max(cap, CENSUS_LIMIT):
                more = f"more than {max(cap, CENSUS_LIMIT)} keys without a TTL remain"
            else:
                more = f"{left.without_ttl} more key(s) without a TTL remain"
            if judged is not None and ctx.params.get("approved_by_pin"):
                return ActionResult(False, f"not recovered: {what}; stopped at the {judged} "
                                    "key(s) the approved plan counted (approved by "
                                    f"{ctx.params['approved_by_pin']}); {more}: approve "
                                    "again to delete them (its plan counts them anew)",
                                    data)
            if judged is not None:
                return ActionResult(False, f"not recovered: {what}; stopped at the {judged} "
                                    "key(s) its plan counted when approval was judged not "
                                    f"needed, and {more} (they appeared since): deleting "
                                    "more needs approval (run it again: its plan counts "
                                    "them and the rule decides)", data)
            return ActionResult(False, f"not recovered: {what}; stopped at the cap of {cap} "
                                f"per run and {more} (e.g. {', '.join(left.sample[:3]) or '?'}"
                                "): run flush_corrupted again or raise max_keys", data)
        tail = ("reached the cap, and a recount finds none left without a TTL" if stopped
                else "the whole keyspace was scanned")
        return ActionResult(True, f"{what}; {tail}", data)

    def plan(self, ctx: ActionContext) -> ActionResult:
        """How many keys a run would delete (up to the cap, then "more than") and a sample;
        reads only (SCAN and PTTL)."""
        import redis

        try:
            pattern, cap, batch = self._limits(ctx)
        except ValueError as exc:
            return ActionResult(False, f"refused: {exc}")
        with primary_client(ctx) as (client, where):
            if client is None:
                return ActionResult(False, f"cannot plan the flush: {where}")
            try:
                seen = census(client, pattern, batch, cap, ctx.cancel)
            except redis.exceptions.RedisError as exc:
                return ActionResult(False, f"cannot plan the flush on {where}: {exc}")
        count, more = seen.without_ttl, seen.without_ttl > cap
        data = {"server": where, "match": pattern, "would_delete": min(count, cap),
                "without_ttl": count, "more_than_cap": more, "cap": cap,
                "with_ttl_seen": seen.with_ttl, "sample": seen.sample,
                "facts": {"keys_to_delete": min(count, cap)},
                "pins": {"max_keys_pin": min(count, cap)}}
        words = (f"more than {cap} keys without a TTL match {pattern!r}: a run deletes "
                 f"{cap} and fails, the rest remaining" if more else
                 f"would delete {count} key(s) without a TTL matching {pattern!r}")
        return ActionResult(True, f"{words} on {where}; {seen.with_ttl} matching key(s) with "
                            f"a TTL stay; e.g. {', '.join(seen.sample) or '(none)'}", data)


class SampleKeysReadable(Action):
    """Verify after a flush (PING proves nothing there): up to ``sample`` keys matching
    ``match`` (default all) are read back whole (DUMP) without an error, and, with
    ``type``, are of that type (a key of another type fails the application's reads with
    WRONGTYPE). It cannot tell whether a value is what the application meant to write.

    With ``require_ttl: true`` (the flush's verify; ``match`` then required, the flush's
    own pattern) it also proves the flush fixed what it was run for: a SCAN of the whole
    namespace (not a sample) finds no key without a TTL. A capped run or an application
    that still writes keys without EXPIRE fails it, with the count (up to 1,000) and names.
    """

    name = "redis.sample_keys_readable"
    scope = REMOTE
    timeout = 30.0

    def run(self, ctx: ActionContext) -> ActionResult:
        import redis

        pattern = str(ctx.params.get("match") or "*")
        wanted = ctx.params.get("type")
        require_ttl = ctx.params.get("require_ttl", False)
        try:
            size = int(number(ctx, "sample", 20, low=1, high=1000))
            if not isinstance(require_ttl, bool):
                raise ValueError(f"require_ttl must be true or false, got {require_ttl!r}")
            if require_ttl and not ctx.params.get("match"):
                raise ValueError("require_ttl needs `match`: the namespace whose keys must "
                                 "all expire (the flush's pattern)")
        except ValueError as exc:
            return ActionResult(False, f"refused: {exc}")
        seen = None
        with primary_client(ctx) as (client, where):
            if client is None:
                return ActionResult(False, f"cannot sample: {where}")
            try:
                client.ping()
                keys: list[Any] = []
                cursor, scans = 0, 0
                while len(keys) < size and scans < 50:   # bounded on a sparse keyspace
                    cursor, page = client.scan(cursor, match=pattern, count=100)
                    keys += [k for k in page if k not in keys][:size - len(keys)]
                    scans += 1
                    if cursor == 0:
                        break
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.type(key)
                    pipe.dump(key)
                replies = pipe.execute(raise_on_error=False)
                if require_ttl:
                    seen = census(client, pattern, 500, CENSUS_LIMIT, ctx.cancel)
            except redis.exceptions.RedisError as exc:
                return ActionResult(False, f"cannot read from {where}: {exc}")
        bad = []
        for index, key in enumerate(keys):
            kind, value = replies[2 * index], replies[2 * index + 1]
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if isinstance(value, Exception) or isinstance(kind, Exception):
                bad.append(f"{_text(key)}: {value}")
            elif wanted and kind not in (str(wanted), "none"):
                bad.append(f"{_text(key)}: a {kind}, not a {wanted}")
        data = {"server": where, "match": pattern, "sampled": len(keys),
                "unreadable": len(bad), "examples": bad[:SAMPLE]}
        problems = []
        if bad:
            problems.append(f"{len(bad)} of {len(keys)} sampled key(s) matching {pattern!r} "
                            f"unreadable: {'; '.join(bad[:3])}")
        if seen is not None:
            data.update(without_ttl=seen.without_ttl, without_ttl_sample=seen.sample,
                        with_ttl=seen.with_ttl, scanned_all=seen.complete)
            if seen.without_ttl:
                many = (f"more than {CENSUS_LIMIT}" if seen.without_ttl > CENSUS_LIMIT
                        else str(seen.without_ttl))
                problems.append(f"{many} key(s) matching {pattern!r} still have no TTL "
                                f"(e.g. {', '.join(seen.sample[:3])}): the corruption is "
                                "still there")
            elif not seen.complete:
                problems.append(f"stopped before scanning every key matching {pattern!r}: "
                                "cannot say that none is left without a TTL")
        if problems:
            return ActionResult(False, f"on {where}: {'; '.join(problems)}", data)
        ttl = (f"; none of the {seen.with_ttl} key(s) matching {pattern!r} lacks a TTL "
               "(all scanned)" if seen is not None else "")
        if not keys:
            return ActionResult(True, f"no key matching {pattern!r} left on {where}; the "
                                f"server answers{ttl}", data)
        return ActionResult(True, f"read {len(keys)} sampled key(s) matching {pattern!r} on "
                            f"{where}: all readable{ttl}", data)

    plan = run
