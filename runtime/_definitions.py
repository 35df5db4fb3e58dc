"""The definition compiler: loaded documents → checked, compiled definitions.

Stage two of loading (``_yaml`` parses; this module checks and compiles). Every problem becomes
a ``DefinitionError`` located at ``file:line:col`` with the path inside the definition; the
compiler keeps going after an error so ``brickrun validate`` reports everything at once.
Expressions are compiled here (paths parsed, templates compiled), so syntax errors surface
before any run. Linking step brick ids against a registry is a separate pass (``link``),
because the registry may learn bricks after a file is compiled.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._expressions import (
    TEMPLATE_ENGINES,
    DeferExpression,
    PipelineExpression,
    TemplateExpression,
    VarExpression,
    is_expression_data,
)
from ._model import (
    ComponentDefinition,
    Definition,
    ModComponentDefinition,
    ModDefinition,
    Pipeline,
    ServiceDefinition,
    StarterBrickDefinition,
    Step,
)
from ._paths import parse_path
from ._render import compile_value
from ._schema import check_input_schema, definition_schema_errors, normalize_schema
from ._templates import compile_template, looks_like_template
from ._yaml import Document, SourceMap, load_file, load_text
from .errors import DefinitionError, UnknownBrickError

if TYPE_CHECKING:
    from ._registry import Registry

__all__ = [
    "DEFINITION_SUFFIXES",
    "CompileResult",
    "compile_documents",
    "compile_path",
    "compile_text",
    "iter_definition_files",
    "link",
]

PathTuple = tuple[str | int, ...]
KINDS = ("component", "extensionPoint", "recipe", "service")
DEFINITION_SUFFIXES = (".yaml", ".yml", ".json")
# Golden-test files (``brickrun test``) may sit next to definitions; folders skip them.
TEST_SUFFIXES = (".test.yaml", ".test.yml", ".test.json")
_DOM_KEYS = ("root", "rootMode")


@dataclass
class CompileResult:
    """Definitions compiled from one or more documents, with every error and warning found."""

    definitions: list[Definition] = field(default_factory=list)
    errors: list[DefinitionError] = field(default_factory=list)
    warnings: list[DefinitionError] = field(default_factory=list)

    def extend(self, other: CompileResult) -> None:
        self.definitions.extend(other.definitions)
        self.errors.extend(other.errors)
        self.warnings.extend(other.warnings)


def _display(path: PathTuple) -> PathTuple:
    """The path users read: JSON pointers minus the ``__value__`` hops through tagged nodes."""
    return tuple(p for p in path if p != "__value__")


class _Compiler:
    """Compiles one document; collects errors and warnings instead of stopping at the first."""

    def __init__(self, document: Document) -> None:
        self.source: SourceMap = document.source
        self.result = CompileResult()
        self.steps: list[Step] = []

    # -- reporting --------------------------------------------------------------------------
    def error(self, path: PathTuple, message: str, *, at_key: bool = False) -> None:
        locate = self.source.locate_key if at_key else self.source.locate
        self.result.errors.append(
            DefinitionError(message, location=locate(path), path=_display(path))
        )

    def warn(self, path: PathTuple, message: str) -> None:
        self.result.warnings.append(
            DefinitionError(
                message, location=self.source.locate(path), path=_display(path), severity="warning"
            )
        )

    def schema_errors(self, kind: str, data: Any, base: PathTuple) -> bool:
        """Report schema violations of ``data`` (a ``kind`` schema); True when there were any."""
        found = False
        for path, message, at_key in definition_schema_errors(kind, data):
            found = True
            full = base + path
            key = path[-1] if path else None
            if at_key and key in _DOM_KEYS and self._is_step_path(full):
                message = f"step key {key!r} is not supported outside a browser (no DOM here)"
            elif path and key == "window" and self._is_step_path(full):
                message = (
                    f"window {data_at(data, path)!r} is not supported outside a browser; "
                    "only 'self' is"
                )
            self.error(full, message, at_key=at_key)
        return found

    @staticmethod
    def _is_step_path(path: PathTuple) -> bool:
        return len(path) >= 3 and isinstance(path[-2], int)

    # -- expressions -------------------------------------------------------------------------
    def value(self, value: Any, path: PathTuple) -> Any:
        """Compile a config value: expression data becomes expression nodes, recursively."""
        if is_expression_data(value):
            return self.expression(value, path)
        if isinstance(value, dict):
            if "__type__" in value and "__value__" in value:
                self.error(
                    path + ("__type__",),
                    f"unknown expression type {value['__type__']!r}; expected one of "
                    "var, nunjucks, mustache, handlebars, pipeline, defer",
                )
            return {k: self.value(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, path + (i,)) for i, v in enumerate(value)]
        if isinstance(value, str) and looks_like_template(value):
            self.warn(
                path,
                f"plain string {value[:40]!r} looks like a template but is a literal; "
                "tag it !nunjucks (or !mustache) to render it",
            )
        return value

    def expression(self, data: dict[str, Any], path: PathTuple) -> Any:
        kind, raw = data["__type__"], data["__value__"]
        vpath = path + ("__value__",)
        if kind == "var" or kind in TEMPLATE_ENGINES:
            if not isinstance(raw, str):
                self.error(vpath, f"!{kind} expects a string, found {type(raw).__name__}")
                return None
            try:
                if kind == "var":
                    return VarExpression(raw, parse_path(raw))
                return TemplateExpression(kind, raw, compile_template(kind, raw))
            except DefinitionError as exc:
                self.error(path, exc.message)
                return None
        if kind == "pipeline":
            if not isinstance(raw, list):
                self.error(vpath, f"!pipeline expects a list of steps, found {type(raw).__name__}")
                return None
            return PipelineExpression(raw, self.pipeline(raw, vpath))
        # defer
        body = self.value(raw, vpath)
        return DeferExpression(raw, compile_value(body))

    # -- pipelines ---------------------------------------------------------------------------
    def pipeline(self, steps: Any, path: PathTuple) -> Pipeline:
        if isinstance(steps, dict) and "id" in steps:  # a single step where a list is expected
            steps = [steps]
            single = True
        else:
            single = False
        if not isinstance(steps, list):
            self.error(path, f"expected a list of steps, found {type(steps).__name__}")
            return Pipeline((), _display(path), self.source.locate(path))
        compiled = []
        for i, step in enumerate(steps):
            step_path = path if single else path + (i,)
            if self.schema_errors("step", step, step_path):
                continue
            compiled.append(self.step(step, step_path))
        return Pipeline(tuple(compiled), _display(path), self.source.locate(path))

    def step(self, data: dict[str, Any], path: PathTuple) -> Step:
        config = self.value(data.get("config", {}), path + ("config",))
        condition = None
        if "if" in data:
            # ``if`` renders like a config value (null and missing are alike: both false).
            condition = compile_value(self.value(data["if"], path + ("if",)))
        if data.get("async") and data.get("outputKey"):
            self.warn(
                path + ("outputKey",),
                f"an async step binds no output; outputKey {data['outputKey']!r} will never be set",
            )
        step = Step(
            brick_id=data["id"],
            render=compile_value(config),
            path=_display(path),
            location=self.source.locate(path),
            output_key=data.get("outputKey"),
            condition=condition,
            is_async=bool(data.get("async", False)),
            label=data.get("label"),
        )
        self.steps.append(step)
        return step

    # -- definitions -------------------------------------------------------------------------
    def document(self, data: Any) -> Definition | None:
        if not isinstance(data, dict):
            self.error((), f"expected a mapping (a definition), found {type(data).__name__}")
            return None
        version = data.get("apiVersion")
        if version is None:
            self.error((), "missing apiVersion; expected apiVersion: v3", at_key=False)
            return None
        if version != "v3":
            self.error(
                ("apiVersion",),
                f"apiVersion {version!r} is not supported; brickrun runs v3 definitions only "
                "(v1/v2 use implicit templates; port the definition to v3)",
            )
            return None
        return self.definition(data, ())

    def definition(
        self, data: dict[str, Any], base: PathTuple, inner_id: str | None = None
    ) -> Definition | None:
        kind = data.get("kind")
        if kind == "test" and inner_id is None:
            self.error(
                ("kind",),
                "this is a golden-test file (kind: test), not a definition; run it with "
                "`brickrun test`",
            )
            return None
        if kind not in KINDS:
            found = "no kind" if kind is None else f"kind {kind!r}"
            self.error(
                base + (("kind",) if kind is not None else ()),
                f"found {found}; expected one of: {', '.join(KINDS)}",
            )
            return None
        check = data
        if (
            inner_id is not None
        ):  # inner definitions of a mod inherit apiVersion and need no metadata
            check = {"apiVersion": "v3", "metadata": {"id": "@inner/x", "name": inner_id}, **data}
        if self.schema_errors(kind, check, base):
            return None
        meta = check["metadata"]
        common: dict[str, Any] = {
            "kind": kind,
            "id": inner_id or meta["id"],
            "name": meta["name"],
            "version": meta.get("version"),
            "description": meta.get("description", ""),
            "location": self.source.locate(base),
            "data": data,
        }
        if kind == "component":
            return self.component(data, base, common)
        if kind == "extensionPoint":
            return StarterBrickDefinition(**common, definition=data["definition"])
        if kind == "service":
            schema = self.input_schema(data["inputSchema"], base + ("inputSchema",))
            return ServiceDefinition(**common, input_schema=schema)
        return self.mod(data, base, common)

    def input_schema(self, schema: Any, path: PathTuple) -> dict[str, Any]:
        normalized = normalize_schema(schema)
        shorthand = "properties" in normalized and "properties" not in schema
        for problem_path, message in check_input_schema(normalized):
            # Shorthand schemas gained a ``properties`` level; map problems back to the source.
            if shorthand and problem_path[:1] == ("properties",):
                problem_path = problem_path[1:]
            self.error(path + problem_path, message)
        return normalized

    def component(
        self, data: dict[str, Any], base: PathTuple, common: dict[str, Any]
    ) -> ComponentDefinition:
        input_schema = self.input_schema(data["inputSchema"], base + ("inputSchema",))
        output_schema = None
        if "outputSchema" in data:
            output_schema = self.input_schema(data["outputSchema"], base + ("outputSchema",))
        pipeline = self.pipeline(data["pipeline"], base + ("pipeline",))
        return ComponentDefinition(
            **common,
            input_schema=input_schema,
            output_schema=output_schema,
            ui_schema=data.get("uiSchema"),
            default_output_key=data.get("defaultOutputKey"),
            pipeline=pipeline,
        )

    def mod(self, data: dict[str, Any], base: PathTuple, common: dict[str, Any]) -> ModDefinition:
        options = data.get("options") or {}
        options_schema = self.input_schema(options.get("schema", {}), base + ("options", "schema"))
        variables = data.get("variables") or {}
        variables_schema = self.input_schema(
            variables.get("schema", {}), base + ("variables", "schema")
        )
        inner: dict[str, Definition] = {}
        for key, inner_data in (data.get("definitions") or {}).items():
            compiled = self.definition(inner_data, base + ("definitions", key), inner_id=key)
            if compiled is not None:
                inner[key] = compiled
        components = []
        for i, entry in enumerate(data["extensionPoints"]):
            path = base + ("extensionPoints", i)
            config = entry["config"]
            if "action" not in config:
                self.error(path + ("config",), "missing required key 'action' (the steps to run)")
                continue
            action = self.pipeline(config["action"], path + ("config", "action"))
            components.append(
                ModComponentDefinition(
                    index=i,
                    starter_brick_id=entry["id"],
                    label=entry.get("label", entry["id"]),
                    action=action,
                    services=dict(entry.get("services") or {}),
                    config=config,
                    location=self.source.locate(path),
                )
            )
        return ModDefinition(
            **common,
            options_schema=options_schema,
            variables_schema=variables_schema,
            inner_definitions=inner,
            components=components,
        )


def data_at(data: Any, path: PathTuple) -> Any:
    for part in path:
        data = data[part]
    return data


def compile_documents(documents: Iterable[Document]) -> CompileResult:
    """Compile loaded documents; steps are collected on each definition as ``steps``."""
    result = CompileResult()
    for document in documents:
        compiler = _Compiler(document)
        definition = compiler.document(document.data)
        if definition is not None and not compiler.result.errors:
            definition.steps = compiler.steps  # type: ignore[attr-defined]
            definition.source = document.source
            compiler.result.definitions.append(definition)
        result.extend(compiler.result)
    return result


def compile_text(text: str, file: str | None = None) -> CompileResult:
    try:
        documents = load_text(text, file)
    except DefinitionError as exc:
        return CompileResult(errors=[exc])
    return compile_documents(documents)


def iter_definition_files(path: str | os.PathLike[str]) -> list[Path]:
    """Definition files at ``path``: the file itself, or every YAML/JSON file below a folder."""
    root = Path(path)
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.suffix in DEFINITION_SUFFIXES and p.is_file())
    return [root]


def compile_path(path: str | os.PathLike[str]) -> CompileResult:
    """Compile a definition file, or every definition file in a folder (recursively)."""
    result = CompileResult()
    for file in iter_definition_files(path):
        try:
            documents = load_file(file)
        except DefinitionError as exc:
            result.errors.append(exc)
            continue
        result.extend(compile_documents(documents))
    return result


def link(definition: Definition, registry: Registry) -> list[DefinitionError]:
    """Check every step's brick id against ``registry``; warn about ignored output keys."""
    problems: list[DefinitionError] = []
    for step in getattr(definition, "steps", ()):
        brick = registry.find(step.brick_id)
        if brick is None:
            problems.append(
                UnknownBrickError(
                    step.brick_id,
                    suggestions=registry.suggest(step.brick_id),
                    location=step.location,
                    path=step.path + ("id",),
                )
            )
        elif brick.kind == "effect" and step.output_key:
            problems.append(
                DefinitionError(
                    f"{step.brick_id} is an effect brick: its output is discarded, so outputKey "
                    f"{step.output_key!r} binds nothing",
                    location=step.location,
                    path=step.path + ("outputKey",),
                    severity="warning",
                )
            )
    return problems
