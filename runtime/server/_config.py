"""Server configuration: one frozen value, from keyword arguments or the environment.

``brickrun serve`` turns its flags into the environment variables below before starting
uvicorn, so that every worker process builds the same :class:`ServerConfig` with
:meth:`ServerConfig.from_env`; nothing else is passed between processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

from ..telemetry import DEFAULT_TELEMETRY_DATABASE

__all__ = ["ENV", "ServerConfig"]

ENV: Final = {
    "database_url": "BRICKRUN_DB_URL",
    "database": "BRICKRUN_SERVE_DATABASE",
    "cors_origins": "BRICKRUN_SERVE_CORS_ORIGINS",
    "max_body_bytes": "BRICKRUN_SERVE_MAX_BODY_BYTES",
    "max_batch": "BRICKRUN_SERVE_MAX_BATCH",
    "default_rate": "BRICKRUN_SERVE_RATE",
    "secret_file": "BRICKRUN_SERVE_SECRET_FILE",
}
"""The environment variable of each :class:`ServerConfig` field (origins comma-separated)."""


@dataclass(frozen=True)
class ServerConfig:
    """How a telemetry server behaves.

    ``database_url``: the team store (``None``: ``$BRICKRUN_DB_URL``, else the default SQLite
    file). ``database``: the telemetry database events go to and are read from.
    ``cors_origins``: origins (``https://app.example.com``) whose pages may send events;
    browsers on other origins are refused (same-origin pages always may). ``max_body_bytes``:
    the largest request body (413 above it). ``max_batch``: the most events per request (413).
    ``default_rate``: events per second an ingest token without a rate of its own may add
    (429 above it). ``secret_file``: where the install secret for pseudonyms is kept (``None``:
    ``$BRICKRUN_INSTALL_SECRET`` or the default file; see ``load_install_secret``); every
    process on one store must use the same secret, or one user gets several pseudonyms.
    """

    database_url: str | None = None
    database: str = DEFAULT_TELEMETRY_DATABASE
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1024 * 1024
    max_batch: int = 1000
    default_rate: int = 1000
    secret_file: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_batch", "default_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for origin in self.cors_origins:
            if not origin.startswith(("http://", "https://")) or origin.rstrip("/") != origin:
                raise ValueError(
                    f"CORS origin {origin!r} must be scheme://host[:port] without a path, "
                    "e.g. https://app.example.com"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        """The configuration the environment describes (unset variables: the defaults).

        Raises :class:`ValueError` naming the variable whose value is unusable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            variable = ENV[field.name]
            raw = env.get(variable, "").strip()
            if not raw:
                continue
            if field.name == "cors_origins":
                values[field.name] = tuple(o.strip() for o in raw.split(",") if o.strip())
            elif field.name in ("max_body_bytes", "max_batch", "default_rate"):
                try:
                    values[field.name] = int(raw)
                except ValueError:
                    raise ValueError(f"{variable} must be an integer, got {raw!r}") from None
            else:
                values[field.name] = raw
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ValueError as error:
            raise ValueError(f"server configuration from the environment: {error}") from None

    def to_env(self) -> dict[str, str]:
        """The environment variables that make :meth:`from_env` return this configuration."""
        env: dict[str, str] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            env[ENV[field.name]] = ",".join(value) if isinstance(value, tuple) else str(value)
        return env
