"""sql/postgresql/security.sql on the real PostgreSQL: log in as each role and try.

The HIS login (a member of mi_his_caller_role only) calls sp_medical_insurance_call_v2 end to
end while a worker logged in as a member of mi_worker_role serves it, and is refused every
direct read or write of the tables and the view, and cannot poll another caller's request.
"""
from __future__ import annotations

import json
import uuid

import pytest

from conftest import ROOT, InProcessWorker, _pg_admin, make_settings

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

CALL = "CALL sp_medical_insurance_call_v2(?, ?, ?, ?, NULL, NULL, NULL, NULL)"
INPUT = json.dumps({"data": {"psn_no": "P7", "insuplc_admdvs": "110000"}})


def _connect(url: str):
    from mi_worker.db.odbc import import_pyodbc
    from mi_worker.db.postgresql import odbc_string
    return import_pyodbc().connect(odbc_string(url), autocommit=True, timeout=5)


def _as(db_url: str, user: str, password: str) -> str:
    rest = db_url.split("@", 1)[1]
    return f"postgresql://{user}:{password}@{rest}"


@pytest.fixture
def logins(db_url):
    """security.sql applied; one LOGIN per role (dropped afterwards)."""
    admin = _connect(db_url)
    admin.cursor().execute((ROOT / "sql" / "postgresql" / "security.sql").read_text("utf-8"))
    suffix = uuid.uuid4().hex[:8]
    made = {"his": f"mi_his_t_{suffix}", "worker": f"mi_wrk_t_{suffix}"}
    password = "Pw-" + suffix
    cur = admin.cursor()
    cur.execute(f"CREATE ROLE {made['his']} LOGIN PASSWORD '{password}' IN ROLE mi_his_caller_role")
    cur.execute(f"CREATE ROLE {made['worker']} LOGIN PASSWORD '{password}' IN ROLE mi_worker_role")
    admin.close()
    try:
        yield {k: _as(db_url, v, password) for k, v in made.items()}
    finally:
        cluster = _pg_admin()
        dbname = db_url.rsplit("/", 1)[1]
        cur = cluster.cursor()
        cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        for role in made.values():
            cur.execute(f"DROP ROLE IF EXISTS {role}")
        cluster.close()


def _call(url: str, code: str = "1101", timeout: int = 20):
    conn = _connect(url)
    try:
        cur = conn.cursor()
        cur.execute(CALL, [code, INPUT, timeout, 3])
        return cur.fetchone()
    finally:
        conn.close()


def _denied(url: str, sql: str) -> str:
    conn = _connect(url)
    try:
        with pytest.raises(Exception) as info:
            conn.cursor().execute(sql)
        return str(info.value)
    finally:
        conn.close()


def test_his_role_calls_end_to_end_served_by_the_worker_role(logins, sandbox):
    settings = make_settings(logins["worker"], sandbox)
    with InProcessWorker(settings):
        request_id, result, error_code, message = _call(logins["his"])
    assert error_code == 0, message
    assert request_id > 0 and json.loads(result)["output"]["baseinfo"]["psn_no"] == "P7"


def test_his_role_without_a_worker_is_1002_then_timeout(logins, db_url):
    _, _, code, message = _call(logins["his"], timeout=1)
    assert code == -1002, message
    # A beat from a worker that never claims: the call enqueues, polls its own row and
    # times it out itself, all through the SECURITY DEFINER functions.
    admin = _connect(db_url)
    admin.cursor().execute(
        "INSERT INTO sdk_heartbeat (service_name, worker_id, status, last_heartbeat) "
        "VALUES ('mi-worker', 'idle-1', 'RUNNING', clock_timestamp())")
    request_id, _, code, message = _call(logins["his"], timeout=1)
    row = admin.cursor().execute(
        "SELECT status, error_code FROM medical_insurance_requests WHERE request_id = ?",
        request_id).fetchone()
    admin.close()
    assert code == -1005 and "no worker claimed" in message
    assert tuple(row) == ("TIMEOUT", -1005)


def test_his_role_cannot_touch_the_tables(logins):
    his = logins["his"]
    for sql in ("SELECT * FROM medical_insurance_requests",
                "SELECT * FROM v_medical_insurance_result",
                "UPDATE medical_insurance_requests SET status = 'COMPLETED'",
                "DELETE FROM medical_insurance_requests",
                "INSERT INTO medical_insurance_requests (interface_code, input_data, deadline_at) "
                "VALUES ('1101', '{}', now())",
                "SELECT * FROM sdk_heartbeat"):
        assert "permission denied" in _denied(his, sql), sql


def test_his_role_cannot_poll_another_callers_request(logins, db_url, sandbox):
    with InProcessWorker(make_settings(logins["worker"], sandbox)):
        request_id, _, code, _ = _call(logins["his"])
    assert code == 0
    conn = _connect(logins["his"])
    cur = conn.cursor()
    # Without the caller's token the poll function returns nothing; a guess returns nothing.
    assert cur.execute("SELECT * FROM mi_his_poll(?, NULL)", request_id).fetchall() == []
    assert cur.execute("SELECT * FROM mi_his_poll(?, ?)", request_id,
                       str(uuid.uuid4())).fetchall() == []
    conn.close()


def test_worker_managed_codes_refused_for_the_his_role(logins):
    for code in ("9001", "9002", "2601"):
        _, _, error_code, message = _call(logins["his"], code=code)
        assert error_code == -1001 and "managed by mi-worker" in message, (code, message)
