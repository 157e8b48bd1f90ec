"""Database: named queries over one connection per thread, reconnecting when the server goes.

The rest of mi-worker is dialect-neutral and calls ``db.run(name, **params)``. A dialect
(sqlite.py, postgresql.py, mssql.py) supplies only how to connect, how to bind, which errors
mean "the connection is gone", and the few driver quirks. Connections are per thread because
neither pyodbc nor sqlite3 connections may be used by two threads at once; every statement
runs in autocommit so no lock outlives the statement that took it.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import threading
import time
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional

from mi_worker.db.errors import (
    ConnectionLost,
    ConnectRefused,
    DatabaseError,
    SessionLost,
    UniqueViolation,
)
from mi_worker.db.problems import location, permanent_kind
from mi_worker.db.queries import Query, load
from mi_worker.masking import mask_url

log = logging.getLogger("mi_worker.db")

Row = Dict[str, Any]
__all__ = ["ConnectionLost", "ConnectRefused", "Database", "DatabaseError", "Dialect",
           "SessionLost", "UniqueViolation", "lock_key"]


_LOST = object()  # the thread's pinned session broke inside its block


#: Capabilities a dialect may declare (Hangfire's JobStorageFeatures, river's Supports*()):
#: batch_complete   results of many rows in one statement (complete_batch)
#: procedures       the HIS contract runs as a stored procedure (call_procedure)
#: migration_lock   upgrades serialise on a database lock (SQLite's file lock does it)
#: self_upgrade     `mi-worker run` may create and upgrade the schema itself (the embedded
#:                  database; a server database is upgraded by its DBA with `db upgrade`)
FEATURES = frozenset({"batch_complete", "procedures", "migration_lock", "self_upgrade"})


class Dialect:
    """What differs between databases. Subclasses override; Database does the rest."""

    name = "base"
    paramstyle = "qmark"  # or "named" (sqlite3 binds :name itself)
    #: What the dialect can do whatever the server; ``decide_features`` may refine it.
    features: FrozenSet[str] = frozenset()

    def __init__(self, url: str, connect_timeout: int = 10) -> None:
        self.url = url
        self.connect_timeout = connect_timeout

    def connect(self) -> Any:
        raise NotImplementedError

    def is_disconnect(self, exc: BaseException) -> bool:
        """True when the error means the connection is unusable (reconnect and maybe retry)."""
        raise NotImplementedError

    def is_unique_violation(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def is_transient(self, exc: BaseException) -> bool:
        """Worth retrying on the same connection (deadlock victim, SQLite busy)."""
        return False

    def adapt_row(self, row: Row) -> Row:
        return row

    def param_plans(self, queries: Dict[str, Query]) -> Dict[str, Any]:
        """Per statement, an object with ``sizes`` (for ``cursor.setinputsizes``, set once
        per cursor) and ``values(list) -> list`` (applied at each bind); none by default."""
        return {}

    def execute_fetch(self, cur: Any, sql: str, bound: Any,
                      fetch: Callable[[Any], List[Row]]) -> List[Row]:
        """Run one statement and fetch its rows; SQLite wraps writes in BEGIN IMMEDIATE."""
        cur.execute(sql, bound)
        return fetch(cur)

    def script_statements(self, script: str) -> List[str]:
        """Split a migration file into statements the driver can execute one by one."""
        raise NotImplementedError

    def decide_features(self, server: Optional[Row]) -> tuple[FrozenSet[str], str]:
        """The features of this server (``server`` = the row of the named query
        ``server_features``, None when it could not be read) and a line for the log."""
        version = (server or {}).get("server_version") or "?"
        return self.features, f"{self.name} {version}"

    # Migrations run in explicit transactions on a raw connection (one per file).
    def begin(self, conn: Any, cur: Any) -> None:
        conn.autocommit = False

    def commit(self, conn: Any, cur: Any) -> None:
        conn.commit()
        conn.autocommit = True

    def rollback(self, conn: Any, cur: Any) -> None:
        conn.rollback()
        conn.autocommit = True

    def safe_url(self) -> str:
        return mask_url(self.url)


class _Conn:
    """A pooled driver connection with its cursors (one per statement name)."""

    __slots__ = ("raw", "cursors")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.cursors: Dict[str, Any] = {}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()


class Database:
    """Named queries on a small pool of autocommit connections, with reconnect and back-off.

    Threads borrow a connection for one statement at a time, so 200 gateway threads need
    only ``pool_size`` database sessions. ``pinned()`` keeps one connection for a block of
    statements that must share a session (advisory / application locks).
    """

    def __init__(self, dialect: Dialect, reconnect_max_seconds: float = 30.0,
                 pool_size: int = 10) -> None:
        self.dialect = dialect
        self.queries: Dict[str, Query] = load(dialect.name)
        self._plans: Dict[str, Any] = dialect.param_plans(self.queries)
        self.reconnect_max_seconds = reconnect_max_seconds
        self.pool_size = max(1, pool_size)
        self._idle: List[_Conn] = []
        self._open = 0
        self._cond = threading.Condition()
        self._local = threading.local()
        self._closed = False
        self.stopping: Callable[[], bool] = lambda: False
        self._features: Optional[FrozenSet[str]] = None
        self._features_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.dialect.name

    def give_up_when(self, stopping: Callable[[], bool]) -> None:
        """Reconnect loops stop early once ``stopping()`` is true (a worker shutting down)."""
        self.stopping = stopping

    # -- capabilities ------------------------------------------------------------------
    @property
    def features(self) -> FrozenSet[str]:
        """Decided once, from the server, the first time anyone asks (and logged)."""
        return self.decide_features()

    def decide_features(self) -> FrozenSet[str]:
        """Ask the server what it can do (once; logged), e.g. "SQL Server 11.0 compatibility
        level 110: results written row by row". Until the server has answered, the
        dialect's own features stand and the question is asked again next time."""
        if self._features is None:
            with self._features_lock:
                if self._features is None:
                    try:
                        row = self.run_one("server_features")
                    except ConnectRefused:
                        raise  # no driver, login refused, no such database: waiting won't help
                    except (ConnectionLost, DatabaseError) as exc:
                        found, line = self.dialect.decide_features(None)
                        log.warning("%s (server not asked: %s)", line, exc)
                        return found  # not kept: asked again next time
                    found, line = self.dialect.decide_features(row)
                    log.info("database: %s", line)
                    self._features = found
        return self._features

    def supports(self, feature: str) -> bool:
        if feature not in FEATURES:
            raise ValueError(f"unknown database feature {feature!r}")
        return feature in self.features

    def prepared(self, name: str, /, **params: Any) -> tuple[str, Any]:
        """(sql, bound parameters) of a named query, for code that runs it on a raw
        connection (migrations run in their own transactions)."""
        query = self.queries.get(name)
        if query is None:
            raise DatabaseError(f"no query named {name!r} for {self.dialect.name}")
        sql = query.sql if self.dialect.paramstyle == "named" else query.qmark_sql
        return sql, self._bind(query, params)

    # -- connections -------------------------------------------------------------------
    def _acquire(self) -> _Conn:
        pinned = getattr(self._local, "pinned", None)
        if pinned is _LOST:
            raise SessionLost("the database session holding this block's lock was lost; "
                              "the block stops instead of running on without the lock")
        if pinned is not None:
            return pinned
        with self._cond:
            while not self._idle and self._open >= self.pool_size:
                self._cond.wait(1.0)
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return _Conn(self.dialect.connect())
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _release(self, conn: _Conn, broken: bool = False) -> None:
        if getattr(self._local, "pinned", None) is conn:
            if broken:  # review S7: never carry on unpinned, on a session without the lock
                self._drop_pinned()
            return
        if broken or self._closed:
            self._discard(conn)
            return
        with self._cond:
            self._idle.append(conn)
            self._cond.notify()

    def _discard(self, conn: _Conn) -> None:
        conn.close()
        with self._cond:
            self._open -= 1
            self._cond.notify()

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Run every statement of the block on one session (needed for session locks)."""
        if getattr(self._local, "pinned", None) is not None:
            yield
            return
        conn = self._acquire()
        self._local.pinned = conn
        try:
            yield
        finally:
            current = self._local.pinned
            self._local.pinned = None
            if isinstance(current, _Conn):
                self._release(current)

    def _drop_pinned(self) -> None:
        """Close the thread's pinned session (the server frees every session lock it held);
        the rest of its ``pinned()`` block then fails with SessionLost."""
        current = getattr(self._local, "pinned", None)
        if isinstance(current, _Conn):
            self._local.pinned = _LOST
            self._discard(current)

    def close(self) -> None:
        self._closed = True
        with self._cond:
            idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    def raw(self) -> Any:
        """A new driver connection outside the pool (migrations, tests); the caller closes it."""
        return self.dialect.connect()

    # -- statements --------------------------------------------------------------------
    def _bind(self, query: Query, params: Dict[str, Any]) -> Any:
        if self.dialect.paramstyle == "named":
            missing = [p for p in query.param_order if p not in params]
            if missing:
                raise DatabaseError(f"query {query.name}: missing parameters {missing}")
            return params
        try:
            values = [params[p] for p in query.param_order]
        except KeyError as exc:
            raise DatabaseError(f"query {query.name}: missing parameter {exc}") from None
        plan = self._plans.get(query.name)
        return values if plan is None else plan.values(values)

    def run(self, name: str, retry: bool = True, **params: Any) -> List[Row]:
        """Run a named query in autocommit; return its rows as dicts (empty if none).

        On a lost connection it reconnects with back-off and, when ``retry`` is true, runs the
        statement again; pass ``retry=False`` for statements whose effect must not be doubled
        when the first try's fate is unknown (the caller then handles ConnectionLost).
        """
        sql, bound = self.prepared(name, **params)
        delay = 0.2
        deadline = time.monotonic() + self.reconnect_max_seconds
        transient_tries = 0
        while True:
            try:
                conn = self._acquire()
            except SessionLost:
                raise
            except Exception as exc:
                kind = permanent_kind(exc)
                if kind:  # no driver, login refused, no such database: retrying cannot help
                    raise ConnectRefused(f"cannot connect to {self.dialect.safe_url()}: {exc}",
                                         kind, location(self.dialect.url)) from exc
                if not self.dialect.is_disconnect(exc) and not _is_connect_error(exc):
                    raise DatabaseError(f"cannot connect to {self.dialect.safe_url()}: "
                                        f"{exc}") from exc
                delay = self._back_off(name, exc, deadline, delay, "unreachable")
                continue
            try:
                cur = conn.cursors.get(name)
                if cur is None:
                    cur = conn.cursors[name] = conn.raw.cursor()
                    plan = self._plans.get(name)
                    if plan is not None:  # kept by the cursor for every later execute
                        cur.setinputsizes(plan.sizes)
                rows = self.dialect.execute_fetch(cur, sql, bound, self._fetch)
                self._release(conn)
                return rows
            except Exception as exc:  # driver errors have no common base class
                broken = self.dialect.is_disconnect(exc)
                self._release(conn, broken=broken)
                if self.dialect.is_unique_violation(exc):
                    raise UniqueViolation(f"{name}: {exc}") from exc
                if self.dialect.is_transient(exc) and transient_tries < 20:
                    transient_tries += 1
                    time.sleep(random.uniform(0.005, 0.05) * transient_tries)
                    continue
                if not broken:
                    raise DatabaseError(f"{name} failed on {self.dialect.name}: {exc}") from exc
                if getattr(self._local, "pinned", None) is _LOST:
                    raise SessionLost(f"{name}: the session of this block was lost: {exc}") \
                        from exc
                if not retry:
                    raise ConnectionLost(f"{name}: connection lost: {exc}") from exc
                delay = self._back_off(name, exc, deadline, delay, "connection lost")

    def _back_off(self, name: str, exc: BaseException, deadline: float, delay: float,
                  what: str) -> float:
        """Sleep before the next reconnect attempt, or give up; return the next delay."""
        if time.monotonic() > deadline or self.stopping():
            raise ConnectionLost(f"{name}: database at {location(self.dialect.url)} "
                                 f"unreachable: {exc}") from exc
        log.warning("database %s (%s); retrying in %.1fs", what, type(exc).__name__, delay)
        time.sleep(delay)
        return min(delay * 2, 5.0)

    def run_one(self, name: str, **params: Any) -> Optional[Row]:
        rows = self.run(name, **params)
        return rows[0] if rows else None

    def _fetch(self, cur: Any) -> List[Row]:
        # A statement may produce several results (T-SQL batches, psqlODBC quirks): take the
        # last one that has columns. An error raised while moving to the next result is a
        # failure of a later statement of the batch (review S9): it propagates, never dropped.
        rows: List[Row] = []
        nextset = getattr(cur, "nextset", None)
        while True:
            if cur.description:
                cols = [d[0].lower() for d in cur.description]
                rows = [self.dialect.adapt_row(dict(zip(cols, r))) for r in cur.fetchall()]
            if nextset is None or not nextset():
                return rows

    @contextlib.contextmanager
    def cluster_lock(self, name: str) -> Iterator[bool]:
        """Yield True if this process won the once-per-cluster lock ``name`` (never waits)."""
        key = lock_key(name)
        with self.pinned():
            try:
                row = self.run_one("try_cluster_lock", lock_key=key, lock_name=name)
            except (ConnectionLost, DatabaseError) as exc:
                log.warning("cluster lock %s not taken: %s", name, exc)
                yield False
                return
            granted = bool(row and int(row["granted"]) == 1)
            try:
                yield granted
            finally:
                if granted:
                    self._release_cluster_lock(key, name)

    def _release_cluster_lock(self, key: int, name: str) -> None:
        """Release a session lock; when that fails on a live session, close the session so
        the lock cannot stay behind on a pooled connection and stop the job cluster-wide
        (review S7: application and advisory locks count re-entrant takes)."""
        try:
            row = self.run_one("release_cluster_lock", lock_key=key, lock_name=name)
            released = bool(row and int(row["released"]) == 1)
        except SessionLost:
            return  # the session, and so the lock, is already gone
        except (ConnectionLost, DatabaseError) as exc:
            log.warning("cluster lock %s not released (%s): closing its session", name, exc)
            released = False
        if not released:
            self._drop_pinned()


def lock_key(name: str) -> int:
    """A stable 63-bit key for an advisory lock name (PostgreSQL wants a bigint)."""
    digest = hashlib.sha256(("mi_worker:" + name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFFFFFFFFFFFFFF


def _is_connect_error(exc: BaseException) -> bool:
    """Connecting failed for a reason that may pass (server down, refused, timed out)."""
    text = str(exc).lower()
    return any(w in text for w in ("could not connect", "connection refused", "timeout",
                                   "server closed", "no such host", "08001", "08s01"))
