"""Logging set-up and the one line logged per API request.

``LOG_FORMAT=json`` writes one JSON object per line (request lines carry
their fields as keys); the default is plain text with ``key=value`` pairs.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import orjson

request_log = logging.getLogger("toktoken.request")


class _SecondCache:
    """strftime once per second, not once per line (it is most of a line's
    formatting cost)."""

    def __init__(self, fmt: str, convert) -> None:
        self.fmt, self.convert = fmt, convert
        self.second, self.text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.second, self.text = second, time.strftime(self.fmt, self.convert(second))
        return self.text


class TextFormatter(logging.Formatter):
    """``2026-11-26 00:44:09,294 INFO name: message`` (logging's default time
    format, local time)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._seconds = _SecondCache("%Y-%m-%d %H:%M:%S", time.localtime)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._seconds(record.created)},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._seconds = _SecondCache("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": f"{self._seconds(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry["event"] = "request"
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # e.g. an integer beyond 64 bits
            return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: int, fmt: str = "text") -> None:
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_toktoken", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._toktoken = True
        root.addHandler(handler)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root.setLevel(level)
    # urllib3 logs every new connection at debug: noise, not signal.
    logging.getLogger("urllib3").setLevel(max(level, logging.INFO))


def log_request(**fields) -> None:
    """request_id=… route=… backend=… model=… status=… tokens, latency.
    Never keys, never prompt text.

    One line per request is on the hot path: the record is made directly
    (logging's caller lookup buys nothing here) and the text is only joined
    if a text formatter asks for it."""
    if not request_log.isEnabledFor(logging.INFO):
        return
    present = {k: v for k, v in fields.items() if v is not None}
    record = request_log.makeRecord(
        request_log.name, logging.INFO, __file__, 0, _RequestLine(present), None, None
    )
    record.fields = present
    request_log.handle(record)


class _RequestLine:
    """The message of a request line: ``key=value`` pairs, joined on demand."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.fields.items())
