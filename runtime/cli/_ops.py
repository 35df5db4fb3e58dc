"""Telemetry operations: ``brickrun aggregate``, ``brickrun cleanup``, ``brickrun export``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

import anyio

from ..errors import BrickrunError
from ..storage import StorageBackend, open_storage
from . import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from ._telemetry import telemetry_database

__all__ = ["cmd_aggregate", "cmd_cleanup", "cmd_export"]

DEFAULT_RETENTION_DAYS = 30
_BACKFILL_PAGE = 1000


def _fail(args: argparse.Namespace, exc: BrickrunError | OSError | ValueError) -> int:
    message = getattr(exc, "message", None) or str(exc)
    if getattr(args, "json", False):
        print(json.dumps({"error": {"name": type(exc).__name__, "message": message}}))
    else:
        print(f"brickrun {args.command}: {message}", file=sys.stderr)
    return EXIT_ERROR


def cmd_aggregate(args: argparse.Namespace) -> int:
    from ..telemetry._aggregates import aggregate_database

    database = telemetry_database(args)

    async def go() -> tuple[list[Any], int]:
        async with open_storage(args.db) as storage:
            return await aggregate_database(storage, database, days=args.days)

    try:
        aggregates, changed = anyio.run(go)
    except BrickrunError as exc:
        return _fail(args, exc)
    rows = [a.to_data() for a in aggregates]
    if args.json:
        print(json.dumps({"database": database, "changed": changed, "aggregates": rows}))
        return EXIT_OK
    print(f"{len(rows)} aggregate(s) of {database}; {changed} changed", file=sys.stderr)
    if rows:
        header = [
            "day",
            "name",
            "context",
            "count",
            "errorRate",
            "avgMs",
            "p50Ms",
            "p95Ms",
            "p99Ms",
        ]
        table = [[str(r[h] if r[h] is not None else "") for h in header] for r in rows]
        widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Delete raw events older than ``--days`` (default: the database's retention, else 30);
    aggregates are kept, and unexported rows are never deleted."""
    from ..storage import DatabaseLimits
    from ..telemetry._aggregates import aggregate_database

    database = telemetry_database(args)

    async def go() -> dict[str, Any]:
        async with open_storage(args.db) as storage:
            limits = await storage.get_limits(database)
            days = args.days or limits.retention_days or DEFAULT_RETENTION_DAYS
            # Aggregate first, so what retention deletes is already summed up.
            await aggregate_database(storage, database)
            if limits.retention_days != days:
                await storage.set_limits(
                    database,
                    DatabaseLimits(
                        max_record_bytes=limits.max_record_bytes,
                        writes_per_second_per_user=limits.writes_per_second_per_user,
                        retention_days=days,
                    ),
                )
            deleted = await storage.cleanup(database, now=datetime.now(UTC))
            return {"database": database, "retentionDays": days, "deleted": deleted}

    try:
        result = anyio.run(go)
    except BrickrunError as exc:
        return _fail(args, exc)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"deleted {result['deleted']} event(s) older than {result['retentionDays']} days "
            f"from {database} (aggregates and unexported events kept)"
        )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Send queued events (the outbox) to an OTLP/HTTP collector or a JSON Lines file."""
    from ..telemetry._export import Exporter, JsonlSink, OtlpHttpSink
    from ..telemetry._privacy import PrivacySettings, load_install_secret

    target = args.otlp or os.environ.get("BRICKRUN_EXPORT_URL")
    if bool(target) == bool(args.jsonl):
        print("brickrun export: give exactly one of --otlp URL or --jsonl FILE", file=sys.stderr)
        return EXIT_USAGE
    database = args.database  # None: every database's outbox

    async def go() -> dict[str, Any]:
        settings = PrivacySettings(install_secret=load_install_secret())
        sink: Any = JsonlSink(args.jsonl) if args.jsonl else OtlpHttpSink(str(target))
        async with open_storage(args.db) as storage:
            if args.backfill:
                await _backfill(storage, args.backfill)
            exporter = Exporter(storage, sink, privacy=settings, database=database)
            totals: dict[str, Any] = {"delivered": 0, "dead": 0, "retried": 0}
            with anyio.move_on_after(args.timeout):
                while True:
                    report = await exporter.run_once()
                    for key in totals:
                        totals[key] += getattr(report, key)
                    if report.claimed == 0:
                        break
                    if report.next_wait:
                        await anyio.sleep(min(report.next_wait, 5.0))
            status = await storage.outbox_status(database)
            closer = getattr(sink, "aclose", None)
            if closer is not None:
                await closer()
            return {**totals, "status": _jsonable(status)}

    try:
        result = anyio.run(go)
    except (BrickrunError, OSError, ValueError) as exc:
        return _fail(args, exc)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(
            f"delivered {result['delivered']}, retried {result['retried']}, "
            f"dead-lettered {result['dead']}"
        )
    return EXIT_OK


async def _backfill(storage: StorageBackend, database: str) -> None:
    """Queue every record of ``database`` for export (records stored without the outbox, such
    as the record brick's): each is re-put unchanged with ``outbox=True``, a page of records
    per ``put_many``. A refused record's error is raised (the rest of its page is queued)."""
    offset = 0
    while True:
        page = await storage.list_records(database, limit=_BACKFILL_PAGE, offset=offset)
        # One transaction and one wait per page, instead of one per record.
        outcomes = await storage.put_many(
            [(database, record["id"], record["data"], "replace") for record in page], outbox=True
        )
        for outcome in outcomes:
            if outcome is not None:
                raise outcome
        if len(page) < _BACKFILL_PAGE:
            return
        offset += len(page)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return value
