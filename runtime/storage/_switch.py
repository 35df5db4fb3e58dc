"""A short thread switch interval while a SQLite store is open.

The SQLite backend writes in a worker thread (so that the event loop never waits for the
disk). That thread gives up the GIL inside every sqlite3 call and must win it back from the
event loop when the call returns; when the loop is busy, CPython makes it wait a whole switch
interval (``sys.getswitchinterval()``, 5 ms by default) each time. A batch takes a dozen such
hand-backs, so a busy process wrote at a fraction of what SQLite can take: recording and
exporting telemetry in one process went ~40% faster with 0.5 ms here. The interval is global to
the interpreter, so this is done once for all open stores and undone when the last closes —
unless the host set its own value meanwhile, which is then left alone.
"""

from __future__ import annotations

import sys
import threading

__all__ = ["SHORT_SWITCH_INTERVAL", "acquire", "release"]

SHORT_SWITCH_INTERVAL = 0.0005
"""Seconds; an interval the host already set lower is kept."""

_lock = threading.Lock()
_users = 0
_saved: float | None = None  # the interval to restore, when we lowered it


def acquire() -> None:
    """A store opened: lower the interval to ``SHORT_SWITCH_INTERVAL`` if it is longer."""
    global _users, _saved
    with _lock:
        if _users == 0:
            current = sys.getswitchinterval()
            _saved = None
            if current > SHORT_SWITCH_INTERVAL:
                _saved = current
                sys.setswitchinterval(SHORT_SWITCH_INTERVAL)
        _users += 1


def release() -> None:
    """A store closed: when it was the last, restore the interval it lowered (if unchanged)."""
    global _users, _saved
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0 and _saved is not None:
            if sys.getswitchinterval() == SHORT_SWITCH_INTERVAL:
                sys.setswitchinterval(_saved)
            _saved = None
