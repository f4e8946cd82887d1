"""gunicorn settings for Toktoken: ``gunicorn -c gunicorn.conf.py wsgi:app``.

gevent workers: one greenlet per connection, so a worker holds hundreds of
long streams at once. Values come from the same validated Settings as the app.
"""

import os
import sys

from toktoken.config import ConfigError, Settings, keep_running, running

# gunicorn runs this file at start-up and again at each SIGHUP reload (in the
# master). A configuration that does not validate stops the start-up with one
# line; at a reload it is refused with one line and the last good one stays,
# for the running workers and the new ones alike (they inherit it).
try:
    _settings = Settings.from_env()
except ConfigError as exc:
    if running() is None:
        print(f"toktoken: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"toktoken: reload refused, the running configuration stays: {exc}", file=sys.stderr)
    _settings = running()
keep_running(_settings)

_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host
bind = [f"{_host}:{_settings.port}"]
# gunicorn's gevent worker, with a prompt graceful stop and JSON error pages
# (toktoken/server.py).
worker_class = "toktoken.server.Worker"
workers = _settings.workers
worker_connections = _settings.worker_connections
# The gevent worker reports liveness from its own loop, so `timeout` does not
# limit how long a request may stream (hour-long streams are fine).
timeout = 120
# On reload/stop, give open streams this long to finish before they are cut.
graceful_timeout = _settings.graceful_timeout
# Longer than nginx's upstream keepalive_timeout (60 s) so nginx closes first.
keepalive = 75
loglevel = _settings.log_level
accesslog = None
errorlog = "-"
# Headers up to 32 KiB (long anthropic-beta lists, big cookies behind proxies).
limit_request_field_size = 32768
# Several instances (tests, blue/green) may run side by side: no shared
# control socket in $HOME.
control_socket_disable = True
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def on_starting(server):
    # Prometheus multiprocess mode: every worker writes its metric files to one
    # directory (fresh at each start), /metrics aggregates them.
    import shutil
    import tempfile

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="toktoken-metrics-")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # Probe the backends and learn their capabilities without delaying the
    # worker; only the first worker logs the probe lines.
    import threading

    gateway = worker.wsgi.extensions["toktoken"]
    threading.Thread(target=gateway.startup, args=(worker.age == 1,), daemon=True).start()


def worker_exit(server, worker):
    # A graceful stop (SIGTERM, reload): write the buffered usage records.
    gateway = getattr(worker, "wsgi", None) and worker.wsgi.extensions.get("toktoken")
    if gateway is not None:
        gateway.close()
