"""I/O with the model servers, and nothing else.

Owns: HTTP to each backend (client.py, through transport.py's adapter), the
upstream SSE stream (stream.py), what every failure means (failures.py,
pure), exact token counts asked of the backend (tokenize.py), discovery of
what a backend is (capabilities.py), health probes (health.py), and the set
of configured backends (registry.py), each a set of replicas that requests
are spread over (replicas.py).

May import: config, errors, jsonio, telemetry.metrics. Never convert/: the
pipeline joins conversion and I/O.
"""

from .capabilities import Capabilities, CapabilityCache
from .client import CHAT_PATH, MESSAGES_PATH, MODELS_PATH, BackendClient
from .health import Health
from .registry import Backends
from .replicas import Replica, ReplicaSet
from .stream import UpstreamStream

__all__ = [
    "CHAT_PATH",
    "MESSAGES_PATH",
    "MODELS_PATH",
    "BackendClient",
    "Backends",
    "Capabilities",
    "CapabilityCache",
    "Health",
    "Replica",
    "ReplicaSet",
    "UpstreamStream",
]
