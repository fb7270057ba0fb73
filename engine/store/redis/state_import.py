"""A whole store's state written into Redis, for ``recovery store migrate``
(engine.store.migrate): each record with the same keys and indexes the protocols' own
writes give it (the incidents' open marks and due/closed indexes, the run index's
sorted sets, the attempts a cooldown counts, a kept delivery's indexes), so the store
reads and changes it afterwards as if it had written it itself.

Written in pipelines of ``BATCH`` records (no MULTI: the target is new, no reader is
there, and a migration cut short is marked incomplete, not half-visible: see
engine.store.migrate). ``held_keys``/``clear`` are what the migration asks of the target
before: whether anything is under the prefix, and dropping it when told to replace it.
Both see only the store's own key families (``FAMILIES``), not every key the prefix
matches: prefix ``recovery:`` also matches ``recovery:staging:...``, another install's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from engine.store.outcome_metrics import DurationRow
from engine.store.redis.incidents import RedisIncidents
from engine.store.redis.intake_journal import RedisIntakeJournal
from engine.store.redis.records import encode
from engine.store.redis.run_records import INDEXED
from engine.store.state_snapshot import PER_PROCESS_VALUES, StateSnapshot

BATCH = 500
# The first part of every key the store writes (``_key(family, ...)``): what follows the
# prefix up to the next ``:``. A key under the prefix with another first part is not ours.
FAMILIES = frozenset({
    "approvals", "attempt", "attempts", "attempts-failed", "degraded", "deliveries",
    "deliveries-fp", "deliveries-inc", "delivery", "events", "fencing", "incident",
    "incidents", "incidents-of", "intake", "lock", "locks", "metrics", "open", "refusal",
    "resolved", "run", "run-account", "runs", "switches", "value",
    *(f"runs-{column}" for column in INDEXED)})


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


def _glob_escaped(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _series(*names: str) -> str:
    """A metrics hash field, as ``outcome_metrics`` names a series."""
    return json.dumps(list(names))


class RedisStateImport(RedisIntakeJournal, RedisIncidents):
    """``import_state`` and what the migration checks and counts on the target."""

    def _under_prefix(self, client: Any) -> Iterator[bytes]:
        """This store's keys: under the prefix, of one of its ``FAMILIES``."""
        start = len(self.prefix.encode())
        for key in client.scan_iter(match=_glob_escaped(self.prefix) + "*", count=1000):
            if key[start:].split(b":", 1)[0].decode(errors="replace") in FAMILIES:
                yield key

    def held_keys(self, limit: int = 1000) -> int:
        """How many of this store's keys are under its prefix (counted up to ``limit``)."""
        with self._client() as client:
            n = 0
            for _ in self._under_prefix(client):
                n += 1
                if n >= limit:
                    break
        return n

    def clear(self) -> int:
        """Drop every one of this store's keys under its prefix; how many."""
        gone = 0
        with self._client() as client:
            keys = list(self._under_prefix(client))
            for part in _chunks(keys):
                gone += int(client.unlink(*part))
        return gone

    def _write(self, records: Iterable[Any], put: Any) -> None:
        """``put(pipe, record)`` for each record, one pipeline per ``BATCH``."""
        with self._client() as client:
            for part in _chunks(list(records)):
                pipe = client.pipeline(transaction=False)
                for record in part:
                    put(pipe, record)
                pipe.execute()

    def _put_histograms(self, pipe: Any, family: str, row: DurationRow,
                        series: tuple[str, ...]) -> None:
        key = self._key("metrics", family)
        for bound, count in row.buckets[:-1]:   # +Inf is the count
            if count:
                pipe.hset(key, _series(*series, repr(bound)), repr(float(count)))
        pipe.hset(key, _series(*series, "sum"), repr(float(row.total)))
        pipe.hset(key, _series(*series, "count"), repr(float(row.count)))

    def import_state(self, snap: StateSnapshot) -> None:
        """Write every record of ``snap`` (into an empty prefix: nothing is merged)."""
        self._write(snap.incidents, lambda p, i: self._put_incident(
            p, i, mark=True if i.state.is_open else None))
        self._write(snap.attempts, self._put_attempt)

        def put_run(pipe: Any, values: dict[str, Any]) -> None:
            values = dict(values)
            heartbeat_at = values.pop("heartbeat_at", None)
            self._put_run(pipe, values, heartbeat_at=heartbeat_at)
            if values.get("refusal_key"):
                pipe.set(self._key("refusal", values["refusal_key"]), values["id"])

        self._write(snap.runs, put_run)
        self._write(snap.approvals, lambda p, a: p.hset(self._key("approvals"), a.run_id,
                                                        encode(a)))
        self._write(snap.switches, lambda p, s: p.hset(self._key("switches"), s.id, encode(s)))
        self._write(snap.degraded, lambda p, r: p.hset(
            self._key("degraded"), f"{r.mode}\x00{r.key}", encode(r)))
        self._write(snap.events, lambda p, e: p.lpush(self._key("events"), encode(e)))
        self._write(list(snap.values.items()), lambda p, kv: p.set(
            self._key("value", kv[0]), json.dumps(kv[1])))
        for family, rows in (("counters", snap.counters), ("host-counters", snap.host_counters)):
            self._write(rows, lambda p, r, f=family: p.hset(
                self._key("metrics", f), _series(r.component, r.strategy, r.outcome),
                repr(float(r.value))))
        self._write(snap.deferrals, lambda p, r: p.hset(
            self._key("metrics", "deferrals"), _series(r.component, r.gate), repr(float(r.value))))
        self._write(snap.durations, lambda p, r: self._put_histograms(
            p, "durations", r, (r.component, r.strategy)))
        self._write(snap.strategy_durations, lambda p, r: self._put_histograms(
            p, "strategy-durations", r, (r.component, r.strategy, r.outcome)))
        self._write(snap.deliveries, lambda p, v: self._put_delivery(p, v, None))
        self._write(snap.resolved, lambda p, r: (
            p.hset(self._key("resolved"), r[0], json.dumps([r[1], r[2]])),
            p.zadd(self._key("resolved", "at"), {r[0]: r[2]})))
        self._write(snap.dedup_keys, lambda p, k: p.zadd(self._key("intake", "seen"),
                                                         {k[0]: k[1]}))
        with self._client() as client:   # counters that hand out ids and tokens go on
            top = max((int(v["id"]) for v in snap.deliveries if v.get("id")), default=0)
            client.set(self._key("deliveries", "next"), top)
            for name, token in snap.fencing.items():
                client.set(self._key("fencing", name), token)

    def held_counts(self) -> dict[str, int]:
        """Each kind's count as stored now (``StateSnapshot.counts``), read back from
        the keys and indexes ``import_state`` wrote."""
        def fields_of(family: str, parts: int | None = None) -> int:
            names = [json.loads(k) for k in client.hkeys(self._key("metrics", family))]
            return len(names) if parts is None else len({tuple(n[:parts]) for n in names})

        with self._client() as client:
            values = [k for k in client.scan_iter(
                match=_glob_escaped(self._key("value", "")) + "*", count=1000)]
            own = {self._key("value", v).encode() for v in PER_PROCESS_VALUES}
            return {
                "incidents": client.zcard(self._key("incidents", "opened")),
                "attempts": client.zcard(self._key("attempts", "started")),
                "runs": client.zcard(self._key("runs", "started")),
                "approvals": client.hlen(self._key("approvals")),
                "switches": client.hlen(self._key("switches")),
                "degraded": client.hlen(self._key("degraded")),
                "events": client.llen(self._key("events")),
                "values": len([k for k in values if k not in own]),
                "counters": fields_of("counters"),
                "host_counters": fields_of("host-counters"),
                "deferrals": fields_of("deferrals"),
                "durations": fields_of("durations", 2),
                "strategy_durations": fields_of("strategy-durations", 3),
                "deliveries": client.zcard(self._key("deliveries", "processed")),
                "resolved": client.hlen(self._key("resolved")),
                "dedup_keys": client.zcard(self._key("intake", "seen")),
            }

