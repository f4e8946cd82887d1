"""Prometheus metrics (prometheus_client), correct under several gunicorn
workers: gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh directory
before the workers fork, each worker writes its own files there, and
/metrics aggregates them (dead workers are marked in child_exit). Without
that variable (a single process), the default registry is used.

prometheus_client is used rather than hand-written text: it gets the
exposition format, histograms and the multiprocess aggregation right.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
# Requested model names come from clients: cap the label values per process.
MAX_MODEL_LABELS = 50

# key: the client key's name (configured, so bounded; "-" before a key is known).
REQUESTS = Counter(
    "toktoken_requests", "API requests", ["route", "backend", "model", "status", "key"]
)
INPUT_TOKENS = Counter(
    "toktoken_input_tokens",
    "Input tokens (excluding cache hits)",
    ["route", "backend", "model", "key"],
)
OUTPUT_TOKENS = Counter(
    "toktoken_output_tokens", "Output tokens", ["route", "backend", "model", "key"]
)
CACHE_READ_TOKENS = Counter(
    "toktoken_cache_read_tokens",
    "Prompt tokens served from the backend's prefix cache",
    ["route", "backend", "model"],
)
LATENCY = Histogram(
    "toktoken_request_duration_seconds",
    "Request duration (whole stream for streams)",
    ["route", "backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
TTFT = Histogram(
    "toktoken_time_to_first_token_seconds",
    "Time to the first output relayed",
    ["route", "backend"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
PREFIX_REUSE = Histogram(
    "toktoken_prefix_reuse_ratio",
    "Share of a session request's upstream prompt repeating the session's previous request",
    ["backend"],
    buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0),
)
RECORDS_DROPPED = Counter(
    "toktoken_usage_records_dropped",
    "Usage records that could not be written: unwritable (a value the ledger refuses), "
    "backlog_full (the ledger was down past TELEMETRY_BACKLOG records)",
    ["reason"],
)
TEXT_TOOL_CALLS = Counter(
    "toktoken_text_tool_calls",
    "Tool calls a backend left in the text, turned into tool calls: its server does not parse "
    "them (see docs/configuration.md, 'Tool calls in the text')",
    ["backend", "dialect"],
)
ACTIVE_STREAMS = Gauge(
    "toktoken_active_streams", "Streams being relayed now", ["route"], multiprocess_mode="livesum"
)
BACKEND_UP = Gauge(
    "toktoken_backend_up",
    "1 when the backend answered its last probe",
    ["backend"],
    multiprocess_mode="mostrecent",
)
# A backend's replicas (backends/replicas.py); replica = its URL (configured,
# so the label values are bounded).
REPLICA_REQUESTS = Counter(
    "toktoken_replica_requests", "Requests sent to each replica", ["backend", "replica"]
)
REPLICA_ERRORS = Counter(
    "toktoken_replica_errors",
    "Replica failures: refused or timed-out connections, 5xx or garbage answers, broken streams",
    ["backend", "replica"],
)
REPLICA_EJECTIONS = Counter(
    "toktoken_replica_ejections", "Times a replica was ejected", ["backend", "replica"]
)
REPLICA_IN_FLIGHT = Gauge(
    "toktoken_replica_in_flight",
    "Requests in flight on each replica",
    ["backend", "replica"],
    multiprocess_mode="livesum",
)
REPLICA_UP = Gauge(
    "toktoken_replica_up",
    "1 while a replica is admitted, 0 while it is ejected (per worker: the lowest)",
    ["backend", "replica"],
    multiprocess_mode="livemin",
)
FAILOVERS = Counter(
    "toktoken_failovers",
    "Requests retried on another replica after a failure before any byte reached the client",
    ["backend"],
)

_models: set[str] = set()
_lock = threading.Lock()


def _model_label(model: str | None) -> str:
    model = model or "-"
    with _lock:
        if model in _models:
            return model
        if len(_models) < MAX_MODEL_LABELS:
            _models.add(model)
            return model
    return "other"


def observe(record) -> None:
    """Count one finished request (a UsageRecord)."""
    key = (record.route, record.backend, record.model, record.status, record.key_name)
    series = _series.get(key)
    if series is None:
        series = _series_for(key)
    requests, input_tokens, output_tokens, cache_read_tokens, latency, ttft = series
    requests.inc()
    if record.input_tokens:
        input_tokens.inc(record.input_tokens)
    if record.output_tokens:
        output_tokens.inc(record.output_tokens)
    if record.cache_read_tokens:
        cache_read_tokens.inc(record.cache_read_tokens)
    latency.observe(record.latency_ms / 1000)
    if record.ttft_ms is not None:
        ttft.observe(record.ttft_ms / 1000)
    if record.prefix_reuse is not None:
        PREFIX_REUSE.labels(record.backend or "-").observe(record.prefix_reuse)


# The labelled series of each (route, backend, model, status, key), looked up once:
# ``labels()`` costs a lock and a few dict operations per metric per request.
_series: dict[tuple, tuple] = {}


def _series_for(key: tuple) -> tuple:
    route, backend, model, status, key_name = key
    backend, model, key_name = backend or "-", _model_label(model), key_name or "-"
    series = (
        REQUESTS.labels(route, backend, model, str(status), key_name),
        INPUT_TOKENS.labels(route, backend, model, key_name),
        OUTPUT_TOKENS.labels(route, backend, model, key_name),
        CACHE_READ_TOKENS.labels(route, backend, model),
        LATENCY.labels(route, backend),
        TTFT.labels(route, backend),
    )
    if len(_series) < 4 * MAX_MODEL_LABELS:  # bounded like the model label
        _series[key] = series
    return series


def render() -> tuple[bytes, str]:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
