"""connect(url) → Database for sqlite:///…, postgresql://…, mssql+pyodbc://… and raw ODBC strings
(mssql+odbc://…, postgresql+odbc://…, or odbc://… with database.dialect)."""
from __future__ import annotations

import re

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


# A raw ODBC connection string names a driver, not a dialect: KingbaseES, openGauss or a DSN
# may be behind any name, so the dialect is said explicitly and never guessed (issue 12).
_RAW_ODBC_SCHEMES = {"mssql+odbc://": "mssql", "postgresql+odbc://": "postgresql"}
DIALECTS = ("mssql", "postgresql")

# Older configs wrote bare odbc:// strings. Those naming one of these drivers exactly keep
# working (the name says the SQL for certain: Microsoft's own drivers, psqlODBC's
# registered names); any other driver name must say its dialect. Never a substring guess.
_KNOWN_DRIVERS = {
    "odbc driver 17 for sql server": "mssql", "odbc driver 18 for sql server": "mssql",
    "odbc driver 13 for sql server": "mssql", "sql server": "mssql",
    "sql server native client 11.0": "mssql",
    "postgresql unicode": "postgresql", "postgresql unicode(x64)": "postgresql",
    "postgresql ansi": "postgresql", "postgresql ansi(x64)": "postgresql",
}


def _known_driver(raw: str) -> str:
    m = re.search(r"(?:^|;)\s*driver\s*=\s*\{?([^};]*)\}?", raw, re.IGNORECASE)
    return _KNOWN_DRIVERS.get(m.group(1).strip().lower(), "") if m else ""


def raw_odbc(url: str) -> bool:
    """Is this a raw ODBC connection string (odbc://… or DRIVER=… without a URL scheme)?"""
    lowered = url.lower()
    return lowered.startswith("odbc://") or ("driver=" in lowered and "://" not in lowered)


def dialect_for(url: str, connect_timeout: int = 10, dialect: str = "") -> Dialect:
    """Pick the dialect from the URL scheme; a raw ODBC string needs it said (mssql+odbc://,
    postgresql+odbc://, or ``dialect`` = database.dialect)."""
    lowered = url.lower()
    dialect = (dialect or "").strip().lower()
    if dialect and dialect not in DIALECTS:
        raise ValueError(f"database.dialect = {dialect!r}: use mssql or postgresql (or leave it "
                         "empty when the URL scheme names the database)")
    for scheme, named in _RAW_ODBC_SCHEMES.items():
        if lowered.startswith(scheme):
            if dialect and dialect != named:
                raise ValueError(f"database.dialect = {dialect} but the URL says {named}")
            return _odbc_dialect(named, url[len(scheme):], connect_timeout)
    if raw_odbc(url):
        raw = url[len("odbc://"):] if lowered.startswith("odbc://") else url
        dialect = dialect or _known_driver(raw)
        if not dialect:
            raise ValueError(
                "a raw ODBC connection string does not say which SQL to run: write "
                "mssql+odbc://DRIVER=…;… or postgresql+odbc://DRIVER=…;…, or set "
                "database.dialect (MI_WORKER_DATABASE_DIALECT) to mssql or postgresql; the "
                "driver name is only trusted for Microsoft's SQL Server drivers and psqlODBC")
        return _odbc_dialect(dialect, raw, connect_timeout)
    if lowered.startswith("sqlite:"):
        from mi_worker.db.sqlite import SQLiteDialect
        picked: Dialect = SQLiteDialect(url, connect_timeout)
    elif lowered.startswith(("postgresql:", "postgres:", "postgresql+pyodbc:")):
        from mi_worker.db.postgresql import PostgreSQLDialect
        picked = PostgreSQLDialect(url.replace("+pyodbc", ""), connect_timeout)
    elif lowered.startswith(("mssql", "sqlserver:")):
        from mi_worker.db.mssql import SQLServerDialect
        picked = SQLServerDialect(url, connect_timeout)
    else:
        raise ValueError(f"unsupported database URL {url.split(':', 1)[0]}://…: use sqlite:///path, "
                         "postgresql://…, mssql+pyodbc://…, or a raw ODBC string as "
                         "mssql+odbc://DRIVER=…;… / postgresql+odbc://DRIVER=…;…")
    if dialect and picked.name != dialect:
        raise ValueError(f"database.dialect = {dialect} but the URL is {picked.name}")
    return picked


def _odbc_dialect(dialect: str, raw: str, connect_timeout: int) -> Dialect:
    if dialect == "postgresql":
        from mi_worker.db.postgresql import PostgreSQLDialect
        return PostgreSQLDialect("odbc://" + raw, connect_timeout)
    from mi_worker.db.mssql import SQLServerDialect
    return SQLServerDialect("odbc://" + raw, connect_timeout)


def connect(url: str, connect_timeout: int = 10, reconnect_max_seconds: float = 30.0,
            pool_size: int = 10, dialect: str = "") -> Database:
    return Database(dialect_for(url, connect_timeout, dialect), reconnect_max_seconds, pool_size)
