"""Which backend serves a request: model-name routes, then the default.

Routes come from the configuration file, first match wins, shell-style
patterns compared case-insensitively (``*haiku*``, ``claude-sonnet-*``,
``qwen3-coder``). A model no route matches goes to the default backend, so
any name a client sends works. (Images and the vision backend: issue 4.)
"""

from __future__ import annotations

import logging
from fnmatch import fnmatchcase

from .backends import BackendClient
from .config import Route

log = logging.getLogger(__name__)


class Router:
    def __init__(self, routes: tuple[Route, ...], clients: dict[str, BackendClient], default: str):
        self.routes = [(r.pattern.lower(), clients[r.backend]) for r in routes]
        self.default = clients[default]

    def for_model(self, model: str) -> BackendClient:
        name = model.lower()
        for pattern, client in self.routes:
            if fnmatchcase(name, pattern):
                log.debug("model %r -> backend %s (route %r)", model, client.name, pattern)
                return client
        return self.default

    def model_names(self) -> list[str]:
        """The routes' literal names (patterns without wildcards)."""
        return [p for p, _ in self.routes if not any(c in p for c in "*?[")]
