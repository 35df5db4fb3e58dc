"""``brickrun run`` (activate a mod, replay a session, summarise) and ``brickrun stats``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from .._clock import VirtualClock, parse_instant
from .._mods import ActivatedMod
from .._replay import ReplayEvent, ReplayResult, check_events, load_events, replay
from .._runtime import Runtime
from .._trace import TraceRecord, format_trace
from .._yaml import load_file
from ..errors import BrickrunError, DefinitionError, DefinitionErrors, Location
from ..storage import StorageBackend, open_storage
from . import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from ._definitions import _error_json, _problem_line

__all__ = ["cmd_run", "cmd_stats"]

# Records read per query by ``stats``: bounds memory, whatever the database's size.
STATS_PAGE = 1000


class _UsageError(Exception):
    pass


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# -- output: rich tables on a terminal, aligned plain text otherwise -------------------------------


class _Output:
    """Writes titled tables to stdout: ``rich`` tables when stdout is a terminal (imported only
    then, to keep the pipe path light), else plain text with columns aligned by two spaces."""

    def __init__(self) -> None:
        self.rich = sys.stdout.isatty()
        self._console: Any = None
        self._first = True

    def _gap(self) -> None:
        if not self._first:
            self.line("")
        self._first = False

    def line(self, text: str) -> None:
        if self.rich:
            self._rich_console().print(text, markup=False, highlight=False)
        else:
            print(text)
        self._first = False

    def _rich_console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console()
        return self._console

    def table(
        self,
        title: str,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        numeric: Sequence[int] = (),
        empty: str = "none",
    ) -> None:
        """A table; the columns at indexes ``numeric`` are right-aligned. No rows: ``empty``."""
        self._gap()
        if not rows:
            self.line(title)
            self.line(empty)
            return
        if self.rich:
            from rich.table import Table
            from rich.text import Text

            # Text cells: labels and messages are data, never rich markup ("[bold]").
            table = Table(title=Text(title), title_justify="left")
            for index, header in enumerate(headers):
                table.add_column(header, justify="right" if index in numeric else "left")
            for row in rows:
                table.add_row(*(Text(str(cell)) for cell in row))
            self._rich_console().print(table)
            return
        cells = [[str(cell) for cell in row] for row in [headers, *rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        self.line(title)
        for row in cells:
            parts = [
                cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                for i, cell in enumerate(row)
            ]
            self.line("  ".join(parts).rstrip())


# -- errors ----------------------------------------------------------------------------------------


def _fail(args: argparse.Namespace, error: BrickrunError, command: str) -> int:
    """Report an error that stopped the command before or while running; exit 1.

    Definition errors print one ``file:line:col: path: message`` line each (stderr); with
    ``--json`` stdout is ``{"error": {...}, "errors": [...]}``.
    """
    if isinstance(error, DefinitionErrors):
        problems = list(error.errors)
    elif isinstance(error, DefinitionError):
        problems = [error]
    else:
        problems = []
    if args.json:
        summary = _error_json(error)
        if isinstance(error, DefinitionErrors):
            # "N definition errors"; each one is listed once, in "errors".
            summary["message"] = error.message
            summary.pop("errors", None)
        errors = [p.to_dict() for p in problems] if problems else [error.to_dict()]
        print(_dump({"error": summary, "errors": errors}))
        return EXIT_ERROR
    if problems:
        for problem in problems:
            print(_problem_line(problem), file=sys.stderr)
        count = sum(1 for p in problems if p.severity == "error")
        print(
            f"brickrun {command}: {_plural(count, 'definition error')}; nothing ran",
            file=sys.stderr,
        )
    else:
        print(f"brickrun {command}: {error.name}: {error}", file=sys.stderr)
    return EXIT_ERROR


# -- brickrun run ----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _option_value(text: str) -> Any:
    """``--options`` values are JSON when they parse as JSON (``5``, ``true``, ``["a"]``),
    else the text itself; ``NaN``/``Infinity`` stay strings (they are not JSON)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def _options_file(path: str) -> dict[str, Any]:
    """The option values in a JSON or YAML file holding one object."""
    documents = load_file(path)  # DefinitionError with a location when unreadable or malformed
    if not documents:
        raise DefinitionError(
            "found an empty file; expected an object of option values (name: value)",
            location=Location(path),
        )
    if len(documents) > 1:
        raise DefinitionError(
            f"found {len(documents)} documents; expected one object of option values",
            location=documents[1].source.locate(()),
        )
    data = documents[0].data
    if not isinstance(data, dict):
        found = "an array" if isinstance(data, list) else f"{type(data).__name__} {data!r}"
        raise DefinitionError(
            f"found {found}; expected an object of option values (name: value)",
            location=documents[0].source.locate(()),
        )
    return data


