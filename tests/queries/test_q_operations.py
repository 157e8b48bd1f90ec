"""Conformance: the day-two operations, doctor, gateway-kind and HIS-hardening statements.

heartbeat_counters (this worker's monotonic totals written to its heartbeat row) and
metrics_workers (every heartbeat row with its counters, read back by the scrape);
retention_batch / retention_archive / retention_delete (only terminal rows past the window,
not flagged for reversal, without an open child, not evidence of an unbalanced 3201 day;
oldest first; the archive copy first, and with :archived = 1 only archived rows deleted);
reconciliation_days (the days the centre answered a 3201); doctor_db_time (the database
clock) and doctor_procedure (the HIS procedure and the HIS role's rights; NULLs on SQLite);
live_gateway_kinds (live RUNNING workers within :down_seconds); his_refusal (the codes the
worker manages itself, refused after the catalogue sync).
"""
from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import beat, enqueue, raw, set_cols, set_time, update  # noqa: E402

from mi_worker import stats  # noqa: E402
from mi_worker.gateway import catalog  # noqa: E402
from mi_worker.runner import sync_catalog  # noqa: E402

COVERS = {"heartbeat_counters", "metrics_workers", "retention_batch", "retention_archive",
          "retention_delete", "reconciliation_days", "doctor_db_time", "doctor_procedure",
          "live_gateway_kinds", "his_refusal"}

SERVICE = "medical_insurance_sdk"


# -- heartbeat_counters / metrics_workers ---------------------------------------------------
def test_heartbeat_counters_are_read_back_by_metrics_workers(db):
    beat(db, "w2", in_flight=2, processed_total=9, host="h2")
    beat(db, "w1", processed_total=4)
    beat(db, "w1", service_name="other_service")
    set_time(db, "w2", table="sdk_heartbeat", last_heartbeat=-42)
    calls = stats.CallStats()
    for code, outcome, seconds in (("1101", "COMPLETED", 0.04), ("1101", "COMPLETED", 0.3),
                                   ("2207", "ERROR", 2.0), ("2207", "UNCERTAIN", 40.0),
                                   ("2207", "RETRY", 0.2), ("2207", "RETRY", 0.2)):
        calls.record(code, outcome, seconds)
    calls.add("webhook_delivered", 3)
    totals = calls.totals()
    assert totals == {"completed_total": 2, "error_total": 1, "uncertain_total": 1,
                      "requeued_total": 2}
    db.run("heartbeat_counters", service_name=SERVICE, worker_id="w2",
           counters_json=calls.to_json(), **totals)
    rows = db.run("metrics_workers")
    assert [(r["service_name"], r["worker_id"]) for r in rows] == [
        (SERVICE, "w1"), (SERVICE, "w2"), ("other_service", "w1")]
    w1, w2, other = rows
    assert (w2["host"], w2["status"], int(w2["in_flight"]), int(w2["processed_total"])) == (
        "h2", "RUNNING", 2, 9)
    assert {c: int(w2[c]) for c in totals} == totals
    assert stats.parse(w2["counters_json"]) == json.loads(calls.to_json())
    assert float(w2["age_seconds"]) == pytest.approx(42, abs=3)
    assert float(w1["age_seconds"]) == pytest.approx(0, abs=3)
    for untouched in (w1, other):  # only the named worker of the named service was written
        assert [int(untouched[c]) for c in totals] == [0, 0, 0, 0]
        assert untouched["counters_json"] is None
    # the totals are rewritten, not added to; a later heartbeat keeps them
    db.run("heartbeat_counters", service_name=SERVICE, worker_id="w2", counters_json="{}",
           completed_total=5, error_total=1, uncertain_total=1, requeued_total=7)
    beat(db, "w2", in_flight=0, processed_total=14, host="h2")
    w2 = {r["worker_id"]: r for r in db.run("metrics_workers")
          if r["service_name"] == SERVICE}["w2"]
    assert [int(w2[c]) for c in ("completed_total", "error_total", "uncertain_total",
                                 "requeued_total", "processed_total")] == [5, 1, 1, 7, 14]
    assert w2["counters_json"] == "{}" and float(w2["age_seconds"]) == pytest.approx(0, abs=3)
    db.run("heartbeat_counters", service_name=SERVICE, worker_id="nobody", counters_json="{}",
           completed_total=1, error_total=0, uncertain_total=0, requeued_total=0)
    assert len(db.run("metrics_workers")) == 3  # an update: no row for an unknown worker


# -- retention ------------------------------------------------------------------------------
DAYS = 30
OLD_REQ, OLD_RESP = "2024-02-01 01:00:00.000", "2024-02-01 01:00:01.000"


