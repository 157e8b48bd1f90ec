"""Conformance: the async-call statements (issue 15) on every dialect.

enqueue_async (a PENDING row flagged async_call = 1 with its own deadline, the same columns
as enqueue_request), poll_async (the caller-facing state of submitted rows only: a counter
call's id is no row).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qhelpers import claim_one, complete, enqueue, get, set_time  # noqa: E402

COVERS = {"enqueue_async", "poll_async"}


def _submit(db, timeout: int = 86400, psn: str = "P-A") -> int:
    row = db.run_one("enqueue_async", retry=False, interface_code="1312", input_data="{}",
                     priority=7, timeout_seconds=timeout, max_retry_count=2, psn_no=psn,
                     insuplc_admdvs="110000", idempotency_key="K-A", his_fee_id="F-1")
    return int(row["request_id"])


def test_enqueue_async_makes_a_pending_row_with_its_own_deadline(db):
    rid = _submit(db)
    row = get(db, rid)
    assert (row["status"], row["interface_code"], int(row["priority"]),
            int(row["timeout_seconds"]), int(row["max_retry_count"]), row["psn_no"],
            row["idempotency_key"], row["his_fee_id"], int(row["async_call"])) == (
        "PENDING", "1312", 7, 86400, 2, "P-A", "K-A", "F-1", 1)
    p = db.run_one("poll_async", request_id=rid)
    assert (p["status"], p["result_status"], int(p["past_deadline"])) == (
        "PENDING", "IN_PROGRESS", 0)


def test_poll_async_follows_the_row_and_reads_submitted_rows_only(db):
    rid = _submit(db)
    req = claim_one(db, rid)
    assert db.run_one("poll_async", request_id=rid)["status"] == "PROCESSING"
    complete(db, req, response_data='{"infcode":0,"output":{"file_qury_no":"F1"}}')
    p = db.run_one("poll_async", request_id=rid)
    assert (p["status"], p["result_status"], p["response_data"]) == (
        "COMPLETED", "SUCCESS", '{"infcode":0,"output":{"file_qury_no":"F1"}}')
    counter_call = enqueue(db)
    assert db.run("poll_async", request_id=counter_call) == []
    assert db.run("poll_async", request_id=rid + 1000) == []


def test_poll_async_says_when_its_deadline_passed(db):
    rid = _submit(db, psn="P-B")
    set_time(db, rid, deadline_at=-1)
    assert int(db.run_one("poll_async", request_id=rid)["past_deadline"]) == 1
