"""Text templates: ``!nunjucks`` in Jinja2's immutable sandbox, ``!mustache``, ``!handlebars``.

The only module that imports Jinja2, chevron or pybars. Public contract (SPEC §2, PixieBrix
semantics §5):

* ``compile_template(engine, source)`` parses once (cached: the same source gives the same
  object); syntax errors raise ``DefinitionError('Invalid template: <reason>. Template:
  "<snippet>"')`` without a location (the caller adds file, line and path).
* ``CompiledTemplate.render(context)`` always returns a string; failures raise
  ``InvalidTemplateError`` with the same message shape. ``context`` maps ``"@input"``-style keys
  to data; values are interpolated, never rendered again (brick outputs are data).
* Every ``{{ }}`` output is stringified like JavaScript (``true``, ``""`` for null, ``2`` for
  ``2.0``, shortest float repr) except that lists and objects become compact JSON (SPEC §13).
  No HTML escaping in any engine.

nunjucks (Jinja2): a source with neither ``{{`` nor ``{%`` is returned unrendered. ``@name``
inside ``{{ }}``/``{% %}`` (outside string literals) is rewritten to the identifier
``_at_name``, and top-level context keys are mapped the same way at render time (``-``
becomes ``_`` as nunjucks does). Undefined names and lookups on them render ``""``. Lookups
reach dict keys and list items only (plus ``length`` of lists and strings, and ``loop.*``):
no Python attribute of any value is reachable, so ``__class__``, ``items`` or ``pop`` are
simply undefined. Resource guards (each a clear render error): ``range`` of at most 10,000
items, ``*``/``**``/``+``/``~``/``%``/``format``/``replace``/``join``/``center``/``indent``/
``wordwrap`` results bounded before they are built, at most 100,000 loop iterations and
calls per render, and at most 1,000,000 characters of output. ``lipsum``, ``cycler``,
``joiner`` and ``namespace`` are removed; ``include``/``import``/``extends`` are rejected at
compile time. ``+`` with a string operand concatenates stringified operands and ``/`` by zero
gives ``Infinity``/``NaN``, as in JavaScript; arithmetic on undefined values is a render error.

mustache: chevron's tokenizer (spec whitespace rules, delimiters, section checks) with our own
renderer: dotted names may start with ``@``, lookups are own keys only (mustache.js rules for
sections and context stack), missing names render ``""``, partials render ``""``.

handlebars: pybars3 with its data access, stringification and helpers replaced (no attribute
access, no escaping); ``{{@input.x}}`` renders ``""`` as in PixieBrix while ``{{[@input].x}}``
reaches the ``@input`` key, as handlebars.js does. pybars3 generates Python source from the
template, so path segments and string literals are checked before it compiles anything, and
its parser's silent dropping of malformed tags is caught by a tag count. pybars is imported on
first use (it takes ~0.7 s to import).

Cost (CPython 3.11 on the shared 2-core development machine, best of 7 runs): rendering the
cached ``"{{ @input.a }}-{{ @input.b }}"`` takes about 4.3 µs (jinja2's own ``Template.render``
of the same template, measured in the same process: about 9 µs); the same mustache template
about 2.2 µs; handlebars about 12 µs.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NoReturn
from uuid import UUID

from jinja2 import ChainableUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.filters import do_batch, do_wordwrap, sync_do_slice
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import Context, LoopContext, new_context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context, pass_environment
from jinja2.visitor import NodeTransformer

from .errors import DefinitionError, InvalidTemplateError

if TYPE_CHECKING:
    from jinja2 import Environment, Template

__all__ = [
    "CompiledTemplate",
    "compile_template",
    "looks_like_template",
    "rewrite_at_names",
    "template_names",
    "to_text",
]

ENGINES: Final = ("nunjucks", "mustache", "handlebars")

#: Largest rendered output, and largest string any guarded operation may build (characters).
MAX_OUTPUT: Final = 1_000_000
#: Largest list a guarded operation (``*``, ``+``, ``batch``, ``slice``) may build.
MAX_LIST: Final = 100_000
#: Most items ``range()`` may produce.
MAX_RANGE: Final = 10_000
#: Loop iterations plus calls allowed in one render: bounds CPU time (100,000 macro calls take
#: about 0.4 s) while 100 loops over 1,000 items still pass.
MAX_STEPS: Final = 100_000
#: Largest integer ``*`` and ``**`` may produce, in bits (about 3,000 decimal digits).
MAX_INT_BITS: Final = 10_000
#: Largest field width or precision in ``%`` formatting, ``center`` and ``indent``.
MAX_WIDTH: Final = 10_000

_SNIPPET_LENGTH: Final = 32
_AT_PREFIX: Final = "_at_"


class _RenderError(Exception):
    """A render failure the author can act on (a resource limit, a missing helper)."""


# --------------------------------------------------------------------------------------------
# JavaScript-like stringification


def _js_number(value: float) -> str:
    """``Number.prototype.toString`` for a float: ``2``, ``0.30000000000000004``, ``1e+21``."""
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 9007199254740992:  # 2**53: exact, shortest
        return str(int(value))
    text = repr(value)
    if "e" not in text and not text.endswith(".0") and abs(value) >= 1e-6:
        return text
    # Python's exponent notation differs from JS's (1e-07 vs 1e-7): rebuild from the digits
    # of the shortest repr, as ECMAScript's Number::toString does.
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    all_digits = "".join(map(str, digit_tuple))
    digits = all_digits.rstrip("0")
    k = len(digits)
    n = int(exponent) + len(all_digits)  # abs(value) == 0.<digits> * 10**n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{sign}{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return f"{sign}0.{'0' * -n}{digits}"
    e = n - 1
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _json_write(value: Any, out: list[str]) -> None:
    cls = type(value)
    if cls is str:
        out.append(json.dumps(value, ensure_ascii=False))
    elif value is None or isinstance(value, Undefined):
        out.append("null")
    elif cls is bool:
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_js_number(value) if math.isfinite(value) else "null")
    elif isinstance(value, Mapping):
        out.append("{")
        first = True
        for key, item in value.items():
            if isinstance(item, Undefined):
                continue  # JSON.stringify omits undefined members
            if not first:
                out.append(",")
            first = False
            out.append(
                json.dumps(key if isinstance(key, str) else to_text(key), ensure_ascii=False)
            )
            out.append(":")
            _json_write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple | range | Iterator):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _json_write(item, out)
        out.append("]")
    elif isinstance(value, str):
        out.append(json.dumps(str.__str__(value), ensure_ascii=False))
    elif isinstance(value, Decimal | datetime | date | time | UUID):
        out.append(json.dumps(to_text(value), ensure_ascii=False))
    else:
        out.append("null")


def to_text(value: Any) -> str:
    """Stringify a value the way a template prints it (JavaScript's ``String()``, but JSON for
    lists and objects).

    ``True``→``"true"``, ``None`` and undefined→``""``, ``2.0``→``"2"``, floats as their
    shortest repr in JS notation, lists/dicts (and iterators, ranges) as compact JSON,
    ``Decimal``/``UUID`` via ``str``, dates as ISO 8601. Anything else (functions, classes,
    template internals) is not data and prints as ``""``, so no Python object description
    can leak into output.
    """
    cls = type(value)
    if cls is str:
        return value  # type: ignore[no-any-return]
    if cls is int:
        return int.__repr__(value)
    if cls is bool:
        return "true" if value else "false"
    if cls is float:
        return _js_number(value)
    if value is None or isinstance(value, Undefined):
        return ""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, Mapping | list | tuple | range | Iterator):
        # Filters such as reverse, map and select return iterators; nunjucks returns arrays.
        out: list[str] = []
        _json_write(value, out)
        return "".join(out)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _js_number(float(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    return ""


# --------------------------------------------------------------------------------------------
# Errors


def _snippet(source: str) -> str:
    """PixieBrix's template excerpt: whitespace collapsed, trimmed, 32 characters + ``...``."""
    text = " ".join(source.split())
    return text[:_SNIPPET_LENGTH] + "..." if len(text) > _SNIPPET_LENGTH else text


