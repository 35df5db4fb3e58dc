"""``brickrun events`` (query a telemetry database) and ``brickrun telemetry status``.

Both read the configured telemetry database unless told otherwise: ``--db`` (default
``$BRICKRUN_DB_URL``, else the user's SQLite file) and ``--database`` (default
``$BRICKRUN_TELEMETRY_DATABASE``, else ``brickrun-telemetry``).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import heapq
import inspect
import json
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import anyio

from .._clock import parse_instant
from .._host import iso_millis
from ..errors import StorageError
from ..storage import StorageBackend, open_storage, redact_url
from ..telemetry import DEFAULT_TELEMETRY_DATABASE
from . import EXIT_ERROR, EXIT_OK, EXIT_USAGE

__all__ = ["cmd_events", "cmd_status", "event_row", "query_events", "telemetry_database"]

ENV_TELEMETRY_DATABASE = "BRICKRUN_TELEMETRY_DATABASE"
PAGE = 1000
# --since is pushed down to the store as "written at or after since - margin": every brickrun
# writer stores an event at (recorder) or after (record brick) its timestamp; the margin covers
# events whose timestamp comes from a host whose clock runs ahead of the store's.
SINCE_MARGIN = timedelta(days=1)


def telemetry_database(args: argparse.Namespace) -> str:
    """``--database``, else ``$BRICKRUN_TELEMETRY_DATABASE``, else ``brickrun-telemetry``."""
    chosen: str = (
        args.database or os.environ.get(ENV_TELEMETRY_DATABASE) or DEFAULT_TELEMETRY_DATABASE
    )
    return chosen


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _fail(args: argparse.Namespace, command: str, error: StorageError) -> int:
    if args.json:
        print(_dump({"error": {"name": error.name, "message": error.message}}))
    else:
        print(f"brickrun {command}: {error.message}", file=sys.stderr)
    return EXIT_ERROR


# -- brickrun events ------------------------------------------------------------------------------


def event_row(key: str, data: Any) -> dict[str, Any] | None:
    """One record as an event row, or ``None`` when it has no telemetry shape.

    Two shapes are read: the runtime's events (``{id, name, timestamp, source, ...}``) and the
    record brick's ``{url, email, timestamp, event, data}``. A row is ``{id, name, timestamp,
    deploymentId, user, url, context, duration_ms, shape, data}``; ``data`` is the stored data
    as is; ``_at`` (dropped before printing) is the parsed timestamp.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("timestamp"), str):
        return None
    try:
        at = parse_instant(data["timestamp"])
    except ValueError:
        return None
    if isinstance(data.get("name"), str) and isinstance(data.get("source"), Mapping):
        source = data["source"]
        return {
            "id": data.get("id", key),
            "name": data["name"],
            "timestamp": data["timestamp"],
            "deploymentId": source.get("deploymentId"),
            "user": data.get("user"),
            "url": data.get("url"),
            "context": data.get("context"),
            "duration_ms": data.get("duration_ms"),
            "shape": "event",
            "data": data,
            "_at": at,
        }
    if isinstance(data.get("event"), str):
        return {
            "id": key,
            "name": data["event"],
            "timestamp": data["timestamp"],
            "deploymentId": None,
            "user": data.get("email"),
            "url": data.get("url"),
            "context": None,
            "duration_ms": None,
            "shape": "record",
            "data": data,
            "_at": at,
        }
    return None


