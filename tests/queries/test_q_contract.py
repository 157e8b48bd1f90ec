"""Conformance: what the HIS side and the operator read and write, on every dialect.

poll_result (the caller-facing state), timeout_if_pending (at the caller's deadline, only a row
nobody claimed ends TIMEOUT), find_idempotent (latest call with the key that did not fail),
get_request, list_requests (filters, newest first, limit), count_by_status, resolve_request
(an operator settles NEEDS_MANUAL / UNCERTAIN once), log_error.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import claim_one, complete, enqueue, get, raw, set_cols, set_time  # noqa: E402

COVERS = {"poll_result", "timeout_if_pending", "find_idempotent", "get_request",
          "list_requests", "count_by_status", "resolve_request", "log_error"}


def _poll(db, rid):
    return db.run_one("poll_result", request_id=rid)


# -- poll_result ----------------------------------------------------------------------------
def test_poll_result_follows_the_row_to_its_outcome(db):
    rid = enqueue(db, timeout=60)
    p = _poll(db, rid)
    assert (int(p["request_id"]), p["status"], p["result_status"], int(p["past_deadline"])) == (
        rid, "PENDING", "IN_PROGRESS", 0)
    req = claim_one(db, rid)
    assert _poll(db, rid)["result_status"] == "IN_PROGRESS"
    complete(db, req, response_data='{"infcode":0,"output":{}}')
    p = _poll(db, rid)
    assert (p["status"], p["result_status"], p["response_data"]) == (
        "COMPLETED", "SUCCESS", '{"infcode":0,"output":{}}')
    assert p["error_code"] is None and p["error_message"] is None
    assert db.run("poll_result", request_id=rid + 100) == []


def test_poll_result_maps_every_status_to_what_the_caller_is_told(db):
    cases = [("ERROR", 0, "ERROR"), ("TIMEOUT", 0, "TIMEOUT"), ("UNCERTAIN", 0, "UNCERTAIN"),
             ("REVERSED", 0, "UNCERTAIN"), ("NEEDS_MANUAL", 0, "UNCERTAIN"),
             ("COMPLETED", 1, "UNCERTAIN"), ("COMPLETED", 0, "SUCCESS"),
             ("PROCESSING", 0, "IN_PROGRESS"), ("PENDING", 0, "IN_PROGRESS")]
    for status, needs_reversal, expected in cases:
        rid = enqueue(db)
        set_cols(db, rid, status=status, needs_reversal=needs_reversal, error_code=-1004,
                 error_message="原因")
        p = _poll(db, rid)
        assert (p["status"], p["result_status"]) == (status, expected), (status, needs_reversal)
        assert (p["error_code"], p["error_message"]) == (-1004, "原因")


def test_poll_result_says_when_the_deadline_passed(db):
    rid = enqueue(db)
    set_time(db, rid, deadline_at=-1)
    assert int(_poll(db, rid)["past_deadline"]) == 1


# -- timeout_if_pending ---------------------------------------------------------------------
def test_timeout_if_pending_only_while_nobody_claimed_the_row(db):
    busy = enqueue(db)
    claim_one(db, busy)
    idle = enqueue(db)
    out = db.run("timeout_if_pending", request_id=idle, error_message="调用超时")
    assert [int(r["request_id"]) for r in out] == [idle]
    row = get(db, idle)
    assert (row["status"], row["error_code"], row["error_message"]) == (
        "TIMEOUT", -1005, "调用超时")
    assert row["response_time"] is not None
    assert db.run("timeout_if_pending", request_id=busy, error_message="x") == []
    assert get(db, busy)["status"] == "PROCESSING"  # the outcome is the worker's to write
    assert db.run("timeout_if_pending", request_id=idle, error_message="again") == []
    assert get(db, idle)["error_message"] == "调用超时"


# -- find_idempotent ------------------------------------------------------------------------
def test_find_idempotent_returns_the_latest_call_that_did_not_fail(db):
    assert db.run("find_idempotent", idempotency_key="k") == []
    failed = enqueue(db, idempotency_key="k")
    set_cols(db, failed, status="ERROR")
    assert db.run("find_idempotent", idempotency_key="k") == []
    timed = enqueue(db, idempotency_key="k")
    set_cols(db, timed, status="TIMEOUT")
    live = enqueue(db, idempotency_key="k")
    enqueue(db, idempotency_key="other")
    found = db.run_one("find_idempotent", idempotency_key="k")
    assert int(found["request_id"]) == live and found["status"] == "PENDING"
    set_cols(db, live, status="COMPLETED", needs_reversal=1, response_data='{"r":1}',
             error_message=None)
    found = db.run_one("find_idempotent", idempotency_key="k")
    assert (found["status"], int(found["needs_reversal"]), found["response_data"]) == (
        "COMPLETED", 1, '{"r":1}')


# -- get_request / count_by_status / list_requests ------------------------------------------
def test_get_request_returns_the_row_with_result_status_and_latency(db):
    rid = enqueue(db, "1101", psn_no="P9")
    req = claim_one(db, rid)
    set_time(db, rid, request_time=-2.5)
    complete(db, req)
    row = get(db, rid)
    assert row["psn_no"] == "P9" and row["result_status"] == "SUCCESS"
    assert int(row["latency_ms"]) == pytest.approx(2500, abs=1500)
    for col in ("request_id", "interface_code", "input_data", "status", "deadline_at",
                "claim_token", "worker_id", "msgid", "attempts", "needs_reversal",
                "parent_request_id", "resolved_at"):
        assert col in row
    assert db.run("get_request", request_id=rid + 1000) == []


def test_count_by_status_counts_every_status_present(db):
    assert db.run("count_by_status") == []
    ids = [enqueue(db) for _ in range(6)]
    for rid, status in zip(ids, ["ERROR", "ERROR", "COMPLETED", "UNCERTAIN"]):
        set_cols(db, rid, status=status)
    counts = {r["status"]: int(r["n"]) for r in db.run("count_by_status")}
    assert counts == {"ERROR": 2, "COMPLETED": 1, "UNCERTAIN": 1, "PENDING": 2}


def test_list_requests_filters_by_status_and_interface_newest_first(db):
    a = enqueue(db, "1101", psn_no="P1")
    b = enqueue(db, "2207")
    c = enqueue(db, "1101")
    d = enqueue(db, "2207")
    set_cols(db, b, status="ERROR", error_code=-1004, error_message="bad")
    set_cols(db, d, status="ERROR")

    def ids(**kw):
        params = {"status": None, "interface_code": None, "limit_rows": 50, **kw}
        return [int(r["request_id"]) for r in db.run("list_requests", **params)]

    assert ids() == [d, c, b, a]
    assert ids(status="ERROR") == [d, b]
    assert ids(interface_code="1101") == [c, a]
    assert ids(status="ERROR", interface_code="2207") == [d, b]
    assert ids(status="PENDING", interface_code="2207") == []
    assert ids(limit_rows=2) == [d, c]
    row = [r for r in db.run("list_requests", status="ERROR", interface_code=None,
                             limit_rows=10) if int(r["request_id"]) == b][0]
    assert (row["error_code"], row["error_message"], row["attempts"]) == (-1004, "bad", 0)
    assert db.run("list_requests", status=None, interface_code=None, limit_rows=1)[0][
        "psn_no"] is None


# -- resolve_request ------------------------------------------------------------------------
def test_resolve_request_settles_a_manual_or_uncertain_row_once(db):
    manual = enqueue(db)
    unsure = enqueue(db)
    done = enqueue(db)
    set_cols(db, manual, status="NEEDS_MANUAL", needs_reversal=1)
    set_cols(db, unsure, status="UNCERTAIN")
    set_cols(db, done, status="COMPLETED")
    out = db.run("resolve_request", request_id=manual, resolved_by="张医生", note="已冲正")
    assert [int(r["request_id"]) for r in out] == [manual]
    row = get(db, manual)
    assert (row["resolved_by"], row["resolution_note"], int(row["needs_reversal"])) == (
        "张医生", "已冲正", 0)
    assert row["resolved_at"] is not None and row["status"] == "NEEDS_MANUAL"
    assert db.run("resolve_request", request_id=manual, resolved_by="b", note="n") == []
    assert get(db, manual)["resolved_by"] == "张医生"  # the first settlement stands
    assert db.run("resolve_request", request_id=unsure, resolved_by="b", note="n")
    assert db.run("resolve_request", request_id=done, resolved_by="b", note="n") == []
    assert get(db, done)["resolved_at"] is None


# -- log_error ------------------------------------------------------------------------------
def test_log_error_keeps_the_error_next_to_its_request(db):
    rid = enqueue(db)
    db.run("log_error", request_id=rid, error_code=-1099, error_message="意外错误",
           detail="Traceback-free detail")
    db.run("log_error", request_id=None, error_code=-1001, error_message="no row",
           detail=None)
    rows = raw(db, "SELECT request_id, error_code, error_message, detail, create_time "
                   "FROM medical_insurance_error_log ORDER BY log_id")
    assert [(r["request_id"], r["error_code"], r["error_message"], r["detail"]) for r in rows] \
        == [(rid, -1099, "意外错误", "Traceback-free detail"), (None, -1001, "no row", None)]
    assert all(r["create_time"] is not None for r in rows)
