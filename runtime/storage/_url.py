"""Storage URLs: choosing a backend from a URL, and the password-free form shown to people.

Accepted forms:

- ``None``: ``$BRICKRUN_DB_URL`` if set, else the SQLite file ``brickrun.sqlite`` in
  ``platformdirs.user_data_dir("brickrun")`` (the directory is created).
- ``sqlite:///relative/path.sqlite``, ``sqlite:////absolute/path.sqlite``,
  ``sqlite:///:memory:`` (private to one backend instance); optional
  ``?synchronous=full|normal``.
- ``postgresql://user:password@host:port/dbname?...`` or ``postgres://...``: any libpq
  parameter may follow in the query, plus ``schema=NAME``, which puts brickrun's tables in that
  schema (created if missing) instead of the first schema on the search path.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from ..errors import StorageError
from ._base import StorageBackend

__all__ = ["ENV_DB_URL", "open_storage", "redact_url"]

ENV_DB_URL = "BRICKRUN_DB_URL"
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_ACCEPTED = "sqlite:///PATH, sqlite:///:memory:, postgresql://... or postgres://..."


def redact_url(url: str) -> str:
    """``url`` with the password (in the user info or a ``password=`` parameter) as ``***``.

    Everything else is kept exactly as written (``urlunsplit`` would rewrite ``sqlite:////``).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    shown = url
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        if ":" in userinfo:
            hidden = f"{userinfo.split(':', 1)[0]}:***@{host}"
            shown = shown.replace(f"//{parts.netloc}", f"//{hidden}", 1)
    if "password" in parts.query.lower():
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*"
        )
        shown = shown.replace(f"?{parts.query}", f"?{query}", 1)
    return shown


def open_storage(url: str | None = None) -> StorageBackend:
    """The backend for ``url`` (see the module docstring), not yet opened.

    Use ``async with open_storage(url) as storage:``. An unknown scheme or a malformed URL
    raises :class:`StorageError` naming it and the accepted forms.
    """
    if url is None:
        url = os.environ.get(ENV_DB_URL) or None
    if url is None:
        return _default_sqlite()
    if not isinstance(url, str):
        raise StorageError(f"storage URL must be a string, got {url!r}")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url)
    shown = f"scheme {scheme!r}" if scheme else "no scheme"
    raise StorageError(
        f"unsupported storage URL {redact_url(url)!r} ({shown}); expected {_ACCEPTED}"
    )


def _default_sqlite() -> StorageBackend:
    import platformdirs

    from ._sqlite import SQLiteBackend

    directory = platformdirs.user_data_dir("brickrun")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise StorageError(
            f"cannot create the data directory {directory} for the default SQLite database: "
            f"{error.strerror or error}"
        ) from None
    path = os.path.join(directory, "brickrun.sqlite")
    return SQLiteBackend(path, url=f"sqlite:///{path}")


def _sqlite(url: str) -> StorageBackend:
    from ._sqlite import SQLiteBackend

    prefix = "sqlite:///"
    if not url[: len(prefix)].lower() == prefix:
        raise StorageError(
            f"SQLite URL {url!r} must start with {prefix!r} (no host): "
            "sqlite:///relative/path.sqlite or sqlite:////absolute/path.sqlite"
        )
    rest, _, query = url[len(prefix) :].partition("?")
    path = unquote(rest)
    if not path:
        raise StorageError(f"SQLite URL {url!r} names no file")
    options = dict(parse_qsl(query, keep_blank_values=True))
    synchronous = options.pop("synchronous", "full")
    if options:
        raise StorageError(
            f"SQLite URL {url!r} has unknown parameter(s) {', '.join(sorted(options))}; "
            "only 'synchronous' is accepted"
        )
    return SQLiteBackend(None if path == ":memory:" else path, url=url, synchronous=synchronous)


def _postgres(url: str) -> StorageBackend:
    from ._postgres import PostgresBackend

    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise StorageError(f"malformed PostgreSQL URL {shown!r}: {error}") from None
    # The query goes to libpq as written (libpq reads "+" literally, parse_qsl as a space),
    # only without our own parameter.
    kept, schemas = [], []
    for item in parts.query.split("&") if parts.query else []:
        name, _, value = item.partition("=")
        if unquote(name) == "schema":
            schemas.append(unquote(value))
        else:
            kept.append(item)
    schema = schemas[-1] if schemas else None
    if schema is not None and not _SCHEMA.match(schema):
        raise StorageError(
            f"schema {schema!r} in {shown!r} is not a plain identifier "
            "(letters, digits and _, at most 63, not starting with a digit)"
        )
    dsn = url
    if schemas:
        dsn = url.replace(f"?{parts.query}", f"?{'&'.join(kept)}" if kept else "", 1)
    secrets = [parts.password or ""] + [
        unquote(item.partition("=")[2])
        for item in kept
        if unquote(item.partition("=")[0]).lower() == "password"
    ]
    return PostgresBackend(dsn, url=shown, schema=schema, secrets=[s for s in secrets if s])
