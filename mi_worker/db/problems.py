"""Which connection failures will not pass by waiting, and where the database was.

A worker retries a database that is away (restart, failover) for
``database.reconnect_max_seconds``. Some failures never heal that way: the ODBC driver is not
installed, the login is refused, the database does not exist. psqlODBC reports all of those
as SQLSTATE 08001 (like "connection refused") and the driver manager's IM002 starts with the
same "IM" class as a lost link, so the state alone cannot tell them apart; the message text
can, and it is stable across psqlODBC, the Microsoft driver and unixODBC / Windows' driver
manager. Retrying them only delays the one message ops need by 30 s.
"""
from __future__ import annotations

import re
from typing import Optional
from urllib.parse import unquote, urlsplit

#: kind -> (message fragments, lower-case)
_PERMANENT = {
    "driver": ("can't open lib", "data source name not found", "im002", "im003",
               "driver not found", "specified driver could not be loaded",
               "no default driver specified"),
    "login": ("password authentication failed", "authentication failed", "login failed for",
              "no pg_hba.conf entry", "pg_hba.conf rejects", "28p01", "28000",
              "permission denied for database"),
    "role": ("role \"", "user \""),
    "no_database": ("does not exist", "cannot open database", "unknown database"),
}


def permanent_kind(exc: BaseException) -> Optional[str]:
    """'driver', 'login' or 'no_database' when waiting cannot fix the connect error ``exc``."""
    text = str(exc).lower()
    for kind in ("driver", "login"):
        if any(w in text for w in _PERMANENT[kind]):
            return kind
    if "does not exist" in text and any(w in text for w in _PERMANENT["role"]):
        return "login"  # role "x" does not exist
    if any(w in text for w in _PERMANENT["no_database"]) and "database" in text:
        return "no_database"
    return None


def driver_message(exc: BaseException) -> str:
    """A driver error as one readable line: pyodbc's ('08001', '[08001] … (101)
    (SQLDriverConnect)') becomes "connection to server at … failed: FATAL: role … [08001]"."""
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        state, text = args[0], args[1]
    else:
        state, text = "", str(exc)
    text = re.sub(r"^(\s*\[[^\]]*\])+\s*", "", text)
    text = re.sub(r"\s*\(\d+\)\s*\((SQL\w+)\)\s*$", "", text)
    text = re.sub(r"(\s*\(\d+\)\s*\(SQL\w+\)\s*;?)", " ", text)
    text = " ".join(text.split())
    return f"{text} [{state}]" if state else text


def location(url: str) -> str:
    """host:port/database of a URL or ODBC string (no user, no password), for messages."""
    if url.lower().startswith("sqlite:"):
        return url.split("///", 1)[-1] if "///" in url else url[len("sqlite://"):]
    raw = url[len("odbc://"):] if url.lower().startswith("odbc://") else None
    if raw is None and "://" in url:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        default = 1433 if parts.scheme.lower().startswith(("mssql", "sqlserver")) else 5432
        return f"{parts.hostname or '127.0.0.1'}:{port or default}/" \
               f"{unquote(parts.path.lstrip('/'))}"
    raw = raw if raw is not None else url

    def item(name: str) -> str:
        m = re.search(r"(?:^|;)\s*" + name + r"\s*=\s*(\{[^}]*\}|[^;]*)", raw, re.IGNORECASE)
        return m.group(1).strip("{}") if m else ""
    server = item("SERVER") or item("HOST") or item("DSN")
    port = item("PORT")
    database = item("DATABASE")
    return f"{server}{':' + port if port and ':' not in server else ''}/{database}"


def advice(kind: str, where: str) -> str:
    """What to do about a permanent connect problem, in one line."""
    if kind == "driver":
        return ("install the ODBC driver named in database.url (Debian/Ubuntu: apt-get install "
                "odbc-postgresql / msodbcsql18; Windows: the psqlODBC or 'ODBC Driver 17/18 for "
                "SQL Server' MSI) or fix its name with ?driver=…; `odbcinst -q -d` lists them")
    if kind == "login":
        return (f"check the user and password in database.url (MI_WORKER_DATABASE_URL) and that "
                f"the login may connect to {where}")
    if kind == "no_database":
        return (f"the database {where} does not exist: create it (CREATE DATABASE …) or fix the "
                "name in database.url, then run `mi-worker db upgrade`")
    return f"check that the database server at {where} is running and reachable"


def is_permission_denied(exc: BaseException) -> bool:
    """A statement refused for want of a grant: PostgreSQL 42501 "permission denied for
    table …", SQL Server 229 "The UPDATE permission was denied on the object …" (an optional
    write such as the latency estimate then stops instead of failing every pass)."""
    text = str(exc).lower()
    return ("permission denied" in text or "42501" in text
            or ("permission was denied" in text and "object" in text))
