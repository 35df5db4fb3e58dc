"""JSON Schema for brickrun: local schema store, input validation, defaults, definition checks.

The only module that imports jsonschema. Input schemas use draft 2019-09 semantics; the
definition-file schemas (``definitions/schemas/*.json``) are draft-07 so editors can use them.
``$ref``s resolve only against the schemas shipped in ``definitions/schemas/`` (keyed by their
``$id``); nothing is ever fetched over the network.

Speed: a reused ``jsonschema`` validator costs ~20 µs per call on a small object on this
machine class, more than the whole per-step budget. So ``InputValidator.validate`` first asks
``jsonschema_rs`` (~0.4 µs) whether the instance is valid, and only when it is not does the
authoritative ``jsonschema`` validator produce the error list users read. When the two
disagree, ``jsonschema`` decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import jsonschema_rs
import referencing
import referencing.exceptions
from referencing.jsonschema import DRAFT7, DRAFT201909

from ._expressions import Expression
from ._paths import copy_value
from .errors import format_path

__all__ = [
    "PIPELINE_SCHEMA_ID",
    "SERVICE_SCHEMA_PREFIX",
    "InputValidator",
    "apply_defaults",
    "check_input_schema",
    "definition_schema",
    "definition_schema_errors",
    "integration_properties",
    "normalize_schema",
    "pipeline_properties",
    "schema_store",
]

PIPELINE_SCHEMA_ID = "https://app.pixiebrix.com/schemas/pipeline"
SERVICE_SCHEMA_PREFIX = "https://app.pixiebrix.com/schemas/services/"

# Keywords that make a mapping a real schema rather than PixieBrix's "just the properties" form.
_SCHEMA_KEYWORDS = frozenset(
    {
        "type", "properties", "$ref", "$schema", "$id", "$defs", "definitions", "allOf", "anyOf",
        "oneOf", "not", "if", "then", "else", "enum", "const", "required", "items",
        "additionalProperties", "patternProperties", "title", "description", "default",
        "format", "minimum", "maximum", "minLength", "maxLength", "pattern", "examples",
        "unevaluatedProperties", "propertyNames", "dependentRequired", "dependentSchemas",
    }
)  # fmt: skip


def _strip_fragment(uri: str) -> str:
    return uri[:-1] if uri.endswith("#") else uri


@cache
def schema_store() -> dict[str, dict[str, Any]]:
    """Every schema shipped in ``definitions/schemas/``, keyed by ``$id`` (no trailing ``#``)."""
    store: dict[str, dict[str, Any]] = {}
    root = resources.files("brickrun.definitions").joinpath("schemas")

    def walk(folder: Any) -> Iterator[Any]:
        for entry in folder.iterdir():
            if entry.is_dir():
                yield from walk(entry)
            elif entry.name.endswith(".json"):
                yield entry

    for entry in walk(root):
        schema = json.loads(entry.read_text(encoding="utf-8"))
        store[_strip_fragment(schema["$id"])] = schema
    return store


@cache
def _registry() -> referencing.Registry[Any]:
    resources_ = []
    for uri, schema in schema_store().items():
        spec = DRAFT7 if "draft-07" in schema.get("$schema", "") else DRAFT201909
        resources_.append((uri, spec.create_resource(schema)))
    # attrs-made class: mypy does not see its ``retrieve`` field in the constructor
    registry: referencing.Registry[Any] = referencing.Registry(retrieve=_retrieve_resource)  # type: ignore[call-arg]
    return registry.with_resources(resources_)


def _generic_service(uri: str) -> dict[str, Any] | None:
    """Any integration kind (``.../schemas/services/<id>``) is an object; the shipped ones may
    say more. ``None`` for every other unknown URI."""
    if uri.startswith(SERVICE_SCHEMA_PREFIX):
        return {
            "$id": uri,
            "type": "object",
            "title": f"Integration {uri[len(SERVICE_SCHEMA_PREFIX) :]}",
        }
    return None


def _retrieve_local(uri: str) -> Any:
    """jsonschema_rs retriever: local schemas only; anything else is an error, never a fetch."""
    try:
        return schema_store()[_strip_fragment(uri)]
    except KeyError:
        generic = _generic_service(_strip_fragment(uri))
        if generic is None:
            raise KeyError(f"unknown schema {uri}") from None
        return generic


def _retrieve_resource(uri: str) -> referencing.Resource[Any]:
    generic = _generic_service(_strip_fragment(uri))
    if generic is None:
        raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]
    return DRAFT201909.create_resource(generic)


