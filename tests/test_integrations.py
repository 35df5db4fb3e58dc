"""Integrations: configuration sources and precedence, validation messages, the context value
pipelines see (never a secret), ``apply_auth``, and the shipped example."""

from __future__ import annotations

import copy
import json
import pickle
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from brickrun import DefinitionError, PropError, Runtime, brick
from brickrun._definitions import compile_text
from brickrun._integrations import (
    IntegrationConfig,
    IntegrationContext,
    Integrations,
    env_name,
    secret_fields,
)
from brickrun._model import ServiceDefinition
from brickrun._trace import format_trace

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "integrations"

# A value that must never be seen outside the configuration and the outgoing request.
CANARY = "sk_canary_4e1f9a7b2c"

ACME_SERVICE = """\
apiVersion: v3
kind: service
metadata:
  id: "@acme/api"
  name: Acme API
inputSchema:
  type: object
  properties:
    baseURL: {type: string, default: "https://api.acme.example/v1"}
    apiKey: {$ref: "https://app.pixiebrix.com/schemas/key#", pattern: "^sk_"}
    port: {type: integer}
    debug: {type: boolean}
  required: [apiKey]
authentication:
  baseURL: "{{ baseURL }}"
  headers:
    Authorization: "Bearer {{ apiKey }}"
  params:
    key: "{{ apiKey }}"
"""


def service(text: str = ACME_SERVICE) -> ServiceDefinition:
    """Compile one ``kind: service`` document."""
    result = compile_text(text, "service.yaml")
    assert not result.errors, "\n".join(str(e) for e in result.errors)
    (definition,) = result.definitions
    assert isinstance(definition, ServiceDefinition)
    return definition


def integrations(
    configs: dict[str, dict[str, Any]] | None = None,
    *,
    file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Integrations:
    """``Integrations`` knowing the ``@acme/api`` service, ignoring the real environment."""
    found = Integrations(configs, file=file, environ={} if environ is None else environ)
    found.add_service(service())
    return found


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- sources ---------------------------------------------------------------------------------


def test_env_name_upper_cases_and_collapses_punctuation() -> None:
    assert env_name("@acme/api", "apiKey") == "BRICKRUN_INTEGRATION__ACME_API__APIKEY"
    assert (
        env_name("@acme/crm-v2/api", "api_key") == "BRICKRUN_INTEGRATION__ACME_CRM_V2_API__API_KEY"
    )


def test_secret_fields_are_refs_to_the_key_schema() -> None:
    assert secret_fields(service().input_schema) == {"apiKey"}
    assert secret_fields(
        {"properties": {"a": {"anyOf": [{"$ref": "https://app.pixiebrix.com/schemas/key"}]}}}
    ) == {"a"}


def test_config_from_a_yaml_file(tmp_path: Path) -> None:
    file = write(
        tmp_path / "integrations.yaml",
        f"""\
        "@acme/api":
          __label: Acme (prod)
          apiKey: {CANARY}
          port: 8443
        """,
    )
    found = integrations(file=file)
    config = found.config("@acme/api")
    assert config is not None
    assert config.values == {
        "apiKey": CANARY,
        "port": 8443,
        "baseURL": "https://api.acme.example/v1",  # the schema default
    }
    assert config.label == "Acme (prod)"
    assert found.context_value("@acme/api") == {
        "port": 8443,
        "baseURL": "https://api.acme.example/v1",
        "__service": {"id": "@acme/api", "label": "Acme (prod)"},
    }


def test_config_from_a_json_file_and_default_label(tmp_path: Path) -> None:
    file = tmp_path / "integrations.json"
    file.write_text(json.dumps({"@acme/api": {"apiKey": CANARY}}), encoding="utf-8")
    value = integrations(file=file).context_value("@acme/api")
    assert value is not None and value["__service"] == {"id": "@acme/api", "label": "Acme API"}


def test_config_file_named_by_the_environment(tmp_path: Path) -> None:
    file = write(tmp_path / "i.yaml", f'"@acme/api": {{apiKey: {CANARY}}}\n')
    found = integrations(environ={"BRICKRUN_INTEGRATIONS_FILE": str(file)})
    assert found.configured_ids() == ["@acme/api"]


def test_config_from_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRICKRUN_INTEGRATION__ACME_API__APIKEY", CANARY)
    monkeypatch.setenv("BRICKRUN_INTEGRATION__ACME_API__PORT", "8080")
    monkeypatch.setenv("BRICKRUN_INTEGRATION__ACME_API__DEBUG", "true")
    found = Integrations()  # reads os.environ
    found.add_service(service())
    config = found.config("@acme/api")
    assert config is not None
    assert config.values["apiKey"] == CANARY
    assert config.values["port"] == 8080 and config.values["debug"] is True


def test_precedence_is_file_then_environment_then_explicit_field_by_field(
    tmp_path: Path,
) -> None:
    file = write(
        tmp_path / "integrations.yaml",
        """\
        "@acme/api":
          __label: from the file
          apiKey: sk_from_file
          baseURL: https://file.example
          port: 1
        """,
    )
    environ = {
        "BRICKRUN_INTEGRATION__ACME_API__APIKEY": "sk_from_env",
        "BRICKRUN_INTEGRATION__ACME_API__PORT": "2",
    }
    found = integrations({"@acme/api": {"port": 3}}, file=file, environ=environ)
    config = found.config("@acme/api")
    assert config is not None
    assert config.values == {
        "apiKey": "sk_from_env",
        "baseURL": "https://file.example",
        "port": 3,
    }
    assert config.label == "from the file"


def test_configure_later_overrides_and_invalidates() -> None:
    found = integrations({"@acme/api": {"apiKey": "sk_first", "port": 1}})
    assert found.context_value("@acme/api")["port"] == 1  # type: ignore[index]
    found.configure("@acme/api", {"port": 2}, label="second")
    value = found.context_value("@acme/api")
    assert value is not None and value["port"] == 2
    assert value["__service"]["label"] == "second"


# -- validation ------------------------------------------------------------------------------


def test_invalid_value_in_a_file_names_integration_field_and_place_not_the_value(
    tmp_path: Path,
) -> None:
    file = write(
        tmp_path / "integrations.yaml",
        f"""\
        "@acme/api":
          apiKey: {CANARY}
          port: "{CANARY}"
        """,
    )
    with pytest.raises(DefinitionError) as info:
        integrations(file=file).context_value("@acme/api")
    text = str(info.value)
    assert text == (
        f"{file}:3:9: integration @acme/api, field port: "
        "the value (a string) is not of type 'integer'"
    )
    assert CANARY not in text


def test_secret_failing_its_pattern_is_never_quoted(tmp_path: Path) -> None:
    secret = "pk_canary_that_fails_the_pattern"
    with pytest.raises(DefinitionError) as info:
        integrations({"@acme/api": {"apiKey": secret}}).config("@acme/api")
    assert "integration @acme/api, field apiKey: the value (a string) does not match" in str(
        info.value
    )
    assert secret not in str(info.value) and secret not in repr(info.value.__dict__)


def test_invalid_environment_value_names_the_variable() -> None:
    environ = {
        "BRICKRUN_INTEGRATION__ACME_API__APIKEY": CANARY,
        "BRICKRUN_INTEGRATION__ACME_API__PORT": "eighty",
    }
    with pytest.raises(DefinitionError) as info:
        integrations(environ=environ).config("@acme/api")
    assert str(info.value) == (
        "environment variable BRICKRUN_INTEGRATION__ACME_API__PORT: integration @acme/api, "
        "field port: the value (a string) is not of type 'integer'"
    )


def test_environment_variable_for_an_unknown_field() -> None:
    environ = {"BRICKRUN_INTEGRATION__ACME_API__APIKY": CANARY}
    with pytest.raises(DefinitionError) as info:
        integrations(environ=environ).config("@acme/api")
    text = str(info.value)
    assert "BRICKRUN_INTEGRATION__ACME_API__APIKY names no field" in text
    assert "BRICKRUN_INTEGRATION__ACME_API__APIKEY" in text and CANARY not in text


def test_missing_required_field_and_unknown_field_are_both_reported() -> None:
    found = integrations({"@acme/api": {"apikey": CANARY}})
    problems = found.check()
    messages = sorted(p.message for p in problems)
    assert messages == [
        "integration @acme/api: 'apiKey' is a required property",
        "integration @acme/api: unknown field 'apikey'; expected one of: apiKey, baseURL, "
        "debug, port",
    ]
    with pytest.raises(DefinitionError) as info:
        found.context_value("@acme/api")
    assert CANARY not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected a mapping of integration ids to configurations, found a list"),
        ("acme: {}", "found 'acme'; expected an integration id such as @scope/name"),
        ('"@acme/api": 3', "integration @acme/api: expected a mapping of field names"),
    ],
)
def test_malformed_config_file(tmp_path: Path, text: str, message: str) -> None:
    file = write(tmp_path / "integrations.yaml", text + "\n")
    with pytest.raises(DefinitionError) as info:
        integrations(file=file)
    assert message in str(info.value) and str(file) in str(info.value)


def test_configured_without_a_service_definition_is_an_error() -> None:
    found = Integrations({"@acme/other": {"apiKey": CANARY}}, environ={})
    with pytest.raises(DefinitionError, match="no `kind: service` definition"):
        found.context_value("@acme/other")


def test_unsupported_authentication_key_is_a_definition_error() -> None:
    text = ACME_SERVICE.replace("authentication:\n", "authentication:\n  oauth2: {}\n")
    found = Integrations({"@acme/api": {"apiKey": CANARY}}, environ={})
    found.add_service(service(text))
    with pytest.raises(DefinitionError) as info:
        found.config("@acme/api")
    assert "unsupported authentication key 'oauth2'" in str(info.value)
    assert "service.yaml:1:1: authentication.oauth2:" in str(info.value)


# -- what pipelines see ----------------------------------------------------------------------


def test_unconfigured_integration_is_none() -> None:
    assert integrations().context_value("@acme/api") is None
    assert integrations().context_value("@nobody/knows") is None


def test_pixiebrix_api_always_exists() -> None:
    value = Integrations(environ={}).context_value("@pixiebrix/api")
    assert value == {"__service": {"id": "@pixiebrix/api", "label": "Team databases"}}


def test_context_value_holds_no_secret_anywhere_it_can_be_read() -> None:
    found = integrations({"@acme/api": {"apiKey": CANARY}})
    value = found.context_value("@acme/api")
    assert isinstance(value, IntegrationContext) and "apiKey" not in value
    for shown in (
        json.dumps(value),
        repr(value),
        str(value),
        repr(found.config("@acme/api")),
        repr(vars(IntegrationConfig)),
    ):
        assert CANARY not in shown
    # Pickling (anything that leaves the process) gives a plain dict without the handle.
    restored = pickle.loads(pickle.dumps(value))
    assert type(restored) is dict and restored == value
    assert CANARY.encode() not in pickle.dumps(value)
    # Copies (what !var returns) keep the handle, so the copy still authenticates.
    for copied in (copy.copy(value), copy.deepcopy(value)):
        assert isinstance(copied, IntegrationContext)
        request = found.apply_auth(copied, {"url": "items"})
        assert request["headers"] == {"Authorization": f"Bearer {CANARY}"}


def test_each_context_value_is_a_fresh_copy() -> None:
    found = integrations({"@acme/api": {"apiKey": CANARY, "port": 1}})
    first = found.context_value("@acme/api")
    assert first is not None
    first["port"] = 99
    first["__service"]["label"] = "changed"
    second = found.context_value("@acme/api")
    assert second is not None and second["port"] == 1 and second["__service"]["label"] == "Acme API"


