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

REQUESTS = Counter("toktoken_requests", "API requests", ["route", "backend", "model", "status"])
INPUT_TOKENS = Counter(
    "toktoken_input_tokens", "Input tokens (excluding cache hits)", ["route", "backend", "model"]
)
OUTPUT_TOKENS = Counter("toktoken_output_tokens", "Output tokens", ["route", "backend", "model"])
CACHE_READ_TOKENS = Counter(
    "toktoken_cache_read_tokens",
    "Prompt tokens served from the backend's prefix cache",
    ["route", "backend", "model"],
)
LATENCY = Histogram(
    "toktoken_request_duration_seconds", "Request duration (whole stream for streams)", ["route", "backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)  # fmt: skip
TTFT = Histogram(
    "toktoken_time_to_first_token_seconds", "Time to the first output relayed", ["route", "backend"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)  # fmt: skip
ACTIVE_STREAMS = Gauge("toktoken_active_streams", "Streams being relayed now", ["route"],
                       multiprocess_mode="livesum")  # fmt: skip
BACKEND_UP = Gauge("toktoken_backend_up", "1 when the backend answered its last probe", ["backend"],
                   multiprocess_mode="mostrecent")  # fmt: skip

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
    backend = record.backend or "-"
    model = _model_label(record.model)
    REQUESTS.labels(record.route, backend, model, str(record.status)).inc()
    if record.input_tokens:
        INPUT_TOKENS.labels(record.route, backend, model).inc(record.input_tokens)
    if record.output_tokens:
        OUTPUT_TOKENS.labels(record.route, backend, model).inc(record.output_tokens)
    if record.cache_read_tokens:
        CACHE_READ_TOKENS.labels(record.route, backend, model).inc(record.cache_read_tokens)
    LATENCY.labels(record.route, backend).observe(record.latency_ms / 1000)
    if record.ttft_ms is not None:
        TTFT.labels(record.route, backend).observe(record.ttft_ms / 1000)


def render() -> tuple[bytes, str]:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
