"""Running golden tests (``brickrun test``): each case in a fresh runtime, then compared.

Each case runs a brick once, or activates a mod and replays host events as ``brickrun run``
does, in a **fresh** ``Runtime`` on its own SQLite file, with a ``VirtualClock`` frozen at
``now``, a fixed host name, no network (HTTP goes to the case's ``http`` mocks) and an
environment cleared of ``BRICKRUN_*`` and ``DO_NOT_TRACK`` (plus the case's ``env``). Nothing a
case does is seen by another. The format is ``_testfile``; comparing is ``_matching``.

Mocks never touch the engine: a mock **by brick id** registers a stand-in brick under that id
in the case's runtime registry (a child of the built-ins, so it shadows them); a mock **by
step** finds the step by its path in a definition this case compiled (each case compiles its
files afresh) and points that one step at a stand-in registered under a private id. Stand-ins
keep the original brick's input schema and kind, so configs are still rendered and validated.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio

from ._bricks import Brick, BrickContext
from ._clock import VirtualClock
from ._definitions import compile_documents
from ._host import InProcessHost
from ._integrations import Integrations
from ._matching import compare, match
from ._model import ComponentDefinition, Definition, ModDefinition, Step
from ._replay import ReplayEvent, SignIn, Visit, replay
from ._runtime import Runtime
from ._state import ModVariables
from ._testfile import MISSING, Case, CaseFile, Mock, definition_files, load_test_file
from .errors import BrickrunError, BusinessError, DefinitionErrors, RunError

if TYPE_CHECKING:
    import httpx

__all__ = ["CaseResult", "RunSummary", "run_case", "run_tests"]

DEFAULT_HOSTNAME = "localhost"  # what @pixiebrix/session reports, whatever the machine


@dataclass
class CaseResult:
    """The outcome of one case: ``passed``, ``failed`` (an expectation did not hold; ``diff``)
    or ``error`` (the case could not run as written; ``message``)."""

    name: str
    file: str
    line: int | None
    status: str
    duration: float = 0.0
    diff: str | None = None
    message: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "file": self.file,
            "line": self.line,
            "status": self.status,
            "duration": round(self.duration, 4),
        }
        if self.diff is not None:
            data["diff"] = self.diff
        if self.message is not None:
            data["message"] = self.message
        return data


class _CaseError(Exception):
    """The case cannot run as written (an unknown mock target, a missing subject, ...)."""


class _MockedError(RunError):
    """The error a mock raises; ``name`` is the one the test gave."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.mocked_name = name

    @property
    def name(self) -> str:
        return self.mocked_name


class _MockedBusinessError(_MockedError, BusinessError):
    """A mocked error whose name is a business error's (reported with ``business: true``)."""


_BUSINESS_NAMES = frozenset(
    (
        "BusinessError",
        "InputValidationError",
        "InvalidPathError",
        "InvalidTemplateError",
        "PropError",
    )
)


def _plain(value: Any) -> Any:
    """JSON data as a test file would write it (expressions become their JSON form)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


@dataclass
class _Observed:
    """What a case did beyond its result: mock calls and HTTP requests."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def _stand_in(original: Brick, mock: Mock, brick_id: str, observed: _Observed) -> Brick:
    """A brick that answers for ``original``: same input schema and kind, canned result."""

    async def run(args: Any, ctx: BrickContext) -> Any:
        observed.calls.append({"brick": original.id, "step": ctx.step_path, "input": _plain(args)})
        if mock.error is not None:
            name = str(mock.error.get("name") or "BusinessError")
            cls = _MockedBusinessError if name in _BUSINESS_NAMES else _MockedError
            raise cls(name, str(mock.error.get("message", "")))
        return copy.deepcopy(mock.output)

    return Brick(
        id=brick_id,
        name=f"{original.name} (mocked)",
        run=run,
        kind=original.kind,
        description=f"A test stand-in for {original.id}.",
        input_schema=original.input_schema,
        default_output_key=original.default_output_key,
        version=original.version,
        source=mock.location,
    )


