"""OTLP/HTTP JSON encoding: the hand-written encoder (strings formatted directly, for speed)
against a plain reference that builds dicts from the mapping in ``_otlp``'s docstring and
serialises them with ``json.dumps``; its time parsing against ``datetime.fromisoformat``.
(Requests parsed strictly by ``opentelemetry-proto`` are in ``test_export.py``.)"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from brickrun.telemetry._otlp import encode_log_record, unix_nano

# --- a reference encoder: dicts through json.dumps, rules as the module docstring states them --

_NAMED = {
    "user": "user.id",
    "session_id": "session.id",
    "url": "url.full",
    "platform": "brickrun.platform",
    "duration_ms": "event.duration_ms",
}
_PREFIXED = {"source": "source.", "metadata": "metadata.", "private_metadata": "private."}
_SKIPPED = {"id", "name", "timestamp", "data", "error", "created_at", "updated_at"}


def reference_nanos(stamp: Any) -> str | None:
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    nanos = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    return str(nanos) if 0 <= nanos < 2**64 else None


def reference_value(value: Any, depth: int = 0) -> dict[str, Any]:
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        in_range = -(2**63) <= value < 2**63
        return {"intValue": str(value)} if in_range else {"stringValue": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"doubleValue": "NaN"}
        if math.isinf(value):
            return {"doubleValue": "Infinity" if value > 0 else "-Infinity"}
        return {"doubleValue": value}
    if value is None:
        return {}
    if depth >= 32:
        return {"stringValue": "[truncated]"}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [reference_value(v, depth + 1) for v in value]}}
    if isinstance(value, Mapping):
        values = [{"key": str(k), "value": reference_value(v, depth + 1)} for k, v in value.items()]
        return {"kvlistValue": {"values": values}}
    return {"stringValue": str(value)}


def reference_record(payload: Mapping[str, Any], observed: str | None) -> bytes:
    record: dict[str, Any] = {}
    if (time_nano := reference_nanos(payload.get("timestamp"))) is not None:
        record["timeUnixNano"] = time_nano
    if (observed_nano := reference_nanos(observed)) is not None:
        record["observedTimeUnixNano"] = observed_nano
    error = payload.get("error")
    record["severityNumber"], record["severityText"] = (17, "ERROR") if error else (9, "INFO")
    name = payload.get("name")
    if isinstance(name, str):
        record["eventName"] = name
    data = payload.get("data")
    record["body"] = reference_value(data if data is not None else name)
    pairs = [("event.id", payload.get("id")), ("event.name", name)]
    for field, value in payload.items():
        if field in _SKIPPED or value is None:
            continue
        if field in _NAMED:
            pairs.append((_NAMED[field], value))
        elif field in _PREFIXED and isinstance(value, Mapping):
            pairs += [(_PREFIXED[field] + str(k), v) for k, v in value.items()]
        else:
            pairs.append((field, value))
    if isinstance(error, Mapping):
        pairs += [("error." + str(k), v) for k, v in error.items()]
    first: dict[str, Any] = {}
    for key, value in pairs:
        first.setdefault(key, value)  # the first value of a name wins
    record["attributes"] = [{"key": k, "value": reference_value(v)} for k, v in first.items()]
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


# --- strategies --------------------------------------------------------------------------------

texts = st.text(max_size=20) | st.sampled_from(["@acme/tracker", "run-1", 'é\u2028"\\', "x" * 200])
scalars = (
    texts
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.none()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
stamps = (
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2600, 1, 1)).map(
        lambda moment: moment.isoformat(timespec="milliseconds") + "Z"
    )
    | st.sampled_from(
        [
            "2026-11-23T15:00:00.123Z",
            "2026-11-23T15:00:00.1x3Z",
            "2026-11-23T15:00:00.\u0661\u0662\u0663Z",  # Arabic-Indic digits: not ISO
            "2026-11-23 15:00:00.123Z",
            "2026-11-23T15:00:00.123+00:00",
            "2026-11-23T15:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "2554-07-21T23:34:33.709Z",  # the last millisecond below 2**64 ns
            "2554-07-21T23:34:33.710Z",
            "2026-13-23T15:00:00.123Z",
            "not a time",
        ]
    )
    | texts
)
payloads = st.fixed_dictionaries(
    {"id": texts, "name": texts | st.none()},
    optional={
        "timestamp": stamps,
        "source": st.dictionaries(texts, values, max_size=5),
        "user": texts,
        "session_id": texts,
        "url": texts,
        "platform": texts,
        "duration_ms": scalars,
        "metadata": st.dictionaries(texts, scalars, max_size=3) | values,
        "private_metadata": st.dictionaries(texts, values, max_size=3),
        "error": st.fixed_dictionaries({}, optional={"name": texts, "message": texts}) | texts,
        "context": texts,
        "data": values,
        "user.id": texts,  # collides with the attribute "user" becomes
        "source.modId": texts,  # collides with a source key
    },
)


@given(payloads, stamps | st.none())
def test_the_encoder_matches_the_reference(payload: dict[str, Any], observed: str | None) -> None:
    assert encode_log_record(payload, observed=observed) == reference_record(payload, observed)


@given(stamps)
def test_timestamps_parse_as_fromisoformat_does(stamp: str) -> None:
    assert unix_nano(stamp) == reference_nanos(stamp)
    assert unix_nano(stamp) == reference_nanos(stamp)  # again, from the memo
