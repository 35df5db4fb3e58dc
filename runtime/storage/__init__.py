"""Team databases: one async storage interface with SQLite and PostgreSQL backends.

A team database is a named set of records ``{id: key, data, merge_strategy, created_at,
updated_at}`` (SPEC §7). ``open_storage(url)`` picks the backend from the URL; both backends
behave identically (one test suite runs against both):

- ``put`` merges a JSON object into a record with one of :data:`MERGE_STRATEGIES` atomically,
  also against other processes and hosts; concurrent puts are coalesced into one transaction
  per batch and each returns once its batch committed.
- ``put_many`` writes many records (:class:`PutItem`) as if put one by one in order, in one
  transaction and with one wait: refusals are reported per item, and records are only read
  back when asked for. Callers with batches in hand (ingest, imports) should use it: it costs
  a fraction of one ``put`` per record.
- ``group_events`` reads a telemetry database grouped by what its daily aggregates depend on
  (:class:`EventGroup`), computed in the store without decoding records.
- Per-database :class:`DatabaseLimits` (record size, writes per second per user, retention) are
  stored in the store itself, so every process enforces the same ones.
- ``put(..., outbox=True)`` also queues the record for export in the same transaction; the
  ``outbox_*`` methods claim, acknowledge, reschedule and dead-letter queued records (see
  :mod:`._outbox`), and ``cleanup`` never deletes a record that is still queued.
- Failures are :class:`~brickrun.errors.StorageError` subclasses naming the store by its URL
  with any password replaced by ``***``.

Storage URLs (see :func:`open_storage`): ``None`` (``$BRICKRUN_DB_URL`` or the user's default
SQLite file), ``sqlite:///relative.sqlite``, ``sqlite:////absolute.sqlite``,
``sqlite:///:memory:`` (private to one backend: the fake for other modules' tests),
``postgresql://...`` / ``postgres://...`` with an optional ``?schema=NAME``.

The one visible difference between the backends: objects read back from PostgreSQL (JSONB)
iterate their keys in JSONB's order, not in the order they were written.
"""

from __future__ import annotations

from ._base import (
    MERGE_STRATEGIES,
    DatabaseInfo,
    DatabaseLimits,
    DeadLetter,
    EventGroup,
    OutboxItem,
    OutboxState,
    OutboxStatus,
    PutItem,
    Record,
    StorageBackend,
    merge,
)
from ._url import open_storage, redact_url

__all__ = [
    "MERGE_STRATEGIES",
    "DatabaseInfo",
    "DatabaseLimits",
    "DeadLetter",
    "EventGroup",
    "OutboxItem",
    "OutboxState",
    "OutboxStatus",
    "PutItem",
    "Record",
    "StorageBackend",
    "merge",
    "open_storage",
    "redact_url",
]