def _old(db, code="1101", status="COMPLETED", *, request_time=OLD_REQ,
         response_time=OLD_RESP, needs_reversal=0, parent=None, resolved=False) -> int:
    rid = enqueue(db, code, parent_request_id=parent, input_data=f'{{"n":"{code}"}}')
    set_cols(db, rid, status=status, request_time=request_time, response_time=response_time,
             needs_reversal=needs_reversal)
    if resolved:
        set_time(db, rid, resolved_at=-5)
    return rid


def _recon(db, day, rslt, insutype="310", request_id=None) -> None:
    db.run("insert_reconciliation", stmt_date=day, insutype=insutype, clr_type="11",
           setl_optins="110105", medfee_sumamt="1.00", fund_pay_sumamt="1.00", acct_pay="0.00",
           setl_cnt=1, stmt_rslt=rslt, stmt_rslt_dscr="d", request_id=request_id)


def _live(db) -> set:
    return {int(r["request_id"]) for r in raw(db, "SELECT request_id FROM "
                                                  "medical_insurance_requests")}


def _archived(db) -> dict:
    return {int(r["request_id"]): r for r in raw(
        db, "SELECT request_id, status, interface_code, input_data, request_time, "
            "response_time, archived_at FROM medical_insurance_requests_archive")}


def _batch(db, rows=1000):
    b = db.run_one("retention_batch", retention_days=DAYS, batch_rows=rows)
    return (None if b["lo"] is None else int(b["lo"]),
            None if b["hi"] is None else int(b["hi"]), int(b["n"] or 0))


def _seed_retention(db):
    """Rows that must move and rows that must stay, whatever the batch bounds say."""
    move, stay = [], []
    move += [_old(db, "1101", s) for s in ("COMPLETED", "ERROR", "TIMEOUT", "REVERSED")]
    stay += [_old(db, "2207", "UNCERTAIN"), _old(db, "2207", "NEEDS_MANUAL", resolved=True),
             _old(db, "2207", "NEEDS_MANUAL"), _old(db, "1101", "PENDING"),
             _old(db, "2207", "COMPLETED", needs_reversal=1)]
    late = _old(db, "1101", "COMPLETED", response_time=None)
    update(db, late, times={"response_time": -3600})  # answered only an hour ago
    stay.append(late)
    recent = enqueue(db)
    update(db, recent, values={"status": "COMPLETED"}, times={"response_time": 0})
    stay.append(recent)
    # a reversal in progress keeps its original; a finished one does not
    busy = _old(db, "2207", "COMPLETED")
    enqueue(db, "2601", parent_request_id=busy)  # its PENDING child is recent anyway
    stay.append(busy)
    done = _old(db, "2207", "COMPLETED")
    move += [done, _old(db, "2601", "ERROR", parent=done)]
    # 3201 evidence: China day 2024-03-05 = UTC [03-04 16:00, 03-05 16:00) is unbalanced
    _recon(db, "2024-03-05", "1")
    stay.append(_old(db, "2207", request_time="2024-03-04 16:00:00.000",
                     response_time="2024-03-04 16:00:00.000"))
    stay.append(_old(db, "2304", request_time="2024-03-05 15:59:00.000",
                     response_time="2024-03-05 15:59:59.000"))
    move.append(_old(db, "2207", request_time="2024-03-04 15:59:00.000",
                     response_time="2024-03-04 15:59:59.000"))  # the China day before
    move.append(_old(db, "1101", request_time="2024-03-05 01:00:00.000",
                     response_time="2024-03-05 01:00:01.000"))  # not a settlement
    # a day unbalanced first and balanced by a later 3201 no longer holds its rows
    _recon(db, "2024-03-07", "1")
    _recon(db, "2024-03-07", "0")
    move.append(_old(db, "2207", request_time="2024-03-07 02:00:00.000",
                     response_time="2024-03-07 02:00:01.000"))
    # a 3201 that failed ('ERROR') leaves its day unreconciled, its settlements stay
    _recon(db, "2024-03-09", "ERROR")
    stay.append(_old(db, "2208", request_time="2024-03-09 02:00:00.000",
                     response_time="2024-03-09 02:00:01.000"))
    # the 3201 row an unbalanced answer belongs to is evidence itself
    evidence = _old(db, "3201", request_time="2024-03-12 02:00:00.000",
                    response_time="2024-03-12 02:00:01.000")
    _recon(db, "2024-03-11", "1", request_id=evidence)
    stay.append(evidence)
    return sorted(move), stay


