"""Conformance: caps, the interface catalogue, cluster locks and the migration statements.

list_limits / upsert_limit / delete_limit (caps set in place, never absent while rewritten),
upsert_interface (the catalogue mirrored for the monitors), try_cluster_lock /
release_cluster_lock (PostgreSQL: a session advisory lock a second session cannot take;
SQLite: single host, always granted), create_migrations_table / migration_lock /
applied_migrations / record_migration (what `mi-worker db upgrade` runs).
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import raw  # noqa: E402

from mi_worker.db import connect  # noqa: E402
from mi_worker.db.base import lock_key  # noqa: E402
from mi_worker.db.migrate import migrations  # noqa: E402

COVERS = {"list_limits", "upsert_limit", "delete_limit", "upsert_interface",
          "try_cluster_lock", "release_cluster_lock", "create_migrations_table",
          "migration_lock", "applied_migrations", "record_migration", "server_features"}


def test_server_features_says_what_the_server_is(db):
    """One row: the version (logged at start) and, on SQL Server, the compatibility level
    that decides whether results can be written in batches."""
    row = db.run_one("server_features")
    assert row is not None and row["server_version"]
    if db.name == "mssql":
        assert int(row["compatibility_level"]) >= 110
    else:
        assert row["compatibility_level"] is None
    found = db.features
    assert ("batch_complete" in found) == (db.name != "mssql"
                                           or int(row["compatibility_level"]) >= 130)
    assert ("self_upgrade" in found) == (db.name == "sqlite")


def test_limits_are_upserted_listed_and_deleted(db):
    assert db.run("list_limits") == []
    db.run("upsert_limit", interface_code="2207", max_in_flight=4)
    db.run("upsert_limit", interface_code="*", max_in_flight=50)
    db.run("upsert_limit", interface_code="1101", max_in_flight=8)
    db.run("upsert_limit", interface_code="2207", max_in_flight=2)  # rewritten in place
    caps = [(r["interface_code"].strip(), int(r["max_in_flight"]))
            for r in db.run("list_limits")]
    assert caps == [("*", 50), ("1101", 8), ("2207", 2)]  # ordered by code
    db.run("delete_limit", interface_code="1101")
    db.run("delete_limit", interface_code="none")  # absent: nothing happens
    assert [r["interface_code"].strip() for r in db.run("list_limits")] == ["*", "2207"]


def test_upsert_interface_inserts_and_updates_the_catalogue_row(db):
    def read(code):
        return raw(db, "SELECT interface_name, kind, reversible, cancel_code, his_refused FROM "
                       "medical_insurance_interfaces WHERE interface_code = ?", [code])

    [synced] = read("2207")  # the fixture mirrored the catalogue
    assert synced["interface_name"] == "门诊结算"
    db.run("upsert_interface", interface_code="Z001", interface_name="测试接口",
           kind="query", reversible=0, cancel_code=None, his_refused=None)
    assert read("Z001") == [{"interface_name": "测试接口", "kind": "query", "reversible": 0,
                             "cancel_code": None, "his_refused": None}]
    db.run("upsert_interface", interface_code="Z001", interface_name="改名", kind="settle",
           reversible=1, cancel_code="Z002", his_refused="managed by the worker")
    [row] = read("Z001")
    assert (row["interface_name"], row["kind"], int(row["reversible"]), row["cancel_code"],
            row["his_refused"]) == ("改名", "settle", 1, "Z002", "managed by the worker")


def test_a_cluster_lock_is_held_by_one_session_at_a_time(db, db_url):
    key = lock_key("test-job")
    other = connect(db_url)
    try:
        with db.pinned():
            got = db.run_one("try_cluster_lock", lock_key=key, lock_name="test-job")
            assert int(got["granted"]) == 1
            with other.pinned():
                second = other.run_one("try_cluster_lock", lock_key=key, lock_name="test-job")
                other_key = other.run_one("try_cluster_lock", lock_key=key + 1,
                                          lock_name="another")
                assert int(other_key["granted"]) == 1  # other names are independent
                other.run("release_cluster_lock", lock_key=key + 1, lock_name="another")
            if db.name == "sqlite":
                assert int(second["granted"]) == 1  # single host: BEGIN IMMEDIATE serialises
            else:
                assert int(second["granted"]) == 0  # held by the first session
            rel = db.run_one("release_cluster_lock", lock_key=key, lock_name="test-job")
            assert int(rel["released"]) == 1
        with other.pinned():
            again = other.run_one("try_cluster_lock", lock_key=key, lock_name="test-job")
            assert int(again["granted"]) == 1  # free once released
            other.run("release_cluster_lock", lock_key=key, lock_name="test-job")
        with db.cluster_lock("test-job") as won:  # the wrapper over the two statements
            assert won
    finally:
        other.close()


def _record(db, **params):
    """record_migration the way migrate.py runs it: on a raw cursor (its parameter ``name``
    cannot go through ``Database.run(name, **params)``, whose first argument is ``name``)."""
    q = db.queries["record_migration"]
    raw(db, q.qmark_sql, [params[p] for p in q.param_order])  # sqlite3 takes ? as well


def test_migration_statements_record_what_was_applied(db):
    expected = [(m.version, m.checksum) for m in migrations(db.name)]
    applied = [(int(r["version"]), r["checksum"]) for r in db.run("applied_migrations")]
    assert applied == expected
    db.run("create_migrations_table")  # idempotent: the table and its rows stay
    assert [int(r["version"]) for r in db.run("applied_migrations")] == [v for v, _ in expected]
    _record(db, version=990, name="test_only", checksum="ab" * 32)
    last = db.run("applied_migrations")[-1]
    assert (int(last["version"]), last["checksum"]) == (990, "ab" * 32)
    with pytest.raises(Exception) as refused:
        _record(db, version=990, name="again", checksum="cd" * 32)
    assert db.dialect.is_unique_violation(refused.value)
    [row] = raw(db, "SELECT name, applied_at FROM mi_schema_version WHERE version = ?", [990])
    assert row["name"] == "test_only" and row["applied_at"] is not None


def test_migration_lock_serialises_two_upgrading_sessions(db):
    key = lock_key("migrations")
    q = db.queries["migration_lock"]
    if db.name == "sqlite":
        # BEGIN IMMEDIATE (taken by the migrator) is the lock; the statement only echoes.
        assert int(db.run_one("migration_lock", lock_key=key)["lock_key"]) == key
        return
    first = db.raw()
    second = db.raw()
    try:
        first.autocommit = False
        first.cursor().execute(q.qmark_sql, [key])
        done = threading.Event()

        def wait_for_lock():
            second.autocommit = False
            second.cursor().execute(q.qmark_sql, [key])
            done.set()
            second.rollback()

        t = threading.Thread(target=wait_for_lock, daemon=True)
        t.start()
        time.sleep(0.5)
        assert not done.is_set()  # the second upgrader waits while the first holds it
        first.commit()  # a transaction-level lock ends with the transaction
        assert done.wait(10)
        t.join(10)
    finally:
        first.close()
        second.close()