def _message(source: str, reason: str) -> str:
    reason = re.sub(r"\b_at_(\w)", r"@\1", reason).strip().rstrip(".")
    return f'Invalid template: {reason}. Template: "{_snippet(source)}"'


def _definition_error(source: str, reason: str) -> DefinitionError:
    return DefinitionError(_message(source, reason))


def _with_line(reason: str, line: int | None) -> str:
    return f"line {line}: {reason}" if line else reason


def _reason(exc: BaseException) -> str:
    """The author-facing reason of a render failure (no Python internals when avoidable)."""
    if isinstance(exc, RecursionError):
        return "the template recurses too deeply"
    if isinstance(exc, MemoryError):
        return "the template needs too much memory"
    text = str(exc) if not isinstance(exc, TemplateSyntaxError) else exc.message or ""
    if isinstance(exc, _RenderError) or type(exc).__module__.startswith("jinja2"):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# The compiled template


class CompiledTemplate:
    """A parsed template; ``render`` is safe to call concurrently.

    ``engine`` is ``"nunjucks"``, ``"mustache"`` or ``"handlebars"``; ``source`` the text as
    written; ``names`` the top-level ``@names`` the template reads (best effort).
    """

    __slots__ = ("_render", "engine", "names", "source")

    engine: str
    source: str
    names: frozenset[str]

    def __init__(
        self,
        engine: str,
        source: str,
        render: Callable[[Mapping[str, Any]], str],
        names: Iterable[str] = (),
    ) -> None:
        self.engine = engine
        self.source = source
        self.names = frozenset(names)
        self._render = render

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.engine!r}, {_snippet(self.source)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (compile_template, (self.engine, self.source))

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with ``context`` (keys like ``"@input"``); raises ``InvalidTemplateError``."""
        return self._render(context)


def _constant(source: str) -> Callable[[Mapping[str, Any]], str]:
    def render(context: Mapping[str, Any]) -> str:
        return source

    return render


# --------------------------------------------------------------------------------------------
# nunjucks: @-name rewriting

_RAW_BEGIN: Final = re.compile(r"\{%[-+]?\s*raw\s*[-+]?%\}")
_RAW_END: Final = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}")
_AT_NAME: Final = re.compile(r"@([^\W\d]\w*)")
_OPENERS: Final = re.compile(r"\{[{%#]")


def _string_end(source: str, start: int) -> int:
    """The index after the string literal that starts at ``start`` (or the end of source)."""
    quote = source[start]
    i = start + 1
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if char == quote:
            return i + 1
        i += 1
    return len(source)


def rewrite_at_names(source: str) -> str:
    """Rewrite ``@name`` to ``_at_name`` inside ``{{ }}`` and ``{% %}`` blocks only.

    Literal text, comments, ``{% raw %}`` bodies and string literals inside blocks are left
    as they are (so ``a@b.com`` in text or in ``"a@b.com"`` survives). Braces are balanced the
    way Jinja's lexer balances them, so ``{{ {'a': {'b': 1}} }}`` ends at the right ``}}``.
    Line numbers are unchanged, so Jinja's line numbers match the source.
    """
    out: list[str] = []
    i = 0
    n = len(source)
    while i < n:
        match = _OPENERS.search(source, i)
        if match is None:
            out.append(source[i:])
            break
        start = match.start()
        out.append(source[i:start])
        opener = match.group()
        if opener == "{#":
            close = source.find("#}", start + 2)
            end = n if close < 0 else close + 2
            out.append(source[start:end])
            i = end
            continue
        if opener == "{%":
            raw = _RAW_BEGIN.match(source, start)
            if raw is not None:
                endraw = _RAW_END.search(source, raw.end())
                end = n if endraw is None else endraw.end()
                out.append(source[start:end])
                i = end
                continue
        closer = "}}" if opener == "{{" else "%}"
        out.append(opener)
        k = start + 2
        depth = 0
        while k < n:
            char = source[k]
            if char in "'\"":
                end = _string_end(source, k)
                out.append(source[k:end])
                k = end
                continue
            if depth == 0 and source.startswith(closer, k):
                break
            if char in "([{":
                depth += 1
            elif char in ")]}" and depth:
                depth -= 1
            elif char == "@" and not (source[k - 1].isalnum() or source[k - 1] == "_"):
                name = _AT_NAME.match(source, k)
                if name is not None:
                    out.append(_AT_PREFIX + name.group(1))
                    k = name.end()
                    continue
            out.append(char)
            k += 1
        if k < n:
            out.append(closer)
            k += 2
        i = k
    return "".join(out)


_NAME_CACHE: dict[str, str] = {}


def _jinja_name(key: str) -> str:
    """The template identifier of a context key: ``@my-key`` → ``_at_my_key``."""
    name = _NAME_CACHE.get(key)
    if name is None:
        name = key.replace("-", "_")
        if name.startswith("@"):
            name = _AT_PREFIX + name[1:]
        if len(_NAME_CACHE) < 10_000:  # keys come from definitions; the cap only bounds abuse
            _NAME_CACHE[key] = name
    return name


# --------------------------------------------------------------------------------------------
# nunjucks: the sandbox

_STATE_KEY: Final = "brickrun:render-state"  # not an identifier, so templates cannot name it


class _RenderState:
    """Per-render budget; lives in the context's parent dict so derived contexts share it."""

    __slots__ = ("steps",)

    def __init__(self) -> None:
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise _RenderError(
                f"the template ran more than {MAX_STEPS:,} loop iterations and calls"
            )

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise _RenderError(
                    f"the template ran more than {MAX_STEPS:,} loop iterations and calls"
                )
            yield item


def _state_of(context: Context) -> _RenderState | None:
    state = context.parent.get(_STATE_KEY)
    return state if type(state) is _RenderState else None


class _Undefined(ChainableUndefined):
    """Lenient, chainable undefined: prints ``""``, iterates as empty, lookups stay undefined,
    and orders like JavaScript's ``undefined`` (every ``<``/``>`` comparison is false).

    Calling it or doing arithmetic with it raises (``'foo' is undefined``).
    """

    __slots__ = ()

    # Jinja types these as never returning; returning False is the point of the override.
    def __lt__(self, other: Any) -> bool:  # type: ignore[override]
        return False

    __le__ = __gt__ = __ge__ = __lt__  # type: ignore[assignment]


_LOOP_ATTRIBUTES: Final = frozenset(
    {
        "index",
        "index0",
        "revindex",
        "revindex0",
        "first",
        "last",
        "length",
        "depth",
        "depth0",
        "previtem",
        "nextitem",
        "cycle",
        "changed",
    }
)
_MISSING: Final = object()


def _lookup(obj: Any, key: Any) -> Any:
    """Own data only: dict keys, list/str items, ``length``, named-tuple fields, ``loop.*``;
    anything else is ``_MISSING``."""
    if type(obj) is dict:
        try:
            return obj.get(key, _MISSING)
        except TypeError:  # unhashable key
            return _MISSING
    if isinstance(obj, Mapping):
        try:
            # Membership first: Mapping.get would let a __missing__ hook invent keys.
            return obj[key] if key in obj else _MISSING  # noqa: SIM401
        except TypeError:  # unhashable key
            return _MISSING
    if isinstance(obj, list | tuple | str):
        if isinstance(obj, tuple) and key in getattr(type(obj), "_fields", ()):
            return getattr(obj, key)  # a named tuple's fields (groupby's grouper and list)
        if type(key) is int:
            return obj[key] if 0 <= key < len(obj) else _MISSING
        if isinstance(key, str):
            if key.isascii() and key.isdigit():
                index = int(key)
                return obj[index] if index < len(obj) else _MISSING
            return len(obj) if key == "length" else _MISSING
        if isinstance(key, slice):
            return obj[key]
        return _MISSING
    if isinstance(obj, LoopContext) and key in _LOOP_ATTRIBUTES:
        return getattr(obj, key)
    return _MISSING


def _check_text(size: int, what: str) -> None:
    if size > MAX_OUTPUT:
        raise _RenderError(f"{what} would be {size:,} characters; the limit is {MAX_OUTPUT:,}")


def _check_list(size: int, what: str) -> None:
    if size > MAX_LIST:
        raise _RenderError(f"{what} would have {size:,} items; the limit is {MAX_LIST:,}")


_PERCENT_SPEC: Final = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _format_arg(value: Any) -> Any:
    """Values ``%s`` would print the Python way (``True``, ``None``, ``{'a': 1}``) as text."""
    if value is None or isinstance(value, bool | Mapping | list | Undefined):
        return to_text(value)
    return value


def _percent_format(text: str, args: Any) -> str:
    """``text % args`` with field widths and precisions bounded before formatting."""
    for spec in _PERCENT_SPEC.finditer(text):
        for number in spec.groups():
            if number == "*":
                raise _RenderError("'*' field widths are not supported in % formatting")
            if number is not None and int(number) > MAX_WIDTH:
                raise _RenderError(
                    f"a % format field width of {int(number):,} exceeds the limit of {MAX_WIDTH:,}"
                )
    if isinstance(args, tuple):
        args = tuple(map(_format_arg, args))
    elif isinstance(args, Mapping) and "%(" in text:
        args = {key: _format_arg(value) for key, value in args.items()}
    else:
        args = _format_arg(args)
    result: str = text % args
    _check_text(len(result), "the formatted string")
    return result


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, str) or isinstance(right, str):
        # JavaScript: a string operand turns + into concatenation of both stringified.
        left_text, right_text = to_text(left), to_text(right)
        _check_text(len(left_text) + len(right_text), "the string")
        return left_text + right_text
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        _check_list(len(left) + len(right), "the list")
    return left + right


