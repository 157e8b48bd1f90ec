"""SQLite: the embedded default for a first run (stdlib sqlite3, WAL, BEGIN IMMEDIATE claims).

Driver quirks handled here: sqlite3 binds :name itself; RETURNING needs SQLite ≥ 3.35; writes
are serialised by the database lock, so "busy" is retried rather than reported; times are
stored as UTC text 'YYYY-MM-DD HH:MM:SS.SSS' so they compare as strings.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable, List

from mi_worker.db.base import Dialect, Row

_READ_ONLY = ("SELECT", "PRAGMA", "EXPLAIN")


class SQLiteDialect(Dialect):
    name = "sqlite"
    paramstyle = "named"
    # One writer at a time by the file lock: upgrades need no lock of their own.
    features = frozenset({"batch_complete", "self_upgrade"})

    def __init__(self, url: str, connect_timeout: int = 10) -> None:
        super().__init__(url, connect_timeout)
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite://"):]
        self.path = path or "mi_worker.db"
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old: mi-worker needs "
                               "3.35 or later (RETURNING); use Python 3.10+ or PostgreSQL")

    def connect(self) -> Any:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def execute_fetch(self, cur: Any, sql: str, bound: Any,
                      fetch: Callable[[Any], List[Row]]) -> List[Row]:
        # A write takes the database lock up front (BEGIN IMMEDIATE): a deferred transaction
        # that reads first and then writes fails outright if another process wrote meanwhile.
        if sql.lstrip().upper().startswith(_READ_ONLY):
            cur.execute(sql, bound)
            return fetch(cur)
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(sql, bound)
            rows = fetch(cur)
            cur.execute("COMMIT")
        except BaseException:
            try:
                cur.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        return rows

    def begin(self, conn: Any, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")

    def commit(self, conn: Any, cur: Any) -> None:
        cur.execute("COMMIT")

    def rollback(self, conn: Any, cur: Any) -> None:
        cur.execute("ROLLBACK")

    def is_disconnect(self, exc: BaseException) -> bool:
        # A file database does not go away; a closed handle does (after close()).
        return isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc).lower()

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc).upper()

    def is_transient(self, exc: BaseException) -> bool:
        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)

    def script_statements(self, script: str) -> List[str]:
        # sqlite3 cannot run several statements through execute(); executescript() can, but it
        # commits on its own. Split on ';' at line ends outside BEGIN…END trigger bodies.
        stmts, buf, depth = [], [], 0
        for line in script.splitlines():
            stripped = line.strip()
            if not buf and (not stripped or stripped.startswith("--")):
                continue
            buf.append(line)
            upper = stripped.upper()
            if upper.startswith("CREATE TRIGGER"):
                depth += 1
            if stripped.endswith(";"):
                if depth and upper.rstrip(";").strip() != "END":
                    continue
                depth = 0
                stmts.append("\n".join(buf).strip().rstrip(";"))
                buf = []
        if "".join(buf).strip():
            stmts.append("\n".join(buf).strip())
        return stmts
