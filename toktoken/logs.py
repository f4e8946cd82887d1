"""Logging set-up and the one line logged per API request."""

from __future__ import annotations

import logging
import sys

request_log = logging.getLogger("toktoken.request")


def setup_logging(level: int) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_toktoken", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._toktoken = True
        root.addHandler(handler)
    root.setLevel(level)
    # urllib3 logs every new connection at debug: noise, not signal.
    logging.getLogger("urllib3").setLevel(max(level, logging.INFO))


def log_request(**fields) -> None:
    """request_id=… route=… backend=… model=… status=… tokens, latency.
    Never keys, never prompt text."""
    request_log.info(" ".join(f"{k}={v}" for k, v in fields.items() if v is not None))
