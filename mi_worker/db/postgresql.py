"""PostgreSQL over pyodbc and psqlODBC (the same path serves openGauss and KingbaseES).

Connection options chosen and tested here: autocommit on (each claim is its own short
transaction); BoolsAsChar=0 so booleans are not '1'/'0' text; the session pinned to UTC
because psqlODBC hands timestamptz back naive in the session zone; UseServerSidePrepare=1
so the one-cursor-per-statement pattern reuses prepared plans.
"""
from __future__ import annotations

import re
from typing import Any, List, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

from mi_worker.db.odbc import ODBCDialect, odbc_value, sqlstate
from mi_worker.db.odbcinst import default_postgres_driver, warn_driver_logging

DEFAULT_DRIVER = "PostgreSQL Unicode"


def driver_of(url: str) -> str:
    """The ODBC driver a postgresql:// URL uses: its ?driver=, else the one installed here."""
    return dict(parse_qsl(urlsplit(url).query)).get("driver") or default_postgres_driver()


def odbc_string(url: str, driver: Optional[str] = None) -> str:
    """postgresql://user:pw@host:5432/db?driver=…&sslmode=require → an ODBC connection string.

    Without ?driver= the name follows the platform (``PostgreSQL Unicode(x64)`` on Windows)
    or whatever psqlODBC name pyodbc.drivers() lists.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    driver = query.pop("driver", None) or driver or default_postgres_driver()
    items = [
        ("DRIVER", "{" + driver + "}"),
        ("SERVER", parts.hostname or "127.0.0.1"),
        ("PORT", str(parts.port or 5432)),
        ("DATABASE", unquote(parts.path.lstrip("/")) or "postgres"),
        ("UID", unquote(parts.username or "postgres")),
        ("PWD", unquote(parts.password or "")),
        ("BoolsAsChar", "0"),
        ("UseServerSidePrepare", "1"),
        ("ApplicationName", query.pop("application_name", "mi-worker")),
        # Per connection only: the file per process is switched off in odbcinst.ini
        # (mi_worker/db/odbcinst.py explains; the worker warns when it is on).
        ("CommLog", "0"),
        ("Debug", "0"),
    ]
    if "sslmode" in query:
        items.append(("SSLmode", query.pop("sslmode")))
    items.extend((k, v) for k, v in query.items())
    return ";".join(f"{k}={odbc_value(v)}" for k, v in items) + ";"


def with_driver_hint(exc: BaseException, conn_str: str) -> BaseException:
    """The same driver error (same class and SQLSTATE, so retries classify it alike), with
    what to install when the driver manager cannot find the driver."""
    state, message = sqlstate(exc)
    if not (state.startswith("IM002") or "can't open lib" in message.lower()
            or "data source name not found" in message.lower()):
        return exc
    m = re.search(r"DRIVER=\{([^}]*)\}", conn_str, re.IGNORECASE)
    try:
        import pyodbc
        installed = ", ".join(pyodbc.drivers()) or "none"
    except Exception:
        installed = "unknown"
    hint = (f"; the ODBC driver {m.group(1) if m else '?'!r} is not installed here (installed: "
            f"{installed}). Install psqlODBC (Windows: the x64 MSI registers 'PostgreSQL "
            "Unicode(x64)'; Debian/Ubuntu: apt-get install odbc-postgresql; RHEL: dnf install "
            "postgresql-odbc) or name an installed one with ?driver= in database.url")
    try:
        return type(exc)(state, message + hint)
    except Exception:
        return exc


class PostgreSQLDialect(ODBCDialect):
    name = "postgresql"
    features = frozenset({"batch_complete", "procedures", "migration_lock"})

    def connect(self) -> Any:
        if self.url.startswith("odbc://"):
            conn_str = self.url[len("odbc://"):]
        else:
            warn_driver_logging(driver_of(self.url))
            conn_str = odbc_string(self.url)
        try:
            conn = self.connect_odbc(conn_str, ("SET TIME ZONE 'UTC'",))
        except Exception as exc:
            hinted = with_driver_hint(exc, conn_str)
            if hinted is exc:
                raise  # as it is (raising it "from" itself would make its cause a cycle)
            raise hinted from exc
        # psqlODBC returns text as str already; make sure bytes never sneak in for Chinese.
        return conn

    def is_unique_violation(self, exc: BaseException) -> bool:
        state, message = sqlstate(exc)
        return state == "23505" or "duplicate key value" in message

    def is_transient(self, exc: BaseException) -> bool:
        state, message = sqlstate(exc)
        return state in ("40001", "40P01") or "deadlock detected" in message

    def script_statements(self, script: str) -> List[str]:
        # psqlODBC sends a parameterless multi-statement string as one simple query, dollar
        # quotes included, so a migration file is one execute.
        return [script] if re.search(r"\S", script) else []
