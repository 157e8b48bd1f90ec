"""connect(url) → Database for sqlite:///…, postgresql://… and mssql+pyodbc://… (or odbc://)."""
from __future__ import annotations

from mi_worker.db.base import (
    ConnectionLost,
    ConnectRefused,
    Database,
    DatabaseError,
    Dialect,
    UniqueViolation,
)

__all__ = ["connect", "dialect_for", "Database", "DatabaseError", "ConnectionLost",
           "ConnectRefused", "UniqueViolation"]


def dialect_for(url: str, connect_timeout: int = 10) -> Dialect:
    """Pick the dialect from the URL scheme; a raw ODBC string names its driver."""
    lowered = url.lower()
    if lowered.startswith("sqlite:"):
        from mi_worker.db.sqlite import SQLiteDialect
        return SQLiteDialect(url, connect_timeout)
    if lowered.startswith(("postgresql:", "postgres:", "postgresql+pyodbc:")):
        from mi_worker.db.postgresql import PostgreSQLDialect
        return PostgreSQLDialect(url.replace("+pyodbc", ""), connect_timeout)
    if lowered.startswith(("mssql", "sqlserver:")):
        from mi_worker.db.mssql import SQLServerDialect
        return SQLServerDialect(url, connect_timeout)
    if lowered.startswith("odbc://") or "driver=" in lowered:
        raw = url[len("odbc://"):] if lowered.startswith("odbc://") else url
        if "postgres" in raw.lower():
            from mi_worker.db.postgresql import PostgreSQLDialect
            return PostgreSQLDialect("odbc://" + raw, connect_timeout)
        from mi_worker.db.mssql import SQLServerDialect
        return SQLServerDialect("odbc://" + raw, connect_timeout)
    raise ValueError(f"unsupported database URL {url.split(':', 1)[0]}://…: use sqlite:///path, "
                     "postgresql://… or mssql+pyodbc://…")


def connect(url: str, connect_timeout: int = 10, reconnect_max_seconds: float = 30.0,
            pool_size: int = 10) -> Database:
    return Database(dialect_for(url, connect_timeout), reconnect_max_seconds, pool_size)
