"""Integrations (``kind: service``): configurations, the value a pipeline sees, request auth.

An integration kind is a ``kind: service`` definition. Its ``inputSchema`` lists the fields of
a configuration; a field whose schema is ``$ref: https://app.pixiebrix.com/schemas/key#`` is a
**secret**. Its optional ``authentication`` block holds templates over the configuration's
fields (mustache, as in PixieBrix, unless tagged ``!nunjucks``/``!handlebars``)::

    authentication:
      baseURL: "{{ baseURL }}"
      headers: {Authorization: "Bearer {{ apiKey }}"}
      params: {api_key: "{{ apiKey }}"}

**Configurations** (the values of one integration) come from three sources; a later source
overrides an earlier one field by field:

1. a config file, YAML or JSON, ``{"@acme/api": {"apiKey": "...", "baseURL": "..."}}`` (the
   ``file`` argument, else the file named by ``$BRICKRUN_INTEGRATIONS_FILE``); an optional
   ``__label`` key names the configuration;
2. environment variables ``BRICKRUN_INTEGRATION__<ID>__<FIELD>``: ``<ID>`` and ``<FIELD>`` are
   the integration id and the field name, upper-cased, with every run of characters other
   than ASCII letters and digits replaced by ``_`` and leading and trailing ``_`` removed
   (``@acme/api`` + ``apiKey`` → ``BRICKRUN_INTEGRATION__ACME_API__APIKEY``). Values are
   converted to the field's schema type (integer, number, boolean; JSON for objects and
   arrays). Two ids that map to the same ``<ID>`` share their variables, so keep them apart;
3. explicit Python mappings (``Integrations(configs)``, ``configure``).

A configuration is checked against the service's ``inputSchema`` (defaults applied first; a
field the schema does not list is an error) when it is first used. Errors are
``DefinitionError``s naming the integration, the field and where the value was written (file,
line and column, or the environment variable), never the value.

**Secrets.** A pipeline sees an integration (``@<key>``, or an integration-typed input) as an
``IntegrationContext``: a plain JSON object ``{...non-secret fields, "__service": {"id",
"label"}}``. Secret fields are not in it, so ``!var "@acme.apiKey"`` is ``null`` and templates
render ``""``; traces, ``json.dumps`` and pickles of it hold no secret (``redact`` masks
``__service`` too). The real configuration rides along as a private attribute (a capability
handle) that paths and templates cannot reach (they read own keys only), that copies keep and
that pickling drops. ``apply_auth`` uses the handle to render the ``authentication`` templates
with the real values; a hand-written or JSON round-tripped ``{"__service": ...}`` object carries
no handle and so no credentials. With a ``baseURL``, credentials are only ever sent below it
(``apply_auth`` refuses other URLs); without one they go wherever the request's ``url`` points,
as in PixieBrix, so a service that holds secrets should declare its ``baseURL``.
``redact_secrets`` masks secret values in a text (for messages about URLs built from them).

``@pixiebrix/api`` (the team-database integration) needs no configuration: its context value
always exists, ``{"__service": {"id": "@pixiebrix/api", "label": "Team databases"}}``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote, quote_plus

from ._model import Definition, ServiceDefinition
from ._paths import copy_value
from ._schema import InputValidator, apply_defaults
from ._templates import CompiledTemplate, compile_template
from ._yaml import load_file
from .errors import DefinitionError, DefinitionErrors, Location, PropError, format_path

if TYPE_CHECKING:
    import httpx  # imported when first needed: it costs ~0.1 s, and most runs send no request

__all__ = [
    "ENV_PREFIX",
    "FILE_ENV",
    "KEY_SCHEMA_ID",
    "LABEL_KEY",
    "PIXIEBRIX_API",
    "IntegrationConfig",
    "IntegrationContext",
    "Integrations",
    "ServiceLookup",
    "apply_auth",
    "check_service",
    "display_url",
    "env_name",
    "redact_secrets",
    "secret_fields",
]

KEY_SCHEMA_ID: Final = "https://app.pixiebrix.com/schemas/key"
PIXIEBRIX_API: Final = "@pixiebrix/api"
PIXIEBRIX_API_LABEL: Final = "Team databases"
ENV_PREFIX: Final = "BRICKRUN_INTEGRATION__"
FILE_ENV: Final = "BRICKRUN_INTEGRATIONS_FILE"
LABEL_KEY: Final = "__label"
MASK: Final = "***"
# Shorter secrets are not searched for in texts: masking them would garble ordinary words.
MIN_SCRUB_LENGTH: Final = 4

_ID: Final = re.compile(
    r"^@[a-z0-9-~][a-z0-9-._~]*/([a-z0-9-~][a-z0-9-._~]*/)?[a-z0-9-~][a-z0-9-._~]*$"
)
_NOT_ALNUM: Final = re.compile(r"[^A-Za-z0-9]+")
_AUTH_KEYS: Final = ("baseURL", "headers", "params")
_TEMPLATE_TAGS: Final = ("mustache", "nunjucks", "handlebars")
_ABSOLUTE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _token(text: str) -> str:
    return _NOT_ALNUM.sub("_", text).strip("_").upper()


def env_name(integration_id: str, field_name: str) -> str:
    """The environment variable that sets one field: ``BRICKRUN_INTEGRATION__ACME_API__APIKEY``."""
    return f"{ENV_PREFIX}{_token(integration_id)}__{_token(field_name)}"


def _is_key_schema(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return False
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.rstrip("#") == KEY_SCHEMA_ID:
        return True
    return any(
        isinstance(schema.get(keyword), list) and any(_is_key_schema(s) for s in schema[keyword])
        for keyword in ("allOf", "anyOf", "oneOf")
    )


def secret_fields(schema: Mapping[str, Any]) -> frozenset[str]:
    """The fields of a service ``inputSchema`` that are secrets (``$ref`` to the key schema,
    directly or inside ``allOf``/``anyOf``/``oneOf``)."""
    properties = schema.get("properties") or {}
    return frozenset(name for name, prop in properties.items() if _is_key_schema(prop))


# --------------------------------------------------------------------------------------------
# configurations and context values


@dataclass(frozen=True, eq=False, repr=False)
class IntegrationConfig:
    """One configuration of an integration: field values (secrets included) and a label.

    ``values`` is secret material: it never becomes part of a context value, a trace, a log
    or an error message, and ``repr`` shows the field names only.
    """

    integration_id: str
    values: Mapping[str, Any]
    label: str | None = None

    def __repr__(self) -> str:
        return (
            f"IntegrationConfig({self.integration_id!r}, fields={sorted(self.values)!r}, "
            f"label={self.label!r})"
        )


@dataclass(frozen=True, slots=True)
class _Authentication:
    """A service's compiled ``authentication`` templates."""

    base_url: CompiledTemplate | None
    headers: tuple[tuple[str, CompiledTemplate], ...]
    params: tuple[tuple[str, CompiledTemplate], ...]


