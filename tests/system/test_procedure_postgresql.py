"""The HIS procedure on PostgreSQL, called the way a HIS calls it (raw pyodbc, no mi-worker code).

Covers the INOUT row, the -1006 guard against a caller's open transaction in each form it can
be seen, and the documented limit: a block opened in the same query string is invisible and
ends in SQLSTATE 2D000 with nothing enqueued.
"""
from __future__ import annotations

import json
import time

import pytest

from conftest import InProcessWorker, make_settings

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

CALL = ("CALL sp_medical_insurance_call_v2(?, ?, ?, ?, NULL, NULL, NULL, NULL)")
INPUT = json.dumps({"data": {"psn_no": "P9", "insuplc_admdvs": "110000"}})


def raw(db_url, autocommit=True):
    from mi_worker.db.odbc import import_pyodbc
    from mi_worker.db.postgresql import odbc_string
    return import_pyodbc().connect(odbc_string(db_url), autocommit=autocommit)


def rows(db):
    return db.run("count_by_status")


def test_call_returns_the_inout_row(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox)):
        conn = raw(db_url)
        cur = conn.cursor()
        cur.execute(CALL, ["1101", INPUT, 20, 3])
        request_id, result, error_code, error_message = cur.fetchone()
        conn.close()
    assert error_code == 0, error_message
    assert request_id > 0 and json.loads(result)["output"]["baseinfo"]["psn_no"] == "P9"


def test_open_transaction_with_a_write_is_1006(db_url, db):
    conn = raw(db_url, autocommit=False)
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE t (x int)")
    cur.execute("INSERT INTO t VALUES (1)")
    cur.execute(CALL, ["1101", INPUT, 5, 3])
    request_id, _, error_code, message = cur.fetchone()
    conn.rollback()
    conn.close()
    assert error_code == -1006 and request_id is None and "transaction" in message
    assert rows(db) == []


def test_transaction_opened_earlier_is_1006(db_url, db):
    conn = raw(db_url, autocommit=False)
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchall()
    time.sleep(1.3)
    cur.execute(CALL, ["1101", INPUT, 5, 3])
    error_code = cur.fetchone()[2]
    conn.rollback()
    conn.close()
    assert error_code == -1006
    assert rows(db) == []


def test_repeatable_read_is_1006(db_url, db):
    conn = raw(db_url, autocommit=False)
    cur = conn.cursor()
    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    cur.execute(CALL, ["1101", INPUT, 5, 3])
    error_code = cur.fetchone()[2]
    conn.rollback()
    conn.close()
    assert error_code == -1006


def test_block_in_the_same_query_string_is_2d000_with_nothing_enqueued(db_url, db):
    db.run("heartbeat", service_name="medical_insurance_sdk", worker_id="x", host="h", pid=1,
           version="t", status="RUNNING", in_flight=0, processed_total=0,
           gateway_kind="nhsa", gateway_tls_verified=1)
    conn = raw(db_url)
    cur = conn.cursor()
    with pytest.raises(Exception) as info:
        cur.execute("BEGIN; CALL sp_medical_insurance_call_v2('1101', '{\"data\":{}}', 5, 3, "
                    "NULL, NULL, NULL, NULL); COMMIT;")
        while cur.nextset():
            pass
    conn.close()
    assert "2D000" in str(info.value) or "invalid transaction termination" in str(info.value)
    assert [r for r in rows(db) if r["status"] == "PENDING"] == []


def test_check_sdk_service_status_function(db):
    assert db.run_one("service_status", stale_seconds=30)["alive"] == 0
    db.run("heartbeat", service_name="medical_insurance_sdk", worker_id="x", host="h", pid=1,
           version="t", status="RUNNING", in_flight=0, processed_total=0,
           gateway_kind="nhsa", gateway_tls_verified=1)
    assert db.run_one("service_status", stale_seconds=30)["alive"] == 1
