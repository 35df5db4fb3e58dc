"""Editor support: the JSON Schema the YAML language server validates definition and test
files with, and the VS Code settings that associate it (``brickrun schema``, ``brickrun init``).

The language server reads a tagged node by its node kind once ``yaml.customTags`` names the tag:
``!var "@input.x"`` is a string, a ``!pipeline`` sequence a list, a ``!defer`` mapping an object.
So the schema accepts an *expression* wherever a step's config has a schema: a string that looks
like one (starts with ``@``, or holds ``{{``/``{%``) or the JSON form ``{__type__, __value__}``.
A step's ``id`` completes from the bricks known when the schema was generated, and ``if``/``then``
per brick id checks its ``config`` against that brick's input schema, minus what the runtime fills
in itself (schema defaults, integration inputs) and where the schema is static enough (no local
``$ref``, no draft 2019-09-only keywords). One schema serves both file kinds: a document with
``kind: test`` is checked as a test file, any other as a definition.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import _schema
from .._bricks import Brick
from .._expressions import EXPRESSION_TYPES
from .._registry import Registry, builtin_registry
from .._testfile import definition_files, golden_test_schema

__all__ = [
    "DEFAULT_GLOBS",
    "SCHEMA_FILE",
    "build_editor_schema",
    "check_vscode",
    "known_bricks",
    "vscode_settings",
    "write_vscode",
]

KINDS = ("component", "extensionPoint", "recipe", "service")
SCHEMA_FILE = ".vscode/brickrun.schema.json"
DEFAULT_GLOBS = (
    "bricks/**/*.yaml",
    "bricks/**/*.yml",
    "mods/**/*.yaml",
    "mods/**/*.yml",
    "**/*.test.yaml",
    "**/*.test.yml",
)
# Scopes whose bricks all ship with brickrun: an unknown id there is a typo, not a user brick.
_RESERVED_SCOPES = r"^@(pixiebrix|pixies)/"
# What a tagged template or variable looks like to the language server (plain text).
_EXPRESSION_TEXT = r"^@|\{\{|\{%"
# Draft 2019-09 keywords a draft-07 validator would silently ignore: such schemas are skipped.
_NOT_DRAFT_07 = frozenset(
    {
        "$defs", "$anchor", "$recursiveRef", "$recursiveAnchor", "$dynamicRef",
        "$dynamicAnchor", "$vocabulary", "unevaluatedProperties", "unevaluatedItems",
        "dependentSchemas", "dependentRequired", "maxContains", "minContains",
    }
)  # fmt: skip
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SUBSCHEMAS = ("items", "additionalItems", "additionalProperties", "then", "else")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def known_bricks(definitions: Iterable[str | os.PathLike[str]] = ()) -> list[Brick]:
    """The built-ins, shipped bricks, entry-point bricks and the bricks defined in
    ``definitions`` (files or folders; test files are left out), sorted by id."""
    registry = Registry(parent=builtin_registry())
    registry.load_entry_points()
    for path in definitions:
        for file in definition_files(path):
            registry.load_path(file)
    return list(registry)


def _static(node: Any) -> bool:
    """True when a draft-07 validator reads ``node`` as the runtime's validator does."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _NOT_DRAFT_07:
                return False
            if key == "$ref" and isinstance(value, str) and value.startswith("#"):
                return False
            if not _static(value):
                return False
    elif isinstance(node, list):
        return all(_static(item) for item in node)
    return True


def _filled(prop: Any) -> bool:
    """The runtime supplies this input when it is missing: it has a default, or it is an
    integration input (filled with the configured integration)."""
    if not isinstance(prop, Mapping):
        return False
    ref = prop.get("$ref")
    integration = isinstance(ref, str) and ref.startswith(_schema.SERVICE_SCHEMA_PREFIX)
    return "default" in prop or integration


class _Converter:
    """A brick's input schema as a draft-07 config schema that tolerates expressions."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = names

    def ref(self, value: str) -> str | None:
        base = value.split("#", 1)[0].rstrip("#")
        if base == _schema.PIPELINE_SCHEMA_ID:
            return "#/definitions/pipelineValue"
        if base in self.names:
            return f"#/definitions/{self.names[base]}"
        return None  # an integration kind brickrun does not ship: anything goes

    def convert(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node  # true / false schemas
        out: dict[str, Any] = {}
        found = node.get("properties")
        properties: dict[str, Any] = found if isinstance(found, dict) else {}
        for key, value in node.items():
            if key in ("$schema", "$id", "$comment"):
                continue
            if key == "$ref":
                target = self.ref(value) if isinstance(value, str) else None
                if target is not None:
                    out[key] = target
            elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
                out[key] = {name: self.convert(item) for name, item in value.items()}
            elif key in _SUBSCHEMAS:
                out[key] = (
                    [self.convert(v) for v in value]
                    if isinstance(value, list)
                    else self.convert(value)
                )
            elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
                out[key] = [self.convert(v) for v in value]
            elif key == "required" and isinstance(value, list):
                out[key] = [name for name in value if not _filled(properties.get(name))]
            else:  # keywords, and subschemas read as is (not, if, contains, propertyNames)
                out[key] = copy.deepcopy(value)
        return {"anyOf": [out, {"$ref": "#/definitions/expression"}]}


def _meaningful(schema: Mapping[str, Any]) -> bool:
    """Whether checking a config against ``schema`` can find anything."""
    return any(
        key in schema for key in ("properties", "required", "additionalProperties", "type", "$ref")
    )


def _step_schema(step: dict[str, Any], bricks: Sequence[Brick], convert: _Converter) -> None:
    """Complete brick ids and check each known brick's config (``step`` is changed)."""
    ids = [brick.id for brick in bricks]
    properties = step["properties"]
    properties["id"] = {
        "type": "string",
        "minLength": 1,
        "description": "the brick to run: a brick id, or a key of the mod's inner definitions",
        "anyOf": [
            {"enum": ids},
            {"not": {"pattern": _RESERVED_SCOPES}},
        ],
        "enumDescriptions": [f"{b.name}: {b.description}".strip(": ") for b in bricks],
    }
    clauses = []
    for brick in bricks:
        schema = brick.input_schema
        if not _meaningful(schema) or not _static(schema):
            continue
        config = convert.convert(schema)
        config["description"] = f"{brick.name}: {brick.description}".strip(": ")
        clauses.append(
            {
                "if": {"properties": {"id": {"const": brick.id}}, "required": ["id"]},
                "then": {"properties": {"config": config}},
            }
        )
    step["allOf"] = clauses


def _steps(ref: str = "#/definitions/step") -> dict[str, Any]:
    return {"type": "array", "items": {"$ref": ref}}


def _definition_document(definitions: dict[str, Any]) -> dict[str, Any]:
    """What any definition document must be; ``kind`` picks the kind's schema."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {"apiVersion": {"const": "v3"}, "kind": {"enum": list(KINDS)}},
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {"$ref": f"#/definitions/{kind}"},
            }
            for kind in KINDS
            if kind in definitions
        ],
    }


def _inner(definition: dict[str, Any]) -> dict[str, Any]:
    """A kind's schema for a mod's inner definition (no metadata or apiVersion needed)."""
    inner = copy.deepcopy(definition)
    inner["required"] = [k for k in inner.get("required", []) if k not in ("metadata",)]
    return inner


def _mod_schema(recipe: dict[str, Any], definitions: dict[str, Any]) -> None:
    """Check mod components' actions as steps and inner definitions by kind (changes
    ``recipe``)."""
    properties = recipe["properties"]
    entry = properties["extensionPoints"]["items"]
    entry["properties"]["config"] = {
        "type": "object",
        "description": "the mod component's configuration; action: the steps to run",
        "properties": {"action": {"anyOf": [_steps(), {"$ref": "#/definitions/step"}]}},
        "required": ["action"],
    }
    inner_kinds = ("component", "extensionPoint")
    properties["definitions"]["additionalProperties"] = {
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": list(inner_kinds)}},
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": _inner(definitions[kind]),
            }
            for kind in inner_kinds
        ],
    }


def build_editor_schema(bricks: Iterable[Brick]) -> dict[str, Any]:
    """The self-contained draft-07 schema of definition files and test files (see the
    module docstring); ``bricks`` are the ones whose ids and configs it knows."""
    store = _schema.schema_store()
    names = {uri: uri.rsplit("/", 1)[-1].removesuffix(".json") for uri in store}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    base = value.split("#", 1)[0].rstrip("#")
                    out[key] = f"#/definitions/{names[base]}" if base in names else value
                elif key in ("$id", "$schema"):
                    continue
                else:
                    out[key] = rewrite(value)
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    definitions: dict[str, Any] = {names[uri]: rewrite(schema) for uri, schema in store.items()}
    ordered = sorted(bricks, key=lambda b: b.id)
    definitions["expression"] = {
        "description": "an expression: a !var, !nunjucks, !mustache or !handlebars value "
        "(text starting with @, or holding {{ or {%), or its JSON form {__type__, __value__}",
        "anyOf": [
            {"type": "string", "pattern": _EXPRESSION_TEXT},
            {
                "type": "object",
                "required": ["__type__", "__value__"],
                "properties": {"__type__": {"enum": list(EXPRESSION_TYPES)}},
            },
        ],
    }
    definitions["pipelineValue"] = {
        "description": "a !pipeline: a list of steps handed to the brick",
        "anyOf": [
            _steps(),
            {
                "type": "object",
                "required": ["__type__", "__value__"],
                "properties": {"__type__": {"const": "pipeline"}, "__value__": _steps()},
            },
        ],
    }
    _step_schema(definitions["step"], ordered, _Converter(names))
    _mod_schema(definitions["recipe"], definitions)
    test_file = golden_test_schema()
    for key in ("$schema", "$id", "title"):
        test_file.pop(key, None)
    definitions["testFile"] = test_file
    definitions["definitionDocument"] = _definition_document(definitions)
    from ._definitions import CUSTOM_TAGS

    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://brickrun.dev/schemas/definition.json",
        "title": "brickrun definition or test file (apiVersion v3)",
        "if": {"properties": {"kind": {"const": "test"}}, "required": ["kind"]},
        "then": {"$ref": "#/definitions/testFile"},
        "else": {"$ref": "#/definitions/definitionDocument"},
        "definitions": definitions,
        "x-yaml-custom-tags": list(CUSTOM_TAGS),
        "x-brickrun-bricks": [brick.id for brick in ordered],
    }


def vscode_settings(
    schema_file: str = SCHEMA_FILE, globs: Sequence[str] = DEFAULT_GLOBS
) -> dict[str, Any]:
    """The YAML extension's settings: which files the schema checks, and the custom tags."""
    from ._definitions import CUSTOM_TAGS

    return {"yaml.schemas": {schema_file: list(globs)}, "yaml.customTags": list(CUSTOM_TAGS)}


