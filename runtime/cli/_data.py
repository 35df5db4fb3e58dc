"""``brickrun data``: list databases, list/get/delete records of a team database."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from ..errors import StorageError
from ..storage import StorageBackend, open_storage
from . import EXIT_ERROR, EXIT_OK

__all__ = ["cmd_databases", "cmd_delete", "cmd_get", "cmd_list"]

T = TypeVar("T")


def _with_storage(args: argparse.Namespace, action: Callable[[StorageBackend], Awaitable[T]]) -> T:
    async def go() -> T:
        async with open_storage(args.db) as storage:
            return await action(storage)

    return anyio.run(go)


def _run(
    args: argparse.Namespace,
    action: Callable[[StorageBackend], Awaitable[Any]],
    show: Callable[[Any], None],
) -> int:
    try:
        result = _with_storage(args, action)
    except StorageError as exc:
        if args.json:
            print(json.dumps({"error": {"name": exc.name, "message": exc.message}}))
        else:
            print(f"brickrun data: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
    else:
        show(result)
    return EXIT_OK


def cmd_databases(args: argparse.Namespace) -> int:
    async def action(storage: StorageBackend) -> list[dict[str, Any]]:
        return [
            {
                "name": info.name,
                "records": info.record_count,
                "limits": {
                    "maxRecordBytes": info.limits.max_record_bytes,
                    "writesPerSecondPerUser": info.limits.writes_per_second_per_user,
                    "retentionDays": info.limits.retention_days,
                },
            }
            for info in await storage.list_databases()
        ]

    def show(rows: list[dict[str, Any]]) -> None:
        if not rows:
            print("no databases yet", file=sys.stderr)
        for row in rows:
            print(f"{row['name']}\t{row['records']} record(s)")

    return _run(args, action, show)


def cmd_list(args: argparse.Namespace) -> int:
    async def action(storage: StorageBackend) -> list[Any]:
        return list(await storage.list_records(args.database, limit=args.limit, offset=args.offset))

    def show(records: list[dict[str, Any]]) -> None:
        for record in records:
            data = json.dumps(record["data"], ensure_ascii=False)
            print(f"{record['id']}\t{record['updated_at']}\t{data}")
        print(f"{len(records)} record(s) in {args.database}", file=sys.stderr)

    return _run(args, action, show)


def cmd_get(args: argparse.Namespace) -> int:
    async def action(storage: StorageBackend) -> Any:
        return await storage.get_or_raise(args.database, args.key)

    return _run(args, action, lambda r: print(json.dumps(r, indent=2, ensure_ascii=False)))


def cmd_delete(args: argparse.Namespace) -> int:
    async def action(storage: StorageBackend) -> dict[str, Any]:
        return {"deleted": await storage.delete(args.database, args.key)}

    def show(result: dict[str, Any]) -> None:
        print("deleted" if result["deleted"] else f"no record {args.key!r} in {args.database}")

    return _run(args, action, show)
