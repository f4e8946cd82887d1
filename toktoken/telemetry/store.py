"""The usage ledger: SQLite by default, PostgreSQL for several machines.

The two stores share the table, the queries and the code path; they differ
only in connection handling, placeholders and a few SQL spellings.

SQLite: WAL mode and a busy timeout make it safe for several gunicorn workers
writing at once (each worker has its own connection and writes one batch per
transaction). PostgreSQL: every gateway instance writes its records into one
shared ledger (``TELEMETRY_DB=postgresql://user:pass@host/db``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    route TEXT NOT NULL,
    key_fp TEXT,
    model TEXT,
    backend TEXT,
    backend_model TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    tokens_exact INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL,
    ttft_ms REAL,
    stream INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL,
    error_type TEXT,
    session_id TEXT,
    prefix_reuse REAL,
    text_tool_calls INTEGER NOT NULL DEFAULT 0,
    replica TEXT,
    failover INTEGER NOT NULL DEFAULT 0,
    key_name TEXT
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts);
CREATE INDEX IF NOT EXISTS usage_model_ts ON usage (model, ts);
CREATE INDEX IF NOT EXISTS usage_backend_ts ON usage (backend, ts);
CREATE INDEX IF NOT EXISTS usage_key_ts ON usage (key_fp, ts);
"""
# Columns added after the first release, and the index that uses them: a
# ledger written by an older version gains them at start-up.
ADDED_COLUMNS = {
    "session_id": "TEXT",
    "prefix_reuse": "REAL",
    "text_tool_calls": "INTEGER NOT NULL DEFAULT 0",
    "replica": "TEXT",
    "failover": "INTEGER NOT NULL DEFAULT 0",
    "key_name": "TEXT",
}
ADDED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS usage_session_ts ON usage (session_id, ts)",
    "CREATE INDEX IF NOT EXISTS usage_key_name_ts ON usage (key_name, ts)",
)

# group_by -> SQL expression for the group key ({floor} differs per database:
# SQLite's CAST truncates, PostgreSQL's rounds)
GROUPS = {
    "model": "model",
    "backend": "backend",
    "key": "COALESCE(key_name, key_fp)",  # the key's name; older records: its fingerprint
    "route": "route",
    "status": "status",
    "session": "session_id",
    "replica": "replica",
    "hour": "{floor}(ts / 3600) * 3600",
    "day": "{floor}(ts / 86400) * 86400",
}

_AGGREGATES = """
    COUNT(*) AS requests,
    COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) AS errors,
    COALESCE(SUM(input_tokens), 0) AS input_tokens,
    COALESCE(SUM(output_tokens), 0) AS output_tokens,
    COALESCE(SUM(cache_read_tokens), 0) AS cache_read_tokens,
    AVG(latency_ms) AS avg_latency_ms,
    AVG(ttft_ms) AS avg_ttft_ms,
    AVG(prefix_reuse) AS avg_prefix_reuse,
    COALESCE(SUM(text_tool_calls), 0) AS text_tool_calls,
    COALESCE(SUM(failover), 0) AS failovers
"""
_COLUMNS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "avg_latency_ms",
    "avg_ttft_ms",
    "avg_prefix_reuse",
    "text_tool_calls",
    "failovers",
)


