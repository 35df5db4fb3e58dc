"""``brickrun serve``: the telemetry HTTP API, browser client and admin dashboard (SPEC §11).

- :func:`create_app` builds the ASGI application for a :class:`ServerConfig`; any number of
  processes may serve one store, since tokens, sessions and rate windows live in it
  (:mod:`._store`).
- :func:`open_server_store` opens those server tables for a store URL: ``brickrun tokens``
  creates, lists and revokes tokens through it.

Importing this package imports Starlette; the CLI imports it only to serve.
"""

from __future__ import annotations

from ._app import SESSION_COOKIE, TelemetryServer, app_from_env, create_app
from ._config import ServerConfig
from ._store import TOKEN_KINDS, ServerStore, TokenInfo, open_server_store

__all__ = [
    "SESSION_COOKIE",
    "TOKEN_KINDS",
    "ServerConfig",
    "ServerStore",
    "TelemetryServer",
    "TokenInfo",
    "app_from_env",
    "create_app",
    "open_server_store",
]
