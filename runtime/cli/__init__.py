"""The ``brickrun`` command line: argument parsing and dispatch (handlers import lazily).

Exit codes: 0 ok, 1 definition or run error, 2 usage. ``--json`` output is exactly one JSON
document on stdout; human-readable messages go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _handler(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """Import the command's module only when the command runs (keeps --help fast)."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        func: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(f"brickrun.cli.{module}"), name
        )
        return func(args)

    return run


def _add_definitions(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--definitions",
        "-d",
        action="append",
        default=[],
        metavar="DIR",
        help="folder (or file) of YAML/JSON definitions to register; repeatable",
    )


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="team-database URL: sqlite:///path or postgresql://... "
        "(default: $BRICKRUN_DB_URL, else a SQLite file in your data directory)",
    )


def _add_telemetry_database(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database",
        default=None,
        metavar="ID",
        help="the telemetry database (default: $BRICKRUN_TELEMETRY_DATABASE, else "
        "brickrun-telemetry)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="brickrun",
        description="Run declarative YAML bricks: validate definitions, run bricks and mods, "
        "and inspect what they recorded.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log warnings (-v) or everything (-vv) to stderr; by default only errors",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("validate", help="check definition files before running them")
    p.add_argument("paths", nargs="+", metavar="PATH", help="definition files or folders")
    p.add_argument("--format", choices=["text", "json"], default="text")
    _add_definitions(p)
    p.set_defaults(func=_handler("_definitions", "cmd_validate"))

    p = sub.add_parser("brick", help="run one brick and print its output")
    p.add_argument("ref", metavar="REF", help="a registered brick id, or a definition file")
    p.add_argument(
        "--input", default="{}", metavar="JSON", help="the brick's input as JSON (or @file.json)"
    )
    _add_definitions(p)
    p.add_argument("--options", default=None, metavar="JSON", help="@options as a JSON object")
    p.add_argument("--mod-vars", default=None, metavar="JSON", help="initial mod variables")
    p.add_argument("--now", default=None, metavar="ISO", help="freeze the clock at this instant")
    p.add_argument("--url", default=None, help="start a page visit at this URL")
    p.add_argument("--title", default="", help="the page title of that visit")
    p.add_argument("--email", default=None, help="sign in a user with this email")
    p.add_argument("--user", default=None, metavar="ID", help="the signed-in user's id")
    _add_db(p)
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="run deadline")
    p.add_argument("--trace", action="store_true", help="print the step trace to stderr")
    p.add_argument("--json", action="store_true", help="print exactly the output JSON")
    p.set_defaults(func=_handler("_definitions", "cmd_brick"))

    p = sub.add_parser("bricks", help="list the registered bricks")
    _add_definitions(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_definitions", "cmd_bricks"))

    p = sub.add_parser("describe", help="show one brick's schemas and documentation")
    p.add_argument("id", metavar="ID")
    _add_definitions(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_definitions", "cmd_describe"))

    p = sub.add_parser(
        "schema",
        help="JSON Schema (draft-07) of definition files, for editors",
        description="Print the JSON Schema of definition and test files (kinds, step keys, "
        "the brick ids known now with their input schemas) or the custom-tag list; --vscode DIR "
        "writes the schema with the YAML extension's settings into DIR/.vscode.",
    )
    p.add_argument(
        "--tags", action="store_true", help="print only the YAML custom-tag list (yaml.customTags)"
    )
    p.add_argument("--output", "-o", default=None, metavar="FILE", help="write to FILE")
    p.add_argument(
        "--vscode",
        default=None,
        metavar="DIR",
        help="write DIR/.vscode/brickrun.schema.json and the "
        "yaml.schemas / yaml.customTags settings (merged into DIR/.vscode/settings.json)",
    )
    p.add_argument(
        "--glob",
        action="append",
        default=[],
        metavar="PATTERN",
        help="with --vscode: the files (relative to DIR) the schema checks; repeatable "
        "(default: bricks/**, mods/** and **/*.test.yaml, .yaml and .yml)",
    )
    _add_definitions(p)
    p.set_defaults(func=_handler("_definitions", "cmd_schema"))

    p = sub.add_parser(
        "init",
        help="create a mod project: a mod, a brick, an events file, tests, editor settings",
        description="Scaffold a mod project in DIR (default: the current folder): a telemetry "
        "mod with a database option, a component brick built on @pixies/telemetry/record, an "
        "events file, golden tests, VS Code settings for the YAML extension and a README. "
        "Existing files are never overwritten unless --force.",
    )
    p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="the project folder")
    p.add_argument(
        "--scope",
        default=None,
        help="the id scope of the new bricks (@SCOPE/...; default: from the folder name)",
    )
    p.add_argument("--force", action="store_true", help="overwrite files that already exist")
    p.set_defaults(func=_handler("_scaffold", "cmd_init"))

    p = sub.add_parser(
        "test",
        help="run golden tests (*.test.yaml) for bricks and mods",
        description="Run the cases of test files (PATH: files or folders; default: every "
        "*.test.yaml below the current folder). Each case runs in a fresh runtime on a "
        "temporary SQLite store with a frozen clock. Exit 0 when every case passed.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="test files or folders")
    p.add_argument(
        "-k",
        dest="keyword",
        default=None,
        metavar="TEXT",
        help="run only the cases whose name contains TEXT (case-insensitive)",
    )
    p.add_argument(
        "-x", "--exitfirst", action="store_true", help="stop after the first case that fails"
    )
    _add_definitions(p)
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"passed", "failed", "errors", "duration", "cases"} as one JSON document',
    )
    p.set_defaults(func=_handler("_test", "cmd_test"))

    p = sub.add_parser(
        "run",
        help="activate a mod and replay a session of host events on a virtual clock",
        description="Activate MOD (a recipe file or a registered mod id) and replay --events, "
        "one JSON object per line: visit, navigate, user, event, custom, invoke, wait. Prints "
        "runs per component, errors and reported events. Exit 0 when the replay completed "
        "(failed runs are data in the summary) unless --strict.",
    )
    p.add_argument("mod", metavar="MOD", help="a mod definition file, or a registered mod id")
    p.add_argument(
        "--options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a mod option value (JSON when it parses as JSON, else a string); repeatable",
    )
    p.add_argument(
        "--options-file",
        default=None,
        metavar="FILE",
        help="mod option values as a JSON or YAML object (--options override them)",
    )
    p.add_argument(
        "--events", default=None, metavar="FILE", help="the session to replay (JSON Lines)"
    )
    _add_definitions(p)
    p.add_argument("--deployment", default=None, metavar="ID", help="activate as this deployment")
    p.add_argument(
        "--now",
        default=None,
        metavar="ISO",
        help="start of the virtual clock (default: the current time)",
    )
    _add_db(p)
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any run (or a background step of one) failed",
    )
    p.add_argument("--trace", action="store_true", help="print the step trace to stderr")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    p.set_defaults(func=_handler("_run", "cmd_run"))

    p = sub.add_parser(
        "stats", help="engagement (runs) and errors per deployment and starter brick"
    )
    _add_db(p)
    _add_telemetry_database(p)
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=_handler("_run", "cmd_stats"))

    p = sub.add_parser(
        "events",
        help="query telemetry events (filters by name, time, deployment)",
        description="Print the events of a telemetry database matching every filter, oldest "
        "first: one tab-separated line each (time, name, deployment, user, context or URL, "
        "metadata), or --json. Reads the runtime's events and the record brick's records.",
    )
    p.add_argument(
        "--name", default=None, metavar="NAME", help="event name; a glob when it has * ? or ["
    )
    p.add_argument(
        "--since", default=None, metavar="ISO", help="events at or after this date or time"
    )
    p.add_argument("--until", default=None, metavar="ISO", help="events before this date or time")
    p.add_argument("--deployment", default=None, metavar="ID", help="events of this deployment")
    p.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help="show the newest N matching events (default 100; 0 shows all)",
    )
    _add_db(p)
    _add_telemetry_database(p)
    p.add_argument("--json", action="store_true", help="print the events as one JSON list")
    p.set_defaults(func=_handler("_telemetry", "cmd_events"))

    telemetry = sub.add_parser(
        "telemetry", help="telemetry: is it enabled, what is stored, what waits for export"
    )
    telemetry_sub = telemetry.add_subparsers(
        dest="telemetry_command", metavar="ACTION", parser_class=_Parser
    )
    telemetry_sub.required = True
    p = telemetry_sub.add_parser(
        "status",
        help="is telemetry enabled (and why not), records, queue and outbox",
    )
    _add_db(p)
    _add_telemetry_database(p)
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(func=_handler("_telemetry", "cmd_status"))

    data = sub.add_parser("data", help="team databases: list databases, list/get/delete records")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser)
    data_sub.required = True
    p = data_sub.add_parser("databases", help="list databases with record counts and limits")
    _add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_data", "cmd_databases"))
    p = data_sub.add_parser("list", help="list the records of a database (oldest first)")
    p.add_argument("database", metavar="DATABASE")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--offset", type=int, default=0)
    _add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_data", "cmd_list"))
    p = data_sub.add_parser("get", help="show one record")
    p.add_argument("database", metavar="DATABASE")
    p.add_argument("key", metavar="KEY")
    _add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_data", "cmd_get"))
    p = data_sub.add_parser("delete", help="delete one record")
    p.add_argument("database", metavar="DATABASE")
    p.add_argument("key", metavar="KEY")
    _add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_data", "cmd_delete"))

    p = sub.add_parser(
        "serve",
        help="the telemetry HTTP API, browser client and admin dashboard",
        description="Serve POST/GET /api/telemetry, /static/brickrun.js and /admin/telemetry "
        "(Starlette on uvicorn). Flags override the BRICKRUN_SERVE_* environment variables; "
        "any number of processes may serve one store.",
    )
    p.add_argument("--host", default=None, help="address to bind ($BRICKRUN_SERVE_HOST; 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port ($BRICKRUN_SERVE_PORT; 8080)")
    _add_db(p)
    p.add_argument(
        "--database",
        default=None,
        metavar="ID",
        help="the telemetry database ($BRICKRUN_SERVE_DATABASE; brickrun-telemetry)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="an origin whose pages may send events, e.g. https://app.example.com; repeatable "
        "($BRICKRUN_SERVE_CORS_ORIGINS, comma-separated)",
    )
    p.add_argument(
        "--max-body-bytes", type=int, default=None, metavar="N", help="largest request (1 MiB)"
    )
    p.add_argument("--max-batch", type=int, default=None, metavar="N", help="events per request")
    p.add_argument(
        "--rate",
        type=int,
        default=None,
        metavar="N",
        help="events per second per ingest token without a rate of its own (1000)",
    )
    p.add_argument(
        "--secret-file", default=None, metavar="FILE", help="the install secret for pseudonyms"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="worker processes ($BRICKRUN_SERVE_WORKERS; 1)"
    )
    p.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-* from $FORWARDED_ALLOW_IPS (behind a reverse proxy)",
    )
    p.set_defaults(func=_handler("_serve", "cmd_serve"))

    tokens = sub.add_parser("tokens", help="ingest and admin tokens of brickrun serve")
    tokens_sub = tokens.add_subparsers(
        dest="tokens_command", metavar="ACTION", parser_class=_Parser
    )
    tokens_sub.required = True
    p = tokens_sub.add_parser("create", help="create a token and print it (shown only once)")
    p.add_argument("name", metavar="NAME", help="what the token is for, e.g. 'web app'")
    p.add_argument("--kind", choices=["ingest", "admin"], default="ingest")
    p.add_argument(
        "--rate", type=int, default=None, metavar="N", help="events per second (ingest tokens)"
    )
    _add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_serve", "cmd_tokens_create"))
    p = tokens_sub.add_parser("list", help="list tokens (never their secrets)")
    _add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_serve", "cmd_tokens_list"))
    p = tokens_sub.add_parser("revoke", help="revoke a token: refused from the next request on")
    p.add_argument("id", metavar="ID", help="the token's id (tok_...)")
    _add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_serve", "cmd_tokens_revoke"))
    p = sub.add_parser("aggregate", help="compute daily aggregates of a telemetry database")
    _add_db(p)
    _add_telemetry_database(p)
    p.add_argument("--days", type=int, default=None, help="only the last N UTC days")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_ops", "cmd_aggregate"))

    p = sub.add_parser(
        "cleanup", help="delete raw events past retention (aggregates and unexported kept)"
    )
    _add_db(p)
    _add_telemetry_database(p)
    p.add_argument("--days", type=int, default=None, help="retention in days (default 30)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_ops", "cmd_cleanup"))

    p = sub.add_parser(
        "export", help="send queued events to an OTLP/HTTP collector or a JSON Lines file"
    )
    _add_db(p)
    p.add_argument("--database", default=None, metavar="ID", help="only this database's outbox")
    p.add_argument("--otlp", default=None, metavar="URL", help="collector base URL (/v1/logs)")
    p.add_argument("--jsonl", default=None, metavar="FILE", help="append JSON Lines to FILE")
    p.add_argument(
        "--backfill",
        default=None,
        metavar="DATABASE",
        help="first queue every record of DATABASE (e.g. the record brick's) for export",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="stop after this many seconds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_handler("_ops", "cmd_export"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from brickrun import __version__

        print(f"brickrun {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    import logging

    # Failed runs are data in the command's output; their log lines only on request.
    level = (logging.ERROR, logging.WARNING, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="brickrun: %(levelname)s: %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("brickrun: interrupted", file=sys.stderr)
        return 130
    return code