class _Store:
    """The shared code path; subclasses provide connections and dialect."""

    mark = "?"

    def _floor(self, expr: str) -> str:
        # SQLite: CAST(x AS INTEGER) truncates, which is floor for ts > 0.
        return expr.replace("{floor}(", "CAST(").replace(") * ", " AS INTEGER) * ")

    def insert(self, records) -> None:
        from .record import UsageRecord

        columns = ", ".join(UsageRecord._fields)
        marks = ", ".join(self.mark for _ in UsageRecord._fields)
        self._insert_many(
            f"INSERT INTO usage ({columns}) VALUES ({marks})", [r.row() for r in records]
        )

    def prune(self, before_ts: float) -> int:
        return self._execute(f"DELETE FROM usage WHERE ts < {self.mark}", (before_ts,)).rowcount

    def stats(
        self,
        since: float | None,
        until: float | None,
        group_by: str | None,
        key_name: str | None = None,
    ) -> dict:
        """Totals and groups; ``key_name``: only that key's requests."""
        where, params = [], []
        if key_name is not None:
            where.append(f"key_name = {self.mark}")
            params.append(key_name)
        if since is not None:
            where.append(f"ts >= {self.mark}")
            params.append(since)
        if until is not None:
            where.append(f"ts < {self.mark}")
            params.append(until)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        row = self._execute(f"SELECT {_AGGREGATES} FROM usage{clause}", params).fetchone()
        result: dict = {"totals": _aggregate(row)}
        if group_by:
            expr = self._floor(GROUPS[group_by])
            rows = self._execute(
                f"SELECT {expr} AS k, {_AGGREGATES} FROM usage{clause} GROUP BY k ORDER BY k",
                params,
            ).fetchall()
            result["groups"] = [{"key": r[0], **_aggregate(r[1:])} for r in rows]
        return result

    def hourly(self, since: float) -> list[tuple]:
        """(hour, model, input_tokens, output_tokens, requests, errors) rows."""
        bucket = self._floor(GROUPS["hour"])
        return self._execute(
            f"SELECT {bucket} AS h, model, COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
            f" COUNT(*), COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0)"
            f" FROM usage WHERE ts >= {self.mark} GROUP BY h, model ORDER BY h",
            (since,),
        ).fetchall()

    def cache_by_session(self, since: float, limit: int = 10) -> list[tuple]:
        """(session, requests, avg prefix reuse, input tokens, cache read
        tokens) of the sessions whose prompts repeat their previous request
        least: the cache-busting ones first."""
        return self._execute(
            f"SELECT session_id, COUNT(*), AVG(prefix_reuse), COALESCE(SUM(input_tokens), 0),"
            f" COALESCE(SUM(cache_read_tokens), 0) FROM usage"
            f" WHERE ts >= {self.mark} AND session_id IS NOT NULL AND prefix_reuse IS NOT NULL"
            f" GROUP BY session_id ORDER BY AVG(prefix_reuse), session_id LIMIT {int(limit)}",
            (since,),
        ).fetchall()

    def latencies(self, since: float, limit: int = 100_000) -> list[tuple]:
        """(latency_ms, ttft_ms) of the latest successful requests."""
        return self._execute(
            f"SELECT latency_ms, ttft_ms FROM usage WHERE ts >= {self.mark} AND status < 400"
            f" ORDER BY ts DESC LIMIT {int(limit)}",
            (since,),
        ).fetchall()


class SQLiteStore(_Store):
    def __init__(self, path: str):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._local = threading.local()
        db = self._connect()
        db.executescript(SCHEMA)
        # Several workers start at once: add missing columns inside one
        # write transaction each, so only the first adds them.
        db.execute("BEGIN IMMEDIATE")
        try:
            present = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
            for column, kind in ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(f"ALTER TABLE usage ADD COLUMN {column} {kind}")
            for index in ADDED_INDEXES:
                db.execute(index)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            try:
                _wal(db)
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=30000")
            except sqlite3.Error:
                db.close()
                raise
            self._local.db = db
        return db

    def _execute(self, sql: str, params=()):
        return self._connect().execute(sql, params)

    def unavailable(self, exc: BaseException) -> bool:
        """The database itself failed (read-only, disk full or I/O error,
        locked past the busy timeout), not one record's values."""
        return isinstance(exc, sqlite3.OperationalError)

    def _insert_many(self, sql: str, rows: list[tuple]) -> None:
        try:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(sql, rows)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError:
            # Reopen next time: a file made writable again, a disk with room.
            stale, self._local.db = getattr(self._local, "db", None), None
            if stale is not None:
                stale.close()
            raise


