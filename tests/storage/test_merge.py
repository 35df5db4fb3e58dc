"""``merge``: the four strategies as a table, and their properties under hypothesis."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brickrun.errors import StorageError
from brickrun.storage import MERGE_STRATEGIES, merge
from brickrun.storage._records import encode_json, json_size

# --- table -------------------------------------------------------------------------------------

TABLE: list[tuple[str, Any, Any, Any]] = [
    # (strategy, old, new, expected)
    ("replace", {"a": 1}, {"b": 2}, {"b": 2}),
    ("replace", None, {"b": 2}, {"b": 2}),
    ("shallow", {"a": 1, "b": {"x": 1}}, {"b": {"y": 2}}, {"a": 1, "b": {"y": 2}}),
    ("shallow", {"a": 1}, {}, {"a": 1}),
    ("shallow", None, {"a": 1}, {"a": 1}),
    ("shallow", [1], {"a": 1}, {"a": 1}),
    ("deep", {"a": {"x": 1, "y": 1}}, {"a": {"y": 2, "z": 3}}, {"a": {"x": 1, "y": 2, "z": 3}}),
    ("deep", {"a": [1, 2, 3]}, {"a": [4]}, {"a": [4]}),  # arrays are replaced
    ("deep", {"a": {"x": 1}}, {"a": None}, {"a": None}),  # None overwrites
    ("deep", {"a": None}, {"a": {"x": 1}}, {"a": {"x": 1}}),
    ("deep", {"a": 1}, {"a": {"x": 1}}, {"a": {"x": 1}}),
    (
        "deep",
        {"a": {"b": {"c": {"d": 1}}}},
        {"a": {"b": {"c": {"e": 2}}}},
        {"a": {"b": {"c": {"d": 1, "e": 2}}}},
    ),
    ("deep", None, {"a": 1}, {"a": 1}),
    ("deep_append", {"a": [1, 2]}, {"a": [3]}, {"a": [1, 2, 3]}),
    ("deep_append", {"a": {"l": [1]}}, {"a": {"l": [1]}}, {"a": {"l": [1, 1]}}),
    ("deep_append", {"a": [1]}, {"a": {"x": 1}}, {"a": {"x": 1}}),  # array meets object
    ("deep_append", {"a": {"x": 1}}, {"a": [1]}, {"a": [1]}),
    ("deep_append", {"a": 5}, {"a": [1]}, {"a": [1]}),
    ("deep_append", {"a": [1]}, {"a": None}, {"a": None}),
    ("deep_append", {"a": [[1]]}, {"a": [[2]]}, {"a": [[1], [2]]}),  # no merging inside arrays
    ("deep_append", None, {"a": [1]}, {"a": [1]}),
]


@pytest.mark.parametrize(("strategy", "old", "new", "expected"), TABLE)
def test_merge_table(strategy: str, old: Any, new: Any, expected: Any) -> None:
    assert merge(old, new, strategy) == expected


def test_unknown_strategy_lists_the_four() -> None:
    with pytest.raises(StorageError) as caught:
        merge({}, {}, "append")
    assert str(caught.value) == (
        "unknown merge strategy 'append'; expected one of 'replace', 'shallow', 'deep', "
        "'deep_append'"
    )


def test_strategies_are_listed_in_order() -> None:
    assert MERGE_STRATEGIES == ("replace", "shallow", "deep", "deep_append")


# --- properties --------------------------------------------------------------------------------

keys = st.text(alphabet="abcde", min_size=1, max_size=2)
scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=8,
)
objects = st.dictionaries(keys, json_values, max_size=4)
strategies = st.sampled_from(MERGE_STRATEGIES)

# This 2-core machine generates ~70 nested examples a second; keep the suite quick.
quick = settings(max_examples=30, deadline=None)


@quick
@given(old=objects | st.none(), new=objects, strategy=strategies)
def test_merge_never_modifies_its_arguments(old: Any, new: Any, strategy: str) -> None:
    before = copy.deepcopy((old, new))
    merge(old, new, strategy)
    assert (old, new) == before


@quick
@given(new=objects, strategy=strategies)
def test_no_old_record_stores_the_new_value(new: Any, strategy: str) -> None:
    assert merge(None, new, strategy) == new


@quick
@given(old=objects, new=objects)
def test_replace_is_new_and_idempotent(old: Any, new: Any) -> None:
    once = merge(old, new, "replace")
    assert once == new
    assert merge(once, new, "replace") == once


@quick
@given(old=objects, new=objects, strategy=st.sampled_from(["replace", "shallow", "deep"]))
def test_merging_the_same_value_twice_changes_nothing(old: Any, new: Any, strategy: str) -> None:
    once = merge(old, new, strategy)
    assert merge(once, new, strategy) == once


@quick
@given(old=objects, new=objects)
def test_shallow_keeps_every_key_and_takes_new_values(old: Any, new: Any) -> None:
    merged = merge(old, new, "shallow")
    assert set(merged) == set(old) | set(new)
    assert all(merged[k] == v for k, v in new.items())
    assert all(merged[k] == v for k, v in old.items() if k not in new)


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every object-key path in ``value`` (not descending into arrays)."""
    if not isinstance(value, dict):
        return set()
    found = set()
    for k, v in value.items():
        found.add((*prefix, k))
        found |= _paths(v, (*prefix, k))
    return found


def _at(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@quick
@given(old=objects, new=objects, strategy=st.sampled_from(["deep", "deep_append"]))
def test_deep_never_loses_a_key_only_old_has(old: Any, new: Any, strategy: str) -> None:
    merged = merge(old, new, strategy)
    merged_paths = _paths(merged)
    for path in _paths(old):
        # A key survives unless the new value replaced one of its parent objects.
        replaced = any(
            path[:i] in _paths(new) and not isinstance(_at(new, path[:i]), dict)
            for i in range(1, len(path))
        )
        if not replaced:
            assert path in merged_paths, path


@quick
@given(old=objects, new=objects)
def test_deep_takes_every_leaf_of_new(old: Any, new: Any) -> None:
    merged = merge(old, new, "deep")
    for path in _paths(new):
        if not isinstance(_at(new, path), dict):
            assert _at(merged, path) == _at(new, path)


@quick
@given(
    old=st.lists(json_values, max_size=5),
    new=st.lists(json_values, max_size=5),
    key=keys,
    depth=st.integers(0, 3),
)
def test_deep_append_lengths_add(old: list[Any], new: list[Any], key: str, depth: int) -> None:
    def wrap(value: Any) -> Any:
        for _ in range(depth):
            value = {key: value}
        return {key: value}

    merged = merge(wrap(old), wrap(new), "deep_append")
    path = (key,) * (depth + 1)
    assert _at(merged, path) == old + new
    assert len(_at(merged, path)) == len(old) + len(new)


def _has_list(value: Any) -> bool:
    if isinstance(value, list):
        return True
    return isinstance(value, dict) and any(_has_list(v) for v in value.values())


@quick
@given(old=objects, new=objects)
def test_deep_append_is_deep_without_arrays(old: Any, new: Any) -> None:
    if not _has_list(old) or not _has_list(new):
        assert merge(old, new, "deep_append") == merge(old, new, "deep")


@settings(max_examples=80, deadline=None)
@given(old=objects, new=objects, strategy=strategies)
def test_merged_encoding_is_at_most_both_encodings(old: Any, new: Any, strategy: str) -> None:
    # The batcher skips re-encoding merges well under the size limit on the strength of this.
    merged = merge(old, new, strategy)
    assert json_size(encode_json(merged)) <= json_size(encode_json(old)) + json_size(
        encode_json(new)
    )
