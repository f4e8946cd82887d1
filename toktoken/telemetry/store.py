"""The usage ledger. SQLite by default: WAL mode and a busy timeout make it
safe for several gunicorn workers writing at once (each worker has its own
connection and writes one batch per transaction)."""

from __future__ import annotations

import os
import sqlite3
import threading

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
    error_type TEXT
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts);
CREATE INDEX IF NOT EXISTS usage_model_ts ON usage (model, ts);
CREATE INDEX IF NOT EXISTS usage_backend_ts ON usage (backend, ts);
CREATE INDEX IF NOT EXISTS usage_key_ts ON usage (key_fp, ts);
"""

# group_by -> SQL expression for the group key
GROUPS = {
    "model": "model",
    "backend": "backend",
    "key": "key_fp",
    "route": "route",
    "status": "status",
    "hour": "CAST(ts / 3600 AS INTEGER) * 3600",
    "day": "CAST(ts / 86400 AS INTEGER) * 86400",
}

_AGGREGATES = """
    COUNT(*) AS requests,
    COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) AS errors,
    COALESCE(SUM(input_tokens), 0) AS input_tokens,
    COALESCE(SUM(output_tokens), 0) AS output_tokens,
    COALESCE(SUM(cache_read_tokens), 0) AS cache_read_tokens,
    AVG(latency_ms) AS avg_latency_ms,
    AVG(ttft_ms) AS avg_ttft_ms
"""
_COLUMNS = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
            "avg_latency_ms", "avg_ttft_ms")  # fmt: skip


class SQLiteStore:
    def __init__(self, path: str):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    def insert(self, records) -> None:
        from .record import UsageRecord

        columns = ", ".join(UsageRecord.FIELDS)
        marks = ", ".join("?" for _ in UsageRecord.FIELDS)
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                f"INSERT INTO usage ({columns}) VALUES ({marks})", [r.row() for r in records]
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def prune(self, before_ts: float) -> int:
        cursor = self._connect().execute("DELETE FROM usage WHERE ts < ?", (before_ts,))
        return cursor.rowcount

    def stats(self, since: float | None, until: float | None, group_by: str | None) -> dict:
        where, params = [], []
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if until is not None:
            where.append("ts < ?")
            params.append(until)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        db = self._connect()
        row = db.execute(f"SELECT {_AGGREGATES} FROM usage{clause}", params).fetchone()
        result: dict = {"totals": _rounded(dict(zip(_COLUMNS, row, strict=True)))}
        if group_by:
            expr = GROUPS[group_by]
            rows = db.execute(
                f"SELECT {expr} AS k, {_AGGREGATES} FROM usage{clause} GROUP BY k ORDER BY k",
                params,
            ).fetchall()
            result["groups"] = [
                {"key": r[0], **_rounded(dict(zip(_COLUMNS, r[1:], strict=True)))} for r in rows
            ]
        return result


def _rounded(values: dict) -> dict:
    return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in values.items()}


def open_store(location: str):
    """The ledger at ``location``: a file path for SQLite."""
    return SQLiteStore(location)