def normalize_schema(schema: Any) -> dict[str, Any]:
    """Turn PixieBrix's shorthand (a bare properties map) into an object schema.

    ``{}`` means "anything". A mapping with any JSON Schema keyword is returned as is.
    """
    if not isinstance(schema, Mapping):
        return {}
    if not schema or any(k in _SCHEMA_KEYWORDS for k in schema):
        return dict(schema)
    if all(isinstance(v, Mapping) for v in schema.values()):
        return {"type": "object", "properties": dict(schema)}
    return dict(schema)


def _iter_refs(
    schema: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield path + (key,), value
            else:
                yield from _iter_refs(value, path + (key,))
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from _iter_refs(value, path + (i,))


def check_input_schema(schema: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems with a brick's input (or output) schema: ``[(path inside schema, message)]``.

    Checks the schema against the draft 2019-09 metaschema and that every remote ``$ref`` is a
    schema shipped with brickrun.
    """
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for error in jsonschema.Draft201909Validator(
        jsonschema.Draft201909Validator.META_SCHEMA
    ).iter_errors(schema):
        problems.append((tuple(error.absolute_path), f"invalid JSON Schema: {error.message}"))
    store = schema_store()
    for path, ref in _iter_refs(schema):
        if ref.startswith("#"):
            continue
        base = _strip_fragment(ref.split("#", 1)[0] if "#" in ref[:-1] else ref)
        if base not in store and _generic_service(base) is None:
            known = ", ".join(sorted(u for u in store if u.startswith("https://app.pixiebrix")))
            problems.append(
                (
                    path,
                    f"unknown schema $ref {ref!r}; brickrun never fetches schemas over the "
                    f"network; expected one of: {known}",
                )
            )
    return problems


def _ref_of(prop_schema: Any) -> str | None:
    if isinstance(prop_schema, Mapping) and isinstance(prop_schema.get("$ref"), str):
        return _strip_fragment(prop_schema["$ref"])
    return None


def integration_properties(schema: Mapping[str, Any]) -> dict[str, str]:
    """Input properties whose schema is an integration ``$ref``: ``{property: integration id}``."""
    found: dict[str, str] = {}
    for name, prop in (schema.get("properties") or {}).items():
        ref = _ref_of(prop)
        if ref and ref.startswith(SERVICE_SCHEMA_PREFIX):
            found[name] = ref[len(SERVICE_SCHEMA_PREFIX) :]
    return found


def pipeline_properties(schema: Mapping[str, Any]) -> frozenset[str]:
    """Input properties declared as pipelines (``$ref`` to the pipeline schema)."""
    return frozenset(
        name
        for name, prop in (schema.get("properties") or {}).items()
        if _ref_of(prop) == PIPELINE_SCHEMA_ID
    )


def apply_defaults(schema: Mapping[str, Any], instance: Any) -> Any:
    """Fill missing object properties from their schema ``default`` (recursively through
    ``properties``). Returns the instance itself when nothing was missing, else a new dict."""
    props = schema.get("properties")
    if not props or not isinstance(instance, dict):
        return instance
    out = instance
    for name, prop in props.items():
        if not isinstance(prop, Mapping):
            continue
        if name not in out:
            if "default" in prop:
                if out is instance:
                    out = dict(instance)
                out[name] = copy_value(prop["default"])
        elif "properties" in prop:
            inner = apply_defaults(prop, out[name])
            if inner is not out[name]:
                if out is instance:
                    out = dict(instance)
                out[name] = inner
    return out


def light(instance: dict[str, Any]) -> dict[str, Any]:
    """Top-level ``!pipeline``/``!defer`` values replaced by empty stand-ins of the same type.

    Their bodies were checked when the definition was compiled; handing every step of a body to
    the validator on each call would dominate the cost of steps like ``@pixiebrix/run``.
    """
    for value in instance.values():
        if isinstance(value, Expression):
            return {
                k: (
                    {"__type__": v["__type__"], "__value__": _STAND_IN[v["__type__"]]}
                    if isinstance(v, Expression)
                    else v
                )
                for k, v in instance.items()
            }
    return instance


_STAND_IN: dict[str, Any] = {
    "pipeline": [],
    "defer": {},
    "var": "",
    "nunjucks": "",
    "mustache": "",
    "handlebars": "",
}


class InputValidator:
    """Validates brick inputs against one schema (draft 2019-09), reusing compiled validators."""

    __slots__ = ("_fast", "_has_expressions", "_slow", "schema")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = dict(schema)
        # Only schemas that take !pipeline / !defer inputs need their stand-ins (see ``light``).
        self._has_expressions = any(
            ref.rstrip("#").endswith(("/schemas/pipeline", "/schemas/defer"))
            for _, ref in _iter_refs(self.schema)
        )
        self._slow = jsonschema.Draft201909Validator(self.schema, registry=_registry())
        try:
            self._fast: Any = jsonschema_rs.Draft201909Validator(
                self.schema, retriever=_retrieve_local
            )
        except Exception:  # an exotic schema the fast path cannot compile: stay correct
            self._fast = None

    def errors(self, instance: Any) -> list[dict[str, str]]:
        """``[]`` when valid, else ``[{"path": "a.b[0]", "message": ...}]`` sorted by path."""
        if self._has_expressions and type(instance) is dict:
            instance = light(instance)
        fast = self._fast
        if fast is not None:
            try:
                if fast.is_valid(instance):
                    return []
            except Exception:  # values the Rust side cannot convert: let jsonschema judge
                pass
        try:
            found = [
                {"path": format_path(list(e.absolute_path)), "message": e.message}
                for e in self._slow.iter_errors(instance)
            ]
        except referencing.exceptions.Unresolvable as exc:
            return [{"path": "", "message": f"cannot resolve schema reference: {exc}"}]
        return sorted(found, key=lambda e: (e["path"], e["message"]))


@cache
def definition_schema(kind: str) -> dict[str, Any]:
    """The draft-07 schema of a definition kind (``component``, ``recipe``, ...)."""
    return schema_store()[f"https://brickrun.dev/schemas/{kind}.json"]


@cache
def _definition_validator(kind: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(definition_schema(kind), registry=_registry())


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(shown)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        if value.get("__type__") in {"var", "nunjucks", "mustache", "handlebars"}:
            return f"!{value['__type__']} expression"
        return "a mapping"
    return type(value).__name__


def _message(error: jsonschema.ValidationError) -> str:
    """Say what was found and what was expected, in the words of a definition author."""
    # jsonschema types these attributes loosely (they may be "unset"); here they are always set.
    instance: Any = error.instance
    schema: Any = error.schema
    expected: Any = error.validator_value
    found = _describe(instance)
    v = error.validator
    if v == "required":
        missing = [p for p in expected if p not in instance]
        return f"missing required key {missing[0]!r}" if missing else error.message
    if v == "additionalProperties":
        allowed = sorted((schema.get("properties") or {}).keys())
        extra = sorted(set(instance) - set(allowed))
        return f"unknown key {extra[0]!r}; expected one of: {', '.join(allowed)}"
    if v == "type":
        expected_text = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {expected_text}, found {found}"
    if v == "enum":
        options = ", ".join(json.dumps(o) for o in expected)
        return f"expected one of {options}, found {found}"
    if v == "const":
        return f"expected {json.dumps(expected)}, found {found}"
    if v == "pattern":
        described = schema.get("description")
        if described:
            return f"expected {described}, found {found}"
        return f"{found} does not match the expected pattern {expected}"
    if v == "minItems":
        return f"expected at least {expected} item(s), found {len(instance)}"
    if v == "minLength":
        return f"expected a non-empty string, found {found}"
    if v == "not":
        described = schema.get("description")
        return f"{found} is not allowed here" + (f"; expected {described}" if described else "")
    if v == "minimum":
        return f"expected a number >= {expected}, found {found}"
    return error.message


def definition_schema_errors(
    kind: str, document: Any
) -> list[tuple[tuple[str | int, ...], str, bool]]:
    """Schema violations of a definition: ``[(path, message, at_key)]`` in document order.

    ``at_key`` tells the caller to point at the offending key rather than at its value (unknown
    keys).
    """
    out: list[tuple[tuple[str | int, ...], str, bool]] = []
    for error in _definition_validator(kind).iter_errors(document):
        path = tuple(error.absolute_path)
        instance: Any = error.instance
        schema: Any = error.schema
        expected: Any = error.validator_value
        if error.validator == "additionalProperties":
            allowed = set((schema.get("properties") or {}).keys())
            for extra in sorted(set(instance) - allowed):
                msg = _message(error).split(";")[1]
                out.append((path + (extra,), f"unknown key {extra!r};{msg}", True))
            continue
        if error.validator == "required":
            for missing in expected:
                if missing not in instance:
                    out.append((path, f"missing required key {missing!r}", False))
            continue
        out.append((path, _message(error), False))
    return out
