"""Logging set-up and the one line logged per API request.

``LOG_FORMAT=json`` writes one JSON object per line (request lines carry
their fields as keys); the default is plain text with ``key=value`` pairs.
"""

from __future__ import annotations

import json
import logging
import sys
import time

request_log = logging.getLogger("toktoken.request")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.setLevel(level)
    # urllib3 logs every new connection at debug: noise, not signal.
    logging.getLogger("urllib3").setLevel(max(level, logging.INFO))


def log_request(**fields) -> None:
    """request_id=… route=… backend=… model=… status=… tokens, latency.
    Never keys, never prompt text."""
    present = {k: v for k, v in fields.items() if v is not None}
    request_log.info(" ".join(f"{k}={v}" for k, v in present.items()), extra={"fields": present})
