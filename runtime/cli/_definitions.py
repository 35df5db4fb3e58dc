"""CLI commands about definitions and bricks: validate, brick, bricks, describe, schema."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from .._clock import VirtualClock, parse_instant
from .._definitions import compile_path
from .._host import InProcessHost
from .._model import ComponentDefinition
from .._runtime import Runtime
from .._trace import format_trace
from .._validate import validate_paths
from ..errors import BrickrunError, DefinitionError, DefinitionErrors, RunError
from . import EXIT_ERROR, EXIT_OK, EXIT_USAGE

__all__ = ["cmd_brick", "cmd_bricks", "cmd_describe", "cmd_schema", "cmd_validate"]

CUSTOM_TAGS = [
    "!var scalar",
    "!nunjucks scalar",
    "!mustache scalar",
    "!handlebars scalar",
    "!pipeline sequence",
    "!defer mapping",
]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _problem_line(problem: DefinitionError) -> str:
    if problem.severity == "warning":
        where = f"{problem.path}: " if problem.path else ""
        return f"{problem.location}: {where}warning: {problem.message}"
    return str(problem)


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        problems = validate_paths(args.paths, definitions=args.definitions)
    except DefinitionErrors as exc:  # a --definitions folder is itself broken
        problems = exc.errors
    errors = [p for p in problems if p.severity == "error"]
    if args.format == "json":
        print(_dump({"valid": not errors, "problems": [p.to_dict() for p in problems]}))
    else:
        for problem in problems:
            print(_problem_line(problem))
        if not problems:
            print(f"ok: {len(args.paths)} path(s) checked, no problems", file=sys.stderr)
        else:
            warnings = len(problems) - len(errors)
            print(f"{len(errors)} error(s), {warnings} warning(s)", file=sys.stderr)
    return EXIT_ERROR if errors else EXIT_OK


def _parse_json_arg(text: str | None, flag: str, *, default: Any) -> Any:
    if text is None:
        return default
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise _UsageError(f"{flag}: cannot read {text[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _UsageError(f"{flag}: not valid JSON ({exc.msg} at character {exc.pos})") from None


class _UsageError(Exception):
    pass


def _error_json(error: BaseException) -> dict[str, Any]:
    if isinstance(error, RunError):
        data = error.to_dict()
        return {
            "name": data["name"],
            "message": data["message"],
            "path": data["path"],
            "brickId": data["brickId"],
            "location": data["location"],
        }
    if isinstance(error, DefinitionErrors):
        return {
            "name": "DefinitionError",
            "message": str(error),
            "path": error.path,
            "brickId": None,
            "location": error.location.to_dict() if error.location else None,
            "errors": [e.to_dict() for e in error.errors],
        }
    if isinstance(error, DefinitionError):
        return {
            "name": error.name,
            "message": error.message,
            "path": error.path,
            "brickId": getattr(error, "brick_id", None),
            "location": error.location.to_dict() if error.location else None,
        }
    assert isinstance(error, BrickrunError)
    return {
        "name": error.name,
        "message": error.message,
        "path": None,
        "brickId": None,
        "location": None,
    }


def _make_runtime(args: argparse.Namespace) -> Runtime:
    clock = VirtualClock(parse_instant(args.now)) if getattr(args, "now", None) else None
    runtime = Runtime(definitions=args.definitions, clock=clock, database_url=args.db)
    host = runtime.host
    assert isinstance(host, InProcessHost)
    if args.url:
        host.visit(args.url, args.title)
    if args.email or args.user:
        host.sign_in(args.email or "", user_id=args.user)
    return runtime


def _resolve_ref(runtime: Runtime, ref: str) -> str:
    """A brick id, or a definition file whose (first) component is registered and used."""
    path = Path(ref)
    if not ref.startswith("@") and path.exists():
        result = compile_path(path)
        if result.errors:
            raise DefinitionErrors(result.errors)
        components = [d for d in result.definitions if isinstance(d, ComponentDefinition)]
        if not components:
            raise DefinitionError(f"{ref} defines no component brick to run (kind: component)")
        for definition in result.definitions:
            runtime.registry.register_definition(definition)
        return components[0].id
    return ref


def cmd_brick(args: argparse.Namespace) -> int:
    try:
        brick_input = _parse_json_arg(args.input, "--input", default={})
        options = _parse_json_arg(args.options, "--options", default={})
        mod_vars = _parse_json_arg(args.mod_vars, "--mod-vars", default={})
        if not isinstance(options, dict) or not isinstance(mod_vars, dict):
            raise _UsageError("--options and --mod-vars must be JSON objects")
        if args.now:
            try:
                parse_instant(args.now)
            except ValueError:
                raise _UsageError(f"--now: not an ISO-8601 instant: {args.now!r}") from None
    except _UsageError as exc:
        print(f"brickrun brick: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def go() -> tuple[Any, list[Any], Runtime]:
        runtime = _make_runtime(args)
        brick_id = _resolve_ref(runtime, args.ref)
        async with runtime:
            result = await runtime.run_brick(
                brick_id,
                brick_input,
                options=options,
                mod_variables=mod_vars,
                timeout=args.timeout,
            )
            await runtime.drain()
        return result.output, result.trace, runtime

    try:
        output, trace, runtime = anyio.run(go)
    except BrickrunError as exc:
        if args.json:
            print(_dump({"error": _error_json(exc)}))
        else:
            print(f"brickrun: {exc.name}: {exc}", file=sys.stderr)
        trace_records = getattr(exc, "trace", None)
        if args.trace and trace_records:
            print(format_trace(trace_records), file=sys.stderr)
        return EXIT_ERROR
    if args.trace:
        print(format_trace(trace), file=sys.stderr)
    for error in runtime.background_errors:
        print(f"brickrun: background step failed: {error.name}: {error}", file=sys.stderr)
    print(
        _dump(output)
        if args.json
        else json.dumps(output, indent=2, ensure_ascii=False, default=str)
    )
    return EXIT_OK


def _registry(args: argparse.Namespace) -> Any:
    return Runtime(definitions=args.definitions, entry_points=True).registry


def cmd_bricks(args: argparse.Namespace) -> int:
    try:
        registry = _registry(args)
    except BrickrunError as exc:
        print(f"brickrun: {exc}", file=sys.stderr)
        return EXIT_ERROR
    rows = [{"id": b.id, "kind": b.kind, "name": b.name} for b in registry]
    if args.json:
        print(_dump(rows))
        return EXIT_OK
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        print(f"{r['id']:<{width}}  {r['kind']:<11}  {r['name']}")
    return EXIT_OK


def cmd_describe(args: argparse.Namespace) -> int:
    try:
        registry = _registry(args)
        brick = registry.get(args.id)
    except BrickrunError as exc:
        print(f"brickrun: {exc}", file=sys.stderr)
        return EXIT_ERROR
    info = {
        "id": brick.id,
        "name": brick.name,
        "kind": brick.kind,
        "version": brick.version,
        "description": brick.description,
        "defaultOutputKey": brick.default_output_key,
        "inputSchema": brick.input_schema,
        "outputSchema": brick.output_schema,
        "source": str(brick.source) if brick.source else None,
    }
    if args.json:
        print(_dump(info))
        return EXIT_OK
    print(f"{brick.id}  ({brick.kind})  {brick.name}")
    if brick.description:
        print(f"\n{brick.description}")
    if brick.default_output_key:
        print(f"\ndefault output key: {brick.default_output_key}")
    print("\ninput schema:\n" + json.dumps(brick.input_schema, indent=2))
    if brick.output_schema:
        print("\noutput schema:\n" + json.dumps(brick.output_schema, indent=2))
    if brick.source:
        print(f"\ndefined at: {brick.source}")
    return EXIT_OK


def editor_schema(bricks: Any = None) -> dict[str, Any]:
    """One self-contained draft-07 schema for definition files and test files, as the YAML
    language server sees them (tagged values read as text, lists and objects): kinds, step keys,
    the ids of ``bricks`` (default: the built-ins, shipped and entry-point bricks) and, per id,
    the config that brick accepts. See ``brickrun.cli._editor``."""
    from ._editor import build_editor_schema, known_bricks

    return build_editor_schema(known_bricks() if bricks is None else bricks)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the editor schema (or, with ``--tags``, the custom-tag list), write it to
    ``--output``, or, with ``--vscode DIR``, write it and the YAML extension's settings into
    ``DIR/.vscode``. ``--definitions`` adds the bricks of those files to the schema."""
    from ._editor import DEFAULT_GLOBS, SettingsError, known_bricks, write_vscode

    if args.vscode and (args.output or args.tags):
        print(
            "brickrun schema: error: --vscode writes its own files; drop -o/--tags", file=sys.stderr
        )
        return EXIT_USAGE
    if args.tags:
        text = json.dumps(CUSTOM_TAGS, indent=2) + "\n"
    else:
        try:
            document = editor_schema(known_bricks(args.definitions))
        except BrickrunError as exc:
            print(f"brickrun schema: {exc}", file=sys.stderr)
            return EXIT_ERROR
        if args.vscode:
            try:
                written = write_vscode(args.vscode, document, args.glob or DEFAULT_GLOBS)
            except SettingsError as exc:
                print(f"brickrun schema: {exc}", file=sys.stderr)
                return EXIT_ERROR
            for path in written:
                print(f"wrote {path}", file=sys.stderr)
            return EXIT_OK
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK
