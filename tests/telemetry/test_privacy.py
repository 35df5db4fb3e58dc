"""The privacy filter (SPEC §8 *Privacy*): golden tables, a canary, properties, weird input."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import stat
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brickrun.telemetry import TelemetryEvent
from brickrun.telemetry._privacy import (
    ENV_INSTALL_SECRET,
    INVALID_URL,
    MAX_DEPTH,
    REDACTED,
    PrivacySettings,
    _forget,
    _memos,
    anonymize_url,
    filter_checked_event,
    filter_event,
    filter_record,
    hash_key,
    is_sensitive_key,
    load_install_secret,
    pseudonymize,
    redact_value,
    scrub,
)

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(100, 132))
SETTINGS = PrivacySettings(install_secret=SECRET)
CANARY = "canary.7f3a@example.com"
WHEN = datetime(2026, 11, 23, 15, 0, 0, 123000, tzinfo=UTC)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7x\nq2Vb==\n-----END RSA PRIVATE KEY-----"
SOURCE = {
    "modId": "@acme/support-tools",
    "modVersion": "1.2.0",
    "modComponentId": "6f1c2a9e-0d4b-4f7a-9c3e-2b8d5e7f1a04",
    "modComponentLabel": "Translate selection",
    "starterBrickId": "@acme/support-tools/translate",
    "starterBrickName": "Translate on click",
    "trigger": "click",
    "deploymentId": "0b7e4c1d-5a2f-4e8b-b6c9-3d1f7a2e9c55",
    "runId": "9a4d2e7b-1c3f-4b6a-8e5d-7f2c1b9a3e60",
}


@pytest.fixture(autouse=True)
def _no_secret_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's environment must not change which install secret tests see."""
    monkeypatch.delenv(ENV_INSTALL_SECRET, raising=False)


# --- URLs -------------------------------------------------------------------------------------

URLS: list[tuple[Any, str]] = [
    # the seed's promise (PareL's own code breaks it)
    (
        "https://host/profile/abc-123-def-456?tab=settings&userId=789",
        "https://host/profile/[id]",
    ),
    # words stay, including the ones a prefix match would break
    ("https://app.example.com/2fa/setup", "https://app.example.com/2fa/setup"),
    ("https://app.example.com/v1/api", "https://app.example.com/v1/api"),
    ("https://example.com/blog/how-to-write-tests", "https://example.com/blog/how-to-write-tests"),
    ("https://example.com/docs/getting-started", "https://example.com/docs/getting-started"),
    ("https://example.com/blog/python-3-tips", "https://example.com/blog/python-3-tips"),
    # ids
    (
        "https://example.com/u/550e8400-e29b-41d4-a716-446655440000/x",
        "https://example.com/u/[id]/x",
    ),
    ("https://example.com/orders/12345", "https://example.com/orders/[id]"),
    ("https://example.com/orders/0042/items/42", "https://example.com/orders/[id]/items/[id]"),
    (
        "https://example.com/commit/3f786850e387550fdab836ed7e6dc881de23001b",
        "https://example.com/commit/[id]",
    ),
    ("https://example.com/objects/507f1f77bcf86cd799439011", "https://example.com/objects/[id]"),
    ("https://example.com/p/user_42", "https://example.com/p/[id]"),
    (
        "https://example.com/dl/IMG_20240101_123456.jpg",
        "https://example.com/dl/[id]",
    ),
    (
        "https://dashboard.example.com/customers/cus_NffrFeUfNV2Hib",
        "https://dashboard.example.com/customers/[id]",
    ),
    # emails, handles, tokens and secrets in paths
    ("https://example.com/users/alice@example.com/edit", "https://example.com/users/[id]/edit"),
    ("https://example.com/users/alice%40example.com/edit", "https://example.com/users/[id]/edit"),
    ("https://example.com/@alice", "https://example.com/[id]"),
    (f"https://example.com/reset/{JWT}", "https://example.com/reset/[id]"),
    ("https://example.com/t/sk_live_4eC39HqLyjWDarjtT1zdp7dc", "https://example.com/t/[id]"),
    ("https://example.com/pay/4111-1111-1111-1111", "https://example.com/pay/[id]"),
    (
        "https://example.com/go/https%3A%2F%2Fevil.example%2F%3Ftoken%3Dabc",
        "https://example.com/go/[id]",
    ),
    # credentials, query, fragment and path parameters dropped
    ("https://alice:hunter2@example.com/a", "https://example.com/a"),
    ("https://example.com/a#section-2", "https://example.com/a"),
    ("https://example.com/cart;jsessionid=0F3A9C/checkout", "https://example.com/cart/checkout"),
    # normalisation: case, ports, IDN, percent-encoding, whitespace
    ("HTTPS://EXAMPLE.com:8443/Path", "https://example.com:8443/Path"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:80", "http://example.com/"),
    ("http://[::1]:8080/a/1", "http://[::1]:8080/a/[id]"),
    ("https://bücher.example/straße", "https://xn--bcher-kva.example/stra%C3%9Fe"),
    ("https://example.com/files/%31%32%33", "https://example.com/files/[id]"),
    ("https://example.com/a%20b/c", "https://example.com/a%20b/c"),
    ("  https://example.com/a\n ", "https://example.com/a"),
    # relative paths
    ("/a/42", "/a/[id]"),
    ("/a/42?x=1#y", "/a/[id]"),
    ("/a ?x", "/a%20"),  # the space before the query is part of the path
    ("/cart;jsessionid=0F3A9C?x=1", "/cart"),
    ("/?x", "/"),
    ("https://example.com?x@y", "https://example.com/"),  # "@" after the host is query
    # fail closed
    ("javascript:alert(1)", INVALID_URL),
    ("not a url", INVALID_URL),
    ("http://[::1", INVALID_URL),
    (None, INVALID_URL),
    (42, INVALID_URL),
    ("", INVALID_URL),
    ("ftp://example.com/a", INVALID_URL),
    ("//example.com/a/42", INVALID_URL),
    ("mailto:alice@example.com", INVALID_URL),
    ("http://exa mple.com/", INVALID_URL),
    ("https://example.com:99999/", INVALID_URL),
    ("https://example.com\\@evil.example/", INVALID_URL),
]


@pytest.mark.parametrize(("url", "expected"), URLS)
def test_anonymize_url_golden(url: Any, expected: str) -> None:
    assert anonymize_url(url) == expected
    assert anonymize_url(expected) == expected  # idempotent


def test_url_table_is_large_enough() -> None:
    assert len(URLS) >= 25


# --- keys -------------------------------------------------------------------------------------

SENSITIVE_KEYS = [
    *("email", "Email", "EMAIL", "user_email", "userEmail", "user.email", "e-mail", "eMail"),
    *("password", "Password2", "passwd", "pwd", "db_pwd", "passphrase"),
    *("token", "access_token", "accessToken", "refreshToken", "id_token", "csrf_token"),
    *("secret", "client_secret", "api_key", "apiKey", "APIKey", "x-api-key", "X-API-KEY"),
    *("apikey", "authorization", "Authorization", "auth", "authToken"),
    *("cookie", "Set-Cookie", "session", "SESSION_ID", "sessionId", "session_duration"),
    *("private_key", "privateKey", "ssn", "credentials", "credit_card", "card-number"),
    *("cvv", "iban", "phone", "phoneNumber", "address", "ip_address", "key", "keyCode"),
    *("username", "jsessionid", "user id", "Bearer", "private_metadata", "privateMetadata"),
]
BENIGN_KEYS = [
    *("keyboard", "monkey", "hotkey", "tokenizer", "sessions_count", "tokens_used"),
    *("keys_pressed", "author", "authority", "secretary", "passenger", "emailed"),
    *("note", "title", "duration_ms", "count", "url", "button", "description", "skip"),
]


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_sensitive_keys_match(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize("key", BENIGN_KEYS)
def test_whole_words_only(key: str) -> None:
    assert not is_sensitive_key(key)


def test_key_tables_are_large_enough() -> None:
    assert len(SENSITIVE_KEYS) + len(BENIGN_KEYS) >= 25
    assert len(SENSITIVE_KEYS) >= 25


def test_a_key_holding_an_email_or_token_is_sensitive() -> None:
    assert is_sensitive_key(CANARY)
    assert is_sensitive_key(f"notes for {JWT}")


def test_extra_sensitive_keys_match_in_any_style() -> None:
    assert not is_sensitive_key("tenantId")
    assert is_sensitive_key("tenantId", extra={"tenant_id"})
    assert is_sensitive_key("TENANT-ID", extra={"tenant id"})
    assert not is_sensitive_key("tenant", extra={"tenant_id"})
    assert scrub({"tenant_id": "t1", "n": 1}, extra_keys={"tenantId"}) == {"n": 1}


def _nest(leaf: dict[str, Any], depth: int) -> dict[str, Any]:
    node: dict[str, Any] = dict(leaf)
    for level in range(depth):
        node = {**leaf, f"level{level}": node, "items": [dict(leaf), [dict(leaf)]]}
    return node


def _all_keys(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield key
            yield from _all_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_keys(item)


def test_sensitive_keys_are_removed_at_every_depth() -> None:
    leaf = {key: f"value of {key}" for key in SENSITIVE_KEYS} | {"kept": "yes", "n": 1}
    out = scrub(_nest(leaf, 4))
    keys = list(_all_keys(out))
    assert not [key for key in keys if key in SENSITIVE_KEYS]
    assert keys.count("kept") == 1 + 4 * 3  # every benign leaf key survived at every depth
    assert "value of" not in json.dumps(out)


# --- values -----------------------------------------------------------------------------------

VALUES = [
    ("alice@example.com", REDACTED),
    ("Contact alice.smith+tag@example.co.uk today", f"Contact {REDACTED} today"),
    (JWT, REDACTED),
    (f"login failed for {JWT}.", f"login failed for {REDACTED}."),
    ("4111 1111 1111 1111", REDACTED),
    ("4111-1111-1111-1111", REDACTED),
    ("4111111111111111", REDACTED),
    ("378282246310005", REDACTED),  # Amex, 15 digits
    ("order 12 4111 1111 1111 1111 shipped", f"order 12 {REDACTED} shipped"),
    ("4111 1111 1111 1112", "4111 1111 1111 1112"),  # fails Luhn
    ("1700000000004", "1700000000004"),  # Luhn-valid, but a millisecond timestamp
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", REDACTED),
    ("key=sk_test_4eC39HqLyjWDarjtT1zdp7dc;", f"key={REDACTED};"),
    ("ghp_" + "a1B2" * 9, REDACTED),
    ("gho_" + "Z9y8" * 9, REDACTED),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", REDACTED),
    ("slack xoxb-1234567890-abcdefghij", f"slack {REDACTED}"),
    ("AKIAIOSFODNN7EXAMPLE", REDACTED),
    ("aws AKIAIOSFODNN7EXAMPLE key", f"aws {REDACTED} key"),
    ("AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", REDACTED),
    (PEM, REDACTED),
    (f"config:\n{PEM}\nend", f"config:\n{REDACTED}\nend"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq (truncated", REDACTED),
    ("Authorization: Bearer abc.def-1234567890XYZ", f"Authorization: {REDACTED}"),
    (
        "GET https://api.example.com/users/42?token=abc failed",
        "GET https://api.example.com/users/[id] failed",
    ),
    # glued to each other: the email's local part stops at the previous secret
    ("AKIAIOSFODNN7EXAMPLEbob@example.com", REDACTED * 2),
    ("4111 1111 1111 1112@example.com", f"4111 1111 1111 {REDACTED}"),
    ("see https://a.example/x'bob@example.com", f"see https://a.example/x'{REDACTED}"),
    # left alone
    ("Translate selection", "Translate selection"),
    ("x @nobody.example", "x @nobody.example"),
    ("2026-11-23T15:00:00.123Z", "2026-11-23T15:00:00.123Z"),
    ("@acme/support-tools", "@acme/support-tools"),
    ("550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"),
    ("v1.2.3 build 2024", "v1.2.3 build 2024"),
    ("", ""),
]


@pytest.mark.parametrize(("value", "expected"), VALUES)
def test_redact_value_golden(value: str, expected: str) -> None:
    assert redact_value(value) == expected
    assert redact_value(expected) == expected


def test_values_are_redacted_under_innocent_keys() -> None:
    payload = {"note": "mail alice@example.com", "n": 4111111111111111, "t": 1700000000004}
    assert scrub(payload) == {"note": f"mail {REDACTED}", "n": REDACTED, "t": 1700000000004}


def test_url_ish_keys_are_anonymised() -> None:
    out = scrub({"pageUrl": "/orders/42?x=1", "href": "not a url", "link_text": "/orders/42"})
    assert out == {"pageUrl": "/orders/[id]", "href": INVALID_URL, "link_text": "/orders/42"}


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000 + "@",
        "a@" * 100_000,
        "eyJ" * 60_000,
        "1 " * 100_000,
        "-----BEGIN " + "A" * 200_000,
        "http://" * 30_000,
        "sk_live_" * 25_000,
        "x." * 100_000 + "@",
    ],
)
def test_redaction_is_linear_on_hostile_text(text: str) -> None:
    started = time.perf_counter()
    redact_value(text)
    anonymize_url("https://example.com/" + text)
    assert time.perf_counter() - started < 2.0


# --- pseudonyms -------------------------------------------------------------------------------


def test_pseudonym_is_keyed_not_a_plain_hash() -> None:
    email = "alice@example.com"
    pseudonym = pseudonymize(email, SECRET)
    assert pseudonym is not None and pseudonym.startswith("u_") and len(pseudonym) == 34
    digest = pseudonym[2:]
    for algorithm in ("sha256", "md5", "sha1", "sha512"):
        plain = hashlib.new(algorithm, email.encode()).hexdigest()
        assert digest not in plain
        assert plain[:32] != digest
    assert pseudonymize(email, SECRET) == pseudonym
    assert pseudonymize("Alice@Example.com ", SECRET) == pseudonym
    assert pseudonymize(email, OTHER_SECRET) != pseudonym
    assert pseudonymize(None, SECRET) is None
    assert pseudonymize(pseudonym, SECRET) == pseudonym  # already pseudonymous


def test_key_hash_is_keyed_stable_and_distinct_from_the_user_pseudonym() -> None:
    key = f"alice@example.com-2026-11-23T15:00:00.123Z-{uuid.uuid4()}"
    hashed = hash_key(key, SECRET)
    assert hashed.startswith("k_") and len(hashed) == 34
    assert hash_key(key, SECRET) == hashed
    assert hash_key(key, OTHER_SECRET) != hashed
    assert hash_key(hashed, SECRET) == hashed
    assert hashed[2:] != str(pseudonymize(key, SECRET))[2:]


@pytest.mark.parametrize(
    "secret", [bytes(range(16)), SECRET, bytes(64), bytes(range(65)), b"\xff" * 100]
)
def test_pseudonyms_are_hmac_sha256_of_a_domain_and_the_value(secret: bytes) -> None:
    """Pseudonyms must never change for an install: collectors count and deduplicate by them."""

    def expected(domain: bytes, value: str) -> str:
        return hmac.new(secret, domain + b"\x00" + value.encode(), "sha256").hexdigest()[:32]

    assert pseudonymize(" Alice@Example.com", secret) == "u_" + expected(
        b"brickrun:user", "alice@example.com"
    )
    assert pseudonymize("User-42", secret) == "u_" + expected(b"brickrun:user", "User-42")
    assert hash_key("a-key", secret) == "k_" + expected(b"brickrun:key", "a-key")
    session = filter_event({"name": "x", "session_id": "visit-1"}, PrivacySettings(secret))
    assert session["session_id"] == "s_" + expected(b"brickrun:session", "visit-1")


@given(user=st.text(min_size=1), a=st.binary(min_size=16), b=st.binary(min_size=16))
@settings(max_examples=60, deadline=None)
def test_pseudonyms_are_stable_per_secret_and_differ_across_secrets(
    user: str, a: bytes, b: bytes
) -> None:
    assert pseudonymize(user, a) == pseudonymize(user, a)
    if a != b and not user.strip().startswith("u_"):
        assert pseudonymize(user, a) != pseudonymize(user, b)


# --- the install secret and settings ----------------------------------------------------------


def test_install_secret_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "install-secret"
    secret = load_install_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_install_secret(path) == secret
    assert load_install_secret(str(path)) == secret
    assert [p.name for p in path.parent.iterdir()] == ["install-secret"]  # no temporary left
    assert load_install_secret(tmp_path / "other") != secret


def test_concurrent_first_runs_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "install-secret"
    with ThreadPoolExecutor(max_workers=8) as pool:
        secrets = list(pool.map(lambda _: load_install_secret(path), range(16)))
    assert len(set(secrets)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["install-secret"]


def test_install_secret_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_data_dir", lambda app: str(tmp_path / app))
    secret = load_install_secret()
    assert (tmp_path / "brickrun" / "install-secret").read_text().strip() == secret.hex()


def test_install_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_INSTALL_SECRET, "ab" * 32)
    assert load_install_secret(tmp_path / "unused") == bytes([0xAB]) * 32
    assert not (tmp_path / "unused").exists()
    monkeypatch.setenv(ENV_INSTALL_SECRET, "not-hex-" + "ab" * 20)
    with pytest.raises(ValueError, match="BRICKRUN_INSTALL_SECRET is not a valid") as caught:
        load_install_secret(tmp_path / "unused")
    assert "not-hex" not in str(caught.value)


def test_a_malformed_secret_file_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "install-secret"
    path.write_text("tooshort")
    with pytest.raises(ValueError, match="expected at least 16 bytes") as caught:
        load_install_secret(path)
    assert "tooshort" not in str(caught.value)
    assert path.read_text() == "tooshort"


def test_settings_validate_and_hide_the_secret() -> None:
    settings_ = PrivacySettings(
        install_secret=SECRET, allow_private={"search": frozenset({"query"})}
    )
    assert settings_.allow_private["search"] == frozenset({"query"})
    assert SECRET.hex() not in repr(settings_) and repr(SECRET) not in repr(settings_)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PrivacySettings(install_secret=b"short")
    with pytest.raises(ValueError, match=r"allow_private\['search'\] must be a collection"):
        PrivacySettings(install_secret=SECRET, allow_private={"search": "query"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="invalid telemetry event name"):
        PrivacySettings(install_secret=SECRET, allow_private={"bad name": frozenset()})


# --- events -----------------------------------------------------------------------------------


def trigger_run(**overrides: Any) -> dict[str, Any]:
    """A default-mode ``TriggerRun`` as ``_report`` records it, in its stored form."""
    fields: dict[str, Any] = {
        "name": "TriggerRun",
        "timestamp": WHEN,
        "source": dict(SOURCE),
        "user": "alice@example.com",
        "duration_ms": 12.5,
        "id": "3c9e1f2a-7b4d-4e8a-9f6c-1d2b3a4c5e6f",
    }
    return TelemetryEvent(**(fields | overrides)).to_data()


def test_default_trigger_run_exports_exactly_the_documented_fields() -> None:
    assert filter_event(trigger_run(), SETTINGS) == {
        "id": "3c9e1f2a-7b4d-4e8a-9f6c-1d2b3a4c5e6f",
        "name": "TriggerRun",
        "timestamp": "2026-11-23T15:00:00.123Z",
        "source": SOURCE,
        "user": pseudonymize("alice@example.com", SECRET),
        "platform": "brickrun",
        "duration_ms": 12.5,
    }


def test_every_field_of_a_full_event() -> None:
    data = trigger_run(
        name="TriggerError",
        session_id="visit-1",
        url="https://app.example.com/tickets/48213?tab=history#c1",
        metadata={"retries": 2, "cached": True, "ratio": 0.5},
        private_metadata={"query": "refund", "reason": "x"},
        error={"name": "HttpError", "message": "404 for alice@example.com", "business": False},
        context="GET /api/tickets/48213?tab=history",
    )
    allow = PrivacySettings(
        install_secret=SECRET, allow_private={"TriggerError": frozenset({"query"})}
    )
    out = filter_event(data, allow)
    assert out["session_id"].startswith("s_")
    assert out["session_id"] != pseudonymize("visit-1", SECRET)  # its own HMAC domain
    assert out["url"] == "https://app.example.com/tickets/[id]"
    assert out["metadata"] == {"retries": 2, "cached": True, "ratio": 0.5}
    assert out["private_metadata"] == {"query": "refund"}
    assert out["error"] == {
        "name": "HttpError",
        "message": f"404 for {REDACTED}",
        "business": False,
    }
    assert out["context"] == "GET /api/tickets/[id]"
    assert "private_metadata" not in filter_event(data, SETTINGS)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ("/docs/[id]", "/docs/[id]"),
        ("/docs/42?q=1", "/docs/[id]"),
        ("POST /api/users/alice@example.com", "POST /api/users/[id]"),
        ("checkout", "checkout"),
        ("invite alice@example.com", f"invite {REDACTED}"),
    ],
)
def test_context_is_made_safe_again(context: str, expected: str) -> None:
    assert filter_event(trigger_run(context=context), SETTINGS)["context"] == expected


def test_private_metadata_allowlist_still_scrubs_values() -> None:
    data = trigger_run(
        name="search",
        private_metadata={
            "query": {"text": "call alice@example.com", "password": "x", "n": 1},
            "email": "a@b.co",
            "other": "dropped",
        },
    )
    allow = PrivacySettings(
        install_secret=SECRET, allow_private={"search": frozenset({"query", "email"})}
    )
    assert filter_event(data, allow)["private_metadata"] == {
        "query": {"text": f"call {REDACTED}", "n": 1}
    }


def test_metadata_keeps_numbers_and_booleans_only_even_if_the_store_holds_more() -> None:
    data = trigger_run() | {
        "metadata": {
            "n": 1,
            "ok": False,
            "text": "alice@example.com",
            "nan": math.nan,
            "card": 4111111111111111,
            "password_length": 8,
            "nested": {"a": 1},
        }
    }
    assert filter_event(data, SETTINGS)["metadata"] == {"n": 1, "ok": False}


def test_unknown_and_malformed_fields_do_not_leave() -> None:
    data = trigger_run() | {
        "ip": "10.0.0.1",
        "extra": "x",
        "timestamp": "yesterday",
        "duration_ms": math.inf,
        "name": "not a valid name!",
        "id": "alice@example.com",
        "error": {"name": "E", "message": "m", "stack": "at secret()", "business": "no"},
    }
    out = filter_event(data, SETTINGS)
    assert set(out) == {"id", "name", "source", "user", "platform", "error"}
    assert out["name"] == "[invalid-name]"
    assert out["id"] == hash_key("alice@example.com", SECRET)
    assert out["error"] == {"name": "E", "message": "m"}


def test_filtering_twice_changes_nothing_so_strict_mode_composes() -> None:
    data = trigger_run(
        session_id="visit-1",
        url="https://u:p@app.example.com/a/42?q=1",
        private_metadata={"q": {"email": "x", "t": "alice@example.com"}},
        error={"name": "E", "message": "see https://x.example/a?b=c", "business": True},
    )
    allow = PrivacySettings(
        install_secret=SECRET, allow_private={"TriggerRun": frozenset({"q"})}, strict=True
    )
    once = filter_event(data, allow)
    assert filter_event(once, allow) == once
    record = {"id": data["id"], "data": data, "created_at": "2026-11-23T15:00:00.123Z"}
    assert filter_record(filter_record(record, allow), allow) == filter_record(record, allow)


class _Exploding(Mapping[str, Any]):
    """A mapping that fails when read, with the canary in the exception message."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(CANARY)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError(CANARY)

    def __len__(self) -> int:
        return 1

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError(CANARY)


@pytest.mark.parametrize(
    "data",
    [None, 42, "text", [], {}, _Exploding(), {"user": 10**5000}, {"source": "x", "url": b"x"}],
)
def test_filter_event_never_raises(data: Any) -> None:
    out = filter_event(data, SETTINGS)
    assert isinstance(out, dict)
    json.dumps(out, allow_nan=False)


def test_weird_values_are_made_safe() -> None:
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    cyclic_list: list[Any] = [1]
    cyclic_list.append(cyclic_list)
    value = {
        "cycle": cyclic,
        "cycle_list": cyclic_list,
        "bytes": b"alice@example.com",
        "set": {"x"},
        "tuple": (1, "a@b.co"),
        "date": date(2026, 1, 2),
        "decimal": Decimal("1.5"),
        "nan_decimal": Decimal("sNaN"),
        "huge_decimal": Decimal("1e999"),
        "nan": math.nan,
        "big": 2**70,
        "object": object(),
        "exploding": _Exploding(),
        1: "int key",
        (1, 2): "tuple key",
        None: "none key",
    }
    out = scrub(value)
    assert out == {
        "cycle": {"a": 1, "self": "[cycle]"},
        "cycle_list": [1, "[cycle]"],
        "bytes": "[binary]",
        "set": ["x"],
        "tuple": [1, REDACTED],
        "date": "2026-01-02",
        "decimal": 1.5,
        "nan_decimal": None,
        "huge_decimal": None,
        "nan": None,
        "big": 2**70,
        "object": "[unsupported]",
        "exploding": "[unsupported]",
        "1": "int key",
        "null": "none key",
    }
    json.dumps(out, allow_nan=False)


def test_depth_is_bounded() -> None:
    deep: Any = "leaf"
    for _ in range(5_000):
        deep = [deep]
    out = scrub({"deep": deep})
    depth = 0
    node = out["deep"]
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert node == "[truncated]" and depth == MAX_DEPTH - 1


# --- records ----------------------------------------------------------------------------------


def test_record_brick_record() -> None:
    key = f"alice@example.com-2026-11-23T15:00:00.123Z-{uuid.uuid4()}"
    record = {
        "id": key,
        "data": {
            "url": "https://crm.example.com/contacts/8812?ref=mail",
            "email": "alice@example.com",
            "timestamp": "2026-11-23T15:00:00.123Z",
            "event": "clicked",
            "data": {"button": "save", "count": 3, "userEmail": "alice@example.com"},
        },
        "merge_strategy": "replace",
        "created_at": "2026-11-23T15:00:00.123Z",
        "updated_at": "2026-11-23T15:00:01.000Z",
    }
    assert filter_record(record, SETTINGS) == {
        "id": hash_key(key, SECRET),
        "data": {
            "url": "https://crm.example.com/contacts/[id]",
            "timestamp": "2026-11-23T15:00:00.123Z",
            "event": "clicked",
            "data": {"button": "save", "count": 3},
            "user": pseudonymize("alice@example.com", SECRET),
        },
        "created_at": "2026-11-23T15:00:00.123Z",
        "updated_at": "2026-11-23T15:00:01.000Z",
    }


def test_event_shaped_record_goes_through_filter_event() -> None:
    data = trigger_run()
    record = {"id": data["id"], "data": data, "merge_strategy": "replace"}
    assert filter_record(record, SETTINGS) == {
        "id": hash_key(data["id"], SECRET),
        "data": filter_event(data, SETTINGS),
    }


def test_record_shapes_are_told_apart_by_name_event_and_email() -> None:
    event_like = {"name": "page:view", "session_id": "v1", "private_metadata": {"q": "x"}}
    assert filter_record({"data": event_like}, SETTINGS) == {
        "data": {
            "name": "page:view",
            "session_id": filter_event(event_like, SETTINGS)["session_id"],
        }
    }
    other = {"email": "a@b.co", "session_id": "v1", "private_metadata": {"q": "x"}, "n": 1}
    assert filter_record({"data": other}, SETTINGS) == {
        "data": {"n": 1, "user": pseudonymize("a@b.co", SECRET)}
    }


@pytest.mark.parametrize("record", [None, [], {"id": object()}, _Exploding(), {"data": b"x"}])
def test_filter_record_never_raises(record: Any) -> None:
    assert isinstance(filter_record(record, SETTINGS), dict)


# --- the canary -------------------------------------------------------------------------------


def test_canary_appears_nowhere_after_filtering(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    local = CANARY.split("@")[0]
    event = TelemetryEvent(
        name="canaryEvent",
        timestamp=WHEN,
        source=dict(SOURCE, modComponentLabel=f"Label {CANARY}", extra={"who": CANARY}),
        user=CANARY,
        session_id=CANARY,
        url=f"https://{local}:pw@app.example.com/users/{CANARY}/edit?email={CANARY}#{CANARY}",
        platform=f"web {CANARY}",
        metadata={CANARY: 1, "n": 2},
        private_metadata={"note": f"from {CANARY}", CANARY: "x", "deep": {"list": [CANARY]}},
        error={"name": "HttpError", "message": f"no account for {CANARY}", "business": True},
    ).to_data()
    event["private_metadata"]["deep"]["nested"] = {"emailAddress": CANARY, "text": CANARY}
    allow = PrivacySettings(
        install_secret=SECRET,
        allow_private={"canaryEvent": frozenset({"note", "deep", CANARY})},
    )
    record = {
        "id": f"{CANARY}-2026-11-23T15:00:00.123Z-{uuid.uuid4()}",
        "data": {
            "url": f"https://app.example.com/u/{CANARY}?e={CANARY}",
            "email": CANARY,
            "timestamp": "2026-11-23T15:00:00.123Z",
            "event": f"signup {CANARY}",
            "data": {"note": CANARY, "contacts": [{"mail": f"<{CANARY}>"}], CANARY: 1},
        },
        "created_at": "2026-11-23T15:00:00.123Z",
    }
    results = [
        filter_event(event, allow),
        filter_event(event, SETTINGS),
        filter_record(record, allow),
        filter_record({"id": event["id"], "data": event}, allow),
        filter_event(_Exploding(), allow),  # failure paths log; they must not log payloads
        filter_record(_Exploding(), allow),
        scrub({"x": _Exploding()}),
    ]
    text = json.dumps(results)
    assert CANARY not in text and local not in text
    assert "[redacted]" in text  # the canary was there and was removed, not skipped
    for log_record in caplog.records:
        assert CANARY not in log_record.getMessage() and local not in log_record.getMessage()
    assert CANARY not in caplog.text


# --- properties -------------------------------------------------------------------------------

url_text = st.one_of(
    st.text(),
    st.builds(
        lambda scheme, authority, path, tail: f"{scheme}://{authority}/{path}{tail}",
        st.sampled_from(["http", "https", "HTTP", "ftp", "javascript"]),
        st.text(alphabet="abc.-_:@[]1%é ", max_size=12),
        st.text(max_size=40),
        st.sampled_from(["", "?q=1", "#f", "?a=b@c#d"]),
    ),
    st.from_regex(r"\A/[ -~]{0,40}\Z"),
)


@given(url_text)
@settings(max_examples=200, deadline=None)
def test_anonymize_url_never_raises_nor_leaks_query_fragment_or_userinfo(text: str) -> None:
    out = anonymize_url(text)
    assert "?" not in out and "#" not in out and "@" not in out
    assert anonymize_url(out) == out


keys = st.one_of(st.text(max_size=12), st.sampled_from(SENSITIVE_KEYS + BENIGN_KEYS))
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.sampled_from([CANARY, JWT, "4111 1111 1111 1111", "https://a.example/x/42?t=1", PEM]),
)
json_values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4)
)


@given(json_values)
@settings(max_examples=120, deadline=None)
def test_scrub_never_raises_never_keeps_a_sensitive_key_and_is_idempotent(value: Any) -> None:
    out = scrub(value)
    assert not [key for key in _all_keys(out) if is_sensitive_key(key)]
    assert scrub(out) == out
    text = json.dumps(out, allow_nan=False)
    assert CANARY not in text and "4111 1111" not in text and "?t=1" not in text


events = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.uuids().map(str), leaves),
        "name": st.sampled_from(["TriggerRun", "search", "bad name", CANARY]),
        "timestamp": st.sampled_from(["2026-11-23T15:00:00.123Z", "soon", CANARY]),
        "source": json_values,
        "user": leaves,
        "session_id": leaves,
        "url": st.one_of(url_text, leaves),
        "platform": leaves,
        "duration_ms": leaves,
        "metadata": json_values,
        "private_metadata": json_values,
        "error": json_values,
        "context": st.one_of(url_text, leaves),
        "extra": json_values,
    },
)


@given(events)
@settings(max_examples=100, deadline=None)
def test_filter_event_is_safe_and_idempotent_on_any_event(data: dict[str, Any]) -> None:
    allow = PrivacySettings(install_secret=SECRET, allow_private={"search": frozenset({"q"})})
    out = filter_event(data, allow)
    assert filter_event(out, allow) == out
    text = json.dumps(out, allow_nan=False)
    assert CANARY not in text and "4111 1111" not in text and "?t=1" not in text
    assert set(out) <= {
        *("id", "name", "timestamp", "source", "user", "session_id", "url", "platform"),
        *("duration_ms", "metadata", "private_metadata", "error", "context"),
    }


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_redact_value_is_idempotent(text: str) -> None:
    once = redact_value(text)
    assert redact_value(once) == once


def test_secret_file_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = load_install_secret(tmp_path / "install-secret")
    assert secret.hex() not in caplog.text
    assert os.fspath(tmp_path) in caplog.text  # where it is, once


# --- memory -----------------------------------------------------------------------------------


def test_memos_never_hold_a_raw_secret() -> None:
    """What the filter remembers between calls is only what it lets leave verbatim anyway."""
    _forget()
    local = CANARY.split("@")[0]
    card, stripe, password, param, random_id = (
        "4111111111111111",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "hunter2",
        "0F3A9C77",
        "NffrFeUfNV2Hib",
    )
    urls = [
        f"https://{local}:{password}@app.example.com/a",
        f"https://app.example.com/users/{CANARY}/edit",
        f"/cart;jsessionid={param}/checkout",
        f"/customers/cus_{random_id}",
        f"/reset/{JWT}",
        f"/pay/{card}",
        f"/t/{stripe}?token={stripe}",
    ]
    data = {
        "name": "search",
        "user": CANARY,
        "session_id": f"visit-{param}",
        "url": urls[0],
        "source": {"label": f"from {CANARY}", CANARY: 1, "pageUrl": urls[1], "card": card},
        "metadata": {CANARY: 1, f"{stripe}_count": 2, "n": 3},
        "private_metadata": {
            "q": {"text": f"{stripe} {JWT}", "links": [{"href": url} for url in urls], "pem": PEM}
        },
        "error": {"name": "E", "message": f"no account for {CANARY} at {urls[1]}"},
        "context": urls[3],
    }
    allow = PrivacySettings(
        install_secret=SECRET,
        allow_private={"search": frozenset({"q"})},
        extra_sensitive_keys=frozenset({"tenant"}),
    )
    sensitive_keys = {f"/cart;jsessionid={param}": 1, f"token {stripe}": 2, CANARY: 3, "n": 4}
    outputs = []
    for _ in range(2):  # the second pass reads what the first one remembered
        for settings_ in (SETTINGS, allow):
            outputs.append(filter_event(data, settings_))
            outputs.append(filter_record({"id": f"{CANARY}-1", "data": data}, settings_))
            brick = {"email": CANARY, "url": urls[1], "data": {"n": f"{CANARY}", "href": urls[3]}}
            outputs.append(filter_record({"id": "r1", "data": brick}, settings_))
        for url in urls:
            outputs.append(anonymize_url(url))
            outputs.append(redact_value(f"see https://app.example.com{url}".replace(".com/", "/")))
        outputs.append(scrub(sensitive_keys, extra_keys={"tenant"}))
    remembered = json.dumps([sorted(m) if isinstance(m, set) else m for m in _memos()])
    remembered += json.dumps(allow._extra.kept)
    assert "pageUrl" in remembered and "app.example.com" in remembered  # it did remember
    left = json.dumps(outputs)
    for secret in (CANARY, local, password, param, random_id, stripe, card, JWT[:20], "MIIEpAIB"):
        assert secret not in left, secret  # none of them leaves...
        assert secret not in remembered, secret  # ...and none of them is remembered


def test_memos_stay_bounded() -> None:
    for i in range(10_000):
        redact_value(f"label {i}")
        anonymize_url(f"https://host{i}.example/page{i}")
        scrub({f"key{i}": f"value {i}", f"password{i}": 1})
    sizes = [len(memo) for memo in _memos()]
    assert min(sizes) > 0 and max(sizes) <= 4096, sizes


@given(st.one_of(json_values, url_text))
@settings(max_examples=150, deadline=None)
def test_remembered_results_equal_fresh_ones(value: Any) -> None:
    fresh_scrub, fresh_url = scrub(value), anonymize_url(value)
    fresh_text = redact_value(value) if isinstance(value, str) else None
    assert scrub(value) == fresh_scrub and anonymize_url(value) == fresh_url
    _forget()
    assert scrub(value) == fresh_scrub and anonymize_url(value) == fresh_url
    if fresh_text is not None:
        assert redact_value(value) == fresh_text


# --- the ingest path's filter -----------------------------------------------------------------

texts = st.one_of(
    st.text(min_size=1, max_size=30),
    st.sampled_from(
        [CANARY, JWT, "4111 1111 1111 1111", "web", "/docs/42", "checkout", "GET /api/x/42"]
        + ["https://a.example/x/42?t=1", "/docs/[id]", "AKIAIOSFODNN7EXAMPLE", "u_" + "0" * 32]
    ),
)
checked_events = st.fixed_dictionaries(
    {
        "event_id": st.uuids().map(str),
        "name": st.sampled_from(["page_view", "search", "api_call", "error"]),
        "timestamp": st.sampled_from(["2026-11-23T15:00:00.123Z", "2026-01-01T00:00:00.000Z"]),
        "source": st.dictionaries(
            st.sampled_from(["ingest", "deploymentId", "pageUrl", "email", "tenant", CANARY]),
            texts,
            max_size=3,
        ),
    },
    optional={
        "user": texts,
        "session_id": texts,
        "platform": texts,
        "duration_ms": st.one_of(st.integers(0, 10**9), st.floats(0, 1e9)),
        "metadata": st.dictionaries(
            st.sampled_from(["count", "ok", "email", "apiKey", "status", "tenantId", CANARY]),
            st.one_of(st.booleans(), st.integers(-(10**15), 10**15), st.floats(-1e15, 1e15)),
            max_size=4,
        ),
        "error": st.fixed_dictionaries(
            {"name": texts, "business": st.booleans()}, optional={"message": texts}
        ),
        "context": texts,
    },
)


@given(checked_events, st.booleans())
@settings(max_examples=200, deadline=None)
def test_filter_checked_event_is_filter_event_for_well_formed_fields(
    fields: dict[str, Any], extra: bool
) -> None:
    settings_ = PrivacySettings(
        install_secret=SECRET, extra_sensitive_keys=frozenset({"tenant_id"} if extra else ())
    )
    event = {**fields, "id": fields.pop("event_id")}
    expected = list(filter_event(event, settings_).items())
    assert list(filter_checked_event(settings_, event_id=event["id"], **fields).items()) == expected
    scratch: dict[tuple[str, str], str] = {}  # the second time, pseudonyms come from it
    for _ in range(2):
        checked = filter_checked_event(settings_, event_id=event["id"], scratch=scratch, **fields)
        assert list(checked.items()) == expected