def _transport(case: Case, observed: _Observed) -> httpx.AsyncBaseTransport:
    """An HTTP transport that answers from the case's ``http`` mocks and nothing else."""
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        body: Any = request.content.decode("utf-8", "replace") if request.content else None
        if body is not None:
            with suppress(ValueError):
                body = json.loads(body)
        entry: dict[str, Any] = {
            "method": request.method,
            "url": url,
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
        if body is not None:
            entry["body"] = body
        observed.requests.append(entry)
        for mock in case.http:
            if mock.method is not None and mock.method.upper() != request.method:
                continue
            target = url if "?" in mock.url else url.split("?", 1)[0]
            if not match(mock.url, target, partial=False)[0]:
                continue
            if mock.json is not MISSING:
                return httpx.Response(mock.status, json=mock.json, headers=mock.headers)
            return httpx.Response(mock.status, text=mock.text or "", headers=mock.headers)
        observed.unmatched.append(f"{request.method} {url}")
        raise httpx.ConnectError("no http mock of the test case matches", request=request)

    return httpx.MockTransport(handle)


@contextmanager
def _hermetic_environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """Run with ``BRICKRUN_*`` and ``DO_NOT_TRACK`` removed (a developer's shell must not
    change a golden result) and the case's own ``env`` set; restored afterwards."""
    saved = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("BRICKRUN_") or name == "DO_NOT_TRACK"
    }
    for name in saved:
        del os.environ[name]
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name in overrides:
            os.environ.pop(name, None)
        os.environ.update(saved)


def _error_data(error: BaseException) -> dict[str, Any]:
    if isinstance(error, DefinitionErrors) and error.errors:
        return {
            "name": error.errors[0].name,
            "message": "; ".join(e.message for e in error.errors),
        }
    if isinstance(error, BrickrunError):
        return {"name": error.name, "message": error.message}
    return {"name": type(error).__name__, "message": str(error)}


