"""What pyodbc connections share, whichever server is behind them.

pyodbc is imported only here and only when a server URL is used, so the embedded SQLite
default needs no unixODBC on the machine.
"""
from __future__ import annotations

from typing import Any, Tuple

from mi_worker.db.base import Dialect

# SQLSTATE classes and message fragments that mean the connection is gone.
_DISCONNECT_STATES = ("08", "HYT", "57P0", "IM")
_DISCONNECT_WORDS = ("connection", "could not send", "server closed", "terminating",
                     "communication link", "tcp provider", "broken pipe", "no connection",
                     "connection dead", "timeout expired", "not connected")


def import_pyodbc() -> Any:
    try:
        import pyodbc
    except ImportError as exc:
        raise RuntimeError(
            "pyodbc is needed for SQL Server and PostgreSQL URLs: pip install 'mi-worker[odbc]'"
            f" and the system ODBC manager (Debian/Ubuntu: apt-get install unixodbc "
            f"odbc-postgresql; Windows has ODBC built in). ({exc})") from None
    return pyodbc


def odbc_value(value: str) -> str:
    """Brace a value that would break the connection string (a password with ; or })."""
    if value.startswith("{") or not any(ch in value for ch in ";{}= "):
        return value
    return "{" + value.replace("}", "}}") + "}"


def sqlstate(exc: BaseException) -> Tuple[str, str]:
    args = getattr(exc, "args", ())
    state = str(args[0]) if args else ""
    message = str(args[1]) if len(args) > 1 else str(exc)
    return state, message


class ODBCDialect(Dialect):
    paramstyle = "qmark"

    def is_disconnect(self, exc: BaseException) -> bool:
        pyodbc = import_pyodbc()
        if not isinstance(exc, pyodbc.Error):
            return False
        state, message = sqlstate(exc)
        if state.startswith(_DISCONNECT_STATES):
            return True
        lowered = message.lower()
        if isinstance(exc, (pyodbc.OperationalError, pyodbc.InterfaceError)):
            return True
        return any(word in lowered for word in _DISCONNECT_WORDS) and not state.startswith("23")

    def connect_odbc(self, conn_str: str, init_sql: Tuple[str, ...] = ()) -> Any:
        pyodbc = import_pyodbc()
        conn = pyodbc.connect(conn_str, autocommit=True, timeout=self.connect_timeout)
        if init_sql:
            cur = conn.cursor()
            for stmt in init_sql:
                cur.execute(stmt)
            cur.close()
        return conn
