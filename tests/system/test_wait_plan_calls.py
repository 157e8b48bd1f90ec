"""A waiting caller's first look is timed from the interface's published latency (issue 17).

On PostgreSQL through sp_medical_insurance_call_v2 itself, its looks counted by the server
(every look is one call of mi_his_poll; track_functions = 'all' in the caller's session);
on SQLite through the embedded path of `mi-worker call`, its poll_result statements counted.
The row is completed at the SQL level ~150 ms after it appears (a worker's result write,
without a worker's timing noise), so the schedule alone decides when the caller sees it.
A real worker then shows that the estimate gets published from real calls.
"""
from __future__ import annotations

import threading
import time
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

import pytest
from queries.qhelpers import beat, db_time, raw

from conftest import InProcessWorker, make_settings, wait_until
from mi_worker import his_call, wait_plan

DONE_AFTER = 0.15
INPUT = '{"data":{"psn_no":"P1"}}'


def _complete_soon(db, delay: float = DONE_AFTER) -> threading.Thread:
    """Complete the first PENDING row ``delay`` seconds after it appears."""
    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = raw(db, "SELECT request_id FROM medical_insurance_requests "
                            "WHERE status = 'PENDING'")
            if found:
                time.sleep(delay)
                raw(db, "UPDATE medical_insurance_requests SET status = 'COMPLETED', "
                        "response_data = ?, needs_reversal = 0, response_time = "
                        + db_time(db, 0) + " WHERE request_id = ?",
                    ['{"infcode":0,"output":{}}', 0, found[0]["request_id"]])
                return
            time.sleep(0.005)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _catalogued(db, code: str = "1101") -> None:
    if not raw(db, "SELECT 1 AS x FROM medical_insurance_interfaces WHERE interface_code = ?",
               [code]):
        raw(db, "INSERT INTO medical_insurance_interfaces (interface_code, interface_name, kind, "
                "reversible) VALUES (?, ?, ?, 0)", [code, "人员信息获取", "query"])


def _pg_looks(db) -> int:
    got = raw(db, "SELECT COALESCE(SUM(calls), 0) AS n FROM pg_stat_user_functions "
                  "WHERE funcname = 'mi_his_poll'")
    return int(got[0]["n"])


def _call_counting_looks(db, db_url, timeout: int = 5) -> Tuple[int, float, Optional[int]]:
    """(error_code, seconds, looks) of one call of 1101. SQL Server has no per-function
    counter a test login can read cheaply: its looks are None (timing only)."""
    if db.name == "mssql":
        t0 = time.monotonic()
        res = his_call.call(db, "1101", INPUT, timeout=timeout, retry_count=0)
        return int(res.error_code), time.monotonic() - t0, None
    if db.name == "postgresql":
        from mi_worker.db.odbc import import_pyodbc
        from mi_worker.db.postgresql import odbc_string
        before = _pg_looks(db)
        conn = import_pyodbc().connect(odbc_string(db_url), autocommit=True)
        conn.cursor().execute("SET track_functions = 'all'")
        t0 = time.monotonic()
        row = conn.cursor().execute(
            "CALL sp_medical_insurance_call_v2(?, ?, ?, ?, NULL, NULL, NULL, NULL)",
            ["1101", INPUT, timeout, 0]).fetchone()
        took = time.monotonic() - t0
        conn.close()  # a session's function counts reach the view when it ends
        wait_until(lambda: _pg_looks(db) > before, 10, message="mi_his_poll counted")
        time.sleep(0.3)
        return int(row[2]), took, _pg_looks(db) - before
    counted: Dict[str, int] = {"poll_result": 0}
    run_one = db.run_one

    def counting(name, *a, **kw):
        if name in counted:
            counted[name] += 1
        return run_one(name, *a, **kw)
    db.run_one = counting
    try:
        t0 = time.monotonic()
        res = his_call.call(db, "1101", INPUT, timeout=timeout, retry_count=0)
        took = time.monotonic() - t0
    finally:
        db.run_one = run_one
    return int(res.error_code), took, counted["poll_result"]


def test_with_an_estimate_the_caller_looks_once_when_the_answer_is_due(db, db_url):
    beat(db)
    _catalogued(db)
    db.run("record_interface_latency", interface_code="1101", expected_ms=400)
    done = _complete_soon(db)
    code, took, looks = _call_counting_looks(db, db_url)
    done.join(5)
    assert code == 0
    # answered at ~150 ms, seen at the first look, 400 ms after the INSERT: one look
    assert 0.38 <= took < 1.5, took
    assert looks in (1, None), looks


