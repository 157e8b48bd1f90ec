"""SQL Server over pyodbc (Microsoft ODBC Driver 17/18, or FreeTDS).

Quirks handled here: autocommit on (pyodbc's default is off, which would keep every claim's
locks until the next commit); READ COMMITTED set explicitly so the session is at a level
READPAST allows (on a READ_COMMITTED_SNAPSHOT database it is the READCOMMITTEDLOCK hint beside
READPAST in the claim that makes READPAST legal); the filtered indexes' SET options fixed per
session; parameter types fixed per statement (mssql_params.py); migration files split on GO
lines; error 1205 (deadlock victim) retried.
"""
from __future__ import annotations

import re
from typing import Any, Dict, FrozenSet, List, Optional, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from mi_worker.db.base import Row
from mi_worker.db.mssql_params import plan
from mi_worker.db.odbc import ODBCDialect, odbc_value, sqlstate
from mi_worker.db.queries import Query

DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
SESSION_SQL = (
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET ANSI_NULLS ON; SET ANSI_PADDING ON; SET ANSI_WARNINGS ON; SET ARITHABORT ON; "
    "SET CONCAT_NULL_YIELDS_NULL ON; SET QUOTED_IDENTIFIER ON; SET NUMERIC_ROUNDABORT OFF",
)


def odbc_string(url: str) -> str:
    """mssql+pyodbc://user:pw@host:1433/db?driver=ODBC+Driver+18+for+SQL+Server&… → ODBC."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    driver = query.pop("driver", DEFAULT_DRIVER)
    port = parts.port or 1433
    items = [
        ("DRIVER", "{" + driver + "}"),
        ("SERVER", f"{parts.hostname or '127.0.0.1'},{port}"),
        ("DATABASE", unquote(parts.path.lstrip("/")) or "master"),
    ]
    if parts.username:
        items += [("UID", unquote(parts.username)), ("PWD", unquote(parts.password or ""))]
    else:
        items.append(("Trusted_Connection", "yes"))
    items.append(("APP", "mi-worker"))
    items.extend((k, v) for k, v in query.items())
    return ";".join(f"{k}={odbc_value(v)}" for k, v in items) + ";"



class SQLServerDialect(ODBCDialect):
    name = "mssql"
    features = frozenset({"procedures", "migration_lock"})

    def connect(self) -> Any:
        conn_str = self.url[len("odbc://"):] if self.url.startswith("odbc://") \
            else odbc_string(self.url)
        return self.connect_odbc(conn_str, SESSION_SQL)

    def decide_features(self, server: Optional[Row]) -> Tuple[FrozenSet[str], str]:
        """complete_batch reads its rows with OPENJSON: SQL Server 2016+ at compatibility
        level 130+. Older servers (2012/2014 are common in hospitals), or a login that may not
        read sys.databases, write results row by row."""
        level = (server or {}).get("compatibility_level")
        version = (server or {}).get("server_version") or "?"
        if level is not None and int(level) >= 130:
            return self.features | {"batch_complete"}, (
                f"SQL Server {version} compatibility level {level}: results written in batches")
        shown = "unknown" if level is None else level
        return self.features, (f"SQL Server {version} compatibility level {shown}: results "
                               "written row by row")

    def param_plans(self, queries: Dict[str, Query]) -> Dict[str, Any]:
        """Fixed parameter types per statement (mssql_params.py): one plan per statement,
        not one per combination of string lengths."""
        return plan(queries)

    def is_unique_violation(self, exc: BaseException) -> bool:
        state, message = sqlstate(exc)
        return state == "23000" and ("2601" in message or "2627" in message
                                     or "duplicate key" in message.lower())

    def is_transient(self, exc: BaseException) -> bool:
        state, message = sqlstate(exc)
        return state == "40001" or "1205" in message and "deadlock" in message.lower()

    def script_statements(self, script: str) -> List[str]:
        batches = re.split(r"^\s*GO\s*;?\s*$", script, flags=re.MULTILINE | re.IGNORECASE)
        return [b.strip() for b in batches if re.search(r"\S", re.sub(r"--.*", "", b))]
