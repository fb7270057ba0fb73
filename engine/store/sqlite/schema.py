"""The SQLite schema, and what an older store gains when it is opened.

``create_schema`` runs at every opening, in whichever process opens the store: every
table and index is made if missing (``IF NOT EXISTS``), then ``migrate`` adds what a
store made by an earlier version lacks. Each step is safe when several processes open one store at
once (a column another process added first is not an error; the deliveries are folded
under ``BEGIN IMMEDIATE``, once).
"""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, runbook TEXT NOT NULL, component TEXT NOT NULL, target TEXT NOT NULL,
    state TEXT NOT NULL, failure_type TEXT, trigger TEXT, requested_by TEXT, fingerprint TEXT,
    labels TEXT, opened_at REAL, updated_at REAL, closed_at REAL, reason TEXT,
    next_try_at REAL, step INTEGER, only_strategy TEXT, forced INTEGER, approved_step INTEGER,
    approved_by TEXT, attempt_id TEXT, attempts INTEGER, verify_until REAL,
    open_key TEXT UNIQUE, starts_at TEXT, held_by TEXT, interrupted_run TEXT, context TEXT
);
CREATE INDEX IF NOT EXISTS incidents_due ON incidents(state, next_try_at);
CREATE INDEX IF NOT EXISTS incidents_opened ON incidents(opened_at);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, component TEXT NOT NULL, runbook TEXT, strategy TEXT, target TEXT,
    status TEXT NOT NULL, trigger TEXT, incident_id TEXT, attempt_id TEXT, kind TEXT,
    started_at REAL, finished_at REAL, check_mode INTEGER, fingerprint TEXT,
    requested_by TEXT, approved_by TEXT, forced INTEGER, reason TEXT,
    runbook_sha256 TEXT, playbook_sha256 TEXT,
    heartbeat_at REAL, claimed_by TEXT, claimed_until REAL, gate TEXT,
    count INTEGER, fingerprints TEXT, refusal_key TEXT, hosts TEXT, replica TEXT
);
-- a finished run's account (engine.reporting.run_account), for a replica without its artifacts
CREATE TABLE IF NOT EXISTS run_accounts (run_id TEXT PRIMARY KEY, account TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE INDEX IF NOT EXISTS runs_component ON runs(component, started_at);
CREATE INDEX IF NOT EXISTS runs_incident ON runs(incident_id);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs(fingerprint, started_at);
-- covers the per-strategy figures (engine.store.sqlite.strategy_runs): no row is read
CREATE INDEX IF NOT EXISTS runs_figures ON runs(status, started_at, check_mode, component,
    strategy, finished_at);
CREATE TABLE IF NOT EXISTS refusal_members (run_id TEXT, fingerprint TEXT, incident_id TEXT);
CREATE INDEX IF NOT EXISTS refusal_members_run ON refusal_members(run_id);
CREATE INDEX IF NOT EXISTS refusal_members_fingerprint ON refusal_members(fingerprint);
CREATE INDEX IF NOT EXISTS refusal_members_incident ON refusal_members(incident_id);
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT PRIMARY KEY, incident_id TEXT, runbook TEXT, target TEXT,
    started_at REAL, finished_at REAL, outcome TEXT
);
CREATE INDEX IF NOT EXISTS attempts_key ON attempts(runbook, target, started_at);
CREATE INDEX IF NOT EXISTS attempts_started ON attempts(started_at);
CREATE INDEX IF NOT EXISTS attempts_finished ON attempts(finished_at);
CREATE TABLE IF NOT EXISTS approvals (
    run_id TEXT PRIMARY KEY, incident_id TEXT, runbook TEXT, component TEXT, strategy TEXT,
    target TEXT, status TEXT, requested_by TEXT, requested_at REAL, expires_at REAL,
    decided_by TEXT, decided_at REAL, reason TEXT, plan TEXT
);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals(status, expires_at);
CREATE TABLE IF NOT EXISTS locks (
    target TEXT PRIMARY KEY, holder TEXT, token INTEGER, acquired_at REAL, expires_at REAL,
    run_id TEXT, component TEXT
);
CREATE TABLE IF NOT EXISTS switches (
    id TEXT PRIMARY KEY, component TEXT, target TEXT, until REAL, reason TEXT,
    created_by TEXT, created_at REAL
);
CREATE TABLE IF NOT EXISTS degraded (
    mode TEXT, key TEXT, target TEXT, incident_id TEXT, manual INTEGER, reason TEXT,
    created_by TEXT, since REAL, PRIMARY KEY (mode, key)
);
CREATE TABLE IF NOT EXISTS counters (
    component TEXT, strategy TEXT, outcome TEXT, value REAL,
    PRIMARY KEY (component, strategy, outcome)
);
CREATE TABLE IF NOT EXISTS host_counters (
    component TEXT, strategy TEXT, outcome TEXT, value REAL,
    PRIMARY KEY (component, strategy, outcome)
);
CREATE TABLE IF NOT EXISTS deferrals (
    component TEXT, gate TEXT, value REAL, PRIMARY KEY (component, gate)
);
CREATE TABLE IF NOT EXISTS durations (
    component TEXT, strategy TEXT, buckets TEXT, total REAL, count REAL,
    PRIMARY KEY (component, strategy)
);
CREATE TABLE IF NOT EXISTS strategy_durations (
    component TEXT, strategy TEXT, outcome TEXT, buckets TEXT, total REAL, count REAL,
    PRIMARY KEY (component, strategy, outcome)
);
CREATE TABLE IF NOT EXISTS intake (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT, payload TEXT, received_at REAL,
    claimed_by TEXT, claimed_until REAL
);
CREATE TABLE IF NOT EXISTS intake_seen (dedup_key TEXT PRIMARY KEY, seen_at REAL);
CREATE TABLE IF NOT EXISTS resolved_alerts (fingerprint TEXT PRIMARY KEY, ends_at TEXT, at REAL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, actor TEXT, action TEXT, detail TEXT
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS fencing (name TEXT PRIMARY KEY, value INTEGER);
"""

# One row per dedup key (Delivery). Created (and its indexes) after ``migrate`` has
# folded a table of the earlier shape, one row per delivery.
DELIVERIES_TABLE = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL UNIQUE, fingerprint TEXT,
    status TEXT, starts_at TEXT, received_at REAL, processed_at REAL, outcome TEXT,
    incident_id TEXT, run_id TEXT, replayed_by TEXT, payload TEXT, count INTEGER,
    first_received_at REAL, first_processed_at REAL, first_outcome TEXT
)"""
DELIVERIES_INDEXES = """
CREATE INDEX IF NOT EXISTS deliveries_of_alert ON deliveries(fingerprint, processed_at);
CREATE INDEX IF NOT EXISTS deliveries_of_incident ON deliveries(incident_id);
CREATE INDEX IF NOT EXISTS deliveries_processed ON deliveries(processed_at);
"""
DELIVERY_COLUMNS = ("dedup_key", "fingerprint", "status", "starts_at", "received_at",
                    "processed_at", "outcome", "incident_id", "run_id", "replayed_by",
                    "payload", "count", "first_received_at", "first_processed_at",
                    "first_outcome")
# Folds a table of the earlier shape (``deliveries_unfolded``, one row per delivery)
# into one row per key; payloads as ``ack_intake`` keeps them.
FOLD_DELIVERIES = f"""
INSERT INTO deliveries ({', '.join(DELIVERY_COLUMNS)})
SELECT dedup_key, fingerprint, status, starts_at, received_at, processed_at, outcome,
       incident_id, run_id, replayed_by,
       CASE WHEN status = 'firing' AND newest_firing = 1 AND json_valid(payload) AND
                 coalesce(json_extract(payload, '$.labels.source'), '') != 'infra-recovery'
            THEN payload END,
       n, first_received_at, first_processed_at, first_outcome
FROM (SELECT *, fingerprint || '|' || coalesce(starts_at, '-') || '|' || status AS dedup_key,
             row_number() OVER per_key_newest AS newest,
             row_number() OVER (PARTITION BY fingerprint, status ORDER BY id DESC)
                 AS newest_firing,
             count(*) OVER per_key AS n,
             first_value(received_at) OVER per_key_oldest AS first_received_at,
             first_value(processed_at) OVER per_key_oldest AS first_processed_at,
             first_value(outcome) OVER per_key_oldest AS first_outcome
      FROM deliveries_unfolded
      WINDOW per_key AS (PARTITION BY fingerprint, starts_at, status),
             per_key_newest AS (per_key ORDER BY id DESC),
             per_key_oldest AS (per_key ORDER BY id))
WHERE newest = 1 ORDER BY id
"""


def create_schema(conn: sqlite3.Connection) -> None:
    """The schema on ``conn``, created or brought up to date (SQLite's busy handler
    must be on: these statements commit by themselves, outside the store's
    transactions)."""
    conn.executescript(SCHEMA)
    migrate(conn)


def migrate(conn: sqlite3.Connection) -> None:
    """Columns added since a store was created (CREATE TABLE IF NOT EXISTS leaves an
    existing table as it was)."""
    for table, column, kind in (("incidents", "starts_at", "TEXT"),
                                ("incidents", "held_by", "TEXT"),
                                ("incidents", "interrupted_run", "TEXT"),
                                ("incidents", "context", "TEXT"),
                                ("runs", "gate", "TEXT"), ("runs", "count", "INTEGER"),
                                ("runs", "fingerprints", "TEXT"),
                                ("runs", "refusal_key", "TEXT"),
                                ("runs", "hosts", "TEXT"), ("runs", "replica", "TEXT")):
        columns = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column in columns:
            continue
        try:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):   # another process added it first
                raise
    # after the columns: an index on one an older store lacked until just now
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS runs_refusal ON runs(refusal_key) "
                 "WHERE refusal_key IS NOT NULL")
    fold_deliveries(conn)
    conn.execute(DELIVERIES_TABLE)
    conn.executescript(DELIVERIES_INDEXES)
    # resolve markers once kept in kv (one row per fingerprint, never pruned); looked
    # for first, so that opening a store takes no write lock once they are gone
    if conn.execute("SELECT 1 FROM kv WHERE key LIKE 'intake:resolved:%' LIMIT 1"
                    ).fetchone():
        conn.execute("DELETE FROM kv WHERE key LIKE 'intake:resolved:%'")


def fold_deliveries(conn: sqlite3.Connection) -> None:
    """A deliveries table of the earlier shape (one row per delivery, every payload)
    becomes one row per dedup key, once, whichever process opens the store first."""
    def unfolded() -> bool:
        columns = {r["name"] for r in conn.execute("PRAGMA table_info(deliveries)")}
        return bool(columns) and "dedup_key" not in columns

    if not unfolded():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if unfolded():    # not folded by another process meanwhile
            conn.execute("ALTER TABLE deliveries RENAME TO deliveries_unfolded")
            conn.execute(DELIVERIES_TABLE)     # its indexes once the old ones are gone
            conn.execute(FOLD_DELIVERIES)
            conn.execute("DROP TABLE deliveries_unfolded")   # and its indexes
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
