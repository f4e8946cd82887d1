"""``python -m toktoken [serve|check]``.

serve  validate the configuration, then run gunicorn with gunicorn.conf.py
check  print the effective configuration (secrets masked) and probe backends
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .config import ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "serve"
    if command not in ("serve", "check"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"toktoken: {exc}", file=sys.stderr)
        return 2
    if command == "check":
        return check(settings)
    conf = ROOT / "gunicorn.conf.py"
    os.execvp(
        sys.executable,
        [sys.executable, "-m", "gunicorn", "-c", str(conf), "--chdir", str(ROOT), "wsgi:app"],
    )
    return 0  # not reached


def check(settings: Settings) -> int:
    from .backends import Backends
    from .logs import setup_logging

    setup_logging(settings.logging_level)
    print("Effective configuration:")
    print(json.dumps(settings.describe(), indent=2, ensure_ascii=False))
    if settings.uses_default_key_publicly():
        print("WARNING: the default API_KEY is in use on a non-loopback HOST")
    print("\nBackends:")
    ok = True
    for health in Backends(settings).probe_all():
        if health.reachable:
            models = ", ".join(health.models or []) or "-"
            note = f" ({health.detail})" if health.detail else ""
            print(
                f"  {health.name}: {health.url} reachable in {health.latency_ms} ms{note}; models: {models}"
            )
        else:
            ok = ok and health.name != "default"
            print(f"  {health.name}: {health.url} NOT reachable: {health.detail}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