def _multiply(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _RenderError(f"the product would exceed {MAX_INT_BITS:,} bits")
    else:
        sequence, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(count, int) and count > 0:
            if isinstance(sequence, str):
                _check_text(len(sequence) * count, "the repeated string")
            elif isinstance(sequence, list | tuple):
                _check_list(len(sequence) * count, "the repeated list")
    return left * right


def _power(left: Any, right: Any) -> Any:
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and abs(left) > 1
        and right * (left.bit_length() - 1) > MAX_INT_BITS
    ):
        raise _RenderError(f"the power would exceed {MAX_INT_BITS:,} bits")
    result = left**right
    return math.nan if isinstance(result, complex) else result


def _divide(left: Any, right: Any, floor: bool) -> Any:
    if right == 0 and isinstance(left, int | float) and isinstance(right, int | float):
        # JavaScript: x/0 is ±Infinity, 0/0 is NaN.
        if left == 0 or left != left:
            return math.nan
        return math.inf if (left > 0) == (math.copysign(1, right) > 0) else -math.inf
    return left // right if floor else left / right


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        return _percent_format(left, right)
    if right == 0 and isinstance(left, int | float) and isinstance(right, int | float):
        return math.nan
    return left % right


_BINOPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": _add,
    "*": _multiply,
    "**": _power,
    "/": lambda a, b: _divide(a, b, False),
    "//": lambda a, b: _divide(a, b, True),
    "%": _modulo,
}