class _Binding:
    """The capability an ``IntegrationContext`` carries: the real configuration and its auth."""

    __slots__ = ("auth", "config", "public", "secrets")

    def __init__(
        self,
        config: IntegrationConfig,
        public: Mapping[str, Any],
        auth: _Authentication | None,
        secrets: Iterable[str],
    ) -> None:
        self.config = config
        self.public = public  # the context value's data: non-secret fields and __service
        self.auth = auth
        # Longest first, so a secret containing another is masked whole.
        self.secrets = tuple(sorted(set(secrets), key=len, reverse=True))

    def __repr__(self) -> str:
        return f"<credentials of integration {self.config.integration_id}>"


class IntegrationContext(dict[str, Any]):
    """What a pipeline sees for an integration: a plain JSON object of the non-secret fields
    plus ``__service: {id, label}``.

    It carries the real configuration as a private attribute that paths and templates cannot
    reach. ``copy``/``deepcopy`` (and so ``!var``) keep it; pickling gives a plain ``dict``
    without it, so nothing that leaves the process holds a secret.
    """

    __slots__ = ("_binding",)

    def __init__(self, data: Mapping[str, Any], binding: _Binding) -> None:
        super().__init__(data)
        self._binding = binding

    @property
    def integration_id(self) -> str:
        return self._binding.config.integration_id

    def __copy__(self) -> IntegrationContext:
        return IntegrationContext(self, self._binding)

    def __brickrun_copy__(self) -> IntegrationContext:
        """The deep copy ``copy_value`` (and so ``!var``) makes: the data copied, the handle
        kept."""
        return IntegrationContext({k: copy_value(v) for k, v in self.items()}, self._binding)

    def __deepcopy__(self, memo: dict[int, Any]) -> IntegrationContext:
        return IntegrationContext(copy.deepcopy(dict(self), memo), self._binding)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


