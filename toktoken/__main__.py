"""``python -m toktoken [serve|check|claude-env|hash-key|backup PATH]``.

serve       validate the configuration, then run gunicorn with gunicorn.conf.py
check       print the effective configuration (secrets masked) and probe backends
claude-env  print the lines that point Claude Code at this gateway, with
            compaction settings for the model's window
            [--model NAME] [--url URL] [--window TOKENS] [--key KEY] [--offline]
hash-key    read a client key on standard input, print its sha256 line for a
            [keys.NAME] table of the configuration file
backup PATH copy the SQLite usage ledger (TELEMETRY_DB) to PATH while the
            gateway runs (SQLite's online backup, checked, then renamed)
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from .config import ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "serve"
    if command == "hash-key" and not argv[1:]:
        return hash_key()
    usage = command not in ("serve", "check", "claude-env", "backup") or (
        argv[1:] if command in ("serve", "check") else command == "backup" and len(argv) != 2
    )
    if usage:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"toktoken: {exc}", file=sys.stderr)
        return 2
    if command == "check":
        return check(settings)
    if command == "backup":
        return backup(settings.telemetry_db, argv[1])
    if command == "claude-env":
        return claude_env(settings, argv[1:])
    conf = ROOT / "gunicorn.conf.py"
    os.execvp(
        sys.executable,
        [sys.executable, "-m", "gunicorn", "-c", str(conf), "--chdir", str(ROOT), "wsgi:app"],
    )
    return 0  # not reached


def hash_key() -> int:
    """A client key on standard input -> its SHA-256 line for a [keys.NAME]
    table. The key is read, never echoed, never stored."""
    from .config import key_digest

    if sys.stdin.isatty():
        import getpass

        key = getpass.getpass("key (not echoed): ")
    else:
        key = sys.stdin.readline()
    key = key.strip()
    if not key:
        print("toktoken hash-key: no key on standard input", file=sys.stderr)
        return 2
    print(f'sha256 = "{key_digest(key)}"')
    return 0


def backup(source: str, target: str) -> int:
    """``backup PATH``: the ledger named by TELEMETRY_DB, copied to PATH."""
    import sqlite3

    from .telemetry import backup_sqlite

    if source.startswith(("postgresql://", "postgres://")):
        print("toktoken backup: the ledger is PostgreSQL (TELEMETRY_DB): back it up with pg_dump",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        records = backup_sqlite(source, target)
    except (OSError, sqlite3.Error) as exc:
        print(f"toktoken backup: {exc} (TELEMETRY_DB={source})", file=sys.stderr)
        return 1
    print(f"backed up {records} usage records from {source} to {target}")
    return 0


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
    logging.getLogger("toktoken.backends.replicas").setLevel(logging.ERROR)  # said below
    backends = Backends(settings)
    logging.getLogger("toktoken.backends.registry").setLevel(logging.ERROR)  # said below
    for backend, health in zip(backends.all, backends.probe_all(), strict=True):
        if not health.reachable:
            ok = ok and health.name != settings.backend.name
        several = len(health.replicas) > 1
        if several:
            state = "reachable" if health.reachable else "NOT reachable"
            print(f"  {health.name}: {state}, {health.detail or 'every replica reachable'}")
        for each in health.replicas if several else [health]:
            where = f"    replica {each.url}" if several else f"  {health.name}: {each.url}"
            if each.reachable:
                models = ", ".join(each.models or []) or "-"
                note = f" ({each.detail})" if each.detail else ""
                print(f"{where} reachable in {each.latency_ms} ms{note}; models: {models}")
            else:
                print(f"{where} NOT reachable: {each.detail}")
        configured = backends.configured_models[backend.name]
        if backend.model != configured:
            print(f"    the server serves only {backend.model!r}, not the configured "
                  f"{configured!r}: requests will use {backend.model!r}")  # fmt: skip
        problem = backends.model_problems.get(backend.name)
        if problem:
            print(f"    PROBLEM: {problem}: requests will fail; set the model to one of them")
            ok = ok and health.name != settings.backend.name
    return 0 if ok else 1


def claude_env(settings: Settings, argv: list[str]) -> int:
    import argparse

    from .backends import Backends
    from .claude_env import lines, mark_onboarded
    from .routing import Router

    parser = argparse.ArgumentParser(prog="python -m toktoken claude-env")
    parser.add_argument(
        "--model", help="the model name Claude Code will send (default: VLLM_MODEL)"
    )
    parser.add_argument("--url", help="the gateway's base URL as clients reach it")
    parser.add_argument("--window", type=int, help="the context window, if the backend cannot say")
    parser.add_argument("--key", help="the gateway key to print (default: a placeholder)")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="mark Claude Code's onboarding done in ~/.claude.json (no internet)",
    )
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # discovery chatter is not for this output
    backends = Backends(settings)
    model = args.model or settings.backend.model
    backend = Router(settings.routes, backends).for_model(model)
    window, source = args.window, "given with --window"
    if window is None:
        for client in backend.clients:  # discovered now, each replica
            backends.capabilities.refresh(client)
        caps = backends.caps(backend)  # the smallest window of the replicas
        window, source = caps.context, f"{caps.context_source}, backend {backend.name}"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    url = args.url or f"http://{host}:{settings.port}"
    text = lines(base_url=url, model=model, window=window, window_source=source, key=args.key)
    print("\n".join(text))
    if args.offline:
        path = mark_onboarded(Path.home())
        print(f"# {path}: onboarding marked done, so interactive claude starts without internet.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
