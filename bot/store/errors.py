"""The store's exceptions: every failure a caller can act on gets its own type and a message that says what to do."""

from __future__ import annotations


class StoreError(Exception):
    """A storage operation failed or was refused; the message names the record and the reason."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened (wrong URL, server down, not a database file)."""


class SchemaError(StoreError):
    """The database schema is not one this code can use (e.g. migrated by a newer tunebot)."""


class UnknownRun(StoreError):
    """An operation named a run id that is not in the store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"unknown run {run_id!r}")
        self.run_id = run_id


class DuplicateRun(StoreError):
    """A run id is already taken by a different run (same id, different trigger)."""


class EventConflict(StoreError):
    """An event reuses a (run, seq) that already holds a different event: the agent broke the protocol."""
