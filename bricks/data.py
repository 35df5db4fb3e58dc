"""Team databases: ``@pixiebrix/data/put`` and ``@pixiebrix/data/get`` (SPEC §4, §7)."""

from __future__ import annotations

from typing import Any

from brickrun import BrickContext, BusinessError, brick

__all__ = ["BRICKS"]

DATABASE = {"$ref": "https://app.pixiebrix.com/schemas/database#", "title": "Database"}
SERVICE = {"$ref": "https://app.pixiebrix.com/schemas/services/@pixiebrix/api"}


@brick(
    id="@pixiebrix/data/put",
    name="Put Data in a Team Database",
    description="Stores value under key, merged with mergeStrategy (replace, shallow, deep: "
    "objects merged and arrays replaced, deep_append: arrays appended). Returns the stored "
    "record {id, data, merge_strategy, created_at, updated_at}.",
    input_schema={
        "type": "object",
        "properties": {
            "databaseId": DATABASE,
            "key": {"type": "string", "minLength": 1},
            "value": {"type": "object"},
            "mergeStrategy": {
                "type": "string",
                "enum": ["replace", "shallow", "deep", "deep_append"],
                "default": "replace",
            },
            "service": SERVICE,
        },
        "required": ["databaseId", "key", "value"],
    },
    default_output_key="record",
)
async def put(args: dict[str, Any], ctx: BrickContext) -> dict[str, Any]:
    storage = await ctx.storage()
    user = ctx.host.user
    record = await storage.put(
        args["databaseId"],
        args["key"],
        args["value"],
        args["mergeStrategy"],
        user=user.email if user else None,
        now=ctx.now(),
    )
    return dict(record)


@brick(
    id="@pixiebrix/data/get",
    name="Get Data from a Team Database",
    description="Returns the data of the record under key; a missing key is an error, or {} "
    "with missingKey: blank.",
    input_schema={
        "type": "object",
        "properties": {
            "databaseId": DATABASE,
            "key": {"type": "string", "minLength": 1},
            "missingKey": {"type": "string", "enum": ["error", "blank"], "default": "error"},
            "service": SERVICE,
        },
        "required": ["databaseId", "key"],
    },
    default_output_key="data",
)
async def get(args: dict[str, Any], ctx: BrickContext) -> Any:
    storage = await ctx.storage()
    record = await storage.get(args["databaseId"], args["key"])
    if record is None:
        if args["missingKey"] == "blank":
            return {}
        raise BusinessError(
            f"Record not found: no key {args['key']!r} in database {args['databaseId']!r}"
        )
    return record["data"]


BRICKS = [put, get]