class _Setup:
    """Loads a case's definitions into its runtime and installs its mocks."""

    def __init__(self, case: Case, runtime: Runtime, observed: _Observed) -> None:
        self.case = case
        self.runtime = runtime
        self.observed = observed
        self.loaded: dict[str, Definition] = {}  # compiled for this case (safe to change)
        self.inner_mocks: list[Brick] = []  # mocks of a mod's inner bricks, by key

    def load(self, path: Path) -> list[Definition]:
        definitions: list[Definition] = []
        for file in definition_files(path):
            definitions.extend(self.runtime.registry.load_path(file).definitions)
        for definition in definitions:
            self.loaded[definition.id] = definition
        return definitions

    def subject(self, extra: Sequence[Path]) -> tuple[Brick | None, ModDefinition | None]:
        """Load everything the case uses; returns its brick or its mod."""
        for path in [*extra, *self.case.definitions]:
            self.load(path)
        if self.case.fixtures:
            compiled = compile_documents(self.case.fixtures)
            if compiled.errors:
                raise DefinitionErrors(compiled.errors)
            for definition in compiled.definitions:
                self.runtime.registry.register_definition(definition)
                self.loaded[definition.id] = definition
        case, registry = self.case, self.runtime.registry
        wanted = ComponentDefinition if case.kind == "brick" else ModDefinition
        what = "component brick (kind: component)" if case.kind == "brick" else "mod (kind: recipe)"
        if case.subject.startswith("@"):
            if case.kind == "brick":
                return registry.get(case.subject), None
            found = registry.find_definition(case.subject)
            if not isinstance(found, ModDefinition):
                raise _CaseError(f"no {what} {case.subject!r} is loaded")
            return None, found
        if not os.path.exists(case.subject):
            raise _CaseError(f"no such file: {case.subject}")
        for definition in self.load(Path(case.subject)):
            if isinstance(definition, wanted):
                if isinstance(definition, ModDefinition):
                    return None, definition
                return registry.get(definition.id), None
        raise _CaseError(f"{case.subject} defines no {what}")

    def mocks(self, subject_id: str) -> None:
        mocked: set[str] = set()
        for mock in self.case.mocks:  # the case's own mocks come first, and win
            if mock.brick is not None:
                if mock.brick not in mocked:
                    mocked.add(mock.brick)
                    self.mock_brick(mock, mock.brick)
            elif mock.step is not None:
                key = f"{mock.in_ or subject_id} {mock.step}"
                if key not in mocked:
                    mocked.add(key)
                    self.mock_step(mock, mock.in_ or subject_id, mock.step)

    def mock_brick(self, mock: Mock, brick_id: str) -> None:
        registry = self.runtime.registry
        original = registry.find(brick_id)
        inner = self.inner(brick_id)
        if original is None and inner is None:
            close = registry.suggest(brick_id)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise _CaseError(f"{mock.location}: mock of unknown brick {brick_id!r}{hint}")
        if inner is not None:  # a mod's inner component, registered when the mod activates
            self.inner_mocks.append(_stand_in(inner, mock, brick_id, self.observed))
        if original is not None:
            stand_in = _stand_in(original, mock, brick_id, self.observed)
            registry.register(stand_in, replace=True, local=not brick_id.startswith("@"))

    def inner(self, key: str) -> Brick | None:
        """The brick of a mod's inner component with that key, if a loaded mod has one."""
        from ._component import component_brick

        for definition in self.loaded.values():
            if isinstance(definition, ModDefinition):
                inner = definition.inner_definitions.get(key)
                if isinstance(inner, ComponentDefinition):
                    return component_brick(inner)
        return None

    def mock_step(self, mock: Mock, owner_id: str, path: str) -> None:
        owner = self.loaded.get(owner_id)
        if owner is None:
            registry = self.runtime.registry
            if registry.find_definition(owner_id) is not None:
                reason = (
                    "it is not loaded from a file by this test (step mocks change the copy a "
                    "case compiles); load a copy with definitions:, or mock its bricks by id"
                )
            elif registry.find(owner_id) is not None:
                reason = "it is a Python brick, without steps; mock it by id instead"
            else:
                reason = "no definition with that id is loaded"
            raise _CaseError(f"{mock.location}: cannot mock step {path} in {owner_id}: {reason}")
        steps: list[Step] = list(getattr(owner, "steps", ()))
        step = next((s for s in steps if s.path_text == path), None)
        if step is None:
            known = ", ".join(f"{s.path_text} ({s.brick_id})" for s in steps) or "none"
            raise _CaseError(
                f"{mock.location}: {owner_id} has no step {path}; its steps are: {known}"
            )
        original = self.runtime.registry.find(step.brick_id) or self.inner(step.brick_id)
        if original is None:
            raise _CaseError(f"{mock.location}: step {path} uses unknown brick {step.brick_id!r}")
        stand_in_id = f"{step.brick_id} (mocked at {path})"
        stand_in = _stand_in(original, mock, stand_in_id, self.observed)
        self.runtime.registry.register(stand_in, replace=True, local=True)
        step.brick_id = stand_in_id  # this case's compiled copy only


async def _records(runtime: Runtime, databases: Iterable[str]) -> dict[str, list[Any]]:
    storage = await runtime.storage()
    out: dict[str, list[Any]] = {}
    for database in databases:
        out[database] = [dict(r) for r in await storage.list_records(database)]
    return _plain(out)  # type: ignore[no-any-return]


async def _run_brick(
    runtime: Runtime, host: InProcessHost, case: Case, brick: Brick, actual: dict[str, Any]
) -> list[str]:
    """Run the case's brick once (after the host's page visit and user); fills ``actual``."""
    if case.host.get("url") is not None:
        host.visit(case.host["url"], case.host.get("title", ""))
    if case.host.get("email") is not None or case.host.get("user") is not None:
        host.sign_in(
            case.host.get("email") or "",
            user_id=case.host.get("user"),
            groups=case.host.get("groups", ()),
            organizations=case.host.get("organizations", ()),
        )
    notes = []
    variables = ModVariables(dict(case.variables or {}))
    try:
        result = await runtime.run_brick(
            brick.id, case.input, options=case.options, mod_variables=variables
        )
        actual["output"] = _plain(result.output)
    except BrickrunError as exc:
        actual["error"] = _error_data(exc)
        notes.append(f"the run failed: {exc.name}: {exc}")
    await runtime.drain()
    actual["variables"] = _plain(variables.get())
    actual["errors"] = [
        {"name": e.name, "message": e.message, "brickId": e.brick_id, "path": e.step_path}
        for e in runtime.background_errors
    ]
    return notes