_API_BINDING: Final = _Binding(
    IntegrationConfig(PIXIEBRIX_API, {}, PIXIEBRIX_API_LABEL),
    {"__service": {"id": PIXIEBRIX_API, "label": PIXIEBRIX_API_LABEL}},
    None,
    (),
)


def _binding_of(context: Any) -> _Binding | None:
    """The handle of an integration value; ``None`` for ``@pixiebrix/api`` (no credentials).

    Raises ``PropError`` for anything else: a value without a handle carries no credentials.
    """
    if isinstance(context, IntegrationContext):
        return context._binding
    if not isinstance(context, Mapping):
        raise PropError(f"service: expected an integration, found {_kind(context)}", prop="service")
    service = context.get("__service")
    integration_id = service.get("id") if isinstance(service, Mapping) else None
    if integration_id == PIXIEBRIX_API:
        return None
    named = f"integration {integration_id} " if isinstance(integration_id, str) else ""
    raise PropError(
        f"service: the {named}value is not a configured integration: it carries no "
        "credentials (it was written by hand or passed through JSON); pass the integration "
        'itself, e.g. !var "@acme"',
        prop="service",
    )


def _join(base: str, url: str) -> str:
    """``url`` relative to ``base`` by concatenation (``v1`` + ``items`` = ``v1/items``);
    an absolute ``url`` is kept as is."""
    if _ABSOLUTE.match(url):
        return url
    if not url or url.startswith(("?", "#")):
        return base + url
    return base.rstrip("/") + "/" + url.lstrip("/")


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme)


def _within(base: httpx.URL, url: httpx.URL) -> bool:
    """Whether ``url`` is ``base`` or below it: same scheme, host and port, path prefix on a
    segment boundary (``/v1`` covers ``/v1/items``, not ``/v10``)."""
    if _origin(url) != _origin(base):
        return False
    prefix = base.path.rstrip("/")
    return not prefix or url.path == prefix or url.path.startswith(prefix + "/")


def display_url(url: str | httpx.URL) -> str:
    """A URL fit for messages: no user info, query or fragment (they may hold credentials)."""
    import httpx

    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))
    except Exception:  # an unparseable URL is never echoed raw
        return "<invalid URL>"


def apply_auth(context: Mapping[str, Any] | None, request: Mapping[str, Any]) -> dict[str, Any]:
    """``request`` (``{url, headers?, params?, ...}``) with an integration's authentication.

    With a ``baseURL``, a relative ``url`` is joined to it, and the final URL must lie below
    it (``PropError`` otherwise: credentials are only ever sent to the integration's base URL).
    The ``headers`` and ``params`` templates are rendered against the real configuration and
    override the request's own (header names compared case-insensitively). ``context`` is
    ``None`` (no integration), an ``IntegrationContext``, or the ``@pixiebrix/api`` value;
    anything else is a ``PropError``. Returns a new dict; ``request`` is not changed.
    """
    out = dict(request)
    if context is None:
        return out
    binding = _binding_of(context)
    if binding is None or binding.auth is None:
        return out
    auth = binding.auth
    values = binding.config.values
    if auth.base_url is not None:
        import httpx

        base = auth.base_url.render(values).strip()
        if base:
            url = _join(base, str(request.get("url") or ""))
            try:
                inside = _within(httpx.URL(base), httpx.URL(url))
            except Exception:
                inside = False
            if not inside:
                raise PropError(
                    redact_secrets(
                        context,
                        f"url {display_url(url)} is outside the base URL of integration "
                        f"{binding.config.integration_id} ({display_url(base)}); its "
                        "credentials are only sent below its base URL",
                    ),
                    prop="url",
                )
            out["url"] = url
    if auth.headers:
        replaced = {name.lower() for name, _ in auth.headers}
        headers = {
            k: v for k, v in (request.get("headers") or {}).items() if k.lower() not in replaced
        }
        headers.update((name, template.render(values)) for name, template in auth.headers)
        out["headers"] = headers
    if auth.params:
        params = dict(request.get("params") or {})
        params.update((name, template.render(values)) for name, template in auth.params)
        out["params"] = params
    return out