def _wal(db: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL mode. Several workers opening a new ledger at once race
    for this switch, and SQLite answers "database is locked" at once (its
    busy handler is not called for it): try again, briefly."""
    for attempt in range(attempts):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def backup_sqlite(source: str, target: str) -> int:
    """Copy the SQLite ledger at ``source`` to ``target`` while gateways keep
    writing to it: SQLite's online backup (a consistent snapshot, WAL
    included; a plain file copy of a WAL database can be torn). The copy is
    written beside ``target`` and renamed when it has passed an integrity
    check, so ``target`` is never half a backup. Returns its record count."""
    if not os.path.isfile(source):
        raise FileNotFoundError(f"no usage ledger at {source}")
    partial = os.path.join(
        os.path.dirname(os.path.abspath(target)),
        f".{os.path.basename(target)}.{os.getpid()}.partial",
    )
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst, pages=4096)  # in steps: writers wait at most one step
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                check = dst.execute("PRAGMA integrity_check").fetchone()[0]
                records = dst.execute("SELECT count(*) FROM usage").fetchone()[0]
            finally:
                dst.close()
        finally:
            src.close()
        if check != "ok":
            raise sqlite3.DatabaseError(f"the copy failed its integrity check: {check}")
        os.replace(partial, target)
        return records
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


# Advisory lock id for creating the schema (any constant of our own).
_SCHEMA_LOCK = 0x746F6B746F6B656E  # "toktoken"


class PostgresStore(_Store):
    mark = "%s"

    def __init__(self, url: str):
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self._local = threading.local()
        schema = (
            SCHEMA.replace("id INTEGER PRIMARY KEY", "id BIGSERIAL PRIMARY KEY")
            .replace("ts REAL", "ts DOUBLE PRECISION")
            .replace("REAL", "DOUBLE PRECISION")
        )
        with self._psycopg.connect(url, autocommit=True) as db, db.transaction():
            # Every worker of every instance runs this at start-up, and
            # CREATE ... IF NOT EXISTS is not safe against a concurrent twin
            # (a unique violation in pg_class): one at a time, by a lock that
            # ends with the transaction.
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in filter(str.strip, schema.split(";")):
                db.execute(statement)
            for column, kind in ADDED_COLUMNS.items():
                kind = kind.replace("REAL", "DOUBLE PRECISION")
                db.execute(f"ALTER TABLE usage ADD COLUMN IF NOT EXISTS {column} {kind}")
            for index in ADDED_INDEXES:
                db.execute(index)

    def _floor(self, expr: str) -> str:
        return expr.replace("{floor}(", "FLOOR(")

    def _connect(self):
        db = getattr(self._local, "db", None)
        if db is None or db.closed:
            db = self._psycopg.connect(self.url, autocommit=True)
            self._local.db = db
        return db

    def _execute(self, sql: str, params=()):
        try:
            return self._connect().execute(sql, params)
        except self._psycopg.OperationalError:
            self._local.db = None  # a dropped connection: reconnect once
            return self._connect().execute(sql, params)

    def unavailable(self, exc: BaseException) -> bool:
        """The server is unreachable or gone, not one record's values."""
        return isinstance(exc, self._psycopg.OperationalError | self._psycopg.InterfaceError)

    def _insert_many(self, sql: str, rows: list[tuple]) -> None:
        try:
            db = self._connect()
            with db.transaction(), db.cursor() as cursor:
                cursor.executemany(sql, rows)
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError):
            self._local.db = None  # reconnect next time
            raise


def _aggregate(row) -> dict:
    values = dict(zip(_COLUMNS, row, strict=True))
    prompt = (values["input_tokens"] or 0) + (values["cache_read_tokens"] or 0)
    # Of all prompt tokens, the share the backend said it served from its cache.
    values["cache_hit_ratio"] = round(values["cache_read_tokens"] / prompt, 4) if prompt else None
    if values["avg_prefix_reuse"] is not None:
        values["avg_prefix_reuse"] = round(float(values["avg_prefix_reuse"]), 4)
    return {
        k: (
            round(float(v), 1)
            if k.startswith("avg_") and k != "avg_prefix_reuse" and v is not None
            else v
        )
        for k, v in values.items()
    }


def open_store(location: str):
    """The ledger at ``location``: a ``postgresql://`` URL, else a SQLite file path."""
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresStore(location)
    return SQLiteStore(location)
