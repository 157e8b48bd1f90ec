"""sp_medical_insurance_workflow_v2 under sql/postgresql/security.sql (issue 14): the HIS
login runs a whole settlement workflow through the procedure and its SECURITY DEFINER
helpers while a worker logged in as mi_worker_role serves it, and cannot read the workflow
table nor poll another caller's workflow."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_security_postgresql import _connect, _denied, logins  # noqa: E402,F401
from workflow_helpers import consistent, outpatient_input  # noqa: E402

from conftest import InProcessWorker, make_settings  # noqa: E402

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
CALL = "CALL sp_medical_insurance_workflow_v2(?, ?, ?, NULL, NULL, NULL, NULL)"


def _run(url, name, data, timeout=60):
    conn = _connect(url)
    try:
        cur = conn.cursor()
        cur.execute(CALL, [name, data, timeout])
        return cur.fetchone()
    finally:
        conn.close()


def test_his_role_runs_a_workflow_served_by_the_worker_role(logins, sandbox):  # noqa: F811
    with InProcessWorker(make_settings(logins["worker"], sandbox)):
        wid, result, code, message = _run(logins["his"], "outpatient_settlement",
                                          outpatient_input("SEC1"))
    assert code == 0, message
    assert wid > 0 and set(json.loads(result)) == {"visit", "fee_upload", "trial", "settle"}
    assert consistent(sandbox, "MDSEC1") == "settled"
    for sql in ("SELECT * FROM medical_insurance_workflows",
                "UPDATE medical_insurance_workflows SET status = 'COMPLETED'",
                f"SELECT * FROM mi_wf_poll({int(wid)}, 'guess')"):
        denied = "permission denied" in _denied(logins["his"], sql) if "mi_wf_poll" not in sql \
            else None
        if denied is None:  # the definer poll answers nothing without the caller's token
            conn = _connect(logins["his"])
            assert conn.cursor().execute(sql).fetchall() == []
            conn.close()
        else:
            assert denied, sql