def test_retention_batch_takes_only_old_terminal_rows_oldest_first(db):
    assert _batch(db) == (None, None, 0)
    move, _ = _seed_retention(db)
    assert _batch(db) == (min(move), max(move), len(move))
    # oldest request_time first, not lowest id: make the last eligible row the oldest
    newest_id = max(move)
    set_cols(db, newest_id, request_time="2024-01-01 00:00:00.000",
             response_time="2024-01-01 00:00:01.000")
    # the three oldest: that row, then the two lowest ids of the rows at OLD_REQ
    assert _batch(db, 3) == (move[0], newest_id, 3)
    assert _batch(db, 1) == (newest_id, newest_id, 1)
    assert int(db.run_one("retention_batch", retention_days=10000, batch_rows=100)["n"]) == 0


def test_retention_archives_first_and_deletes_only_archived_rows(db):
    move, stay = _seed_retention(db)
    everything = _live(db)
    lo, hi, n = _batch(db)
    assert (lo, hi, n) == (min(move), max(move), len(move))
    # with :archived = 1 nothing leaves the live table before its copy exists
    assert db.run("retention_delete", retention_days=DAYS, lo=lo, hi=hi, archived=1) == []
    assert _live(db) == everything
    half = move[len(move) // 2]
    db.run("retention_archive", retention_days=DAYS, lo=lo, hi=half)
    copied = _archived(db)
    assert sorted(copied) == [r for r in move if r <= half]
    first = copied[move[0]]
    assert (first["status"], first["interface_code"].strip(), first["input_data"]) == (
        "COMPLETED", "1101", '{"n":"1101"}')
    assert str(first["request_time"]).startswith("2024-02-01 01:00:00")
    assert str(first["response_time"]).startswith("2024-02-01 01:00:01")
    assert first["archived_at"] is not None
    deleted = db.run("retention_delete", retention_days=DAYS, lo=lo, hi=hi, archived=1)
    assert sorted(int(r["request_id"]) for r in deleted) == sorted(copied)
    assert _live(db) == everything - set(copied)
    # a rerun over the whole batch copies the rest once; rows already there are skipped
    db.run("retention_archive", retention_days=DAYS, lo=lo, hi=hi)
    db.run("retention_archive", retention_days=DAYS, lo=lo, hi=hi)
    assert sorted(_archived(db)) == move
    deleted = db.run("retention_delete", retention_days=DAYS, lo=lo, hi=hi, archived=1)
    assert sorted(int(r["request_id"]) for r in deleted) == [r for r in move if r > half]
    assert _live(db) == everything - set(move) and set(stay) <= _live(db)
    assert _batch(db) == (None, None, 0)  # nothing old is left to move
    n_archived = raw(db, "SELECT COUNT(*) AS n FROM medical_insurance_requests_archive")
    assert int(n_archived[0]["n"]) == len(move)  # never a row twice


def test_retention_delete_without_archive_removes_the_same_rows(db):
    move, stay = _seed_retention(db)
    everything = _live(db)
    lo, hi, _ = _batch(db)
    deleted = db.run("retention_delete", retention_days=DAYS, lo=lo, hi=hi, archived=0)
    assert sorted(int(r["request_id"]) for r in deleted) == move
    assert _live(db) == everything - set(move) and set(stay) <= _live(db)
    assert _archived(db) == {}


# -- reconciliation_days --------------------------------------------------------------------
def test_reconciliation_days_are_the_days_the_centre_answered(db):
    assert db.run("reconciliation_days", since_date="2024-03-01") == []
    _recon(db, "2024-02-29", "0")       # before :since_date
    _recon(db, "2024-03-01", "0")       # :since_date itself counts
    _recon(db, "2024-03-03", "1")       # answered: unbalanced is still an answer
    _recon(db, "2024-03-03", "0", insutype="390")  # two groups, one day
    _recon(db, "2024-03-04", "ERROR")   # the call failed: still to do
    _recon(db, "2024-03-06", "ERROR")
    _recon(db, "2024-03-06", "0")       # failed first, answered later
    days = [str(r["stmt_date"])[:10] for r in db.run("reconciliation_days",
                                                     since_date="2024-03-01")]
    assert days == ["2024-03-01", "2024-03-03", "2024-03-06"]
    assert [str(r["stmt_date"])[:10] for r in db.run(
        "reconciliation_days", since_date="2024-03-04")] == ["2024-03-06"]


# -- doctor_db_time / doctor_procedure ------------------------------------------------------
def test_doctor_db_time_is_the_database_clock_in_unix_seconds(db):
    t0 = time.time()
    epoch = float(db.run_one("doctor_db_time", retry=False)["epoch"])
    t1 = time.time()
    assert t0 - 3 <= epoch <= t1 + 3  # the same machine: no skew but the round trip


def test_doctor_procedure_reports_presence_and_the_roles_rights(db):
    if db.name == "sqlite":
        row = db.run_one("doctor_procedure", his_role="his_app")
        assert (row["present"], row["role_exists"], row["executable"],
                row["table_rights"], row["role_name"]) == (None, None, None, None, "his_app")
        return
    if db.name == "mssql":
        pytest.skip("the role checks below are PostgreSQL's (roles, PUBLIC grants); SQL Server "
                    "reads mi_his_caller_role of sql/mssql/security.sql")
    me = db.run_one("doctor_procedure", his_role="")  # empty: this login
    assert (int(me["present"]), int(me["role_exists"]), int(me["executable"]),
            int(me["table_rights"])) == (1, 1, 1, 3)
    current = raw(db, "SELECT CAST(current_user AS text) AS u")[0]["u"]
    assert me["role_name"] == current
    ghost = f"mi_ghost_{uuid.uuid4().hex[:8]}"
    row = db.run_one("doctor_procedure", his_role=ghost)
    assert (int(row["present"]), int(row["role_exists"]), int(row["executable"]),
            int(row["table_rights"]), row["role_name"]) == (1, 0, 0, 0, ghost)
    role = f"mi_doc_t_{uuid.uuid4().hex[:8]}"

    def check():
        r = db.run_one("doctor_procedure", his_role=role)
        return int(r["role_exists"]), int(r["executable"]), int(r["table_rights"])

    raw(db, f"CREATE ROLE {role} NOLOGIN")
    try:
        assert check() == (1, 1, 3)  # PostgreSQL grants EXECUTE to PUBLIC by default
        raw(db, "REVOKE ALL ON PROCEDURE sp_medical_insurance_call_v2 FROM PUBLIC")
        raw(db, "REVOKE ALL ON FUNCTION mi_his_poll FROM PUBLIC")
        assert check() == (1, 0, 2)  # as after security.sql, before the role is granted
        raw(db, f"GRANT EXECUTE ON PROCEDURE sp_medical_insurance_call_v2 TO {role}")
        assert check() == (1, 1, 2)  # may call it, but it could not reach the tables
        raw(db, f"GRANT EXECUTE ON FUNCTION mi_his_poll TO {role}")
        assert check() == (1, 1, 3)
        raw(db, "ALTER PROCEDURE sp_medical_insurance_call_v2 RENAME TO sp_mi_t_renamed")
        r = db.run_one("doctor_procedure", his_role=role)
        assert (int(r["present"]), int(r["executable"])) == (0, 0)
    finally:
        raw(db, f"DROP OWNED BY {role}")
        raw(db, f"DROP ROLE {role}")


# -- live_gateway_kinds ---------------------------------------------------------------------
def test_live_gateway_kinds_lists_only_live_running_workers(db):
    assert db.run("live_gateway_kinds", down_seconds=60) == []
    beat(db, "w3", gateway_kind="sandbox", gateway_tls_verified=None, host="h3")
    beat(db, "w1", host="h1")
    beat(db, "w2", gateway_kind="nhsa", gateway_tls_verified=0, host="h2", seconds_ago=50)
    beat(db, "old", gateway_kind="noop", gateway_tls_verified=None, seconds_ago=120)
    beat(db, "stopped", gateway_kind="noop", gateway_tls_verified=None, status="STOPPED")
    rows = db.run("live_gateway_kinds", down_seconds=60)
    got = [(r["worker_id"], r["host"], r["gateway_kind"],
            None if r["gateway_tls_verified"] is None else int(r["gateway_tls_verified"]))
           for r in rows]
    assert got == [("w1", "h1", "nhsa", 1), ("w2", "h2", "nhsa", 0),
                   ("w3", "h3", "sandbox", None)]  # ordered by worker_id
    assert [r["worker_id"] for r in db.run("live_gateway_kinds", down_seconds=30)] == [
        "w1", "w3"]
    assert [r["worker_id"] for r in db.run("live_gateway_kinds", down_seconds=600)] == [
        "old", "w1", "w2", "w3"]


# -- his_refusal ----------------------------------------------------------------------------
def test_his_refusal_names_the_worker_managed_codes_after_the_catalogue_sync(db):
    def refused(code):
        row = db.run_one("his_refusal", interface_code=code)
        return "no row" if row is None else row["his_refused"]

    for code in ("9001", "9002", "2601"):  # the fixture's `db upgrade` synced the catalogue
        assert refused(code) == catalog.WORKER_MANAGED[code], code
    for code in ("1101", "2207", "3201"):
        assert refused(code) is None, code
    assert refused("Z999") == "no row"  # not in the catalogue at all
    sync_catalog(db, allow_manual_reversal=True)  # jobs.his_manual_reversal = true
    assert refused("2601") is None
    assert refused("9001") == catalog.WORKER_MANAGED["9001"]
    sync_catalog(db)
    assert refused("2601") == catalog.WORKER_MANAGED["2601"]
