"""What a statement or a connection can fail with, dialect-neutral (the callers' vocabulary).

The driver's own exception is always chained (``raise … from exc``) so logs keep it.
"""
from __future__ import annotations


class DatabaseError(RuntimeError):
    """A statement failed for a reason other than a lost connection (bad SQL, constraint…)."""


class ConnectionLost(RuntimeError):
    """The database could not be reached (after the configured retries)."""


class SessionLost(ConnectionLost):
    """The pinned session of a ``pinned()`` block (the one holding a session lock) is gone:
    the rest of the block fails rather than run on another session without the lock."""


class ConnectRefused(DatabaseError):
    """Connecting failed in a way waiting cannot fix: no driver, login refused, no database.

    ``kind`` is 'driver', 'login' or 'no_database'; ``where`` is host:port/database.
    """

    def __init__(self, message: str, kind: str, where: str) -> None:
        super().__init__(message)
        self.kind, self.where = kind, where


class UniqueViolation(DatabaseError):
    """A unique index refused the statement (a concurrent claim won, a duplicate key)."""
