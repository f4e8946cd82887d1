"""Configuration: read once at start-up, validated, one line per mistake.

Owns: the settings model (model.py, a leaf), the environment variables and
their table (env.py), the optional TOML file (file.py) and its client keys
(keys.py), and ``Settings``
(settings.py), which puts them together.

May import: nothing else of the project. gunicorn.conf.py imports this
package before gevent patches the worker: nothing here may import requests.
"""

from .model import BackendSettings, ClientKey, ConfigError, Limits, Route, key_digest
from .settings import Settings, keep_running, running

__all__ = [
    "BackendSettings",
    "ClientKey",
    "ConfigError",
    "Limits",
    "Route",
    "Settings",
    "keep_running",
    "key_digest",
    "running",
]