def use_integrations(runtime: Runtime, found: Integrations) -> None:
    """Attach ``found`` to a runtime (what ``Runtime(integrations=...)`` does once wired)."""
    runtime.integrations = found  # type: ignore[attr-defined]
    runtime.integration = found.context_value  # type: ignore[method-assign]


SNOOP = """\
apiVersion: v3
kind: component
metadata: {id: "@test/snoop", name: Snoop}
inputSchema: {}
pipeline:
  - id: "@pixiebrix/identity"
    config:
      var: !var "@acme.apiKey"
      optional: !var "@acme?.apiKey"
      service: !var "@acme.__service"
      whole: !var "@acme"
      nunjucks: !nunjucks "[{{ @acme.apiKey }}|{{ @acme | dump }}|{{ @acme['apiKey'] }}]"
      items: !nunjucks "{% for k, v in @acme | dictsort %}{{ k }}={{ v }};{% endfor %}"
      mustache: !mustache "[{{ @acme.apiKey }}|{{ @acme }}]"
      handlebars: !handlebars "[{{[@acme].apiKey}}]"
"""


@pytest.mark.anyio
async def test_secrets_are_not_reachable_through_var_or_templates() -> None:
    found = integrations({"@acme/api": {"apiKey": CANARY}})
    result = compile_text(SNOOP, "snoop.yaml")
    assert not result.errors
    pipeline = result.definitions[0].pipeline  # type: ignore[attr-defined]
    async with Runtime(entry_points=False) as runtime:
        use_integrations(runtime, found)
        run = runtime.new_run()
        context = {"@input": {}, "@options": {}, "@acme": found.context_value("@acme/api")}
        output = await runtime.run_pipeline(pipeline, context, run)
    assert "var" not in output and "optional" not in output  # null values are dropped
    assert output["service"] == {"id": "@acme/api", "label": "Acme API"}
    assert output["nunjucks"].startswith("[|{") and output["mustache"].startswith("[|{")
    assert output["handlebars"] == "[]"
    assert CANARY not in json.dumps(output)
    # The whole value still carries its credentials to a brick that applies them.
    assert found.apply_auth(output["whole"], {"url": "x"})["params"] == {"key": CANARY}
    records = run.records()
    assert CANARY not in json.dumps([r.to_dict() for r in records])
    assert CANARY not in format_trace(records) and CANARY not in repr(records)


@brick(
    id="@test/database-user",
    name="Database user",
    input_schema={
        "type": "object",
        "properties": {
            "service": {"$ref": "https://app.pixiebrix.com/schemas/services/@pixiebrix/api"}
        },
    },
)
async def database_user(args: Any, ctx: Any) -> Any:
    return args


@pytest.mark.anyio
async def test_integration_typed_input_receives_the_pixiebrix_api_value() -> None:
    async with Runtime(entry_points=False) as runtime:
        use_integrations(runtime, Integrations(environ={}))
        result = await runtime.run_brick(database_user, {})
    assert result.output == {
        "service": {"__service": {"id": "@pixiebrix/api", "label": "Team databases"}}
    }
    (enter,) = [r for r in result.trace if r.event == "enter"]
    assert enter.to_dict()["data"] == {"service": {"__service": "***"}}


# -- apply_auth ------------------------------------------------------------------------------


