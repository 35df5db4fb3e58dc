"""Text templates: stringification, ``@``-names, errors, the sandbox, mustache, handlebars."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import pickle
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brickrun._templates import (
    CompiledTemplate,
    compile_template,
    looks_like_template,
    rewrite_at_names,
    template_names,
    to_text,
)
from brickrun.errors import BrickrunError, DefinitionError, InvalidTemplateError

CONTEXT: dict[str, Any] = {
    "@input": {
        "a": 1,
        "b": "x",
        "name": "Ada",
        "amp": "a & <b>",
        "items": [{"k": 1}, {"k": 2.0}],
        "nums": [3, 1, 2],
        "empty": [],
        "flag": True,
        "off": False,
        "zero": 0,
        "nothing": None,
        "half": 0.5,
        "obj": {"a": 1},
        "evil": "{{ 7*7 }}{% if true %}x{% endif %}",
    },
    "@session": {"email": "ada@example.com"},
    "@mod": {"count": 2, "run": True},
    "@my-key": "hyphenated",
    "plain": "P",
}


def render(engine: str, source: str, context: dict[str, Any] | None = None) -> str:
    return compile_template(engine, source).render(CONTEXT if context is None else context)


def nunjucks(source: str, context: dict[str, Any] | None = None) -> str:
    return render("nunjucks", source, context)


# -- stringification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("text", "text"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (None, ""),
        (0, "0"),
        (42, "42"),
        (-7, "-7"),
        (10**30, "1000000000000000000000000000000"),  # ints stay exact
        (2.0, "2"),
        (-0.0, "0"),
        (0.5, "0.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (123.456, "123.456"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (1e20, "100000000000000000000"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (2.0**53, "9007199254740992"),
        (1.2345678901234568e20, "123456789012345680000"),  # JS digits, not the exact binary
        (9451256594187860.0, "9451256594187860"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (float("nan"), "NaN"),
        ([1, 2], "[1,2]"),
        ([], "[]"),
        ({"a": 1}, '{"a":1}'),
        ({}, "{}"),
        ({"é": ["ü", None, True, 2.0, 0.5]}, '{"é":["ü",null,true,2,0.5]}'),
        ([float("nan"), float("inf")], "[null,null]"),
        ((1, "a"), '[1,"a"]'),
        ({1: "int key"}, '{"1":"int key"}'),
        (decimal.Decimal("1.10"), "1.10"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (datetime.date(2024, 5, 1), "2024-05-01"),
        (datetime.datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00"),
        (range(3), "[0,1,2]"),
        (iter([1, 2]), "[1,2]"),
        (object(), ""),  # not data: never a Python description
        (len, ""),
        (int, ""),
    ],
)
def test_to_text(value: Any, text: str) -> None:
    assert to_text(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (None, ""), (2.0, "2"), ([1, 2], "[1,2]"), ({"a": [True]}, '{"a":[true]}')],
)
@pytest.mark.parametrize("engine", ["nunjucks", "mustache"])
def test_engines_stringify_interpolated_values(engine: str, value: Any, text: str) -> None:
    assert render(engine, "{{ @input.v }}", {"@input": {"v": value}}) == text


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 4 / 2 }}", "2"),
        ("{{ 0.1 + 0.2 }}", "0.30000000000000004"),
        (
            "{{ 1 / 0 }}|{{ -1 / 0 }}|{{ 0 / 0 }}|{{ 5 % 0 }}|{{ 7 // 0 }}",
            "Infinity|-Infinity|NaN|NaN|Infinity",
        ),
        ("{{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 2 * 3.5 }}", "3 1 1024 7"),
        ("{{ (-8) ** 0.5 }}", "NaN"),
        ("{{ 'n=' + 2 }}|{{ 1 + '!' }}|{{ 'b' + true }}|{{ 'x' + none }}", "n=2|1!|btrue|x"),
        ("{{ [1] + [2] }}", "[1,2]"),
        ("{{ 1 ~ true ~ none ~ 2.0 ~ [1] }}", "1true2[1]"),
        ("{{ true|string }}|{{ [1]|string }}", "true|[1]"),
        ("{{ '%s-%s-%s'|format(true, none, [1]) }}", "true--[1]"),
        ("{{ '%05.1f'|format(2.25) }}|{{ '%(a)s'|format(a=false) }}", "002.2|false"),
        ("{{ [1, none, true]|join(',') }}", "1,,true"),
        ("{{ [3, 1, 2]|reverse }}|{{ [3, 1, 2]|sort }}|{{ range(3) }}", "[2,1,3]|[1,2,3]|[0,1,2]"),
        ("{{ @input.obj|dump }}", '{"a":1}'),
        ("{{ dict(a=1) }}", '{"a":1}'),
        ("{{ 2.5|round }}|{{ 2.45|round(1, 'ceil') }}|{{ -2.5|round }}", "3|2.5|-2"),
    ],
)
def test_nunjucks_operators_follow_javascript(source: str, expected: str) -> None:
    assert nunjucks(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "{{ [3, 1, 2, 2]|slice(2)|list }}|{{ [3, 1, 2]|batch(2)|list }}",
            "[[3,1],[2,2]]|[[3,1],[2]]",
        ),
        (
            "{% for g in @input.items|groupby('k') %}"
            "{{ g.grouper }}={{ g.list|length }};{% endfor %}",
            "1=1;2=1;",
        ),
        (
            "{{ @input.obj|items|list }}|{{ {'b': 1, 'a': 2}|dictsort }}",
            '[["a",1]]|[["a",2],["b",1]]',
        ),
        (
            "{{ @input.items|join(',', attribute='k') }}|{{ @input.items|sum(attribute='k') }}",
            "1,2|3",
        ),
        ("{{ @input.nums|select('odd')|list }}|{{ @input.nums|unique|list|length }}", "[3,1]|3"),
        (
            "{{ 'a'|center(5) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'ab cd'|wordwrap(2) }}",
            "  a  |  a\n  b|ab\ncd",
        ),
        ("{{ 'hello'|replace('l', 'L', 1) }}|{{ '%s!'|format('hi') }}", "heLlo|hi!"),
    ],
)
def test_nunjucks_filters(source: str, expected: str) -> None:
    assert nunjucks(source) == expected


# -- @-names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ @session.email }}", "ada@example.com"),
        ("{{@session.email}}", "ada@example.com"),
        ("{{ @mod.count + 1 }}", "3"),
        ("{{ true if @mod.run }}", "true"),
        ("{{ 'yes' if @input.off else 'no' }}", "no"),
        ("{{ @input.name | upper }}", "ADA"),
        ("{{ @input.items | map(attribute='k') | join('+') }}", "1+2"),
        ("{% for x in @input.items %}{{ x.k }};{% endfor %}", "1;2;"),
        ("{% for x in @input.nums|sort %}{{ loop.index }}:{{ x }} {% endfor %}", "1:1 2:2 3:3 "),
        ("{% if @input.flag and not @input.off %}on{% endif %}", "on"),
        ("{% set n = @mod.count * 2 %}{{ n }}", "4"),
        ("{{ @input['name'] }}|{{ @input.items[1].k }}|{{ @input.items.0.k }}", "Ada|2|1"),
        ("{{ @input.items.length }}|{{ @input.items|length }}|{{ @input.name.length }}", "2|2|3"),
        ("{{ @my_key }}", "hyphenated"),  # top-level keys: - becomes _, as nunjucks does
        ("{{ plain }}", "P"),
        ("{{ '@input' }}|{{ \"write to @session\" }}", "@input|write to @session"),
        ("mail ada@example.com or @input: {{ @input.a }}", "mail ada@example.com or @input: 1"),
        ("{# @input #}{{ @input.a }}", "1"),
        ("{% raw %}{{ @input.a }}{% endraw %}", "{{ @input.a }}"),
        ("{{ {'k': @input.a, 'j': {'@x': 1}} }}", '{"k":1,"j":{"@x":1}}'),
        ('{{ "it\'s \\"@x\\"" ~ @input.b }}', 'it\'s "@x"x'),
        ("{{ @input.a }}\n", "1\n"),  # the trailing newline is kept
    ],
)
def test_at_names(source: str, expected: str) -> None:
    assert nunjucks(source) == expected


@pytest.mark.parametrize(
    ("source", "rewritten"),
    [
        ("{{ @input.a }}", "{{ _at_input.a }}"),
        ("a@b.com {{ 'a@b.com' }} {{ \"@x\" }}", "a@b.com {{ 'a@b.com' }} {{ \"@x\" }}"),
        (
            "{% for x in @input.items %}@x{% endfor %}",
            "{% for x in _at_input.items %}@x{% endfor %}",
        ),
        ("{# {{ @input }} #}{{@a}}", "{# {{ @input }} #}{{_at_a}}"),
        ("{% raw %}{{ @a }}{% endraw %}{{ @b }}", "{% raw %}{{ @a }}{% endraw %}{{ _at_b }}"),
        ("{{ {'a': {'b': @c}} }} @d {{ @e }}", "{{ {'a': {'b': _at_c}} }} @d {{ _at_e }}"),
        ("{{ x@y }} {{ @1 }} {{ 'unterminated @z }}", "{{ x@y }} {{ @1 }} {{ 'unterminated @z }}"),
        ("{{ @input", "{{ _at_input"),
    ],
)
def test_rewrite_at_names(source: str, rewritten: str) -> None:
    assert rewrite_at_names(source) == rewritten


# -- short-circuit, undefined, escaping ------------------------------------------------------


@pytest.mark.parametrize("engine", ["nunjucks", "handlebars"])
@pytest.mark.parametrize(
    "source", ["plain text", "{# c #}text", "", "a } b { c", "{x}", "100% {done}", "{ {x} }"]
)
def test_short_circuit_returns_the_source(engine: str, source: str) -> None:
    assert render(engine, source) == source


def test_mustache_always_renders() -> None:
    assert render("mustache", "{{! comment }}text") == "text"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("[{{ nope }}]", "[]"),
        ("[{{ nope.a.b }}]", "[]"),
        ("[{{ nope['a'][0] }}]", "[]"),
        ("[{{ @input.missing }}]", "[]"),
        ("[{{ @input.missing.deeper.still }}]", "[]"),
        ("[{{ @nope.x }}]", "[]"),
        ("[{{ @input.nothing }}]", "[]"),
        ("[{{ @input.items[5].k }}]", "[]"),
        ("[{{ @input.nums[-1] }}]", "[]"),  # JavaScript arrays have no negative indexes
        ("[{% for x in nope %}x{% endfor %}]", "[]"),
        ("[{% if nope %}x{% endif %}]", "[]"),
        ("[{% if @input.missing > 3 or @input.missing < 3 %}x{% endif %}]", "[]"),
        ("[{{ nope | default('d') }}]", "[d]"),
        ("[{{ nope is defined }}]", "[false]"),
        ("[{{ nope|length }}]", "[0]"),
    ],
)
def test_undefined_renders_empty(source: str, expected: str) -> None:
    assert nunjucks(source) == expected


@pytest.mark.parametrize("engine", ["nunjucks", "mustache"])
def test_no_html_escaping(engine: str) -> None:
    assert render(engine, "{{ @input.amp }}") == "a & <b>"


def test_no_html_escaping_handlebars() -> None:
    assert render("handlebars", "{{[@input].amp}} & {{{[@input].amp}}}") == "a & <b> & a & <b>"


# -- data is never rendered -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "source"),
    [
        ("nunjucks", "{{ @input.evil }}"),
        ("nunjucks", "{{ @input.evil | safe }}"),
        ("nunjucks", "{% set t = @input.evil %}{{ t }}"),
        ("mustache", "{{ @input.evil }}"),
        ("mustache", "{{{ @input.evil }}}"),
        ("handlebars", "{{[@input].evil}}"),
    ],
)
def test_interpolated_data_is_never_rendered(engine: str, source: str) -> None:
    assert render(engine, source) == "{{ 7*7 }}{% if true %}x{% endif %}"


def test_rendering_does_not_mutate_the_context() -> None:
    context = {"@input": {"l": [3, 1, 2], "d": {"a": 1}}}
    nunjucks("{{ @input.l|sort }}{{ @input.l|reverse }}{% set x = @input.d %}", context)
    assert context == {"@input": {"l": [3, 1, 2], "d": {"a": 1}}}


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "  {{@input   }   ",
            "Invalid template: line 1: unexpected '}'. Template: \"{{@input }\"",
        ),
        (
            "{{ @input.x ",
            "Invalid template: line 1: unexpected end of template, expected 'end of print "
            'statement\'. Template: "{{ @input.x"',
        ),
        (
            "Hello {{ @input.name }}, this is a long template\n\n{% if %}",
            "Invalid template: line 3: Expected an expression, got 'end of statement block'. "
            'Template: "Hello {{ @input.name }}, this is..."',
        ),
        (
            "{% for x in @input.items %}no end",
            "Invalid template: line 1: Unexpected end of template. Jinja was looking for the "
            "following tags: 'endfor' or 'else'. The innermost block that needs to be closed is "
            "'for'. Template: \"{% for x in @input.items %}no en...\"",
        ),
        (
            "{% include 'other.html' %}",
            "Invalid template: line 1: {% include %} is not supported (templates cannot load "
            "other templates). Template: \"{% include 'other.html' %}\"",
        ),
        (
            "{{ x }}\n{% import 'os' as os %}",
            "Invalid template: line 2: {% import %} is not supported (templates cannot load "
            "other templates). Template: \"{{ x }} {% import 'os' as os %}\"",
        ),
        (
            "{% extends 'base' %}",
            "Invalid template: line 1: {% extends %} is not supported (templates cannot load "
            "other templates). Template: \"{% extends 'base' %}\"",
        ),
        (
            "{{ @input.a |nofilter }}",
            "Invalid template: line 1: No filter named 'nofilter'. "
            'Template: "{{ @input.a |nofilter }}"',
        ),
    ],
)
def test_syntax_errors_are_definition_errors(source: str, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        compile_template("nunjucks", source)
    assert info.value.message == message
    assert info.value.location is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ foo() }}", "Invalid template: line 1: 'foo' is undefined. Template: \"{{ foo() }}\""),
        (
            "{{ @nope.run() }}",
            "Invalid template: line 1: '@nope' is undefined. Template: \"{{ @nope.run() }}\"",
        ),
        (
            "first line\n\n   {{   @input.name.upper()   }}   and more text after it",
            "Invalid template: line 3: 'str object' has no attribute 'upper'. "
            'Template: "first line {{ @input.name.upper(..."',
        ),
        (
            "{{ @mod.missing + 1 }}",
            "Invalid template: line 1: 'dict object' has no attribute 'missing'. "
            'Template: "{{ @mod.missing + 1 }}"',
        ),
        (
            "{{ 1 - 'a' }}",
            "Invalid template: line 1: TypeError: unsupported operand type(s) for -: 'int' and "
            "'str'. Template: \"{{ 1 - 'a' }}\"",
        ),
        (
            "{% for x in 5 %}{% endfor %}",
            "Invalid template: line 1: TypeError: 'int' object is not iterable. "
            'Template: "{% for x in 5 %}{% endfor %}"',
        ),
    ],
)
def test_render_errors_are_invalid_template_errors(source: str, message: str) -> None:
    template = compile_template("nunjucks", source)
    with pytest.raises(InvalidTemplateError) as info:
        template.render(CONTEXT)
    assert info.value.message == message


@pytest.mark.parametrize(
    ("source", "snippet"),
    [
        ("{{ foo() }}", "{{ foo() }}"),
        ("  {{  foo()  }}\n\n", "{{ foo() }}"),
        ("{{ foo() }}" + "x" * 21, "{{ foo() }}" + "x" * 21),  # exactly 32: no "..."
        ("{{ foo() }}" + "x" * 22, "{{ foo() }}" + "x" * 21 + "..."),
        ("{{ foo() }}\t\t" + "y" * 40, "{{ foo() }} " + "y" * 20 + "..."),
    ],
)
def test_error_snippet(source: str, snippet: str) -> None:
    with pytest.raises(InvalidTemplateError) as info:
        nunjucks(source)
    assert info.value.message.endswith(f'. Template: "{snippet}"')


def test_unknown_engine() -> None:
    with pytest.raises(DefinitionError, match="unknown template engine 'jinja'; expected one of"):
        compile_template("jinja", "{{ x }}")


# -- the sandbox ----------------------------------------------------------------------------


class Raises(str):
    """An expected render error: the message must contain this text."""


_LEAKS = ("<class", "<function", "<built-in", "<module", "module", "object at", "os", "__")


@pytest.mark.parametrize(
    ("source", "outcome"),
    [
        # classic escapes: no Python attribute of any value is reachable
        (
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            Raises("'str object' has no attribute '__class__'"),
        ),
        (
            "{{ ().__class__.__bases__[0].__subclasses__() }}",
            Raises("'tuple object' has no attribute '__class__'"),
        ),
        (
            "{{ @input.nums.__class__.__subclasses__() }}",
            Raises("'list object' has no attribute '__class__'"),
        ),
        (
            "{{ dict.__base__.__subclasses__() }}",
            Raises("'type object' has no attribute '__base__'"),
        ),
        ("{{ @input.__class__ }}", ""),
        ("{{ (1,2).__class__.__base__ }}", ""),
        ("{{ @input|attr('__class__') }}", ""),
        ("{{ @input|attr('keys') }}", ""),
        ("{{ @input.nums|attr('append') }}", ""),
        ("{{ [1, 'a', {}]|map(attribute='__class__')|list }}", "[null,null,null]"),
        ("{{ self.__init__.__globals__ }}", ""),
        ("{{ self._TemplateReference__context }}", ""),
        ("{{ self }}|{{ environment }}|{{ range }}|{{ dict }}", "|||"),
        (
            "{% for x in [1] %}{{ loop.__class__ }}{{ loop._iterator }}"
            "{{ loop.cycle.__self__ }}{% endfor %}",
            "",
        ),
        ("{% macro m() %}{% endmacro %}{{ m.__globals__ }}{{ m._func }}{{ m }}", ""),
        ("{{ range.__globals__ }}", ""),
        # removed globals and Flask-only names are simply undefined
        (
            "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
            Raises("'cycler' is undefined"),
        ),
        ("{{ lipsum.__globals__['os'] }}", ""),
        ("{{ joiner.__init__.__globals__ }}", ""),
        ("{{ namespace.__init__.__globals__ }}", ""),
        ("{{ namespace() }}", Raises("'namespace' is undefined")),
        ("{{ config.items() }}", Raises("'config' is undefined")),
        ("{{ request.application.__globals__ }}", ""),
        ("{{ get_flashed_messages.__globals__ }}", ""),
        ("{{ url_for.__globals__['os'].popen('id') }}", Raises("'url_for' is undefined")),
        # str.format and % formatting cannot reach attributes
        ('{{ "{0.__class__}".format(@input) }}', Raises("'str object' has no attribute 'format'")),
        ('{{ "%s" % @input.__class__ }}', ""),
        ("{{ '%s'|format(@input.__class__) }}", ""),
        # immutability: no methods at all, mutating ones included
        ("{% set x = @input.pop() %}", Raises("'dict object' has no attribute 'pop'")),
        ("{{ @input.nums.append(4) }}", Raises("'list object' has no attribute 'append'")),
        ("{{ @input.name.upper() }}", Raises("'str object' has no attribute 'upper'")),
        # resources
        (
            "{% for i in range(10**9) %}{% endfor %}",
            Raises("range() would produce 1,000,000,000 items; the limit is 10,000"),
        ),
        (
            "{{ range(99999999) | list }}",
            Raises("range() would produce 99,999,999 items; the limit is 10,000"),
        ),
        (
            "{{ 'a' * 1000000000 }}",
            Raises("the repeated string would be 1,000,000,000 characters; the limit is 1,000,000"),
        ),
        (
            "{{ [0] * 10**9 }}",
            Raises("the repeated list would have 1,000,000,000 items; the limit is 100,000"),
        ),
        ("{{ 10 ** (10**9) }}", Raises("the power would exceed 10,000 bits")),
        (
            "{{ (10 ** 3000) * (10 ** 3000) * (10 ** 3000) * (10 ** 3000) }}",
            Raises("the product would exceed 10,000 bits"),
        ),
        (
            "{{ ''|format('%s'*10**8) }}",
            Raises("the repeated string would be 200,000,000 characters; the limit is 1,000,000"),
        ),
        (
            "{{ '%1000000000s'|format(1) }}",
            Raises("a % format field width of 1,000,000,000 exceeds the limit of 10,000"),
        ),
        ("{{ '%*d' % (10**9, 1) }}", Raises("'*' field widths are not supported in % formatting")),
        (
            "{{ 'a'|center(10**9) }}",
            Raises("center() width 1,000,000,000 exceeds the limit of 10,000"),
        ),
        ("{{ 'x'|indent(10**9, true) }}", Raises("indent() width exceeds the limit of 10,000")),
        (
            "{{ 'ab'|replace('', 'x'*999999) }}",
            Raises("the replaced string would be 2,999,999 characters; the limit is 1,000,000"),
        ),
        (
            "{{ [1]|batch(10**9)|list }}",
            Raises("a batch would have 1,000,000,000 items; the limit is 100,000"),
        ),
        (
            "{{ [1]|slice(10**9)|list }}",
            Raises("the sliced list would have 1,000,000,000 items; the limit is 100,000"),
        ),
        (
            "{% set s = 'a'*600000 %}{{ s + s }}",
            Raises("the string would be 1,200,000 characters; the limit is 1,000,000"),
        ),
        (
            "{% set s = 'a'*600000 %}{{ s ~ s }}",
            Raises("the concatenated string would be 1,200,000 characters; the limit is 1,000,000"),
        ),
        (
            "{% set s = 'a'*600000 %}{{ ([s] * 2)|join }}",
            Raises("the joined string would be 1,200,000 characters; the limit is 1,000,000"),
        ),
        (
            "{% set s = 'a b '*200000 %}{{ s|wordwrap(1, wrapstring='x'*10) }}",
            Raises("the wrapped string would be 8,800,000 characters; the limit is 1,000,000"),
        ),
        (
            "{% for i in range(10000) %}{{ 'x'*200 }}{% endfor %}",
            Raises("the output exceeds 1,000,000 characters"),
        ),
        (
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
            Raises("the template ran more than 100,000 loop iterations and calls"),
        ),
        (
            "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
            "{{ f(30) }}",
            Raises("the template ran more than 100,000 loop iterations and calls"),
        ),
        (
            "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
            Raises("the template recurses too deeply"),
        ),
    ],
)
def test_sandbox(source: str, outcome: str) -> None:
    template = compile_template("nunjucks", source)
    if isinstance(outcome, Raises):
        with pytest.raises(InvalidTemplateError) as info:
            template.render(CONTEXT)
        assert outcome in info.value.message
        assert "<class" not in info.value.message and "object at" not in info.value.message
    else:
        text = template.render(CONTEXT)
        assert text == outcome
        assert not any(leak in text for leak in _LEAKS)
    assert CONTEXT["@input"]["nums"] == [3, 1, 2] and "a" in CONTEXT["@input"]


def test_sandbox_globals() -> None:
    assert nunjucks("{{ range(3)|list }}|{{ range(10000)|length }}|{{ dict(a=1) }}") == (
        '[0,1,2]|10000|{"a":1}'
    )


# -- caching, names, helpers ----------------------------------------------------------------


@pytest.mark.parametrize("engine", ["nunjucks", "mustache", "handlebars"])
def test_compiled_templates_are_cached(engine: str) -> None:
    first = compile_template(engine, "{{ x }} cached")
    assert compile_template(engine, "{{ x }} cached") is first
    assert isinstance(first, CompiledTemplate)
    assert (first.engine, first.source) == (engine, "{{ x }} cached")
    assert pickle.loads(pickle.dumps(first)) is first


@pytest.mark.parametrize(
    ("engine", "source", "names"),
    [
        (
            "nunjucks",
            "{{ @input.a }}{% for x in @mod.items %}{{ x }}{{ @session }}{% endfor %}",
            {"@input", "@mod", "@session"},
        ),
        ("nunjucks", "{% set @x = 1 %}{{ @x }}{{ plain }}", set()),
        ("nunjucks", "no tags @input", set()),
        ("nunjucks", "{{ broken", set()),
        (
            "mustache",
            "{{ @input.a }}{{#@mod.run}}{{ @session.email }}{{/@mod.run}}{{ x }}",
            {"@input", "@mod", "@session"},
        ),
        (
            "handlebars",
            "{{[@input].a}}{{@index}}{{#each [@mod].items}}{{/each}}",
            {"@input", "@mod"},
        ),
    ],
)
def test_template_names(engine: str, source: str, names: set[str]) -> None:
    assert template_names(engine, source) == names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ @input.x }}", True),
        ("Hello {{name}}!", True),
        ("{% if x %}y{% endif %}", True),
        ("{{\n@input\n}}", True),
        ("{{ unclosed", False),
        ("}} {{", False),
        ("{#comment#}", False),
        ("plain {x} text", False),
        ("", False),
    ],
)
def test_looks_like_template(text: str, expected: bool) -> None:
    assert looks_like_template(text) is expected


# -- mustache -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ @input.name }}", "Ada"),
        ("{{@mod.count}}", "2"),
        ("{{ @input.items.0.k }}|{{ @input.items.length }}|{{ @input.name.length }}", "1|2|3"),
        ("{{#@input.items}}[{{k}}]{{/@input.items}}", "[1][2]"),
        ("{{#@input.nums}}{{.}},{{/@input.nums}}", "3,1,2,"),
        ("{{#@input.items}}{{.}}{{/@input.items}}", '{"k":1}{"k":2}'),
        ("{{#@input.obj}}a={{a}}{{/@input.obj}}", "a=1"),
        ("{{#@input.items}}{{@input.name}}{{/@input.items}}", "AdaAda"),  # outer scopes
        ("{{#@input.flag}}yes{{/@input.flag}}{{^@input.flag}}no{{/@input.flag}}", "yes"),
        ("{{#@input.off}}yes{{/@input.off}}{{^@input.off}}no{{/@input.off}}", "no"),
        ("{{#@input.zero}}yes{{/@input.zero}}{{^@input.zero}}no{{/@input.zero}}", "no"),
        ("{{#@input.empty}}yes{{/@input.empty}}{{^@input.empty}}none{{/@input.empty}}", "none"),
        ("{{#@input.missing}}yes{{/@input.missing}}{{^@input.missing}}no{{/@input.missing}}", "no"),
        ("[{{ @input.missing }}][{{ nope.a.b }}][{{ @input.nothing }}]", "[][][]"),
        ("{{ @input.__class__ }}{{ @input.keys }}{{ @input.items.append }}", ""),
        ("{{ @input.half }} {{ @input.flag }} {{ @input.obj }}", '0.5 true {"a":1}'),
        ("{{{ @input.amp }}} {{& @input.amp }}", "a & <b> a & <b>"),
        ("{{=<% %>=}}<% @mod.count %> {{ x }}", "2 {{ x }}"),
        ("{{> partial }}x", "x"),  # no partials: renders "", as mustache.js does without them
        ("a\n  {{#@mod.run}}\n  line\n  {{/@mod.run}}\nb", "a\n  line\nb"),  # standalone tags
        ("{{ plain }}", "P"),
        ("no tags", "no tags"),
    ],
)
def test_mustache(source: str, expected: str) -> None:
    assert render("mustache", source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{#@input.x}}open",
            "Invalid template: the section {{#@input.x}} opened at line 1 is never closed. "
            'Template: "{{#@input.x}}open"',
        ),
        (
            "{{/x}}",
            'Invalid template: the closing tag {{/x}} has no open section. Template: "{{/x}}"',
        ),
        (
            "{{#a}}{{/b}}",
            "Invalid template: the closing tag {{/b}} does not match the open section {{#a}}. "
            'Template: "{{#a}}{{/b}}"',
        ),
        ("a\n{{ x", 'Invalid template: unclosed tag at line 2. Template: "a {{ x"'),
        ("{{}}", "Invalid template: empty tag '{{}}'. Template: \"{{}}\""),
    ],
)
def test_mustache_syntax_errors(source: str, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        compile_template("mustache", source)
    assert info.value.message == message


def test_mustache_output_limit() -> None:
    big = {"@input": {"rows": list(range(2000)), "text": "x" * 1000}}
    template = compile_template("mustache", "{{#@input.rows}}{{@input.text}}{{/@input.rows}}")
    with pytest.raises(InvalidTemplateError, match="the output exceeds 1,000,000 characters"):
        template.render(big)


# -- handlebars -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{@input.name}}", ""),  # @-names are data variables in handlebars, as in PixieBrix
        ("{{[@input].name}}", "Ada"),  # a segment literal reaches the key, as in handlebars.js
        ("{{plain}}", "P"),
        ("{{[@input].items.0.k}}|{{[@input].items.length}}", "1|2"),
        (
            "{{#each [@input].items}}{{k}}:{{@index}}{{#if @last}}.{{else}},{{/if}}{{/each}}",
            "1:0,2:1.",
        ),
        ("{{#each [@input].obj}}{{@key}}={{this}}{{/each}}", "a=1"),
        ("{{#each [@input].empty}}x{{else}}empty{{/each}}", "empty"),
        ("{{#if [@input].flag}}y{{else}}n{{/if}}{{#if [@input].empty}}y{{else}}n{{/if}}", "yn"),
        ("{{#unless [@input].zero}}z{{/unless}}", "z"),
        ("{{#with [@input].obj}}{{a}}{{/with}}", "1"),
        ("{{lookup [@input] 'name'}}", "Ada"),
        (
            "{{[@input].half}} {{[@input].flag}} {{[@input].obj}} {{[@input].nothing}}",
            '0.5 true {"a":1} ',
        ),
        ("{{this.__class__}}{{[@input].__class__}}{{[@input].keys}}", ""),
        ("{{!-- a comment --}}x{{! another }}", "x"),
        ("{{{{raw}}}}{{[@input].name}}{{{{/raw}}}}", "{{[@input].name}}"),
        ("  {{~[@input].name~}}  ", "Ada"),
    ],
)
def test_handlebars(source: str, expected: str) -> None:
    assert render("handlebars", source) == expected


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{#if x}}", "a tag could not be parsed (unclosed, unmatched or unsupported)"),
        ("{{x", "a tag could not be parsed (unclosed, unmatched or unsupported)"),
        ("{{/if}}", "unexpected text at character 2"),
        ("{{> partial}}", "handlebars partials ({{> name}}) are not supported"),
        # pybars pastes names into Python source: quotes and backslashes never reach it
        (
            "{{[a') or __import__('os').getcwd() or ('] }}",
            "unsupported characters in the name \"a') or __import__('os').getcwd() or ('\"",
        ),
        ("{{[a\\]}}", "unsupported characters in the name 'a\\\\'"),
        ('{{helper "a\\" + x"}}', "backslashes in handlebars string literals are not supported"),
    ],
)
def test_handlebars_syntax_errors(source: str, reason: str) -> None:
    with pytest.raises(DefinitionError) as info:
        compile_template("handlebars", source)
    assert info.value.message.startswith(f"Invalid template: {reason}. Template: ")


def test_handlebars_step_limit() -> None:
    template = compile_template(
        "handlebars",
        "{{#each [@input].l}}{{#each ../[@input].l}}{{#each ../../[@input].l}}x"
        "{{/each}}{{/each}}{{/each}}",
    )
    assert template.render({"@input": {"l": [1, 2]}}) == "x" * 8
    with pytest.raises(InvalidTemplateError, match="more than 100,000 loop iterations"):
        template.render({"@input": {"l": list(range(100))}})


def test_handlebars_render_error() -> None:
    with pytest.raises(InvalidTemplateError) as info:
        render("handlebars", "{{foo bar}}")
    assert (
        info.value.message == "Invalid template: Missing helper: 'foo'. Template: \"{{foo bar}}\""
    )


# -- properties -----------------------------------------------------------------------------

_template_text = st.text(
    alphabet=st.sampled_from(list("{}%#@!/^&>=.[]'\" ax01-|()~\n")), max_size=24
)


@settings(max_examples=100, deadline=None)
@given(_template_text)
def test_nunjucks_and_mustache_fail_only_with_brickrun_errors(source: str) -> None:
    for engine in ("nunjucks", "mustache"):
        with contextlib.suppress(BrickrunError):
            compile_template(engine, source).render(CONTEXT)


@settings(max_examples=40, deadline=None)
@given(_template_text)
def test_handlebars_fails_only_with_brickrun_errors(source: str) -> None:
    with contextlib.suppress(BrickrunError):
        compile_template("handlebars", source).render(CONTEXT)


@given(st.text().filter(lambda s: "{{" not in s and "{%" not in s and "{#" not in s))
def test_rewrite_leaves_text_without_blocks_alone(text: str) -> None:
    assert rewrite_at_names(text) == text


# Text-and-lookups templates skip Jinja (a fast path); a trailing empty `{% if %}` forces the
# Jinja path without changing the output, so both must agree on every value shape.
_SIMPLE_TEMPLATES = [
    "{{ @session.email }}-{{ @instant.timestamp }}-{{ @unique.uuid }}",
    "{{ @a }}",
    "x {{ @a.b.c }} y",
    "{{ @a.length }}/{{ @a.0 }}",
    "{{ @missing.deep.er }}|{{ @a.missing }}",
    "{{ @a_b }}{{ @a }}",
]
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["b", "c", "length", "0", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300)
@given(
    template=st.sampled_from(_SIMPLE_TEMPLATES),
    context=st.dictionaries(
        st.sampled_from(["@a", "@session", "@instant", "@unique", "@a_b", "@a-b", "_at_a"]),
        _JSONISH | st.fixed_dictionaries({"email": _JSONISH, "timestamp": _JSONISH}),
        max_size=5,
    ),
)
def test_lookup_only_templates_render_exactly_as_jinja(template: str, context: dict) -> None:
    fast = compile_template("nunjucks", template)
    jinja = compile_template("nunjucks", template + "{% if true %}{% endif %}")
    assert fast.render(context) == jinja.render(context)
