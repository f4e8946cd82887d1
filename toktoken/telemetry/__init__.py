"""Token telemetry: one usage record per API request, written off the request
path to a ledger (SQLite), and aggregated for /stats."""

from .record import RequestRecord, UsageRecord, key_fingerprint
from .recorder import Recorder
from .store import SQLiteStore, backup_sqlite, open_store

__all__ = [
    "Recorder",
    "RequestRecord",
    "SQLiteStore",
    "backup_sqlite",
    "UsageRecord",
    "key_fingerprint",
    "open_store",
]
