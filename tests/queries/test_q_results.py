"""Conformance: the result writes of a claimed row on every dialect.

complete_request / complete_batch (the final write, guarded by the claim token and the
PROCESSING state; a state-changing call finished after its caller's deadline is flagged
needs_reversal), requeue_request (PENDING with a stored back-off, ERROR out of attempts, TIMEOUT
out of time), release_request (never sent: as if untouched) and extend_lease (the heartbeat).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import claim, claim_one, complete, enqueue, get, requeue, seconds_from_now, set_time  # noqa: E402

COVERS = {"complete_request", "complete_batch", "requeue_request", "release_request",
          "extend_lease"}


# -- complete_request -----------------------------------------------------------------------
def test_complete_request_writes_the_outcome_and_frees_lease_and_slot(db):
    db.run("upsert_limit", interface_code="1101", max_in_flight=1)
    rid = enqueue(db, "1101")
    req = claim_one(db, rid)
    assert get(db, rid)["limit_slot"] == 0
    out = complete(db, req, "COMPLETED", infcode="0", response_data='{"output":{"a":1}}',
                   attempt_log='[{"try":1}]')
    assert [int(r["request_id"]) for r in out] == [rid]
    assert int(out[0]["needs_reversal"]) == 0
    row = get(db, rid)
    assert (row["status"], row["infcode"], row["response_data"], row["attempt_log"]) == (
        "COMPLETED", "0", '{"output":{"a":1}}', '[{"try":1}]')
    assert row["lease_expires_at"] is None and row["limit_slot"] is None
    assert row["response_time"] is not None and row["result_status"] == "SUCCESS"
    assert row["claim_token"] == req["claim_token"]  # kept: a retried write can tell it landed
    assert row["msgid"] == req["msgid"]  # msgid NULL keeps the claim's msgid
    assert row["latency_ms"] is not None and int(row["latency_ms"]) >= 0


def test_complete_request_error_outcome_and_a_replacement_msgid(db):
    rid = enqueue(db)
    req = claim_one(db, rid)
    complete(db, req, "ERROR", infcode="-1", response_data=None, error_code=-1004,
             error_message="人员信息不存在", msgid="H11010500001202401011200009999")
    row = get(db, rid)
    assert (row["status"], row["error_code"], row["error_message"], row["msgid"]) == (
        "ERROR", -1004, "人员信息不存在", "H11010500001202401011200009999")
    assert row["result_status"] == "ERROR"


def test_complete_request_is_guarded_by_token_and_processing_state(db):
    rid = enqueue(db)
    req = claim_one(db, rid)
    assert complete(db, req, token="foreign-token") == []
    row = get(db, rid)
    assert row["status"] == "PROCESSING" and row["response_time"] is None
    assert complete(db, req, "COMPLETED")
    assert complete(db, req, "ERROR", error_code=-1) == []  # only from PROCESSING
    assert get(db, rid)["status"] == "COMPLETED"
    pending = enqueue(db)
    assert complete(db, {"request_id": pending, "claim_token": None}) == []
    assert get(db, pending)["status"] == "PENDING"


def test_complete_request_flags_a_late_state_changing_call_for_reversal(db):
    cases = [(True, "COMPLETED", 1, 1), (True, "COMPLETED", 0, 0), (True, "ERROR", 1, 0),
             (False, "COMPLETED", 1, 0)]
    for n, (late, status, reversible, flagged) in enumerate(cases):
        rid = enqueue(db, "2207", psn_no=f"P{n}")
        req = claim_one(db, rid)
        if late:
            set_time(db, rid, deadline_at=-2)
        [out] = complete(db, req, status, late_reversible=reversible)
        case = (late, status, reversible)
        assert int(out["needs_reversal"]) == flagged, case
        row = get(db, rid)
        assert int(row["needs_reversal"]) == flagged and row["status"] == status, case
        if flagged:
            assert row["result_status"] == "UNCERTAIN"  # the caller must not see a success


# -- complete_batch -------------------------------------------------------------------------
def _batch_row(req, status="COMPLETED", *, token=None, late_reversible=0, msgid=None,
               error_code=None, error_message=None, infcode="0"):
    return {"request_id": req["request_id"], "claim_token": token or req["claim_token"],
            "status": status, "infcode": infcode, "response_data": '{"infcode":0}',
            "error_code": error_code, "error_message": error_message, "msgid": msgid,
            "attempt_log": "[]", "late_reversible": late_reversible}


def test_complete_batch_writes_only_the_rows_this_claim_still_holds(db):
    ids = [enqueue(db, "2207", psn_no=f"P{i}") for i in range(5)]
    reqs = {r["request_id"]: r for r in claim(db, 10)}
    assert sorted(reqs) == ids
    a, b, c, d, e = (reqs[i] for i in ids)
    complete(db, d)  # already finished: not PROCESSING any more
    set_time(db, e["request_id"], deadline_at=-2)  # late and reversible: flagged
    rows = [_batch_row(a), _batch_row(b, "ERROR", error_code=-1004, error_message="拒绝",
                                      infcode="-1"),
            _batch_row(c, token="foreign"), _batch_row(d, "ERROR", error_code=-1),
            _batch_row(e, late_reversible=1), _batch_row({"request_id": 999999,
                                                          "claim_token": "x"})]
    out = db.run("complete_batch", rows=json.dumps(rows, ensure_ascii=False))
    got = {int(r["request_id"]): int(r["needs_reversal"]) for r in out}
    assert got == {ids[0]: 0, ids[1]: 0, ids[4]: 1}
    assert get(db, ids[0])["status"] == "COMPLETED"
    rb = get(db, ids[1])
    assert (rb["status"], rb["error_code"], rb["error_message"]) == ("ERROR", -1004, "拒绝")
    assert get(db, ids[2])["status"] == "PROCESSING"  # foreign token: untouched
    assert get(db, ids[3])["status"] == "COMPLETED"  # not PROCESSING: untouched
    re_ = get(db, ids[4])
    assert re_["status"] == "COMPLETED" and int(re_["needs_reversal"]) == 1
    for i in (ids[0], ids[1], ids[4]):
        row = get(db, i)
        assert row["lease_expires_at"] is None and row["response_time"] is not None


def test_complete_batch_keeps_or_replaces_the_msgid(db):
    ids = [enqueue(db) for _ in range(2)]
    reqs = {r["request_id"]: r for r in claim(db, 10)}
    r0, r1 = reqs[ids[0]], reqs[ids[1]]
    new = "H11010500001202401011200001234"
    db.run("complete_batch", rows=json.dumps([_batch_row(r0), _batch_row(r1, msgid=new)]))
    assert get(db, ids[0])["msgid"] == r0["msgid"]
    assert get(db, ids[1])["msgid"] == new


# -- requeue_request ------------------------------------------------------------------------
def test_requeue_request_goes_back_to_pending_with_its_back_off(db):
    db.run("upsert_limit", interface_code="1101", max_in_flight=1)
    rid = enqueue(db, "1101", timeout=120, max_retry_count=3)
    req = claim_one(db, rid)
    [out] = requeue(db, req, 20, error_code=-1003, error_message="connect refused",
                    msgid="H11010500001202401011200004321", attempt_log='[{"e":1}]')
    assert out["status"] == "PENDING" and int(out["request_id"]) == rid
    row = get(db, rid)
    assert (row["status"], row["error_code"], row["error_message"], row["attempt_log"]) == (
        "PENDING", -1003, "connect refused", '[{"e":1}]')
    assert row["msgid"] == "H11010500001202401011200004321"
    assert row["claim_token"] is None and row["worker_id"] is None
    assert row["lease_expires_at"] is None and row["limit_slot"] is None
    assert row["response_time"] is None and row["attempts"] == 1
    assert seconds_from_now(db, rid, "next_attempt_at") == pytest.approx(20, abs=5)
    assert claim(db, 10) == []  # the back-off lives in the row
    set_time(db, rid, next_attempt_at=-1)
    assert claim_one(db, rid)["attempts"] == 2


def test_requeue_request_ends_error_when_out_of_attempts(db):
    rid = enqueue(db, timeout=120, max_retry_count=1)
    req = claim_one(db, rid)
    assert requeue(db, req, 0)[0]["status"] == "PENDING"  # attempts 1, max 1: one more try
    req = claim_one(db, rid)
    [out] = requeue(db, req, 0, error_message="still failing")
    assert out["status"] == "ERROR"  # attempts 2 > max_retry_count 1
    row = get(db, rid)
    assert row["status"] == "ERROR" and row["response_time"] is not None
    assert row["error_message"] == "still failing" and row["claim_token"] is None


def test_requeue_request_ends_timeout_when_the_back_off_passes_the_deadline(db):
    rid = enqueue(db, timeout=10, max_retry_count=0)
    req = claim_one(db, rid)
    [out] = requeue(db, req, 30)
    assert out["status"] == "TIMEOUT"  # TIMEOUT wins over ERROR (attempts 1 > 0 as well)
    row = get(db, rid)
    assert row["status"] == "TIMEOUT" and row["response_time"] is not None
    assert row["result_status"] == "TIMEOUT"


def test_requeue_request_is_guarded_by_token_and_state(db):
    rid = enqueue(db)
    req = claim_one(db, rid)
    assert requeue(db, req, 1, token="foreign") == []
    assert get(db, rid)["status"] == "PROCESSING"
    complete(db, req)
    assert requeue(db, req, 1) == []
    assert get(db, rid)["status"] == "COMPLETED"


# -- release_request ------------------------------------------------------------------------
def test_release_request_gives_the_row_back_as_if_untouched(db):
    db.run("upsert_limit", interface_code="1101", max_in_flight=1)
    rid = enqueue(db, "1101")
    req = claim_one(db, rid)
    assert db.run("release_request", request_id=rid, claim_token="foreign") == []
    out = db.run("release_request", request_id=rid, claim_token=req["claim_token"])
    assert [int(r["request_id"]) for r in out] == [rid]
    row = get(db, rid)
    assert (row["status"], row["attempts"], row["claim_token"], row["worker_id"],
            row["lease_expires_at"], row["limit_slot"]) == ("PENDING", 0, None, None, None,
                                                              None)
    assert db.run("release_request", request_id=rid, claim_token=req["claim_token"]) == []
    assert claim_one(db, rid)["attempts"] == 1  # claimable at once, the attempt not counted


# -- extend_lease ---------------------------------------------------------------------------
def test_extend_lease_moves_the_lease_of_every_row_of_this_claim_only(db):
    ids = [enqueue(db) for _ in range(3)]
    mine = claim(db, 2, token="mine")
    other = claim_one(db, ids[2], token="other")
    for r in mine + [other]:
        set_time(db, r["request_id"], lease_expires_at=+5)
    db.run("extend_lease", claim_token="mine", lease_seconds=90)
    for r in mine:
        assert seconds_from_now(db, r["request_id"], "lease_expires_at") == pytest.approx(
            90, abs=5)
    assert seconds_from_now(db, ids[2], "lease_expires_at") == pytest.approx(5, abs=3)
    complete(db, mine[0])
    db.run("extend_lease", claim_token="mine", lease_seconds=300)
    assert get(db, mine[0]["request_id"])["lease_expires_at"] is None  # only PROCESSING rows
    assert seconds_from_now(db, mine[1]["request_id"], "lease_expires_at") == pytest.approx(
        300, abs=5)