def redact_secrets(context: Any, text: str) -> str:
    """``text`` with the secret values of an integration masked as ``***`` (raw and
    percent-encoded). Secrets shorter than ``MIN_SCRUB_LENGTH`` are left alone."""
    if not isinstance(context, IntegrationContext):
        return text
    for secret in context._binding.secrets:
        if len(secret) < MIN_SCRUB_LENGTH:
            continue
        for form in (secret, quote(secret, safe=""), quote(secret), quote_plus(secret)):
            text = text.replace(form, MASK)
    return text


# --------------------------------------------------------------------------------------------
# service definitions


def _template(value: Any) -> CompiledTemplate | str:
    """Compile one ``authentication`` value; a problem is returned as a sentence."""
    engine = "mustache"
    if isinstance(value, Mapping) and value.get("__type__") in _TEMPLATE_TAGS:
        engine, value = value["__type__"], value.get("__value__")
    if not isinstance(value, str):
        return f"expected a template string, found {_kind(value)}"
    try:
        return compile_template(engine, value)
    except DefinitionError as exc:
        return exc.message


def _compile_authentication(
    definition: ServiceDefinition,
) -> tuple[_Authentication | None, list[DefinitionError]]:
    block = definition.data.get("authentication")
    if block is None:
        return None, []
    problems: list[DefinitionError] = []

    def problem(path: tuple[str, ...], message: str) -> None:
        problems.append(
            DefinitionError(message, location=definition.location, path=("authentication", *path))
        )

    if not isinstance(block, Mapping):
        problem((), f"expected a mapping of {', '.join(_AUTH_KEYS)}, found {_kind(block)}")
        return None, problems
    for key in block:
        if key not in _AUTH_KEYS:
            problem(
                (str(key),),
                f"unsupported authentication key {key!r}; brickrun supports "
                f"{', '.join(_AUTH_KEYS)}",
            )
    base_url: CompiledTemplate | None = None
    if block.get("baseURL") is not None:
        compiled = _template(block["baseURL"])
        if isinstance(compiled, str):
            problem(("baseURL",), compiled)
        else:
            base_url = compiled
    maps: dict[str, tuple[tuple[str, CompiledTemplate], ...]] = {}
    for key in ("headers", "params"):
        entries = block.get(key) or {}
        if not isinstance(entries, Mapping):
            problem((key,), f"expected a mapping of names to templates, found {_kind(entries)}")
            continue
        compiled_entries = []
        for name, value in entries.items():
            compiled = _template(value)
            if isinstance(compiled, str):
                problem((key, str(name)), compiled)
            else:
                compiled_entries.append((str(name), compiled))
        maps[key] = tuple(compiled_entries)
    auth = _Authentication(base_url, maps.get("headers", ()), maps.get("params", ()))
    return auth, problems


def check_service(definition: ServiceDefinition) -> list[DefinitionError]:
    """Problems with a service definition's ``authentication`` block (empty when fine)."""
    return _compile_authentication(definition)[1]


class ServiceLookup(Protocol):
    """Where service definitions are found (a ``Registry`` is one)."""

    def find_definition(self, definition_id: str) -> Definition | None: ...


@dataclass
class _Layer:
    """One source's values for one integration, with where each was written."""

    values: dict[str, Any]
    label: str | None
    where: Location | None  # the configuration as a whole (the integration's key in a file)
    fields: dict[str, Location | None] = field(default_factory=dict)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _from_env(text: str, schema: Any) -> Any:
    """An environment string as the field's schema type; unconvertible text stays a string
    (validation then says what was expected)."""
    declared = schema.get("type") if isinstance(schema, Mapping) else None
    types = [declared] if isinstance(declared, str) else list(declared or [])
    if not types or "string" in types:
        return text
    stripped = text.strip()
    if "null" in types and stripped.lower() in ("", "null"):
        return None
    if ("integer" in types or "number" in types) and re.fullmatch(r"[-+]?\d+", stripped):
        return int(stripped)
    if "number" in types:
        try:
            number = float(stripped)
        except ValueError:
            pass
        else:
            if number == number and number not in (float("inf"), float("-inf")):
                return number
    if "boolean" in types:
        lowered = stripped.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
    if "object" in types or "array" in types:
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return text