def _host_events(case: Case) -> list[ReplayEvent]:
    """The case's ``host`` as the first events of a replay: sign in, then a page visit."""
    events: list[ReplayEvent] = []
    host, where = case.host, case.location
    if host.get("email") is not None:
        events.append(
            SignIn(
                email=host["email"],
                user_id=host.get("user"),
                groups=tuple(host.get("groups", ())),
                organizations=tuple(host.get("organizations", ())),
                location=where,
            )
        )
    if host.get("url") is not None:
        events.append(Visit(url=host["url"], title=host.get("title", ""), location=where))
    return events


async def _run_mod(
    runtime: Runtime, setup: _Setup, case: Case, mod: ModDefinition, actual: dict[str, Any]
) -> list[str]:
    """Activate the case's mod and replay its events; fills ``actual``."""
    try:
        activated = await runtime.activate(mod, case.options, deployment_id=case.deployment)
    except BrickrunError as exc:
        actual["error"] = _error_data(exc)
        return [f"activation failed: {exc}"]
    for stand_in in setup.inner_mocks:
        activated.registry.register(stand_in, replace=True, local=True)
    if case.variables:
        activated.variables.set(dict(case.variables), "replace")
    try:
        replayed = await replay(runtime, [*_host_events(case), *case.events])
    except BrickrunError as exc:
        actual["error"] = _error_data(exc)
        return [f"the replay failed: {exc}"]
    await runtime.drain()
    errors = replayed.errors()
    actual["variables"] = _plain(activated.variables.get())
    actual["errors"] = _plain(errors)
    actual["reported"] = _plain([event.to_dict() for event in replayed.reported])
    actual["runs"] = _plain([run.to_dict() for run in replayed.runs])
    return [f"run of {e['component']!r} failed: {e['name']}: {e['message']}" for e in errors]


async def _execute(
    case: Case, database_url: str, extra: Sequence[Path]
) -> tuple[dict[str, Any], _Observed, list[str]]:
    """Run the case; returns the actual value of each section, what the mocks and the HTTP
    transport saw, and notes on what failed (shown when an expectation does not hold)."""
    observed = _Observed()
    clock = VirtualClock(case.now)
    host = InProcessHost(clock, hostname=case.host.get("hostname") or DEFAULT_HOSTNAME)
    runtime = Runtime(
        clock=clock,
        host=host,
        database_url=database_url,
        integrations=Integrations(case.integrations, environ={}),
        http_transport=_transport(case, observed),
    )
    setup = _Setup(case, runtime, observed)
    brick, mod = setup.subject(extra)
    setup.mocks(brick.id if brick is not None else mod.id if mod is not None else "")
    actual: dict[str, Any] = {"error": None}
    async with runtime:
        if brick is not None:
            notes = await _run_brick(runtime, host, case, brick, actual)
        else:
            assert mod is not None
            notes = await _run_mod(runtime, setup, case, mod, actual)
        await runtime.drain()
        if "records" in case.expect:
            actual["records"] = await _records(runtime, case.expect["records"])
    actual["calls"] = observed.calls
    actual["requests"] = observed.requests
    return actual, observed, notes


