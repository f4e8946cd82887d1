"""Which backend serves a request: model-name routes, then the default.

Routes come from the configuration file, first match wins, shell-style
patterns compared case-insensitively (``*haiku*``, ``claude-sonnet-*``,
``qwen3-coder``). A model no route matches goes to the default backend, so
any name a client sends works.

Vision: a request that carries an image anywhere the model will see it goes
to the vision backend when one is configured (see docs/vision.md).
"""

from __future__ import annotations

import logging
from fnmatch import fnmatchcase

from .backends import Backends, ReplicaSet
from .config import Route

log = logging.getLogger(__name__)


class Router:
    def __init__(self, routes: tuple[Route, ...], backends: Backends):
        self.routes = [(r.pattern.lower(), backends.by_name[r.backend]) for r in routes]
        self.default = backends.default
        self.vision = backends.vision

    def for_model(self, model: str) -> ReplicaSet:
        name = model.lower()
        for pattern, client in self.routes:
            if fnmatchcase(name, pattern):
                log.debug("model %r -> backend %s (route %r)", model, client.name, pattern)
                return client
        return self.default

    def choose(self, model: str, *, has_images: bool) -> ReplicaSet:
        if has_images and self.vision is not None:
            log.debug("request for %r carries images -> vision backend %s", model, self.vision.name)
            return self.vision
        backend = self.for_model(model)
        if has_images:
            log.debug("request for %r carries images, no vision backend -> %s", model, backend.name)
        return backend

    def model_names(self) -> list[str]:
        """The routes' literal names (patterns without wildcards)."""
        return [p for p, _ in self.routes if not any(c in p for c in "*?[")]


def anthropic_has_images(req: dict) -> bool:
    """An image block in any message, including inside tool_result content."""
    for message in req.get("messages") or []:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "image":
                return True
            if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                if any(isinstance(b, dict) and b.get("type") == "image" for b in block["content"]):
                    return True
    return False


def openai_has_images(req: dict) -> bool:
    """An image_url part in any message (user, tool or other)."""
    for message in req.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in ("image_url", "input_image") for p in content
        ):
            return True
    return False
