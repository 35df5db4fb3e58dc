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

    p = sub.add_parser("schema", help="JSON Schema (draft-07) of definition files, for editors")
    p.add_argument(
        "--tags", action="store_true", help="print only the YAML custom-tag list (yaml.customTags)"
    )
    p.add_argument("--output", "-o", default=None, metavar="FILE", help="write to FILE")
    p.set_defaults(func=_handler("_definitions", "cmd_schema"))

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
    p.add_argument(
        "--database",
        default="brickrun-telemetry",
        metavar="ID",
        help="the telemetry database to read (default: brickrun-telemetry)",
    )
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=_handler("_run", "cmd_stats"))

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