@pytest.fixture
def acme() -> tuple[Integrations, IntegrationContext]:
    found = integrations({"@acme/api": {"apiKey": CANARY}})
    value = found.context_value("@acme/api")
    assert value is not None
    return found, value


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("items", "https://api.acme.example/v1/items"),
        ("/items?x=1", "https://api.acme.example/v1/items?x=1"),
        ("", "https://api.acme.example/v1"),
        ("https://api.acme.example/v1/orders/7", "https://api.acme.example/v1/orders/7"),
        ("HTTPS://API.acme.example:443/v1/x", "HTTPS://API.acme.example:443/v1/x"),
    ],
)
def test_apply_auth_joins_the_base_url(
    acme: tuple[Integrations, IntegrationContext], url: str, expected: str
) -> None:
    found, value = acme
    assert found.apply_auth(value, {"url": url})["url"] == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/v1/items",
        "http://api.acme.example/v1/items",
        "https://api.acme.example/v10",
        "https://api.acme.example/admin",
        "../admin",
        "https://api.acme.example:8443/v1/items",
    ],
)
def test_apply_auth_refuses_urls_outside_the_base_url(
    acme: tuple[Integrations, IntegrationContext], url: str
) -> None:
    found, value = acme
    with pytest.raises(PropError) as info:
        found.apply_auth(value, {"url": url + "?token=abc"})
    text = str(info.value)
    assert "is outside the base URL of integration @acme/api" in text
    assert "token=abc" not in text and CANARY not in text


def test_apply_auth_headers_and_params_override_the_request(
    acme: tuple[Integrations, IntegrationContext],
) -> None:
    found, value = acme
    request = {
        "url": "items",
        "headers": {"authorization": "mine", "X-Other": "kept"},
        "params": {"key": "mine", "page": 2},
        "data": {"a": 1},
    }
    out = found.apply_auth(value, request)
    assert out["headers"] == {"X-Other": "kept", "Authorization": f"Bearer {CANARY}"}
    assert out["params"] == {"key": CANARY, "page": 2}
    assert out["data"] == {"a": 1}
    assert request["headers"] == {"authorization": "mine", "X-Other": "kept"}  # not changed


def test_apply_auth_without_credentials(acme: tuple[Integrations, IntegrationContext]) -> None:
    found, _ = acme
    request = {"url": "https://x.example/"}
    assert found.apply_auth(None, request) == request
    api = found.context_value("@pixiebrix/api")
    assert found.apply_auth(api, request) == request
    assert found.apply_auth(dict(api or {}), request) == request  # JSON form of @pixiebrix/api
    with pytest.raises(PropError, match=r"integration @acme/api value is not a configured"):
        found.apply_auth({"__service": {"id": "@acme/api"}}, request)
    with pytest.raises(PropError, match="expected an integration, found a string"):
        found.apply_auth("@acme/api", request)  # type: ignore[arg-type]


def test_redact_secrets_masks_raw_and_encoded_forms(
    acme: tuple[Integrations, IntegrationContext],
) -> None:
    found, value = acme
    secret_value = "sk_with/ space+plus"
    other = integrations({"@acme/api": {"apiKey": secret_value}}).context_value("@acme/api")
    forms = [
        secret_value,
        quote(secret_value, safe=""),
        quote(secret_value),
        quote_plus(secret_value),
    ]
    assert len(set(forms)) == 4
    text = " | ".join(forms)
    assert found.redact_secrets(other, text) == "*** | *** | *** | ***"
    assert found.redact_secrets(value, f"x{CANARY}y") == "x***y"
    assert found.redact_secrets(None, CANARY) == CANARY


# -- the example -----------------------------------------------------------------------------


def test_example_service_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRICKRUN_INTEGRATION__EXAMPLES_ACME_API__APIKEY", CANARY)
    runtime = Runtime(definitions=[EXAMPLE / "definitions"], entry_points=False)
    found = Integrations(file=EXAMPLE / "integrations.yaml", services=runtime.registry)
    assert found.check() == []
    value = found.context_value("@examples/acme-api")
    assert value == {
        "baseURL": "https://staging.acme.example/v1",
        "region": "eu",
        "__service": {"id": "@examples/acme-api", "label": "Acme (staging)"},
    }
    request = found.apply_auth(value, {"url": "items"})
    assert request == {
        "url": "https://staging.acme.example/v1/items",
        "headers": {"Authorization": f"Bearer {CANARY}", "X-Acme-Region": "eu"},
        "params": {"key": CANARY},
    }
