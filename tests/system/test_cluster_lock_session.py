"""Review S7 (issue 12), the Python side of once-per-cluster jobs, on the real PostgreSQL
(SQLite is single-host: its cluster lock is always granted, and nothing can kill a session).

* The session holding the lock dies mid-job: the job's next statement fails (SessionLost)
  instead of running on another pooled session without the lock, while another worker may
  already have taken it.
* Releasing fails on a live session: the session is closed, so the lock cannot stay behind
  on a pooled connection and stop the job cluster-wide.
"""
from __future__ import annotations

import dataclasses

import pytest

from conftest import wait_until
from mi_worker.db import connect
from mi_worker.db.base import SessionLost, lock_key
from mi_worker.db.queries import parse


@pytest.fixture
def pg(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("session locks and killable sessions: PostgreSQL (SQL Server: same code)")
    return db_url


def _held(other, name: str) -> bool:
    with other.pinned():
        got = other.run_one("try_cluster_lock", lock_key=lock_key(name), lock_name=name)
        if int(got["granted"]) == 1:
            other.run("release_cluster_lock", lock_key=lock_key(name), lock_name=name)
            return False
        return True


def _admin_query(db, sql: str):
    q = parse(f"-- name: adhoc\n{sql}\n")["adhoc"]
    db.queries = {**db.queries, "adhoc": q}
    return db.run("adhoc")


def test_a_lost_lock_session_stops_the_job(pg):
    db, other, admin = connect(pg), connect(pg), connect(pg)
    try:
        with db.cluster_lock("s7-job") as won:
            assert won and _held(other, "s7-job")
            db.run("count_by_status")  # the job works on its pinned session
            killed = _admin_query(admin, "SELECT pg_terminate_backend(l.pid) AS k "
                                         "FROM pg_locks l JOIN pg_database d ON d.oid = "
                                         "l.database WHERE d.datname = current_database() "
                                         "AND l.locktype = 'advisory' AND l.granted")
            assert killed and all(r["k"] for r in killed)
            wait_until(lambda: not _held(other, "s7-job"), 10, message="lock freed")
            with pytest.raises(SessionLost):
                db.run("count_by_status")  # not silently on a session without the lock
            with pytest.raises(SessionLost):
                db.run("count_by_status")  # and not on the next statement either
        assert db.run("count_by_status") is not None  # after the block: the pool as usual
        with db.cluster_lock("s7-job") as again:
            assert again
    finally:
        for d in (db, other, admin):
            d.close()


def test_a_failed_release_closes_the_session(pg):
    db, other = connect(pg), connect(pg)
    try:
        good = db.queries["release_cluster_lock"]
        broken = dataclasses.replace(good, qmark_sql="SELECT 1 / (? - ?) AS released",
                                     param_order=("lock_key", "lock_key"))
        db.queries = {**db.queries, "release_cluster_lock": broken}  # division by zero
        with db.cluster_lock("s7-release") as won:
            assert won and _held(other, "s7-release")
        # its session was closed: the lock is free once the server has ended that backend
        # (closing is asynchronous on the server side)
        wait_until(lambda: not _held(other, "s7-release"), 10, message="lock freed")
        db.queries = {**db.queries, "release_cluster_lock": good}
        with db.cluster_lock("s7-release") as again:  # and this worker takes it next time
            assert again
    finally:
        db.close()
        other.close()