async def run_case(
    case: Case, workdir: str | os.PathLike[str], *, definitions: Sequence[Path] = ()
) -> CaseResult:
    """Run one case in a fresh runtime whose SQLite store lives in ``workdir``.

    ``definitions`` are extra definition files or folders loaded before the case's own.
    Never raises for a problem of the case: it becomes an ``error`` result.
    """
    started = perf_counter()
    result = CaseResult(case.name, case.file, case.line, "passed")
    handle, store = tempfile.mkstemp(prefix="case-", suffix=".sqlite", dir=workdir)
    os.close(handle)  # an empty file is an empty SQLite database
    try:
        with _hermetic_environment(case.env), anyio.fail_after(case.timeout):
            actual, observed, notes = await _execute(case, f"sqlite:///{store}", definitions)
    except TimeoutError:
        result.status = "error"
        result.message = f"the case did not finish within {case.timeout:g} s (timeout)"
    except _CaseError as exc:
        result.status = "error"
        result.message = str(exc)
    except BrickrunError as exc:  # definitions that do not load, a store that does not open
        result.status = "error"
        result.message = f"{exc.name}: {exc}"
    else:
        diff = compare(case.expect, actual)
        messages = list(notes) if diff is not None else []
        if observed.unmatched:
            messages.append(
                "requests no http mock matches: " + ", ".join(observed.unmatched) + " "
                "(test cases never reach the network; add entries under http:)"
            )
        if diff is not None or observed.unmatched:
            result.status = "failed"
            result.diff = diff
            result.message = "\n".join(messages) or None
    result.duration = perf_counter() - started
    return result


# -- running many --------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """Every case result of a ``brickrun test`` run, and how long it took."""

    results: list[CaseResult] = field(default_factory=list)
    duration: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.status == "passed" for r in self.results)

    def line(self) -> str:
        """pytest's summary line: ``3 passed, 1 failed, 1 error in 0.42s``."""
        parts = [
            f"{count} {label}"
            for label, count in (
                ("failed", self.count("failed")),
                ("passed", self.count("passed")),
                ("error" if self.count("error") == 1 else "errors", self.count("error")),
            )
            if count
        ]
        return f"{', '.join(parts) or 'no tests ran'} in {self.duration:.2f}s"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.count("passed"),
            "failed": self.count("failed"),
            "errors": self.count("error"),
            "duration": round(self.duration, 4),
            "cases": [r.to_dict() for r in self.results],
        }


def _file_error(loaded: CaseFile) -> CaseResult:
    first = loaded.errors[0].location
    return CaseResult(
        name=Path(loaded.file).name,
        file=loaded.file,
        line=first.line if first is not None else None,
        status="error",
        message="\n".join(str(e) for e in loaded.errors),
    )


def _report(
    summary: RunSummary, outcome: CaseResult, on_result: Callable[[CaseResult], None] | None
) -> bool:
    """Record one outcome; True when it did not pass."""
    summary.results.append(outcome)
    if on_result is not None:
        on_result(outcome)
    return outcome.status != "passed"


async def run_tests(
    files: Iterable[str | os.PathLike[str]],
    *,
    definitions: Sequence[str | os.PathLike[str]] = (),
    keyword: str | None = None,
    exit_first: bool = False,
    on_file: Callable[[str], None] | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> RunSummary:
    """Load and run the test files in order; cases run one at a time.

    ``keyword`` keeps the cases whose name contains it (any case). A file that does not load
    becomes one ``error`` result. ``on_file``/``on_result`` report progress; ``exit_first``
    stops after the first case that did not pass.
    """
    started = perf_counter()
    summary = RunSummary()
    extra = [Path(p) for p in definitions]
    with tempfile.TemporaryDirectory(prefix="brickrun-test-") as workdir:
        for path in files:
            loaded = load_test_file(path)
            if on_file is not None:
                on_file(loaded.file)
            if loaded.errors:
                if _report(summary, _file_error(loaded), on_result) and exit_first:
                    break
                continue
            cases = loaded.cases
            if keyword:
                cases = [c for c in cases if keyword.lower() in c.name.lower()]
            failed = False
            for case in cases:
                outcome = await run_case(case, workdir, definitions=extra)
                failed = _report(summary, outcome, on_result)
                if failed and exit_first:
                    break
            if failed and exit_first:
                break
    summary.duration = perf_counter() - started
    return summary