class SettingsError(Exception):
    """An existing settings file cannot be merged (it is not plain JSON)."""


def _merge_settings(existing: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    merged = dict(existing)
    schemas = merged.get("yaml.schemas")
    merged["yaml.schemas"] = {**(schemas if isinstance(schemas, dict) else {})}
    merged["yaml.schemas"].update(ours["yaml.schemas"])
    tags = merged.get("yaml.customTags")
    tags = list(tags) if isinstance(tags, list) else []
    merged["yaml.customTags"] = tags + [t for t in ours["yaml.customTags"] if t not in tags]
    return merged


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError) as exc:
        raise SettingsError(
            f"{path} is not plain JSON ({exc}); add these settings to it by hand"
        ) from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path} does not hold a JSON object; add these settings by hand")
    return data


def check_vscode(folder: str | os.PathLike[str]) -> None:
    """Raise ``SettingsError`` when ``write_vscode`` could not merge the existing settings."""
    for name in ("settings.json", "extensions.json"):
        _read_json(Path(folder) / ".vscode" / name)


def write_vscode(
    folder: str | os.PathLike[str], schema: Mapping[str, Any], globs: Sequence[str] = DEFAULT_GLOBS
) -> list[Path]:
    """Write ``.vscode/brickrun.schema.json`` below ``folder`` and merge the YAML extension's
    settings into ``.vscode/settings.json`` (and recommend the extension in
    ``.vscode/extensions.json``); returns the files written.

    Raises ``SettingsError`` (writing nothing) when an existing file is not plain JSON (VS Code
    allows comments there; brickrun would rather not rewrite what it cannot parse).
    """
    root = Path(folder)
    vscode = root / ".vscode"
    settings_file = vscode / "settings.json"
    extensions_file = vscode / "extensions.json"
    settings = _merge_settings(_read_json(settings_file), vscode_settings(SCHEMA_FILE, globs))
    extensions = _read_json(extensions_file)
    recommended = extensions.get("recommendations")
    recommended = list(recommended) if isinstance(recommended, list) else []
    if "redhat.vscode-yaml" not in recommended:
        recommended.append("redhat.vscode-yaml")
    extensions["recommendations"] = recommended
    vscode.mkdir(parents=True, exist_ok=True)
    written = []
    for path, data in (
        (root / SCHEMA_FILE, schema),
        (settings_file, settings),
        (extensions_file, extensions),
    ):
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