def _scrub(message: str, value: Any, secrets: Iterable[str]) -> str:
    """A validation message without the value it complains about.

    jsonschema opens most messages with ``repr(instance)``: that becomes "the value (a
    string)"; string leaves quoted anywhere else are masked, and so is any secret.
    """
    shown = repr(value)
    if message.startswith(shown):
        message = f"the value ({_kind(value)})" + message[len(shown) :]
    for leaf in _string_leaves(value):
        message = message.replace(repr(leaf), repr(MASK))
    for secret in secrets:
        if len(secret) >= MIN_SCRUB_LENGTH:
            message = message.replace(secret, MASK)
    return message


def _string_leaves(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _string_leaves(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _string_leaves(v)]
    return []


class Integrations:
    """Service definitions and configurations; what pipelines see for each integration.

    ``configs``: explicit configurations by integration id (they override the file and the
    environment, field by field). ``file``: a YAML/JSON config file (default: the file named by
    ``$BRICKRUN_INTEGRATIONS_FILE``, if set). ``environ``: where ``BRICKRUN_INTEGRATION__*``
    variables are read (default ``os.environ``, read once, now; pass ``{}`` to ignore the
    environment). ``services``: where ``kind: service`` definitions are looked up (a
    ``Registry``); ``add_service`` adds more.

    Malformed files raise ``DefinitionError`` here; a configuration is validated against its
    service when first used (``config``, ``context_value``) or by ``check()``.
    """

    def __init__(
        self,
        configs: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        services: ServiceLookup | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.services = services
        self._services: dict[str, ServiceDefinition] = {}
        self._file_layers: dict[str, list[_Layer]] = {}
        self._explicit_layers: dict[str, list[_Layer]] = {}
        self._environ = {
            name.upper(): value
            for name, value in env.items()
            if name.upper().startswith(ENV_PREFIX)
        }
        self._cache: dict[str, tuple[ServiceDefinition | None, _Binding]] = {}
        if file is None:
            file = env.get(FILE_ENV) or None
        if file is not None:
            self.load_file(file)
        for integration_id, values in (configs or {}).items():
            self.configure(integration_id, values)

    # -- adding ------------------------------------------------------------------------------
    def add_service(self, definition: ServiceDefinition) -> None:
        """Make a ``kind: service`` definition known (it wins over ``services``)."""
        self._services[definition.id] = definition
        self._cache.pop(definition.id, None)

    def load_file(self, path: str | os.PathLike[str]) -> list[str]:
        """Read configurations from a YAML or JSON file; returns the integration ids in it.

        The file holds one mapping ``{integration id: {field: value, ..., "__label"?: str}}``.
        Raises ``DefinitionError`` (with file, line and column) when it is not of that shape.
        """
        documents = load_file(path)
        if not documents:
            return []
        document = documents[0]
        source = document.source
        if len(documents) > 1:
            raise DefinitionError(
                f"found {len(documents)} YAML documents; expected one mapping of integration "
                "ids to configurations",
                location=source.locate(()),
            )
        data = document.data
        if not isinstance(data, Mapping):
            raise DefinitionError(
                f"expected a mapping of integration ids to configurations, found {_kind(data)}",
                location=source.locate(()),
            )
        layers: list[tuple[str, _Layer]] = []
        for integration_id, entry in data.items():
            if not isinstance(integration_id, str) or not _ID.match(integration_id):
                raise DefinitionError(
                    f"found {integration_id!r}; expected an integration id such as @scope/name",
                    location=source.locate_key((integration_id,)),
                )
            if not isinstance(entry, Mapping):
                raise DefinitionError(
                    f"integration {integration_id}: expected a mapping of field names to "
                    f"values, found {_kind(entry)}",
                    location=source.locate((integration_id,)),
                )
            values = {k: v for k, v in entry.items() if k != LABEL_KEY}
            label = self._label(
                integration_id, entry.get(LABEL_KEY), source.locate((integration_id, LABEL_KEY))
            )
            layer = _Layer(
                values,
                label,
                source.locate_key((integration_id,)),
                {name: source.locate((integration_id, name)) for name in values},
            )
            layers.append((integration_id, layer))
        for integration_id, layer in layers:
            self._file_layers.setdefault(integration_id, []).append(layer)
            self._cache.pop(integration_id, None)
        return [integration_id for integration_id, _ in layers]

    def configure(
        self, integration_id: str, values: Mapping[str, Any], *, label: str | None = None
    ) -> None:
        """Set fields of an integration's configuration (over the file and the environment).

        ``values`` may hold ``__label``; ``label=`` wins over it.
        """
        if not isinstance(integration_id, str) or not _ID.match(integration_id):
            raise DefinitionError(
                f"found {integration_id!r}; expected an integration id such as @scope/name"
            )
        if not isinstance(values, Mapping):
            raise DefinitionError(
                f"integration {integration_id}: expected a mapping of field names to values, "
                f"found {_kind(values)}"
            )
        given = {k: copy_value(v) for k, v in values.items() if k != LABEL_KEY}
        label = self._label(integration_id, label or values.get(LABEL_KEY), None)
        layer = _Layer(given, label, None, dict.fromkeys(given))
        self._explicit_layers.setdefault(integration_id, []).append(layer)
        self._cache.pop(integration_id, None)

    @staticmethod
    def _label(integration_id: str, label: Any, where: Location | None) -> str | None:
        if label is None or isinstance(label, str):
            return label
        raise DefinitionError(
            f"integration {integration_id}: {LABEL_KEY} must be a string, found {_kind(label)}",
            location=where,
        )

    # -- reading -----------------------------------------------------------------------------
    def service(self, integration_id: str) -> ServiceDefinition | None:
        """The ``kind: service`` definition of that id, if one is known."""
        found = self._services.get(integration_id)
        if found is None and self.services is not None:
            definition = self.services.find_definition(integration_id)
            if isinstance(definition, ServiceDefinition):
                found = definition
        return found

    def configured_ids(self) -> list[str]:
        """Ids configured in the file or explicitly (environment-only ones are found when asked
        for, since their variable names are lossy)."""
        return sorted({*self._file_layers, *self._explicit_layers})

    def config(self, integration_id: str) -> IntegrationConfig | None:
        """The validated configuration of an integration (secrets included), or ``None`` when
        it is not configured. Raises ``DefinitionError`` for an invalid one."""
        binding = self._resolve(integration_id)
        return None if binding is None else binding.config

    def context_value(self, integration_id: str) -> IntegrationContext | None:
        """What a pipeline sees for the integration (a fresh copy each call), ``None`` when it
        is not configured. ``@pixiebrix/api`` always has one. Raises ``DefinitionError`` when
        the configuration is invalid or its service definition is not loaded."""
        if integration_id == PIXIEBRIX_API:  # on every record brick call: a literal copy
            return IntegrationContext(
                {"__service": {"id": PIXIEBRIX_API, "label": PIXIEBRIX_API_LABEL}}, _API_BINDING
            )
        binding = self._resolve(integration_id)
        if binding is None:
            return None
        return IntegrationContext(copy_value(binding.public), binding)

    def apply_auth(
        self, context: Mapping[str, Any] | None, request: Mapping[str, Any]
    ) -> dict[str, Any]:
        """See the module function ``apply_auth``."""
        return apply_auth(context, request)

    def redact_secrets(self, context: Any, text: str) -> str:
        """See the module function ``redact_secrets``."""
        return redact_secrets(context, text)

    def check(self) -> list[DefinitionError]:
        """Every problem with the configured integrations (for ``validate``-style checks)."""
        problems: list[DefinitionError] = []
        for integration_id in self.configured_ids():
            try:
                self._resolve(integration_id)
            except DefinitionErrors as exc:
                problems.extend(exc.errors)
            except DefinitionError as exc:
                problems.append(exc)
        return problems

    # -- resolving ---------------------------------------------------------------------------
    def _env_layer(
        self, integration_id: str, service: ServiceDefinition | None
    ) -> tuple[_Layer | None, list[DefinitionError]]:
        prefix = f"{ENV_PREFIX}{_token(integration_id)}__"
        found = {name: value for name, value in self._environ.items() if name.startswith(prefix)}
        if not found:
            return None, []
        if service is None:  # the caller reports the missing definition
            return _Layer({}, None, Location(f"environment variable {min(found)}")), []
        properties: Mapping[str, Any] = service.input_schema.get("properties") or {}
        by_token: dict[str, str] = {}
        for name in properties:
            by_token.setdefault(_token(name), name)
        layer = _Layer({}, None, Location(f"environment variable {min(found)}"))
        problems = []
        for variable, text in sorted(found.items()):
            field_name = by_token.get(variable[len(prefix) :])
            where = Location(f"environment variable {variable}")
            if field_name is None:
                expected = ", ".join(sorted(prefix + token for token in by_token)) or "none"
                problems.append(
                    DefinitionError(
                        f"integration {integration_id}: {variable} names no field of the "
                        f"integration; expected one of: {expected}",
                        location=where,
                    )
                )
                continue
            layer.values[field_name] = _from_env(text, properties[field_name])
            layer.fields[field_name] = where
        return layer, problems

    def _resolve(self, integration_id: str) -> _Binding | None:
        service = self.service(integration_id)
        cached = self._cache.get(integration_id)
        if cached is not None and cached[0] is service:
            return cached[1]
        env_layer, problems = self._env_layer(integration_id, service)
        layers = [
            *self._file_layers.get(integration_id, ()),
            *((env_layer,) if env_layer is not None else ()),
            *self._explicit_layers.get(integration_id, ()),
        ]
        if not layers:
            return None
        where = next((layer.where for layer in layers if layer.where is not None), None)
        if service is None:
            raise DefinitionError(
                f"integration {integration_id} is configured, but no `kind: service` "
                "definition with that id is loaded; load its definition so brickrun knows its "
                "fields and which of them are secret",
                location=where,
            )
        values: dict[str, Any] = {}
        located: dict[str, Location | None] = {}
        label: str | None = None
        for layer in layers:
            values.update(layer.values)
            located.update(layer.fields)
            if layer.label is not None:
                label = layer.label
        schema = service.input_schema
        secrets = secret_fields(schema)
        values = apply_defaults(schema, values)
        secret_values = [str(values[k]) for k in secrets if values.get(k) is not None]
        problems += self._problems(integration_id, schema, values, located, where, secret_values)
        auth, auth_problems = _compile_authentication(service)
        problems += auth_problems
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise DefinitionErrors(problems)
        public = {k: copy_value(v) for k, v in values.items() if k not in secrets}
        public["__service"] = {"id": integration_id, "label": label or service.name}
        config = IntegrationConfig(integration_id, values, label)
        binding = _Binding(config, public, auth, secret_values)
        self._cache[integration_id] = (service, binding)
        return binding

    @staticmethod
    def _problems(
        integration_id: str,
        schema: Mapping[str, Any],
        values: dict[str, Any],
        located: Mapping[str, Location | None],
        where: Location | None,
        secret_values: list[str],
    ) -> list[DefinitionError]:
        """Validation problems as sentences naming the integration and field, not the value."""
        properties: Mapping[str, Any] = schema.get("properties") or {}
        problems: list[DefinitionError] = []
        if properties:
            for name in sorted(set(values) - set(properties), key=str):
                problems.append(
                    DefinitionError(
                        f"integration {integration_id}: unknown field {name!r}; expected one "
                        f"of: {', '.join(sorted(properties))}",
                        location=located.get(name) or where,
                    )
                )
        for error in InputValidator(schema).errors(values):
            path, message = error["path"], error["message"]
            if not path:
                if properties and "Additional properties" in message:
                    continue  # reported above, with the field's location
                # Root messages name fields ("'apiKey' is a required property"), not values.
                problems.append(
                    DefinitionError(
                        f"integration {integration_id}: " + _scrub(message, values, secret_values),
                        location=where,
                    )
                )
                continue
            field_name = _field_of(path, values)
            value = values.get(field_name) if field_name is not None else values
            problems.append(
                DefinitionError(
                    f"integration {integration_id}, field {field_name or path}: "
                    + _scrub(message, value, secret_values),
                    location=(located.get(field_name) if field_name else None) or where,
                )
            )
        return problems


def _field_of(path: str, values: Mapping[str, Any]) -> str | None:
    """The top-level field an error path (``apiKey``, ``a.b``, ``["odd key"][0]``) is in."""
    for name in values:
        head = format_path([name])
        if path == head or path.startswith((head + ".", head + "[")):
            return name
    return None
