"""``brickrun serve`` (the telemetry HTTP service) and ``brickrun tokens create|list|revoke``.

Starlette and uvicorn are imported only here, and only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import anyio

from ..errors import StorageError
from . import EXIT_ERROR, EXIT_OK, EXIT_USAGE

__all__ = ["cmd_serve", "cmd_tokens_create", "cmd_tokens_list", "cmd_tokens_revoke"]


def _config_env(args: argparse.Namespace) -> dict[str, str]:
    """The flags given, as the environment variables ``ServerConfig.from_env`` reads."""
    from ..server._config import ENV

    env: dict[str, str] = {}
    if args.db is not None:
        env[ENV["database_url"]] = args.db
    if args.database is not None:
        env[ENV["database"]] = args.database
    if args.cors_origin:
        env[ENV["cors_origins"]] = ",".join(args.cors_origin)
    for flag, field in (
        ("max_body_bytes", "max_body_bytes"),
        ("max_batch", "max_batch"),
        ("rate", "default_rate"),
    ):
        value = getattr(args, flag)
        if value is not None:
            env[ENV[field]] = str(value)
    if args.secret_file is not None:
        env[ENV["secret_file"]] = args.secret_file
    return env


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API and dashboard with uvicorn until interrupted.

    Flags override ``BRICKRUN_SERVE_*`` variables; they are written to the environment so
    that every worker process (``--workers``) builds the same configuration.
    """
    from ..server._config import ServerConfig

    os.environ.update(_config_env(args))
    try:
        ServerConfig.from_env()  # fail here, with the variable's name, not in each worker
    except ValueError as error:
        print(f"brickrun serve: {error}", file=sys.stderr)
        return EXIT_USAGE
    host = args.host or os.environ.get("BRICKRUN_SERVE_HOST") or "127.0.0.1"
    try:
        port = int(args.port or os.environ.get("BRICKRUN_SERVE_PORT") or 8080)
        workers = int(args.workers or os.environ.get("BRICKRUN_SERVE_WORKERS") or 1)
    except ValueError:
        print("brickrun serve: port and workers must be integers", file=sys.stderr)
        return EXIT_USAGE
    import uvicorn

    print(f"brickrun serve: http://{host}:{port}/admin/telemetry", file=sys.stderr)
    uvicorn.run(
        "brickrun.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # uvicorn's access log prints query strings (which may hold an ingest token).
        access_log=False,
        log_level="warning" if args.verbose == 0 else "info",
        server_header=False,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        timeout_graceful_shutdown=10,
    )
    return EXIT_OK


def _with_store(args: argparse.Namespace, action: Any) -> Any:
    from ..server import open_server_store

    async def go() -> Any:
        async with open_server_store(args.db, durable=True) as store:
            return await action(store)

    return anyio.run(go)


def _fail(args: argparse.Namespace, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"message": message}}))
    else:
        print(f"brickrun tokens: {message}", file=sys.stderr)
    return EXIT_ERROR


def cmd_tokens_create(args: argparse.Namespace) -> int:
    """Create a token and print it once (stdout: the token alone, or JSON with ``--json``)."""

    async def action(store: Any) -> Any:
        return await store.create_token(args.kind, args.name, rate_per_second=args.rate)

    try:
        info, secret = _with_store(args, action)
    except (StorageError, ValueError) as error:
        return _fail(args, str(error))
    if args.json:
        print(json.dumps({**info.to_json(), "token": secret}))
    else:
        print(secret)
        print(
            f"created {info.kind} token {info.id} ({info.name}); it is shown only now",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_tokens_list(args: argparse.Namespace) -> int:
    """List tokens (never their secrets)."""

    async def action(store: Any) -> Any:
        return await store.list_tokens()

    try:
        tokens = _with_store(args, action)
    except StorageError as error:
        return _fail(args, str(error))
    if args.json:
        print(json.dumps([t.to_json() for t in tokens]))
        return EXIT_OK
    if not tokens:
        print("no tokens yet: brickrun tokens create --kind ingest NAME", file=sys.stderr)
    for t in tokens:
        state = f"revoked {t.revoked_at}" if t.revoked_at else "active"
        rate = f"{t.rate_per_second}/s" if t.rate_per_second else "-"
        print(f"{t.id}\t{t.kind}\t{state}\t{rate}\t{t.created_at}\t{t.name}")
    return EXIT_OK


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    """Revoke a token by id; exit 1 if there is no such active token."""

    async def action(store: Any) -> Any:
        return await store.revoke_token(args.id)

    try:
        revoked = _with_store(args, action)
    except StorageError as error:
        return _fail(args, str(error))
    if args.json:
        print(json.dumps({"revoked": revoked}))
    elif revoked:
        print(f"revoked {args.id}", file=sys.stderr)
    if not revoked:
        if not args.json:
            print(f"brickrun tokens: no active token {args.id!r}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
