"""Toktoken: Anthropic Messages API in front of OpenAI-compatible model servers.

Importing the package is cheap on purpose: gunicorn.conf.py imports the
configuration before gevent monkey-patches the worker, and nothing that opens
sockets (requests, urllib3) may be imported by then.
"""

from __future__ import annotations


def create_app(settings=None):
    """Build the WSGI app (see toktoken.app.create_app)."""
    from .app import create_app as _create_app

    return _create_app(settings)


__all__ = ["create_app"]