def _planned_looks(expected_ms: Optional[int], timeout: float, poll_ms: int = 100) -> int:
    """Looks of a caller nobody answers, by wait_plan.poll_delays: every look before the
    deadline, the one at it (its sleep is capped by the time left), and the read after the
    timeout is written."""
    at, looks = 0.0, 0
    for delay in wait_plan.poll_delays(expected_ms, poll_ms):
        at = min(at + delay, timeout)
        looks += 1
        if at >= timeout:
            return looks + 1
    raise AssertionError("unreachable")


def test_the_procedures_look_on_the_schedule_of_wait_plan(db, db_url):
    # nobody answers: the looks until the 1 s deadline are the schedule's (5 ms growing by
    # half after the estimated first look: 16 looks, where a 10 ms step would make 14)
    beat(db)
    _catalogued(db)
    db.run("record_interface_latency", interface_code="1101", expected_ms=100)
    code, took, looks = _call_counting_looks(db, db_url, timeout=1)
    assert code == -1005, code
    assert 0.95 <= took < 2.5, took
    planned = _planned_looks(100, 1.0)
    assert planned == 17
    assert looks is None or planned - 1 <= looks <= planned + 1, (looks, planned)


def test_without_a_fresh_estimate_the_fixed_schedule_applies(db, db_url):
    beat(db)
    _catalogued(db)
    db.run("record_interface_latency", interface_code="1101", expected_ms=400)
    raw(db, "UPDATE medical_insurance_interfaces SET expected_at = " + db_time(db, 0)
            + " WHERE interface_code = ?", [-(wait_plan.STALE_SECONDS + 5), "1101"])
    done = _complete_soon(db)
    code, took, looks = _call_counting_looks(db, db_url)
    done.join(5)
    assert code == 0
    # looks at 0, 10, 30, 70, 150, 250 ms: the ~150 ms answer is seen by 250 ms (+ slack)
    assert took < 0.38, took
    assert looks is None or looks >= 4, looks


def test_a_worker_publishes_the_estimate_from_real_calls(db, db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox)):
        for _ in range(wait_plan.MIN_SAMPLES + 2):
            assert his_call.call(db, "1101", INPUT, timeout=20).error_code == 0
        wait_until(lambda: db.run_one("interface_wait_ms", interface_code="1101")[
            "expected_ms"] is not None, 3 * wait_plan.PUBLISH_SECONDS + 5,
            message="an estimate for 1101")
    expected = int(db.run_one("interface_wait_ms", interface_code="1101")["expected_ms"])
    assert 0 < expected < 5000, expected


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_login_that_cannot_read_the_estimate_keeps_the_fixed_schedule(db, db_url):
    # a HIS role that lost EXECUTE on mi_his_wait_ms (a hardened schema) still gets answers
    beat(db)
    _catalogued(db)
    db.run("record_interface_latency", interface_code="1101", expected_ms=400)
    raw(db, "REVOKE ALL ON FUNCTION mi_his_wait_ms(varchar) FROM PUBLIC")
    role = f"mi_t_nowait_{int(time.time() * 1000) % 100000}"
    raw(db, f"CREATE ROLE {role} LOGIN")
    try:
        # not a superuser (who bypasses grants): the procedure and the other mi_his_*
        # functions keep their default EXECUTE for PUBLIC, mi_his_wait_ms does not
        from mi_worker.db.odbc import import_pyodbc
        from mi_worker.db.postgresql import odbc_string
        parts = urlsplit(db_url)
        url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
        done = _complete_soon(db)
        conn = import_pyodbc().connect(odbc_string(url), autocommit=True)
        t0 = time.monotonic()
        row = conn.cursor().execute(
            "CALL sp_medical_insurance_call_v2(?, ?, ?, ?, NULL, NULL, NULL, NULL)",
            ["1101", INPUT, 5, 0]).fetchone()
        took = time.monotonic() - t0
        conn.close()
        done.join(5)
        assert int(row[2]) == 0, row[3]
        assert took < 0.38, took  # the fixed schedule, not the 400 ms estimate
    finally:
        raw(db, f"DROP OWNED BY {role}")
        raw(db, f"DROP ROLE {role}")
