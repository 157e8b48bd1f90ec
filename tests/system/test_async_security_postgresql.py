"""Issue 15 on the real PostgreSQL with sql/postgresql/security.sql: a login that is only a
member of mi_his_caller_role submits and reads results through the procedures (the SECURITY
DEFINER functions), served by a worker logged in as mi_worker_role; it still has no right on
any table, and cannot read a counter call's answer through the result procedure."""
from __future__ import annotations

import json
import time

import pytest
from system.test_security_postgresql import _connect, logins  # noqa: F401  (fixture)

from conftest import InProcessWorker, make_settings

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

SUBMIT = "CALL sp_medical_insurance_submit_v2(?, ?, ?, ?, NULL, NULL, NULL, NULL)"
RESULT = "CALL sp_medical_insurance_result_v2(?, ?, NULL, NULL, NULL, NULL)"
CALL = "CALL sp_medical_insurance_call_v2(?, ?, ?, ?, NULL, NULL, NULL, NULL)"
INPUT = json.dumps({"data": {"psn_no": "P8", "insuplc_admdvs": "110000"}})


def _run(url: str, sql: str, *params):
    conn = _connect(url)
    try:
        return tuple(conn.cursor().execute(sql, *params).fetchone())
    finally:
        conn.close()


def test_his_role_submits_and_reads_its_result(logins, sandbox):  # noqa: F811
    with InProcessWorker(make_settings(logins["worker"], sandbox)):
        started = time.monotonic()
        request_id, _, code, message = _run(logins["his"], SUBMIT, "1101", INPUT, 600, 3)
        assert code == 0 and request_id > 0, message
        assert time.monotonic() - started < 2.0
        status, result, code, message = _run(logins["his"], RESULT, request_id, 20000)
        assert (status, code) == ("COMPLETED", 0), message
        assert json.loads(result)["output"]["baseinfo"]["psn_no"] == "P8"
        sync_id, _, sync_code, _ = _run(logins["his"], CALL, "1101", INPUT, 20, 3)
        assert sync_code == 0
        status, result, code, _ = _run(logins["his"], RESULT, sync_id, 0)
    assert (status, result, code) == (None, None, -1001)
    conn = _connect(logins["his"])
    with pytest.raises(Exception) as denied:
        conn.cursor().execute("SELECT async_call FROM medical_insurance_requests")
    conn.close()
    assert "permission denied" in str(denied.value)