def _option_values(args: argparse.Namespace) -> dict[str, Any]:
    """``--options-file`` values, then ``--options KEY=VALUE`` (which win)."""
    values: dict[str, Any] = {}
    if args.options_file:
        values.update(_options_file(args.options_file))
    for item in args.options:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise _UsageError(f"--options: expected KEY=VALUE, found {item!r}")
        values[key.strip()] = _option_value(text)
    return values


def _start(args: argparse.Namespace) -> datetime:
    if not args.now:
        return datetime.now(UTC)
    try:
        return parse_instant(args.now)
    except ValueError:
        raise _UsageError(
            f"--now: not an ISO-8601 instant: {args.now!r} (e.g. 2026-11-23T15:00:00Z)"
        ) from None


def _print_trace(result: ReplayResult, records: list[TraceRecord]) -> None:
    """The step trace on stderr, grouped by run in summary order."""
    by_run: dict[str, list[TraceRecord]] = {}
    for record in records:
        by_run.setdefault(record.run_id, []).append(record)
    for run in result.runs:
        steps = by_run.pop(run.run_id, [])
        print(f"run {run.run_id} {run.component} ({run.trigger}): {run.status}", file=sys.stderr)
        if steps:
            print(_indent(format_trace(steps)), file=sys.stderr)
    for run_id, steps in by_run.items():
        print(f"run {run_id}", file=sys.stderr)
        print(_indent(format_trace(steps)), file=sys.stderr)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _print_summary(mod: ActivatedMod, result: ReplayResult) -> None:
    out = _Output()
    deployment = f"deployment {mod.deployment_id}" if mod.deployment_id else "no deployment"
    version = f" {mod.version}" if mod.version else ""
    out.line(f"Replayed {_plural(result.events, 'event')} against {mod.id}{version} ({deployment})")
    rows = []
    for component in mod.components:
        runs = [r for r in result.runs if r.component_id == component.id]
        ok = sum(1 for r in runs if r.status == "success")
        rows.append([component.label, len(runs), ok, len(runs) - ok])
    out.table("Runs", ["component", "runs", "successes", "errors"], rows, numeric=(1, 2, 3))
    errors = [
        [
            e["component"] or "?",
            e["runId"],
            f"{e['name']}: {e['message']}" + (" (background step)" if e.get("background") else ""),
        ]
        for e in result.errors()
    ]
    out.table("Errors", ["component", "run id", "error"], errors)
    counts: dict[tuple[str, str], int] = {}
    for event in result.reported:
        key = (event.name, event.component)
        counts[key] = counts.get(key, 0) + 1
    reported = [[name, component, count] for (name, component), count in counts.items()]
    out.table("Reported", ["event", "component", "count"], reported, numeric=(2,))
    failed = len(result.failed)
    background = len(result.background_errors)
    out.line("")
    out.line(
        f"{_plural(len(result.runs), 'run')}: {len(result.runs) - failed} succeeded, "
        f"{failed} failed; "
        + (f"{_plural(background, 'background step')} failed; " if background else "")
        + f"{_plural(len(result.reported), 'event')} reported"
    )