def _safe_range(*args: int) -> range:
    rng = range(*args)
    if rng.step > 0:
        count = max(0, (rng.stop - rng.start + rng.step - 1) // rng.step)
    else:
        count = max(0, (rng.start - rng.stop - rng.step - 1) // -rng.step)
    if count > MAX_RANGE:
        raise _RenderError(f"range() would produce {count:,} items; the limit is {MAX_RANGE:,}")
    return rng


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, narrowed to data: lookups never reach Python attributes."""

    intercepted_binops = frozenset(_BINOPS)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:  # the common case, without the ABC checks of _lookup
            value = obj.get(attribute, _MISSING)
            return self.undefined(obj=obj, name=attribute) if value is _MISSING else value
        return self.getitem(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Undefined):
            return obj
        value = _lookup(obj, argument)
        if value is _MISSING:
            return self.undefined(obj=obj, name=argument)
        return value

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return _BINOPS[operator](left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        state = _state_of(context)
        if state is not None:
            state.step()
        return super().call(context, obj, *args, **kwargs)


# Filters replaced or added; every other filter is Jinja's own.


@pass_context
def _loop_filter(context: Context, iterable: Any) -> Any:
    """Wrapped around every ``{% for %}`` iterable at compile time: counts iterations."""
    state = _state_of(context)
    if state is None or isinstance(iterable, Undefined):
        return iterable
    return state.iterate(iterable)


def _filter_concat(parts: Iterable[Any]) -> str:
    """``a ~ b``: JS-like stringification, size-checked (every ``~`` is rewritten to this)."""
    texts = [to_text(part) for part in parts]
    _check_text(sum(map(len, texts)), "the concatenated string")
    return "".join(texts)


@pass_environment
def _filter_attr(environment: Environment, obj: Any, name: str) -> Any:
    return environment.getitem(obj, name)


def _filter_center(value: Any, width: int = 80) -> str:
    if width > MAX_WIDTH:
        raise _RenderError(f"center() width {width:,} exceeds the limit of {MAX_WIDTH:,}")
    return to_text(value).center(width)


def _filter_indent(
    value: Any, width: int | str = 4, first: bool = False, blank: bool = False
) -> str:
    text = to_text(value)
    indention = width if isinstance(width, str) else " " * min(max(width, 0), MAX_WIDTH + 1)
    if len(indention) > MAX_WIDTH:
        raise _RenderError(f"indent() width exceeds the limit of {MAX_WIDTH:,}")
    _check_text(len(text) + (text.count("\n") + 2) * len(indention), "the indented string")
    text += "\n"
    if blank:
        result = ("\n" + indention).join(text.splitlines())
    else:
        lines = text.splitlines()
        result = lines.pop(0)
        if lines:
            result += "\n" + "\n".join(indention + line if line else line for line in lines)
    return indention + result if first else result


def _filter_format(value: Any, *args: Any, **kwargs: Any) -> str:
    if args and kwargs:
        raise _RenderError("format() takes positional or keyword arguments, not both")
    return _percent_format(to_text(value), kwargs or args)


def _filter_replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_text, new_text = to_text(value), to_text(old), to_text(new)
    occurrences = text.count(old_text) if old_text else len(text) + 1
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    _check_text(len(text) + occurrences * (len(new_text) - len(old_text)), "the replaced string")
    return text.replace(old_text, new_text, -1 if count is None else count)


@pass_environment
def _filter_join(
    environment: Environment, value: Iterable[Any], d: str = "", attribute: Any = None
) -> str:
    items = list(value)
    if attribute is not None:
        items = [environment.getitem(item, attribute) for item in items]
    texts = [to_text(item) for item in items]
    separator = to_text(d)
    _check_text(sum(map(len, texts)) + len(separator) * max(len(texts) - 1, 0), "the joined string")
    return separator.join(texts)


def _filter_wordwrap(
    value: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = to_text(value)
    _check_text(len(text) * (1 + len(wrapstring or "\n")), "the wrapped string")
    return do_wordwrap(_SANDBOX, text, width, break_long_words, wrapstring, break_on_hyphens)


def _filter_batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Any:
    _check_list(linecount, "a batch")
    return do_batch(value, linecount, fill_with)


def _filter_slice(value: Iterable[Any], slices: int, fill_with: Any = None) -> Any:
    _check_list(slices, "the sliced list")
    return sync_do_slice(list(value), slices, fill_with)


def _filter_round(value: Any, precision: int = 0, method: str = "common") -> float:
    """nunjucks' ``round``: ``Math.round`` (halves go up: ``2.5`` → ``3``), ``ceil``, ``floor``."""
    if method not in ("common", "ceil", "floor"):
        raise _RenderError(f"round() method must be 'common', 'ceil' or 'floor', not {method!r}")
    number = float(value)
    factor = 10.0 ** max(min(int(precision), 300), -300)
    scaled = number * factor
    if not math.isfinite(scaled):
        return number
    if method == "ceil":
        return math.ceil(scaled) / factor
    if method == "floor":
        return math.floor(scaled) / factor
    return math.floor(scaled + 0.5) / factor


def _filter_dump(value: Any, indent: Any = None) -> str:
    """nunjucks' ``dump``: JSON (compact; ``indent`` is accepted and ignored)."""
    out: list[str] = []
    _json_write(value, out)
    return "".join(out)


def _make_sandbox() -> _Sandbox:
    sandbox = _Sandbox(
        autoescape=False,
        undefined=_Undefined,
        finalize=to_text,
        keep_trailing_newline=True,
        cache_size=0,
        auto_reload=False,
    )
    for name in ("lipsum", "cycler", "joiner", "namespace"):
        sandbox.globals.pop(name, None)
    sandbox.globals["range"] = _safe_range
    return sandbox


_SANDBOX: Final = _make_sandbox()
# Not identifiers, so templates cannot name them; the compiler rewrites the tree to use them.
_LOOP_FILTER_NAME: Final = "brickrun:loop"
_CONCAT_FILTER_NAME: Final = "brickrun:concat"
_SANDBOX.filters.update(
    {
        _LOOP_FILTER_NAME: _loop_filter,
        _CONCAT_FILTER_NAME: _filter_concat,
        "attr": _filter_attr,
        "batch": _filter_batch,
        "center": _filter_center,
        "dump": _filter_dump,
        "format": _filter_format,
        "indent": _filter_indent,
        "join": _filter_join,
        "replace": _filter_replace,
        "round": _filter_round,
        "slice": _filter_slice,
        "string": to_text,
        "wordwrap": _filter_wordwrap,
    }
)
_GLOBALS: Final = dict(_SANDBOX.globals)
_UNSUPPORTED_NODES: Final = (
    (nodes.Extends, "extends"),
    (nodes.Include, "include"),
    (nodes.Import, "import"),
    (nodes.FromImport, "from ... import"),
)


class _Guards(NodeTransformer):
    """Rewrites the parsed tree: ``for`` iterables are counted, ``~`` is size-checked.

    ``~`` becomes a filter call rather than a code-generator change because Jinja folds
    constant ``Concat`` nodes with ``str()`` before code generation (``1 ~ true`` → ``1True``);
    a constant filter call is folded with the filter itself.
    """

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER_NAME, [], [], None, None)
        node.iter.set_lineno(node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, _CONCAT_FILTER_NAME, [], [], None, None, lineno=node.lineno)


def _template_line(template: Template, traceback: TracebackType | None) -> int | None:
    """The template line of the innermost template frame in ``traceback``."""
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = template.get_corresponding_lineno(traceback.tb_lineno)
        traceback = traceback.tb_next
    return line


def _compile_nunjucks(source: str) -> CompiledTemplate:
    if "{{" not in source and "{%" not in source:
        return CompiledTemplate("nunjucks", source, _constant(source))
    rewritten = rewrite_at_names(source)
    try:
        tree = _SANDBOX.parse(rewritten)
        for node_type, tag in _UNSUPPORTED_NODES:
            for node in tree.find_all(node_type):
                reason = f"{{% {tag} %}} is not supported (templates cannot load other templates)"
                raise _definition_error(source, _with_line(reason, node.lineno))
        # Both of these run Jinja's code generator, which reports unknown filters and tests.
        undeclared = find_undeclared_variables(tree)
        names = {"@" + n[len(_AT_PREFIX) :] for n in undeclared if n.startswith(_AT_PREFIX)}
        # Only what the template uses is put in each render's variables.
        used = {node.name for node in tree.find_all(nodes.Name)}
        template_globals = {k: v for k, v in _GLOBALS.items() if k in used}
        budgeted = any(True for _ in tree.find_all((nodes.For, nodes.Call)))
        template = _SANDBOX.from_string(_Guards().visit(tree))
    except TemplateSyntaxError as exc:
        reason = _with_line(exc.message or "syntax error", exc.lineno)
        raise _definition_error(source, reason) from None
    root_render = template.root_render_func
    blocks = template.blocks
    simple = _simple_output(tree)

    def render(context: Mapping[str, Any]) -> str:
        if simple is not None:
            text = _render_simple(simple, context)
            if text is not None:
                return text
        variables = dict(template_globals)
        if budgeted:  # without loops and calls, nothing can repeat
            variables[_STATE_KEY] = _RenderState()
        for key, value in context.items():
            variables[_jinja_name(key)] = value
        chunks: list[str] = []
        size = 0
        try:
            # runtime.new_context directly: Template.new_context copies the globals ChainMap
            # into a set on every call, which would be most of a small render's cost.
            for chunk in root_render(new_context(_SANDBOX, None, blocks, variables, True)):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise _RenderError(f"the output exceeds {MAX_OUTPUT:,} characters")
                chunks.append(chunk)
        except Exception as exc:
            line = _template_line(template, exc.__traceback__)
            raise InvalidTemplateError(_message(source, _with_line(_reason(exc), line))) from exc
        return "".join(chunks)

    return CompiledTemplate("nunjucks", source, render, names)


# A template that only prints text and ``@name.attr.attr`` lookups, e.g. the record brick's
# key ``{{ @session.email }}-{{ @instant.timestamp }}``, is rendered without Jinja: building a
# Jinja context costs ~10 µs, more than the lookups. The result is the same by construction —
# the sandbox's ``getattr`` is a data lookup (``_lookup``), a missing name or key is the
# chainable undefined (printed ""), and each printed value goes through ``to_text`` (the
# environment's ``finalize``) — and anything this path does not model falls back to Jinja.
_SimplePart = str | tuple[str, str, tuple[str, ...]]  # text, or (context key, name, attrs)


def _simple_output(tree: nodes.Template) -> tuple[_SimplePart, ...] | None:
    """The parts of a text-and-lookups-only template, else ``None``."""
    parts: list[_SimplePart] = []
    for statement in tree.body:
        if type(statement) is not nodes.Output:
            return None
        for node in statement.nodes:
            if type(node) is nodes.TemplateData:
                parts.append(node.data)
                continue
            attrs: list[str] = []
            while type(node) is nodes.Getattr:
                attrs.append(node.attr)
                node = node.node
            if type(node) is not nodes.Name or not node.name.startswith(_AT_PREFIX):
                return None
            rest = node.name[len(_AT_PREFIX) :]
            if not rest or "_" in rest:  # "@a-b" and "@a_b" share a Jinja name: leave it to Jinja
                return None
            parts.append(("@" + rest, node.name, tuple(reversed(attrs))))
    return tuple(parts)


def _render_simple(parts: tuple[_SimplePart, ...], context: Mapping[str, Any]) -> str | None:
    """Render ``_simple_output`` parts; ``None`` when Jinja must decide (a context key that is
    itself the Jinja name, or output over the size limit)."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        key, name, attrs = part
        if name in context:
            return None
        value = context.get(key, _MISSING)
        for attr in attrs:
            if value is _MISSING:
                break
            value = value.get(attr, _MISSING) if type(value) is dict else _lookup(value, attr)
        out.append("" if value is _MISSING else to_text(value))
    text = "".join(out)
    return text if len(text) <= MAX_OUTPUT else None


# --------------------------------------------------------------------------------------------
# mustache

_LITERAL, _VARIABLE, _SECTION, _INVERTED = range(4)
_MustacheNode = tuple[Any, ...]
_TOKENIZE_LOCK: Final = threading.Lock()  # chevron's tokenizer keeps line numbers in globals


def _mustache_names(key: str) -> tuple[str, ...]:
    return () if key == "." else tuple(key.split("."))


def _mustache_lookup(names: tuple[str, ...], stack: list[Any]) -> Any:
    """mustache.js ``Context.lookup``: the innermost scope whose walk reaches the last name.

    Each step reads own data only (``_lookup``), so a missing name falls back to outer scopes.
    """
    if not names:
        return stack[-1]
    for scope in reversed(stack):
        value = scope
        for name in names:
            value = value.get(name, _MISSING) if type(value) is dict else _lookup(value, name)
            if value is _MISSING:
                break
        else:
            return value
    return None


def _js_truthy(value: Any) -> bool:
    if value is None or value is False or value == "" or isinstance(value, Undefined):
        return False
    if type(value) is int or type(value) is float:
        return value == value and value != 0
    return True


class _MustacheRun:
    """One mustache render: output, size and step budget."""

    __slots__ = ("out", "size", "steps")

    def __init__(self) -> None:
        self.out: list[str] = []
        self.size = 0
        self.steps = 0

    def emit(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT:
            raise _RenderError(f"the output exceeds {MAX_OUTPUT:,} characters")
        self.out.append(text)

    def run(self, tree: tuple[_MustacheNode, ...], stack: list[Any]) -> None:
        for node in tree:
            kind = node[0]
            if kind == _LITERAL:
                self.emit(node[1])
            elif kind == _VARIABLE:
                self.emit(to_text(_mustache_lookup(node[1], stack)))
            elif kind == _SECTION:
                value = _mustache_lookup(node[1], stack)
                if not _js_truthy(value):
                    continue
                if isinstance(value, list | tuple):
                    for item in value:
                        self.steps += 1
                        if self.steps > MAX_STEPS:
                            raise _RenderError(
                                f"the template ran more than {MAX_STEPS:,} section iterations"
                            )
                        stack.append(item)
                        self.run(node[2], stack)
                        stack.pop()
                elif value is True:
                    self.run(node[2], stack)
                else:
                    stack.append(value)
                    self.run(node[2], stack)
                    stack.pop()
            else:
                value = _mustache_lookup(node[1], stack)
                if not _js_truthy(value) or (isinstance(value, list | tuple) and not value):
                    self.run(node[2], stack)


_CHEVRON_MESSAGES: Final = (
    (
        re.compile(r'Unexpected EOF\s+the tag "(.*)" was never closed\s+was opened at line (\d+)'),
        r"the section {{#\1}} opened at line \2 is never closed",
    ),
    # chevron's line numbers for closing tags are off by one: leave them out.
    (
        re.compile(r'Trying to close tag "(.*)"\s+Looks like it was not opened\.\s+line \d+'),
        r"the closing tag {{/\1}} has no open section",
    ),
    (
        re.compile(r'Trying to close tag "(.*)"\s+last open tag is "(.*)"\s+line \d+'),
        r"the closing tag {{/\1}} does not match the open section {{#\2}}",
    ),
)


def _chevron_reason(message: str) -> str:
    for pattern, replacement in _CHEVRON_MESSAGES:
        if pattern.fullmatch(message.strip()):
            return pattern.sub(replacement, message.strip())
    return " ".join(message.split())


def _compile_mustache(source: str) -> CompiledTemplate:
    from chevron.tokenizer import tokenize

    with _TOKENIZE_LOCK:
        try:
            tokens = list(tokenize(source))
        except IndexError:
            raise _definition_error(source, "empty tag '{{}}'") from None
        except Exception as exc:
            raise _definition_error(source, _chevron_reason(str(exc))) from None
    root: list[_MustacheNode] = []
    levels: list[list[_MustacheNode]] = [root]
    names: set[str] = set()
    for tag, key in tokens:
        current = levels[-1]
        if tag == "literal":
            current.append((_LITERAL, key))
            continue
        if tag in ("variable", "no escape", "no escape?", "section", "inverted section"):
            path = _mustache_names(key)
            if path and path[0].startswith("@"):
                names.add(path[0])
            if tag.startswith("section") or tag.startswith("inverted"):
                children: list[_MustacheNode] = []
                current.append((_SECTION if tag == "section" else _INVERTED, path, children))
                levels.append(children)
            else:
                current.append((_VARIABLE, path))
        elif tag == "end":
            levels.pop()
        # Partials render "" (mustache.js without partials); delimiter changes are done.
    tree = _freeze(root)

    def render(context: Mapping[str, Any]) -> str:
        run = _MustacheRun()
        try:
            run.run(tree, [context])
        except Exception as exc:
            raise InvalidTemplateError(_message(source, _reason(exc))) from exc
        return "".join(run.out)

    return CompiledTemplate("mustache", source, render, names)


def _freeze(tree: list[_MustacheNode]) -> tuple[_MustacheNode, ...]:
    return tuple((node[0], node[1], _freeze(node[2])) if len(node) == 3 else node for node in tree)


# --------------------------------------------------------------------------------------------
# handlebars (pybars3)

# A raw block (left alone) or one tag.
_HB_TAG: Final = re.compile(r"\{\{\{\{.*?\{\{\{\{/.*?\}\}\}\}|\{\{.*?\}\}", re.DOTALL)
_HB_SAFE_SEGMENT: Final = re.compile(r"[^'\"\\\x00-\x1f\x7f]*")
_HB_LOCK: Final = threading.Lock()  # pybars' compiler keeps its state on the class


class _HbScope:
    """Replaces pybars' ``Scope``: the same fields, but lookups reach own data only.

    Names starting with ``@`` are handlebars data variables: only ``@root``, ``@index``,
    ``@key``, ``@first``, ``@last`` (and pybars' internal ``@_parent``) exist, so
    ``{{@input.x}}`` renders ``""`` as in PixieBrix.
    """

    __slots__ = ("context", "first", "index", "key", "last", "parent", "root")

    def __init__(
        self,
        context: Any,
        parent: Any,
        root: Any,
        index: int | None = None,
        key: Any = None,
        first: bool | None = None,
        last: bool | None = None,
    ) -> None:
        self.context = context
        self.parent = parent
        self.root = root
        self.index = index
        self.key = key
        self.first = first
        self.last = last

    def get(self, name: str, default: Any = None) -> Any:
        if name.startswith("@"):
            if name == "@root":
                return self.root
            if name == "@_parent":
                return self.parent
            value = {"@index": self.index, "@key": self.key, "@first": self.first}.get(name)
            return self.last if name == "@last" else value
        if name == "this":
            return self.context
        return _hb_pick(self.context, name)

    __getitem__ = get


def _hb_pick(obj: Any, name: Any) -> Any:
    if isinstance(obj, _HbScope):
        return obj.get(name)
    value = _lookup(obj, name)
    return None if value is _MISSING else value


def _hb_resolve(context: Any, *segments: str) -> Any:
    """pybars' ``resolve`` (``../`` and ``@../`` handling included) over ``_hb_pick``."""
    if segments == ("",) and isinstance(context, _HbScope):
        return context.get("this")
    carryover = False
    for segment in segments:
        if carryover:
            carryover = False
            segment = "@" + segment
        if segment.startswith("@@"):
            segment = segment[1:]
            carryover = True
        if context is None:
            return None
        if segment:
            context = _hb_pick(context, segment)
    return context


def _hb_ensure_scope(context: Any, root: Any) -> _HbScope:
    return context if isinstance(context, _HbScope) else _HbScope(context, context, root)


def _hb_prepare(value: Any, should_escape: bool) -> Any:
    # pybars' own output lists (already text) pass through; everything else like nunjucks.
    return value if type(value) is _pybars()[1] else to_text(value)


def _hb_empty(value: Any) -> bool:
    """handlebars.js ``isEmpty``: falsy values and empty arrays."""
    return not _js_truthy(value) or (isinstance(value, list | tuple) and not value)


class _HbRoot(dict[str, Any]):
    """The data of one handlebars render; carries its step budget outside the data."""

    __slots__ = ("state",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.state = _RenderState()


def _hb_state(options: Mapping[str, Any]) -> _RenderState:
    root = options.get("root")
    return root.state if isinstance(root, _HbRoot) else _RenderState()


def _hb_each(this: Any, options: Mapping[str, Any], context: Any = None) -> Any:
    if isinstance(context, Mapping):
        pairs: list[tuple[Any, Any]] = list(context.items())
    elif isinstance(context, list | tuple):
        pairs = [(None, item) for item in context]
    else:
        pairs = []
    if not pairs:
        return options["inverse"](this)
    state = _hb_state(options)
    result: list[Any] = []
    last = len(pairs) - 1
    for index, (key, value) in enumerate(pairs):
        state.step()
        scope = _HbScope(value, this, options["root"], index, key, index == 0, index == last)
        result.append(options["fn"](scope))
    return result


def _hb_if(this: Any, options: Mapping[str, Any], context: Any = None) -> Any:
    return options["inverse"](this) if _hb_empty(context) else options["fn"](this)


def _hb_unless(this: Any, options: Mapping[str, Any], context: Any = None) -> Any:
    return options["fn"](this) if _hb_empty(context) else options["inverse"](this)


def _hb_with(this: Any, options: Mapping[str, Any], context: Any = None) -> Any:
    return options["inverse"](this) if _hb_empty(context) else options["fn"](context)


def _hb_lookup(this: Any, context: Any = None, key: Any = None) -> Any:
    return _hb_pick(context, key)


def _hb_block_helper_missing(this: Any, options: Mapping[str, Any], context: Any) -> Any:
    """``{{#name}}…{{/name}}`` where ``name`` is data: a section, as in handlebars.js."""
    if context is True:
        return options["fn"](this)
    if _hb_empty(context):
        return options["inverse"](this)
    if isinstance(context, list | tuple):
        return _hb_each(this, options, context)
    return options["fn"](context)


def _hb_helper_missing(this: Any, name: str, *args: Any) -> Any:
    if args:
        raise _RenderError(f"Missing helper: {name!r}")
    return None


def _hb_log(this: Any, *args: Any) -> Any:
    return None


_HB_HELPERS: Final = {
    "blockHelperMissing": _hb_block_helper_missing,
    "each": _hb_each,
    "helperMissing": _hb_helper_missing,
    "if": _hb_if,
    "log": _hb_log,
    "lookup": _hb_lookup,
    "unless": _hb_unless,
    "with": _hb_with,
}


def _hb_fail(source: str, reason: str) -> NoReturn:
    raise _definition_error(source, reason)


def _hb_check_tree(source: str, node: Any) -> int:
    """Validate pybars' parse tree; return how many ``{{`` tags it accounts for.

    pybars pastes path segments into generated Python source, so a segment may not hold
    quotes, backslashes or control characters (else a template could run Python).
    """
    if not isinstance(node, list | tuple) or not node:
        return 0
    kind = node[0]
    if kind == "template":
        return sum(_hb_check_tree(source, child) for child in node[1:])
    if kind in ("literal", "newline", "whitespace"):
        return 0
    if kind == "comment":
        return 1
    if kind == "partial":
        _hb_fail(source, "handlebars partials ({{> name}}) are not supported")
    if kind == "rawblock":
        _hb_check_segment(source, node[1])
        _hb_check_args(source, node[2])
        return 2
    if kind in ("expand", "escapedexpand"):
        _hb_check_args(source, [node[1], *node[2]])
        return 1
    if kind in ("block", "invertedblock"):
        _hb_check_segment(source, node[1])
        _hb_check_args(source, node[2])
        count = 2 + _hb_check_tree(source, node[3])
        if node[4]:
            count += 1 + _hb_check_tree(source, node[4])
        return count
    _hb_fail(source, f"unsupported handlebars construct {kind!r}")


def _hb_check_segment(source: str, segment: Any) -> None:
    if not isinstance(segment, str) or _HB_SAFE_SEGMENT.fullmatch(segment) is None:
        _hb_fail(source, f"unsupported characters in the name {segment!r}")


def _hb_check_args(source: str, args: Iterable[Any]) -> None:
    for arg in args:
        kind = arg[0]
        if kind == "path":
            for segment in arg[1]:
                _hb_check_segment(source, segment)
        elif kind == "kwparam":
            _hb_check_segment(source, arg[1])
            _hb_check_args(source, [arg[2]])
        elif kind == "subexpr":
            _hb_check_args(source, [arg[1], *arg[2]])
        elif kind == "literalparam":
            if isinstance(arg[1], str) and "\\" in arg[1]:
                _hb_fail(source, "backslashes in handlebars string literals are not supported")
        else:
            _hb_fail(source, f"unsupported handlebars argument {kind!r}")


def _hb_count_tags(source: str) -> int:
    """How many tags the source holds, counted the way ``_hb_check_tree`` counts them.

    pybars' parser silently drops what it cannot parse (``{{#if x}}`` without ``{{/if}}``
    renders ``""``); a count that differs from the tree's reveals that.
    """
    count = 0
    position = 0
    while True:
        start = source.find("{{", position)
        if start < 0:
            return count
        if source.startswith("{{{{", start):  # raw block: {{{{name}}}} ... {{{{/name}}}}
            close = source.find("{{{{/", start + 4)
            end = source.find("}}}}", close) if close >= 0 else -1
            if end < 0:
                return -1
            count += 2
            position = end + 4
            continue
        end_marker = "--}}" if source.startswith("{{!--", start) else "}}"
        end = source.find(end_marker, start + 2)
        if end < 0:
            return -1
        count += 1
        position = end + len(end_marker)
        if source.startswith("{{{", start) and source.startswith("}", position):
            position += 1


def _hb_rewrite_tag(match: re.Match[str]) -> str:
    tag = match.group(0)
    return tag if tag.startswith("{{{{") else tag.replace("[@", "[" + _AT_PREFIX)


def _hb_name(key: str) -> str:
    return _AT_PREFIX + key[1:] if key.startswith("@") else key


@functools.cache
def _pybars() -> tuple[Any, type]:
    """pybars' ``Compiler`` and ``strlist`` (its rendered-output list type)."""
    import pybars  # ~0.7 s: imported only when a handlebars template is first compiled

    strlist: type = pybars.strlist
    return pybars.Compiler, strlist


def _compile_handlebars(source: str) -> CompiledTemplate:
    if "{{" not in source and "{%" not in source:
        return CompiledTemplate("handlebars", source, _constant(source))
    compiler_class = _pybars()[0]
    # handlebars.js reads `[@input]` as the key "@input"; pybars cannot tell it from the data
    # variable `@input`, so segment literals are renamed to the context's `_at_` names.
    rewritten = _HB_TAG.sub(_hb_rewrite_tag, source)
    with _HB_LOCK:
        compiler = compiler_class()
        try:
            prepared = compiler.whitespace_control(rewritten)
            tree, (position, _) = compiler._handlebars(prepared).apply("template")
        except Exception as exc:
            raise _definition_error(source, str(exc) or type(exc).__name__) from None
        if position < len(prepared):
            _hb_fail(source, f"unexpected text at character {position}")
        if _hb_check_tree(source, tree) != _hb_count_tags(prepared):
            _hb_fail(source, "a tag could not be parsed (unclosed, unmatched or unsupported)")
        try:
            function = compiler.compile(rewritten)
        except Exception as exc:
            raise _definition_error(source, str(exc) or type(exc).__name__) from None
    namespace = function.__globals__
    # The generated module reads these names at call time: point them at the safe versions.
    namespace["resolve"] = _hb_resolve
    namespace["ensure_scope"] = _hb_ensure_scope
    namespace["prepare"] = _hb_prepare
    namespace["_pybars_"] = {"helpers": _HB_HELPERS}
    sys.modules.pop(namespace.get("__name__", ""), None)  # pybars registers every template
    names = {"@" + name for name in re.findall(r"\[@([^\]]+)\]", "".join(_HB_TAG.findall(source)))}

    def render(context: Mapping[str, Any]) -> str:
        data = _HbRoot({_hb_name(key): value for key, value in context.items()})
        try:
            text = str(function(data))
            _check_text(len(text), "the output")
        except Exception as exc:
            raise InvalidTemplateError(_message(source, _reason(exc))) from exc
        return text

    return CompiledTemplate("handlebars", source, render, names)


# --------------------------------------------------------------------------------------------
# Public functions

_COMPILERS: Final[dict[str, Callable[[str], CompiledTemplate]]] = {
    "nunjucks": _compile_nunjucks,
    "mustache": _compile_mustache,
    "handlebars": _compile_handlebars,
}


@functools.lru_cache(maxsize=4096)
def compile_template(engine: str, source: str) -> CompiledTemplate:
    """Parse ``source`` for ``engine`` (cached: same arguments, same object).

    Raises ``DefinitionError('Invalid template: <reason>. Template: "<snippet>"')`` (no
    location) for syntax errors, and for an unknown engine.
    """
    compiler = _COMPILERS.get(engine)
    if compiler is None:
        raise DefinitionError(
            f"unknown template engine {engine!r}; expected one of {', '.join(ENGINES)}"
        )
    return compiler(source)


def template_names(engine: str, source: str) -> set[str]:
    """The top-level ``@names`` a template reads (``{"@input", "@mod"}``); best effort.

    A template that does not compile reads nothing (its syntax error is reported elsewhere).
    """
    try:
        return set(compile_template(engine, source).names)
    except DefinitionError:
        return set()


_LOOKS_LIKE_TEMPLATE: Final = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


def looks_like_template(text: str) -> bool:
    """True for a plain string holding ``{{ … }}`` or ``{% … %}`` (a forgotten template tag)."""
    return ("{{" in text or "{%" in text) and _LOOKS_LIKE_TEMPLATE.search(text) is not None