async def query_events(
    storage: StorageBackend,
    database: str,
    *,
    name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    deployment: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Event rows of ``database`` (see :func:`event_row`) matching every filter, oldest first.

    ``name``: exact, or a glob when it holds ``*``, ``?`` or ``[``; ``since`` (inclusive) and
    ``until`` (exclusive) compare the event's own timestamp; ``deployment``: the source's
    ``deploymentId``; ``limit``: keep the newest ``limit`` rows (``None``: all). Reads page by
    page, holding at most ``limit`` rows.
    """
    glob = name is not None and any(c in name for c in "*?[")
    # (event time, position in the store): ties in time keep the store's order.
    kept: list[tuple[datetime, int, dict[str, Any]]] = []
    seen = 0
    offset = 0
    pushed = since - SINCE_MARGIN if since is not None else None
    while True:
        page = await storage.list_records(database, limit=PAGE, offset=offset, since=pushed)
        for record in page:
            row = event_row(record["id"], record["data"])
            if row is None:
                continue
            if name is not None and (
                not fnmatch.fnmatchcase(row["name"], name) if glob else row["name"] != name
            ):
                continue
            at = row["_at"]
            if (since is not None and at < since) or (until is not None and at >= until):
                continue
            if deployment is not None and row["deploymentId"] != deployment:
                continue
            seen += 1
            item = (at, seen, row)
            if limit is None:
                kept.append(item)
            elif len(kept) < limit:
                heapq.heappush(kept, item)
            elif limit and item > kept[0]:
                heapq.heapreplace(kept, item)
        if len(page) < PAGE:
            break
        offset += PAGE
    kept.sort()
    rows = []
    for _, _, row in kept:
        del row["_at"]
        rows.append(row)
    return rows


def _instant(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError:
        raise _Usage(
            f"{flag} {text!r} is not an ISO-8601 date or time (e.g. 2026-11-23 or "
            "2026-11-23T15:00:00Z)"
        ) from None


class _Usage(Exception):
    pass


def cmd_events(args: argparse.Namespace) -> int:
    """Print the telemetry events matching the filters: one tab-separated line each (time,
    name, deployment, user, context or URL, metadata), or ``--json`` (a list of rows)."""
    database = telemetry_database(args)
    try:
        since = _instant(args.since, "--since")
        until = _instant(args.until, "--until")
        if args.limit is not None and args.limit < 0:
            raise _Usage(f"--limit must be 0 (no limit) or more, got {args.limit}")
    except _Usage as exc:
        print(f"brickrun events: {exc}", file=sys.stderr)
        return EXIT_USAGE
    limit = None if not args.limit else args.limit

    async def go() -> list[dict[str, Any]]:
        async with open_storage(args.db) as storage:
            return await query_events(
                storage,
                database,
                name=args.name,
                since=since,
                until=until,
                deployment=args.deployment,
                limit=limit,
            )

    try:
        rows = anyio.run(go)
    except StorageError as exc:
        return _fail(args, "events", exc)
    if args.json:
        print(_dump(rows))
        return EXIT_OK
    for row in rows:
        data = row["data"]
        where = row["context"] or row["url"] or "-"
        extra = data.get("metadata") if row["shape"] == "event" else data.get("data")
        cells = [
            row["timestamp"],
            row["name"],
            row["deploymentId"] or "-",
            row["user"] or "-",
            where,
            _dump(extra if extra is not None else {}),
        ]
        print("\t".join(str(cell).replace("\t", " ").replace("\n", " ") for cell in cells))
    shown = f"{len(rows)} event(s) in {database}"
    if limit is not None and len(rows) == limit:
        shown += f" (the newest {limit}; --limit 0 for all)"
    print(shown, file=sys.stderr)
    return EXIT_OK


# -- brickrun telemetry status -------------------------------------------------------------------


async def _outbox(storage: StorageBackend, database: str) -> dict[str, Any] | None:
    """The backend's outbox status for ``database`` as plain data (``None``: no outbox)."""
    status = getattr(storage, "outbox_status", None)
    if not callable(status):
        return None
    try:
        takes_database = "database" in inspect.signature(status).parameters
    except (TypeError, ValueError):
        takes_database = False
    result = status(database=database) if takes_database else status()
    if inspect.isawaitable(result):
        result = await result
    return (
        _plain(result)
        if isinstance(result, Mapping) or _is_dataclass(result)
        else {"status": result}
    )


def _is_dataclass(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _plain(value: Any) -> Any:
    """Dataclasses and mappings as dicts (recursively), datetimes as ISO text: for JSON."""
    if _is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return iso_millis(value)
    return value


def _show_outbox(outbox: dict[str, Any]) -> None:
    """The outbox in a few lines: counts by state, exports, dead letters (ids and reasons)."""
    outbox = dict(outbox)
    counts = outbox.pop("counts", None)
    if isinstance(counts, Mapping):
        print("outbox: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    else:
        print("outbox:")
    dead = outbox.pop("dead_letters", None)
    if "last_export" in outbox:
        print(f"  last export: {outbox.pop('last_export') or 'never'}")
    for key, value in outbox.items():
        shown = _dump(value) if isinstance(value, dict | list) else value
        print(f"  {key.replace('_', ' ')}: {shown if shown is not None else '-'}")
    if isinstance(dead, list):
        print(f"  dead letters: {len(dead) or 'none'}")
        for letter in dead[:20]:
            if isinstance(letter, Mapping):
                print(
                    f"    {letter.get('database')}/{letter.get('key')}: {letter.get('reason')} "
                    f"(after {letter.get('attempts')} attempt(s), since {letter.get('dead_since')})"
                )
            else:
                print(f"    {letter}")
        if len(dead) > 20:
            print(f"    ... {len(dead) - 20} more (--json shows them all)")


def cmd_status(args: argparse.Namespace) -> int:
    """Is telemetry enabled (and why not), where it is stored, how many records, and the
    outbox when the store has one."""
    from ..telemetry._service import disabled_reason

    database = telemetry_database(args)
    reason = disabled_reason()
    report: dict[str, Any] = {
        "enabled": reason is None,
        "disabledReason": reason,
        "database": database,
        "store": None,
        "records": None,
        "latestRecordAt": None,
        # In-process queues belong to the recording process: TelemetryService.metrics().
        "queue": None,
        "outbox": None,
    }

    async def go(storage: StorageBackend) -> None:
        async with storage:
            count = await storage.count(database)
            report["records"] = count
            if count:
                [last] = await storage.list_records(database, limit=1, offset=count - 1)
                report["latestRecordAt"] = last["created_at"]
            report["outbox"] = await _outbox(storage, database)

    error: StorageError | None = None
    try:
        storage = open_storage(args.db)  # does not connect yet: the URL is known either way
        report["store"] = storage.url
        anyio.run(go, storage)
    except StorageError as exc:
        error = exc
    if args.json:
        if error is not None:
            report["error"] = {"name": error.name, "message": error.message}
        print(_dump(report))
        return EXIT_ERROR if error is not None else EXIT_OK
    print(f"telemetry: {'enabled' if reason is None else f'disabled ({reason})'}")
    print(f"store: {report['store'] or redact_url(str(args.db))}")
    if error is not None:
        print(f"brickrun telemetry status: {error.message}", file=sys.stderr)
        return EXIT_ERROR
    latest = f", latest written {report['latestRecordAt']}" if report["latestRecordAt"] else ""
    print(f"database: {database} ({report['records']} record(s){latest})")
    print("queue: in-process, per recording process (see TelemetryService.metrics())")
    if report["outbox"] is None:
        print("outbox: not configured")
    else:
        _show_outbox(report["outbox"])
    return EXIT_OK
