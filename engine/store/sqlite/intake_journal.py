"""The intake journal in SQLite (``engine.store.intake_journal.IntakeJournal``).

``intake`` holds the alerts waiting, ``intake_seen`` every dedup key journaled (until
pruned), ``deliveries`` what was made of each key, ``resolved_alerts`` the last resolve
of each fingerprint. The webhook's writes go through a group commit (``group_commit``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from engine.records import Delivery
from engine.store.intake_journal import IntakeItem, IntakeJournal, fold_deliveries
from engine.store.sqlite.connection import SQLiteConnection
from engine.store.sqlite.group_commit import Enqueue, GroupCommit
from engine.store.sqlite.rows import parts, row_to
from engine.store.sqlite.schema import DELIVERY_COLUMNS

_ROWS_PER_INSERT = 300      # rows in one multi-row INSERT (3 values each: < 999 variables)
# A repeat of a kept key: counted, its latest fields replace the row's (the incident
# stays when the repeat names none); the first delivery's times and outcome stay.
_KEEP_DELIVERY = (
    f"INSERT INTO deliveries ({', '.join(DELIVERY_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(DELIVERY_COLUMNS))}) "
    "ON CONFLICT(dedup_key) DO UPDATE SET received_at = excluded.received_at, "
    "processed_at = excluded.processed_at, outcome = excluded.outcome, "
    "incident_id = coalesce(excluded.incident_id, deliveries.incident_id), "
    "run_id = excluded.run_id, replayed_by = excluded.replayed_by, "
    "payload = coalesce(excluded.payload, deliveries.payload), "
    "count = deliveries.count + excluded.count")


class SQLiteIntakeJournal(SQLiteConnection, IntakeJournal):
    """The queue, deduplicated by key, its claims leases on rows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._intake_group = GroupCommit()
        super().__init__(*args, **kwargs)

    def enqueue_alerts(self, items: list[tuple[str, dict[str, Any]]], *,
                       repeat_after: float | None = None,
                       wait: float | None = None) -> tuple[int, int]:
        """Journal the alerts not seen before (by dedup key), in order, and a firing one
        seen more than ``repeat_after`` seconds ago again: (accepted, duplicates), once
        committed.

        Group commit: the calls of one process's threads that arrive while a transaction
        of theirs is on its way are journaled together in the next one, by one of them
        (the leader; ``GroupCommit``), each caller getting its own counts as if it had
        been alone, in turn. One transaction of a handful of statements, whatever the
        number of alerts and callers (the keys already seen, one multi-row INSERT per
        table), the JSON encoded before: each statement lets go of the GIL, and a thread
        that has to wait to get it back keeps the write lock all that time."""
        if not items:
            return 0, 0
        bound = self.busy_timeout if wait is None else min(wait, self.busy_timeout)
        request = Enqueue(items, [json.dumps(payload) for _, payload in items],
                           repeat_after, time.monotonic() + bound)
        return self._intake_group.submit(request, self._journal_alerts)

    def _journal_alerts(self, batch: list[Enqueue]) -> None:
        """One transaction for the requests of ``batch``, in order; sets their counts."""
        now = time.time()
        keys = list(dict.fromkeys(key for request in batch for key, _ in request.items))
        counts = []
        with self._tx(deadline=min(request.deadline for request in batch)) as db:
            seen: dict[str, float | None] = {}
            for part in parts(keys, 900):
                marks = ",".join("?" * len(part))
                seen.update(db.execute(f"SELECT dedup_key, seen_at FROM intake_seen "
                                       f"WHERE dedup_key IN ({marks})", part).fetchall())
            fresh: list[Any] = []
            repeated: list[str] = []
            journal: list[Any] = []
            for request in batch:
                accepted = duplicates = 0
                repeat_after = request.repeat_after
                for (key, payload), text in zip(request.items, request.texts, strict=True):
                    if key in seen:   # in the store, or earlier in this batch
                        duplicates += 1
                        # A firing alert repeated after a while is still a signal (the fix
                        # may not have held): journal it again, at most once per
                        # repeat_after.
                        if repeat_after is None or payload.get("status") != "firing":
                            continue
                        last = seen[key]
                        if last is None or not last < now - repeat_after:
                            continue
                        repeated.append(key)
                    else:
                        accepted += 1
                        fresh += (key, now)
                    seen[key] = now
                    journal += (key, text, now)
                counts.append((accepted, duplicates))
            for part in parts(fresh, 2 * _ROWS_PER_INSERT):
                db.execute("INSERT INTO intake_seen (dedup_key, seen_at) VALUES "
                           + ",".join(["(?,?)"] * (len(part) // 2)), part)
            for part in parts(repeated, 900):
                db.execute(f"UPDATE intake_seen SET seen_at = ? WHERE dedup_key IN "
                           f"({','.join('?' * len(part))})", (now, *part))
            for part in parts(journal, 3 * _ROWS_PER_INSERT):
                db.execute("INSERT INTO intake (dedup_key, payload, received_at) VALUES "
                           + ",".join(["(?,?,?)"] * (len(part) // 3)), part)
        for request, result in zip(batch, counts, strict=True):   # committed
            request.result = result

    def claim_intake(self, holder: str, limit: int, lease: float) -> list[IntakeItem]:
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM intake WHERE claimed_until IS NULL OR claimed_until < ? "
                "ORDER BY id LIMIT ?", (now, limit)).fetchall()
            ids = [r["id"] for r in rows]
            for part in parts(ids, 900):
                db.execute(f"UPDATE intake SET claimed_by = ?, claimed_until = ? WHERE id IN "
                           f"({','.join('?' * len(part))})", (holder, now + lease, *part))
        return [IntakeItem(r["id"], r["dedup_key"], json.loads(r["payload"]), r["received_at"])
                for r in rows]

    def intake_claims(self, now: float) -> list[tuple[str, float]]:
        rows = self._read("SELECT DISTINCT claimed_by, claimed_until FROM intake "
                          "WHERE claimed_by IS NOT NULL AND claimed_until >= ?", (now,))
        return [(r["claimed_by"], r["claimed_until"]) for r in rows]

    def release_intake(self, claims: Iterable[tuple[str, float]]) -> int:
        claims = list(claims)
        if not claims:
            return 0
        released = 0
        with self._tx() as db:
            for holder, until in claims:
                released += db.execute(
                    "UPDATE intake SET claimed_by = NULL, claimed_until = NULL "
                    "WHERE claimed_by = ? AND claimed_until = ?", (holder, until)).rowcount
        return released

    def ack_intake(self, ids: Iterable[int], deliveries: Iterable[Delivery] = ()) -> None:
        """One row per dedup key (``_KEEP_DELIVERY``; the batch folded first, written with
        ``executemany``); a payload only on the newest firing delivery of each
        fingerprint (the one a replay re-queues): the others of that fingerprint drop
        theirs."""
        ids, kept = list(ids), list(deliveries)
        if not ids and not kept:
            return
        folded = fold_deliveries(kept)
        first, last, count = folded.first, folded.last, folded.count
        incident, newest_firing = folded.incident, folded.newest_firing
        payloads = {d.dedup_key: json.dumps(d.payload) for d in newest_firing.values()}
        rows = [(key, d.fingerprint, d.status, d.starts_at, d.received_at, d.processed_at,
                 d.outcome, incident[key], d.run_id, d.replayed_by, payloads.get(key),
                 count[key], first[key].received_at, first[key].processed_at,
                 first[key].outcome) for key, d in last.items()]
        with self._tx() as db:
            for part in parts(ids, 900):
                db.execute(f"DELETE FROM intake WHERE id IN ({','.join('?' * len(part))})",
                           part)
            db.executemany(_KEEP_DELIVERY, rows)
            db.executemany("UPDATE deliveries SET payload = NULL WHERE fingerprint = ? AND "
                           "dedup_key != ? AND payload IS NOT NULL",
                           [(fp, d.dedup_key) for fp, d in newest_firing.items()])

    def deliveries(self, *, fingerprint: str | None = None, incident_id: str | None = None,
                   limit: int | None = 100) -> list[Delivery]:
        rows = self._select("deliveries", (("fingerprint", fingerprint),
                                           ("incident_id", incident_id)),
                            order="processed_at DESC, id DESC", limit=limit)
        return [row_to(Delivery, r) for r in rows]

    def intake_depth(self, now: float) -> tuple[int, float]:
        row = self._read("SELECT COUNT(*) AS n, MIN(received_at) AS oldest FROM intake")[0]
        return int(row["n"]), (now - row["oldest"]) if row["oldest"] else 0.0

    def mark_resolved(self, fingerprint: str, ends_at: str, at: float) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO resolved_alerts VALUES (?, ?, ?) ON CONFLICT(fingerprint) "
                       "DO UPDATE SET ends_at = max(ends_at, excluded.ends_at), "
                       "at = excluded.at", (fingerprint, ends_at, at))

    def resolved_until(self, fingerprint: str) -> tuple[str, float] | None:
        rows = self._read("SELECT ends_at, at FROM resolved_alerts WHERE fingerprint = ?",
                          (fingerprint,))
        return (rows[0]["ends_at"], rows[0]["at"]) if rows else None
