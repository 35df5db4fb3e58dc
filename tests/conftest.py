"""Shared fixtures: an anyio backend, a started runtime, and helpers to run YAML snippets."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest

from brickrun import Runtime
from brickrun._definitions import compile_text


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the runtime is anyio-only; asyncio is what hosts use)."""
    return "asyncio"


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    """A started runtime with the built-ins and shipped bricks, no entry points."""
    async with Runtime(entry_points=False) as rt:
        yield rt


def component_yaml(
    pipeline: str, *, input_schema: str = "{}", brick_id: str = "@test/subject"
) -> str:
    """A component definition around a YAML ``pipeline:`` body (indented two spaces)."""
    body = textwrap.indent(textwrap.dedent(pipeline).strip("\n"), "  ")
    return (
        "apiVersion: v3\nkind: component\n"
        f'metadata:\n  id: "{brick_id}"\n  name: Subject\n'
        f"inputSchema: {input_schema}\n"
        f"pipeline:\n{body}\n"
    )


def register(runtime: Runtime, yaml_text: str, file: str = "subject.yaml") -> str:
    """Compile ``yaml_text`` and register its definitions; returns the first id."""
    result = compile_text(yaml_text, file)
    assert not result.errors, "\n".join(str(e) for e in result.errors)
    for definition in result.definitions:
        runtime.registry.register_definition(definition)
    return result.definitions[0].id


async def run_pipeline_yaml(
    runtime: Runtime, pipeline: str, input: Any = None, **kwargs: Any
) -> Any:
    """Run a pipeline given as YAML steps (wrapped in a component) and return its output."""
    brick_id = register(runtime, component_yaml(pipeline))
    result = await runtime.run_brick(brick_id, input if input is not None else {}, **kwargs)
    return result.output
