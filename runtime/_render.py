"""Rendering configs: compile a config tree once into a function of the step context.

Rules (SPEC §2 "Rendering a config"): expressions are evaluated; ``!pipeline``/``!defer`` pass
through untouched (closed over the context they were rendered in); in objects, keys whose value
renders to ``null`` are dropped; in arrays nulls stay. A config that is itself an expression
yields that value as it is. Static parts are computed at compile time and copied per render, so
a brick may mutate its input without affecting the definition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._expressions import (
    DeferExpression,
    Expression,
    PipelineExpression,
    TemplateExpression,
    VarExpression,
)
from ._paths import copy_value

__all__ = ["Renderer", "compile_value", "contains_expression", "is_truthy"]

Renderer = Callable[[Mapping[str, Any]], Any]

_TRUE_STRINGS = frozenset({"true", "t", "yes", "y", "on", "1"})


def is_truthy(value: Any) -> bool:
    """PixieBrix's ``boolean()`` coercion for ``if`` and ``@pixiebrix/if-else``.

    Strings are true iff trimmed lower-case is one of ``true t yes y on 1``; numbers iff ≠ 0;
    booleans as is; anything else (null, objects, arrays) is false.
    """
    if value is True or value is False:
        return value
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    if isinstance(value, int | float):
        return value != 0
    return False


def contains_expression(value: Any) -> bool:
    """True when rendering ``value`` depends on the context."""
    if isinstance(value, Expression):
        return True
    if isinstance(value, dict):
        return any(contains_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_expression(v) for v in value)
    return False


def _drop_nulls(value: Any) -> Any:
    """Apply the object rule to a static tree: ``null`` entries of objects disappear."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _constant(value: Any) -> Renderer:
    if value == {} and type(value) is dict:  # `config: {}`, the most common config of all
        return lambda _ctx: {}
    if isinstance(value, dict | list):
        return lambda _ctx: copy_value(value)
    return lambda _ctx: value


def compile_value(value: Any) -> Renderer:
    """Compile a (loaded, expression-compiled) config value into ``render(context) -> value``."""
    if isinstance(value, VarExpression):
        return value.path.evaluate
    if isinstance(value, TemplateExpression):
        return value.template.render
    if isinstance(value, PipelineExpression | DeferExpression):
        return value.bind
    if not contains_expression(value):
        return _constant(_drop_nulls(value))
    if isinstance(value, dict):
        # Keys keep their definition order; static entries are copied, dynamic ones rendered.
        entries = tuple(
            (k, compile_value(v) if contains_expression(v) else _constant(_drop_nulls(v)))
            for k, v in value.items()
            if v is not None
        )

        def render_object(ctx: Mapping[str, Any]) -> Any:
            out = {}
            for key, render in entries:
                rendered = render(ctx)
                if rendered is not None:
                    out[key] = rendered
            return out

        return render_object
    assert isinstance(value, list)
    items = tuple(compile_value(v) for v in value)
    return lambda ctx: [render(ctx) for render in items]
