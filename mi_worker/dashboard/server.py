"""Serving the dashboard: a read-only database session and waitress.

waitress: a pure-Python production WSGI server that runs the same on Windows Server and Linux
(no compiler, no fork), with a bounded thread pool; a separate command or a thread inside
`mi-worker run`.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from waitress import create_server

from mi_worker.dashboard.app import create_app
from mi_worker.dashboard.auth import Credentials, check_bind
from mi_worker.db import Database, connect

log = logging.getLogger("mi_worker.dashboard")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8377


def open_read_only(url: str, settings: Any = None, pool_size: int = 4) -> Database:
    """A Database whose every session first runs dash_session_read_only (and, best effort,
    dash_session_plans): PostgreSQL refuses writes in it, SQLite is query_only, SQL Server
    relies on mi_dashboard_role."""
    db_settings = getattr(settings, "database", None)
    db = connect(url, getattr(db_settings, "connect_timeout", 10),
                 getattr(db_settings, "reconnect_max_seconds", 30.0), pool_size)
    raw_connect = db.dialect.connect
    read_only_sql = db.queries["dash_session_read_only"].sql
    plans_sql = db.queries["dash_session_plans"].sql

    def connect_read_only() -> Any:
        conn = raw_connect()
        cur = conn.cursor()
        cur.execute(read_only_sql)
        try:
            cur.execute(plans_sql)
        except Exception as exc:  # PostgreSQL < 12, openGauss: plain generic plans then
            log.info("dashboard: %s not applied (%s)", "dash_session_plans", type(exc).__name__)
        cur.close()
        return conn

    db.dialect.connect = connect_read_only  # type: ignore[method-assign]
    if db.name == "sqlite":
        # The SQLite dialect wraps anything not starting with SELECT (a WITH … SELECT too) in
        # BEGIN IMMEDIATE, a write lock a query_only session may not take: plain reads here.
        def execute_fetch(cur: Any, sql: str, bound: Any, fetch: Any) -> Any:
            cur.execute(sql, bound)
            return fetch(cur)
        db.dialect.execute_fetch = execute_fetch  # type: ignore[method-assign]
    return db


class DashboardServer:
    """waitress on its own thread (tests, `mi-worker run --dashboard-port`) or in front."""

    def __init__(self, db: Database, settings: Any, host: str, port: int,
                 creds: Optional[Credentials] = None, threads: int = 4) -> None:

        creds = creds or Credentials()
        check_bind(host, creds)
        self.app = create_app(db, settings, creds)
        self.server = create_server(self.app, host=host, port=port, threads=threads,
                                    ident="mi-worker", clear_untrusted_proxy_headers=True)
        self.host = host
        self.port = int(getattr(self.server, "effective_port", port))
        self._thread: Optional[threading.Thread] = None
        self._closing = False

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        log.info("dashboard on %s", self.url)
        try:
            self.server.run()
        except (OSError, ValueError):
            # stop() closes the sockets under waitress's select loop, which then ends with
            # EBADF (or "fd -1"): that is the loop's way of stopping, not an error
            if not self._closing:
                raise

    def start(self) -> DashboardServer:
        self._thread = threading.Thread(target=self.serve_forever, name="dashboard",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing = True
        self.server.close()
        if self._thread is not None:
            self._thread.join(10)
