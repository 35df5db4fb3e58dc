"""``brickrun test``: run golden tests (``*.test.yaml``) and print a pytest-style report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import anyio

from .._testfile import find_test_files
from .._testing import CaseResult, RunSummary, run_tests
from . import EXIT_ERROR, EXIT_OK

__all__ = ["cmd_test"]

_MARKS = {"passed": ".", "failed": "F", "error": "E"}


def _shown(path: str) -> str:
    """A path as the user would type it: relative to the current folder when below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith("..") else relative


class _Progress:
    """One line per test file with a mark per case (``.`` passed, ``F`` failed, ``E`` error),
    as pytest prints them; silent with ``--json``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.open = False

    def file(self, path: str) -> None:
        if self.enabled:
            self.end()
            sys.stdout.write(f"{_shown(path)} ")
            self.open = True
            sys.stdout.flush()

    def result(self, result: CaseResult) -> None:
        if self.enabled:
            sys.stdout.write(_MARKS.get(result.status, "?"))
            sys.stdout.flush()

    def end(self) -> None:
        if self.open:
            sys.stdout.write("\n")
            self.open = False


def _report(summary: RunSummary) -> None:
    problems = [r for r in summary.results if r.status != "passed"]
    for result in problems:
        label = "FAILED" if result.status == "failed" else "ERROR"
        print(f"\n{label} {result.where}: {result.name}")
        if result.message:
            print(result.message)
        if result.diff:
            print(result.diff)
    print()
    print(summary.line())


def cmd_test(args: argparse.Namespace) -> int:
    """Find and run test files; exit 0 when every case passed, 1 otherwise (a failure, an
    error, a broken test file, or no test found).

    With no PATH, every ``*.test.yaml`` below the current folder runs. ``--json`` prints
    ``{"passed", "failed", "errors", "duration", "cases": [...]}`` and nothing else.
    """
    paths = args.paths or ["."]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        for path in missing:
            print(f"brickrun test: no such file or folder: {path}", file=sys.stderr)
        return EXIT_ERROR
    files = find_test_files(paths)
    if not files:
        where = ", ".join(paths)
        message = f"no test files (*.test.yaml) found in {where}"
        if args.json:
            print(json.dumps({**RunSummary().to_dict(), "message": message}))
        else:
            print(f"brickrun test: {message}", file=sys.stderr)
        return EXIT_ERROR
    progress = _Progress(not args.json)

    async def go() -> RunSummary:
        return await run_tests(
            [_shown(os.fspath(f)) for f in files],
            definitions=[Path(d) for d in args.definitions],
            keyword=args.keyword,
            exit_first=args.exitfirst,
            on_file=progress.file,
            on_result=progress.result,
        )

    summary = anyio.run(go)
    progress.end()
    if args.json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        _report(summary)
    return EXIT_OK if summary.ok else EXIT_ERROR
