"""Mod variables and page state: ``@pixiebrix/state/assign``, ``set`` and ``get``."""

from __future__ import annotations

from typing import Any

from brickrun import BrickContext, PropError, brick

__all__ = ["BRICKS"]

NAMESPACE = {
    "type": "string",
    "enum": ["blueprint", "extension", "shared"],
    "default": "blueprint",
    "description": "blueprint = the mod's variables (@mod), extension = private to the mod "
    "component, shared = page state",
}


@brick(
    id="@pixiebrix/state/assign",
    name="Assign Mod Variable",
    kind="effect",
    description="Sets one mod variable (a shallow merge of {variableName: value}).",
    input_schema={
        "type": "object",
        "properties": {
            "variableName": {"type": "string", "pattern": r"^[A-Za-z_$][\w$]*$"},
            "value": {},
        },
        "required": ["variableName", "value"],
    },
)
def assign(args: dict[str, Any], ctx: BrickContext) -> None:
    name = args["variableName"]
    if not name.strip():
        raise PropError("Variable name is required", prop="variableName")
    ctx.state("blueprint").assign(name, args["value"])


@brick(
    id="@pixiebrix/state/set",
    name="Set Shared Page State",
    description="Writes state with replace, shallow (default) or deep (arrays merged index by "
    "index) and returns the new state.",
    input_schema={
        "type": "object",
        "properties": {
            "data": {"type": "object"},
            "namespace": NAMESPACE,
            "mergeStrategy": {
                "type": "string",
                "enum": ["replace", "shallow", "deep"],
                "default": "shallow",
            },
        },
        "required": ["data"],
    },
    default_output_key="state",
)
def set_state(args: dict[str, Any], ctx: BrickContext) -> dict[str, Any]:
    return ctx.state(args["namespace"]).set(args["data"], args["mergeStrategy"])


@brick(
    id="@pixiebrix/state/get",
    name="Get Shared Page State",
    description="Returns the state of a namespace.",
    input_schema={"type": "object", "properties": {"namespace": NAMESPACE}},
    default_output_key="state",
)
def get_state(args: dict[str, Any], ctx: BrickContext) -> dict[str, Any]:
    return ctx.state(args["namespace"]).get()


BRICKS = [assign, set_state, get_state]
