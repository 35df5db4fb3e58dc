"""Expression nodes: compiled ``!var``, templates, ``!pipeline`` and ``!defer`` values.

Each node *is* its JSON form ``{"__type__": T, "__value__": V}`` (a dict subclass), so JSON
definitions, schema validation (``$ref: pipeline``) and ``json.dumps`` see exactly what PixieBrix
would, while the runtime reads the compiled part (a parsed path, a compiled template, a compiled
pipeline) from an attribute. Nodes are immutable by convention: copies share them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._model import Pipeline
    from ._paths import CompiledPath
    from ._templates import CompiledTemplate

__all__ = [
    "EXPRESSION_TYPES",
    "TEMPLATE_ENGINES",
    "DeferExpression",
    "Expression",
    "PipelineExpression",
    "TemplateExpression",
    "VarExpression",
    "is_expression_data",
]

TEMPLATE_ENGINES = ("nunjucks", "mustache", "handlebars")
EXPRESSION_TYPES = ("var", *TEMPLATE_ENGINES, "pipeline", "defer")


def is_expression_data(value: Any) -> bool:
    """True for plain loaded data of the form ``{"__type__": <known type>, "__value__": ...}``."""
    return (
        type(value) is dict and value.get("__type__") in EXPRESSION_TYPES and "__value__" in value
    )


class Expression(dict[str, Any]):
    """Base of the compiled expression nodes."""

    __brickrun_immutable__ = True

    @property
    def type(self) -> str:
        return str(self["__type__"])

    def __copy__(self) -> Expression:
        return self

    def __deepcopy__(self, memo: Mapping[int, Any]) -> Expression:
        return self


class VarExpression(Expression):
    """``!var "@input.a.b"``: evaluates to a copy of the value at the path."""

    __slots__ = ("path",)

    def __init__(self, text: str, path: CompiledPath) -> None:
        super().__init__(__type__="var", __value__=text)
        self.path = path


class TemplateExpression(Expression):
    """``!nunjucks`` / ``!mustache`` / ``!handlebars``: renders to a string."""

    __slots__ = ("template",)

    def __init__(self, engine: str, text: str, template: CompiledTemplate) -> None:
        super().__init__(__type__=engine, __value__=text)
        self.template = template


class PipelineExpression(Expression):
    """``!pipeline``: steps handed to a brick, which runs them when it chooses.

    ``env`` is the closure: the context of the step whose config held the pipeline, captured
    when that config was rendered. ``None`` until then.
    """

    __slots__ = ("env", "pipeline")

    def __init__(self, raw: Any, pipeline: Pipeline, env: Mapping[str, Any] | None = None) -> None:
        super().__init__(__type__="pipeline", __value__=raw)
        self.pipeline = pipeline
        self.env = env

    def bind(self, context: Mapping[str, Any]) -> PipelineExpression:
        """A copy closed over a snapshot of ``context`` (later bindings are not seen)."""
        return PipelineExpression(self["__value__"], self.pipeline, dict(context))


class DeferExpression(Expression):
    """``!defer``: a value handed unrendered to a brick, which renders it later.

    ``renderer`` is the compiled body (see ``_render.compile_value``); ``env`` as for pipelines.
    """

    __slots__ = ("env", "renderer")

    def __init__(
        self,
        raw: Any,
        renderer: Callable[[Mapping[str, Any]], Any],
        env: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(__type__="defer", __value__=raw)
        self.renderer = renderer
        self.env = env

    def bind(self, context: Mapping[str, Any]) -> DeferExpression:
        return DeferExpression(self["__value__"], self.renderer, dict(context))
