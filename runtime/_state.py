"""Mod variables and page state: the data behind ``@mod`` and ``@pixiebrix/state/*``.

Merge strategies follow PixieBrix page state (``replace``, ``shallow``, ``deep``); ``deep``
merges arrays index by index like lodash ``merge`` (team databases replace arrays instead,
SPEC §7). Readers get a snapshot that is rebuilt only after a change, so refreshing ``@mod``
before every step costs a version check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._paths import copy_value

__all__ = ["STATE_MERGE_STRATEGIES", "ModVariables", "deep_merge_by_index"]

STATE_MERGE_STRATEGIES = ("replace", "shallow", "deep")


def deep_merge_by_index(old: Any, new: Any) -> Any:
    """lodash ``merge``: objects recursively, arrays index by index, ``null`` overwrites."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for key, value in new.items():
            out[key] = deep_merge_by_index(old[key], value) if key in old else copy_value(value)
        return out
    if isinstance(old, list) and isinstance(new, list):
        merged = [
            deep_merge_by_index(old[i], value) if i < len(old) else copy_value(value)
            for i, value in enumerate(new)
        ]
        return merged + copy_value(old[len(new) :])
    return copy_value(new)


class ModVariables:
    """One namespace of state (a mod's variables, a component's private state, page state).

    ``on_change(old, new)`` is called after every write that changed something (it drives the
    ``statechange`` trigger).
    """

    __slots__ = ("_data", "_snapshot", "on_change")

    def __init__(
        self,
        initial: dict[str, Any] | None = None,
        on_change: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ) -> None:
        self._data: dict[str, Any] = copy_value(initial) if initial else {}
        self._snapshot: dict[str, Any] | None = None
        self.on_change = on_change

    def snapshot(self) -> dict[str, Any]:
        """The current state; shared until the next write, so callers must not mutate it."""
        if self._snapshot is None:
            snapshot: dict[str, Any] = copy_value(self._data)
            self._snapshot = snapshot
        return self._snapshot

    def get(self) -> dict[str, Any]:
        """A copy of the current state."""
        state: dict[str, Any] = copy_value(self._data)
        return state

    def _write(self, new: dict[str, Any]) -> dict[str, Any]:
        old = self._data
        self._data = new
        self._snapshot = None
        if self.on_change is not None and new != old:
            self.on_change(old, new)
        return self.get()

    def set(self, data: dict[str, Any], merge_strategy: str = "shallow") -> dict[str, Any]:
        """Write ``data`` with ``replace``, ``shallow`` or ``deep``; returns the new state."""
        if merge_strategy == "replace":
            new = copy_value(data)
        elif merge_strategy == "shallow":
            new = {**self._data, **copy_value(data)}
        elif merge_strategy == "deep":
            new = deep_merge_by_index(self._data, data)
        else:
            raise ValueError(
                f"unknown merge strategy {merge_strategy!r}; expected one of "
                f"{', '.join(STATE_MERGE_STRATEGIES)}"
            )
        return self._write(new)

    def assign(self, name: str, value: Any) -> dict[str, Any]:
        """Set one variable (a shallow merge of ``{name: value}``)."""
        return self._write({**self._data, name: copy_value(value)})
