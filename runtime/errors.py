"""The one exception tree of brickrun; every error carries where it happened.

```
BrickrunError
├── DefinitionError            a definition file is wrong (file, line, column, path)
│   ├── UnknownBrickError      a step names a brick id nobody registered
│   └── DefinitionErrors       several definition errors at once (``validate``, activation)
├── RegistrationError          a Python brick declaration is invalid
├── RunError                   a run failed (step path, brick id, run id, location)
│   ├── BusinessError          a brick refused, for a reason the mod author can act on
│   │   ├── InputValidationError   rendered config does not match the input schema
│   │   ├── InvalidPathError       a ``!var`` path cannot be followed
│   │   ├── InvalidTemplateError   a template failed to render
│   │   └── PropError              a brick argument is unusable
│   ├── BrickError             a Python brick raised something that is not a brickrun error
│   ├── RunCancelledError      the run was cancelled
│   └── RunTimeoutError        the run passed its deadline
├── StorageError               a team database failed (names the database, never a password)
│   ├── RecordNotFoundError
│   ├── RecordTooLargeError
│   └── ThrottledError
└── HostError                  the host lacks what a brick needs (no page visit, no user)
```

Errors keep structured attributes; ``__str__`` formats them. All of them pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BrickError",
    "BrickrunError",
    "BusinessError",
    "DefinitionError",
    "DefinitionErrors",
    "Frame",
    "HostError",
    "InputValidationError",
    "InvalidPathError",
    "InvalidTemplateError",
    "Location",
    "PropError",
    "RecordNotFoundError",
    "RecordTooLargeError",
    "RegistrationError",
    "RunCancelledError",
    "RunError",
    "RunTimeoutError",
    "StorageError",
    "ThrottledError",
    "UnknownBrickError",
    "format_path",
]

PathPart = str | int


def format_path(parts: Sequence[PathPart]) -> str:
    """Format a path inside a definition: ``pipeline[2].config.body[0]``, ``a["odd key"]``."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier() or (part[:1] == "@" and part[1:].isidentifier()):
            out.append(f".{part}" if out else part)
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a definition file; ``line`` and ``column`` count from 1."""

    file: str | None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        text = self.file or "<string>"
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column}


@dataclass(frozen=True, slots=True)
class Frame:
    """One step on the way to a run error, innermost first in ``RunError.frames``."""

    step_path: str
    brick_id: str
    location: Location | None = None


def _rebuild(cls: type[BrickrunError], state: dict[str, Any]) -> BrickrunError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class BrickrunError(Exception):
    """Base class of every error brickrun raises on purpose."""

    message: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def name(self) -> str:
        """The class name users see (``InputValidationError``, ...)."""
        return type(self).__name__

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: ``{name, message, ...}``."""
        return {"name": self.name, "message": self.message}


class DefinitionError(BrickrunError):
    """A definition is malformed. ``str()`` is ``file:line:col: path: message``."""

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        path: Sequence[PathPart] | str = (),
        severity: str = "error",
    ) -> None:
        super().__init__(message)
        self.location = location
        self.path = path if isinstance(path, str) else format_path(path)
        self.severity = severity

    def __str__(self) -> str:
        prefix = f"{self.location}: " if self.location is not None else ""
        where = f"{self.path}: " if self.path else ""
        return f"{prefix}{where}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        loc = self.location
        return {
            "name": self.name,
            "message": self.message,
            "path": self.path,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "column": loc.column if loc else None,
            "severity": self.severity,
        }


class UnknownBrickError(DefinitionError):
    """A brick id that is not registered; the message names the closest known ids."""

    def __init__(
        self,
        brick_id: str,
        *,
        suggestions: Sequence[str] = (),
        location: Location | None = None,
        path: Sequence[PathPart] | str = (),
    ) -> None:
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(f"unknown brick id {brick_id!r}{hint}", location=location, path=path)
        self.brick_id = brick_id
        self.suggestions = list(suggestions)


class DefinitionErrors(DefinitionError):
    """Several definition errors found together; ``errors`` lists them in file order."""

    def __init__(self, errors: Sequence[DefinitionError]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else None
        count = len(self.errors)
        summary = f"{count} definition error{'s' if count != 1 else ''}"
        super().__init__(
            summary, location=first.location if first else None, path=first.path if first else ()
        )

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class RegistrationError(BrickrunError):
    """A Python brick declaration was rejected; the message says what is wrong with it."""


class RunError(BrickrunError):
    """A run failed. The innermost error is the one raised; context is attached on the way out.

    ``frames`` lists the steps the error passed through, innermost first; ``step_path``,
    ``brick_id`` and ``location`` are those of the innermost step.
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.frames: list[Frame] = []

    @property
    def step_path(self) -> str | None:
        return self.frames[0].step_path if self.frames else None

    @property
    def brick_id(self) -> str | None:
        return self.frames[0].brick_id if self.frames else None

    @property
    def location(self) -> Location | None:
        return self.frames[0].location if self.frames else None

    def add_frame(self, frame: Frame, run_id: str | None) -> None:
        self.frames.append(frame)
        if self.run_id is None:
            self.run_id = run_id

    def __str__(self) -> str:
        if not self.frames:
            return self.message
        where = f"{self.location}: " if self.location is not None else ""
        step = f"{self.step_path} " if self.step_path else ""
        return f"{where}{step}({self.brick_id}): {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "message": self.message,
            "path": self.step_path,
            "brickId": self.brick_id,
            "runId": self.run_id,
            "location": self.location.to_dict() if self.location else None,
        }


class BusinessError(RunError):
    """An error the mod author can act on (``@pixiebrix/error`` raises this)."""


class InputValidationError(BusinessError):
    """The rendered config does not match the brick's input schema.

    ``errors`` is a list of ``{"path": <instance path>, "message": <reason>}``.
    """

    def __init__(self, brick_id: str, errors: Sequence[dict[str, str]]) -> None:
        self.errors = list(errors)
        details = "; ".join(f"{e['path'] or '(root)'}: {e['message']}" for e in self.errors)
        super().__init__(f"Invalid inputs for brick {brick_id}: {details}")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["errors"] = self.errors
        return data


class InvalidPathError(BusinessError):
    """A ``!var`` path cannot be followed (PixieBrix's two messages, verbatim)."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class InvalidTemplateError(BusinessError):
    """A template failed to render; the message quotes its first 32 characters."""


class PropError(BusinessError):
    """A brick argument is present but unusable."""

    def __init__(self, message: str, *, prop: str | None = None) -> None:
        super().__init__(message)
        self.prop = prop


class BrickError(RunError):
    """A Python brick raised an exception that is not a brickrun error.

    ``cause_name`` is the original class name; the original is the ``__cause__``.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.cause_name = type(cause).__name__

    @property
    def name(self) -> str:
        return self.cause_name


class RunCancelledError(RunError):
    """The run was cancelled before it finished."""


class RunTimeoutError(RunError):
    """The run did not finish before its deadline."""


class StorageError(BrickrunError):
    """A team database operation failed; names the database, never a password."""

    def __init__(self, message: str, *, database: str | None = None) -> None:
        super().__init__(message)
        self.database = database


class RecordNotFoundError(StorageError):
    """``get`` of a key that has no record."""


class RecordTooLargeError(StorageError):
    """A record exceeds the database's size limit."""


class ThrottledError(StorageError):
    """A user exceeded the database's writes per second."""


class HostError(BrickrunError):
    """The host lacks something a brick needs (a page visit, a signed-in user)."""
