"""Conformance: the reversal (冲正) job's statements on every dialect.

find_doubtful (UNCERTAIN rows and late COMPLETED rows flagged needs_reversal, never a 2601 child,
with their latest reversal row and how many there are), enqueue_reversal (a 2601 row linked to
its original, top priority, runnable only after :delay_seconds), find_children (the audit
trail), settle_row (guarded by the status the job saw, so a concurrent change wins).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import claim_ids, enqueue, get, seconds_from_now, set_cols, set_time  # noqa: E402

COVERS = {"find_doubtful", "enqueue_reversal", "find_children", "settle_row"}


def _reverse(db, parent, *, delay=0.0, timeout=60, psn_no="A", data='{"data":{"x":1}}'):
    row = db.run_one("enqueue_reversal", input_data=data, timeout_seconds=timeout,
                     psn_no=psn_no, insuplc_admdvs="110000", parent_request_id=parent,
                     delay_seconds=delay)
    return int(row["request_id"])


def test_enqueue_reversal_links_a_top_priority_2601_row_runnable_after_the_delay(db):
    orig = enqueue(db, "2207", psn_no="A")
    set_cols(db, orig, status="UNCERTAIN")
    older1 = enqueue(db, "1101", priority=1)
    older2 = enqueue(db, "1101", priority=1)
    rev = _reverse(db, orig, delay=30, timeout=40, data='{"data":{"omsgid":"m"}}')
    row = get(db, rev)
    assert (row["interface_code"].strip(), row["status"], row["priority"],
            row["max_retry_count"], row["parent_request_id"], row["psn_no"],
            row["insuplc_admdvs"], row["input_data"]) == (
        "2601", "PENDING", 0, 3, orig, "A", "110000", '{"data":{"omsgid":"m"}}')
    assert row["timeout_seconds"] == 40
    assert seconds_from_now(db, rev, "next_attempt_at") == pytest.approx(30, abs=5)
    assert seconds_from_now(db, rev, "deadline_at") == pytest.approx(70, abs=5)
    assert claim_ids(db, 1) == [older1]  # the reversal is not runnable before its delay
    set_time(db, rev, next_attempt_at=-1)
    assert claim_ids(db, 1) == [rev]  # priority 0 goes before an older priority-1 row
    assert claim_ids(db, 10) == [older2]


def test_find_doubtful_lists_rows_in_doubt_with_their_latest_reversal(db):
    unsure = enqueue(db, "2207", psn_no="A")
    late = enqueue(db, "2102", psn_no="B")
    fine = enqueue(db, "2207")
    manual = enqueue(db, "2207")
    set_cols(db, unsure, status="UNCERTAIN", msgid="M" * 30, error_message="timeout")
    set_cols(db, late, status="COMPLETED", needs_reversal=1)
    set_cols(db, fine, status="COMPLETED")
    set_cols(db, manual, status="NEEDS_MANUAL")
    assert [int(r["request_id"]) for r in db.run("find_doubtful")] == [unsure, late]
    first = _reverse(db, unsure)
    second = _reverse(db, unsure)
    set_cols(db, first, status="UNCERTAIN")  # a child in doubt is not a new work item
    rows = {int(r["request_id"]): r for r in db.run("find_doubtful")}
    assert sorted(rows) == [unsure, late]
    u, lt = rows[unsure], rows[late]
    assert (u["status"], u["interface_code"].strip(), u["psn_no"], u["insuplc_admdvs"],
            u["msgid"], u["error_message"]) == (
        "UNCERTAIN", "2207", "A", "110000", "M" * 30, "timeout")
    assert (int(u["rev_id"]), int(u["rev_count"])) == (second, 2)
    assert lt["rev_id"] is None and int(lt["rev_count"]) == 0
    assert int(lt["needs_reversal"]) == 1


def test_find_children_lists_the_reversal_rows_of_one_original(db):
    orig = enqueue(db, "2207")
    other = enqueue(db, "2207")
    assert db.run("find_children", parent_request_id=orig) == []
    a = _reverse(db, orig, data='{"n":1}')
    _reverse(db, other)
    b = _reverse(db, orig, data='{"n":2}')
    set_cols(db, a, status="ERROR", error_message="2601 failed")
    kids = db.run("find_children", parent_request_id=orig)
    assert [int(k["request_id"]) for k in kids] == [a, b]
    assert (kids[0]["interface_code"].strip(), kids[0]["status"], kids[0]["input_data"],
            kids[0]["error_message"]) == ("2601", "ERROR", '{"n":1}', "2601 failed")
    assert kids[1]["status"] == "PENDING" and kids[1]["request_time"] is not None


def test_settle_row_moves_only_from_the_status_the_job_saw(db):
    for target in ("REVERSED", "NEEDS_MANUAL"):  # COMPLETED -> ERROR is no arrow of "reverse"
        rid = enqueue(db, "2207")
        set_cols(db, rid, status="COMPLETED", needs_reversal=1)
        db.run("settle_row", request_id=rid, status=target, expected_status="UNCERTAIN",
               error_code=-1007, error_message="stale view")
        row = get(db, rid)
        assert row["status"] == "COMPLETED" and int(row["needs_reversal"]) == 1  # guard held
        db.run("settle_row", request_id=rid, status=target, expected_status="COMPLETED",
               error_code=-1007, error_message="冲正成功")
        row = get(db, rid)
        assert (row["status"], int(row["needs_reversal"]), row["error_code"],
                row["error_message"]) == (target, 0, -1007, "冲正成功")
        db.run("settle_row", request_id=rid, status="UNCERTAIN", expected_status="COMPLETED",
               error_code=None, error_message=None)
        assert get(db, rid)["status"] == target  # a second, stale settle does not overwrite
    # only the arrows states.TRANSITIONS allows: UNCERTAIN may end ERROR, COMPLETED may not
    done, unsure = enqueue(db, "2207"), enqueue(db, "2601")
    set_cols(db, done, status="COMPLETED", needs_reversal=1)
    set_cols(db, unsure, status="UNCERTAIN")
    for rid, expected in ((done, "COMPLETED"), (unsure, "UNCERTAIN")):
        db.run("settle_row", request_id=rid, status="ERROR", expected_status=expected,
               error_code=-1007, error_message="retired")
    assert (get(db, done)["status"], int(get(db, done)["needs_reversal"])) == ("COMPLETED", 1)
    assert get(db, unsure)["status"] == "ERROR"