def cmd_run(args: argparse.Namespace) -> int:
    """Activate a mod, replay ``--events`` on a virtual clock, print the summary.

    Exit 0 when the replay completed (failed runs are data), 1 on a definition, storage or
    host error (nothing ran) or, with ``--strict``, when any run or any background step of a
    run failed; 2 on bad usage.
    """
    try:
        start = _start(args)
        options = _option_values(args)
        events: list[ReplayEvent] = load_events(args.events) if args.events else []
        runtime = Runtime(
            definitions=args.definitions, clock=VirtualClock(start), database_url=args.db
        )
    except _UsageError as exc:
        print(f"brickrun run: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrickrunError as exc:
        return _fail(args, exc, "run")

    records: list[TraceRecord] = []

    async def go() -> tuple[ActivatedMod, ReplayResult]:
        async with runtime:
            mod = await runtime.activate(args.mod, options, deployment_id=args.deployment)
            check_events(runtime, events)
            await runtime.storage()  # a bad --db fails here, before anything runs
            if args.trace:
                runtime.subscribe(records.append)
            result = await replay(runtime, events)
            await runtime.drain()  # every record written before the summary
        return mod, result

    try:
        mod, result = anyio.run(go)
    except BrickrunError as exc:
        return _fail(args, exc, "run")
    if args.trace:
        _print_trace(result, records)
    if args.json:
        print(_dump(result.to_dict()))
    else:
        _print_summary(mod, result)
    # A failed background step is reported as its run's error (TriggerError): strict counts it.
    failed = bool(result.failed or result.background_errors)
    return EXIT_ERROR if args.strict and failed else EXIT_OK


# -- brickrun stats --------------------------------------------------------------------------------


async def starter_brick_stats(storage: StorageBackend, database: str) -> list[dict[str, Any]]:
    """Engagement (``TriggerRun``) and errors (``TriggerError``) per deployment and starter brick.

    Reads every record of ``database`` page by page; records without the telemetry event shape
    (``{name, source: {...}}``) are skipped. Rows ``{deploymentId, starterBrickId,
    starterBrickName, runs, errors}`` are sorted by deployment, then starter brick id.
    """
    counts: dict[tuple[str | None, str | None, str | None], list[int]] = {}
    offset = 0
    while True:
        page = await storage.list_records(database, limit=STATS_PAGE, offset=offset)
        for record in page:
            data = record["data"]
            if not isinstance(data, dict) or not isinstance(data.get("source"), dict):
                continue
            name = data.get("name")
            if name not in ("TriggerRun", "TriggerError"):
                continue
            source = data["source"]
            key = (
                source.get("deploymentId"),
                source.get("starterBrickId"),
                source.get("starterBrickName"),
            )
            pair = counts.setdefault(key, [0, 0])
            pair[0 if name == "TriggerRun" else 1] += 1
        if len(page) < STATS_PAGE:
            break
        offset += STATS_PAGE
    rows = [
        {
            "deploymentId": deployment,
            "starterBrickId": brick_id,
            "starterBrickName": brick_name,
            "runs": runs,
            "errors": errors,
        }
        for (deployment, brick_id, brick_name), (runs, errors) in counts.items()
    ]
    rows.sort(key=lambda r: (str(r["deploymentId"] or ""), str(r["starterBrickId"] or "")))
    return rows


def _starter_label(row: dict[str, Any]) -> str:
    brick_id, name = row["starterBrickId"] or "?", row["starterBrickName"]
    return brick_id if not name or name == brick_id else f"{name} ({brick_id})"


def cmd_stats(args: argparse.Namespace) -> int:
    """Print engagement and errors per deployment and starter brick (tables, or ``--json``)."""
    from ._telemetry import telemetry_database

    database = telemetry_database(args)

    async def go() -> list[dict[str, Any]]:
        async with open_storage(args.db) as storage:
            return await starter_brick_stats(storage, database)

    try:
        rows = anyio.run(go)
    except BrickrunError as exc:
        return _fail(args, exc, "stats")
    if args.json:
        print(_dump(rows))
        return EXIT_OK
    if not rows:
        print(f"no starter-brick telemetry in {database}", file=sys.stderr)
        return EXIT_OK
    out = _Output()
    for title, column in (("Engagement", "runs"), ("Errors", "errors")):
        table = [
            [row["deploymentId"] or "(none)", _starter_label(row), row[column]]
            for row in rows
            if row[column]
        ]
        out.table(
            f"{title} ({database})",
            ["deployment", "starter brick", column],
            table,
            numeric=(2,),
        )
    return EXIT_OK
