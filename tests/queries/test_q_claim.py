"""Conformance: claim_batch, assign_new_msgid, next_msgid and enqueue_request on every dialect.

claim_batch is the one statement every worker runs in a loop; its contract (sql/*/queries.sql):
priority then age, only the head of each patient's queue, within each interface's free slots
(medical_insurance_limits, '*' as the default), at most :scan_size candidates looked at, never a
row whose next_attempt_at is still ahead or whose deadline passed; a claimed row is PROCESSING
with this worker's id, token and lease, attempts + 1 and a fresh msgid.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import (  # noqa: E402
    FIXMEDINS,
    claim,
    claim_ids,
    claim_one,
    complete,
    enqueue,
    get,
    msgid_ok,
    seconds_from_now,
    set_cols,
    set_time,
    xfail_on,
)

from mi_worker.db import UniqueViolation  # noqa: E402

COVERS = {"claim_batch", "assign_new_msgid", "next_msgid", "enqueue_request"}


# -- enqueue_request ------------------------------------------------------------------------
def test_enqueue_request_inserts_a_pending_row_with_its_deadline(db):
    rid = enqueue(db, "2207", psn_no="P1", priority=2, timeout=45, max_retry_count=1,
                  input_data='{"data":{"psn_no":"P1"}}', idempotency_key="k-1",
                  his_fee_id="FEE9", insuplc_admdvs="120000")
    row = get(db, rid)
    assert row["status"] == "PENDING" and row["attempts"] == 0
    assert (row["interface_code"].strip(), row["psn_no"], row["priority"],
            row["max_retry_count"], row["timeout_seconds"]) == ("2207", "P1", 2, 1, 45)
    assert (row["idempotency_key"], row["his_fee_id"], row["insuplc_admdvs"]) == (
        "k-1", "FEE9", "120000")
    assert row["input_data"] == '{"data":{"psn_no":"P1"}}'
    assert row["msgid"] is None and row["claim_token"] is None
    assert row["result_status"] == "IN_PROGRESS"
    assert seconds_from_now(db, rid, "deadline_at") == pytest.approx(45, abs=5)
    assert seconds_from_now(db, rid, "next_attempt_at") == pytest.approx(0, abs=5)
    second = enqueue(db)
    assert second > rid  # ids grow: "age" order is request_id order


def test_enqueue_request_refuses_a_live_duplicate_idempotency_key(db):
    first = enqueue(db, idempotency_key="same")
    with pytest.raises(UniqueViolation):
        enqueue(db, idempotency_key="same")
    set_cols(db, first, status="ERROR")  # a failed call frees the key for a new attempt
    assert enqueue(db, idempotency_key="same") > first


# -- claim_batch: what is claimed and how it is marked ---------------------------------------
def test_claim_marks_the_row_processing_with_lease_token_attempt_and_msgid(db):
    rid = enqueue(db, "1101", psn_no="P1", timeout=60, max_retry_count=2,
                  input_data='{"x":1}')
    [r] = claim(db, 5, token="tok-a", worker_id="worker-7", lease_seconds=40)
    assert r["request_id"] == rid and r["attempts"] == 1 and r["max_retry_count"] == 2
    assert r["interface_code"].strip() == "1101" and r["psn_no"] == "P1"
    assert r["input_data"] == '{"x":1}' and r["priority"] == 5
    assert r["parent_request_id"] is None and r["insuplc_admdvs"] == "110000"
    assert float(r["seconds_left"]) == pytest.approx(60, abs=5)
    assert msgid_ok(r["msgid"])
    row = get(db, rid)
    assert (row["status"], row["worker_id"], row["claim_token"]) == (
        "PROCESSING", "worker-7", "tok-a")
    assert row["msgid"] == r["msgid"] and row["claimed_at"] is not None
    assert row["attempts"] == 1 and row["limit_slot"] is None  # no cap: no slot
    assert float(r["queued_seconds"]) == pytest.approx(0, abs=5)
    assert seconds_from_now(db, rid, "lease_expires_at") == pytest.approx(40, abs=5)
    assert claim(db, 5) == []  # a PROCESSING row is never claimed twice


def test_claim_reports_how_long_the_row_waited_in_the_queue(db):
    # the worker's latency book (issue 17) adds this to its own time for the row
    rid = enqueue(db, "1101", timeout=600)
    set_time(db, rid, request_time=-42)
    [r] = claim(db, 5)
    assert r["request_id"] == rid
    assert float(r["queued_seconds"]) == pytest.approx(42, abs=3)


def test_claim_gives_each_row_its_own_msgid(db):
    ids = [enqueue(db) for _ in range(5)]
    rows = claim(db, 10)
    assert sorted(r["request_id"] for r in rows) == ids
    msgids = [r["msgid"] for r in rows]
    assert len(set(msgids)) == 5 and all(msgid_ok(m) for m in msgids)


def test_claim_takes_priority_then_age_and_at_most_batch_size(db):
    p5a = enqueue(db, priority=5)
    p1 = enqueue(db, priority=1)
    p5b = enqueue(db, priority=5)
    p3 = enqueue(db, priority=3)
    p5c = enqueue(db, priority=5)
    assert claim_ids(db, 2) == sorted([p1, p3])
    assert claim_ids(db, 1) == [p5a]
    assert claim_ids(db, 1) == [p5b]
    assert claim_ids(db, 5) == [p5c]
    assert claim(db, 5) == []


def test_claim_returns_its_rows_in_priority_then_age_order(request, db):
    xfail_on(request, db, "sqlite",
             "SQLite's UPDATE … RETURNING gives the claimed rows in rowid order, not priority "
             "order (PostgreSQL's claim_batch ends in ORDER BY priority, request_id); "
             "Queue.claim sorts them, see the next test")
    for p in (5, 1, 3, 5, 0, 2):
        enqueue(db, priority=p)
    rows = claim(db, 10)
    got = [(r["priority"], r["request_id"]) for r in rows]
    assert len(got) == 6 and got == sorted(got)


def test_the_queue_starts_claimed_rows_in_priority_then_age_order(db):
    from mi_worker.queue import Queue
    for p in (5, 1, 3, 5, 0, 2):
        enqueue(db, priority=p)
    rows = Queue(db, "w-order", "H00000000000", 30).claim(10)
    got = [(r.priority, r.request_id) for r in rows]
    assert len(got) == 6 and got == sorted(got)


def test_claim_respects_next_attempt_at_and_the_deadline(db):
    later = enqueue(db)
    expired = enqueue(db)
    ready = enqueue(db)
    set_time(db, later, next_attempt_at=+30)
    set_time(db, expired, deadline_at=-1)
    assert claim_ids(db, 10) == [ready]
    set_time(db, later, next_attempt_at=-1)
    assert claim_ids(db, 10) == [later]
    assert get(db, expired)["status"] == "PENDING"  # expiring is expire_pending's job


def test_claim_looks_at_no_more_than_scan_size_candidates(db):
    ids = [enqueue(db) for _ in range(5)]
    assert claim_ids(db, 10, scan_size=2) == ids[:2]
    assert claim_ids(db, 10, scan_size=10) == ids[2:]


# -- claim_batch: one head per patient ------------------------------------------------------
def test_claim_takes_only_the_head_of_each_patients_queue(db):
    a1 = enqueue(db, psn_no="A")
    a2 = enqueue(db, psn_no="A", priority=1)  # younger: waits although it is more urgent
    b1 = enqueue(db, psn_no="B")
    n1, n2 = enqueue(db), enqueue(db)  # no patient: never wait for each other
    first = claim(db, 10)
    assert sorted(r["request_id"] for r in first) == sorted([a1, b1, n1, n2])
    assert claim(db, 10) == []  # A's head is PROCESSING: its next row waits
    [head] = [r for r in first if r["request_id"] == a1]
    assert complete(db, head)
    assert claim_ids(db, 10) == [a2]


def test_two_rows_of_one_patient_are_never_both_claimed_even_in_one_batch(db):
    ids = [enqueue(db, psn_no="SAME") for _ in range(4)]
    seen = []
    for _ in range(4):
        rows = claim(db, 10)
        assert len(rows) == 1
        seen.append(rows[0]["request_id"])
        processing = [r for r in db.run("list_requests", status="PROCESSING",
                                        interface_code=None, limit_rows=50)]
        assert len(processing) == 1
        complete(db, rows[0])
    assert seen == ids  # and in age order


def test_a_stale_head_does_not_block_the_patient(db):
    old = enqueue(db, psn_no="A")
    new = enqueue(db, psn_no="A")
    set_time(db, old, deadline_at=-1)  # the caller gave up: it must not hold the queue
    assert claim_ids(db, 10) == [new]


def test_a_patient_in_doubt_waits_but_the_2601_reversal_does_not(db):
    orig = enqueue(db, "2207", psn_no="A")
    set_cols(db, orig, status="UNCERTAIN")
    later = enqueue(db, "1101", psn_no="A")
    assert claim(db, 10) == []  # an UNCERTAIN settlement blocks the patient's new calls
    rev = db.run_one("enqueue_reversal", input_data="{}", timeout_seconds=60, psn_no="A",
                     insuplc_admdvs="110000", parent_request_id=orig, delay_seconds=0)
    rev_id = int(rev["request_id"])
    assert claim_ids(db, 10) == [rev_id]  # …but not the reversal that settles the doubt
    set_cols(db, orig, status="COMPLETED", needs_reversal=1)
    set_cols(db, rev_id, status="REVERSED")
    assert claim(db, 10) == []  # a late settlement flagged for reversal also blocks
    set_cols(db, orig, needs_reversal=0, status="REVERSED")
    assert claim_ids(db, 10) == [later]


def test_a_reversal_still_waits_for_a_processing_row_of_its_patient(db):
    busy = enqueue(db, "1101", psn_no="A")
    claim_one(db, busy)
    orig = enqueue(db, "2207", psn_no="A")
    set_cols(db, orig, status="UNCERTAIN")
    db.run("enqueue_reversal", input_data="{}", timeout_seconds=60, psn_no="A",
           insuplc_admdvs="110000", parent_request_id=orig, delay_seconds=0)
    assert claim(db, 10) == []


# -- claim_batch: interface slots -----------------------------------------------------------
def test_claim_honours_the_interface_cap_with_distinct_slots(db):
    db.run("upsert_limit", interface_code="1101", max_in_flight=2)
    ids = [enqueue(db, "1101") for _ in range(4)]
    other = enqueue(db, "5301")  # no cap of its own and no '*': unlimited
    first = claim(db, 10)
    got = sorted(r["request_id"] for r in first)
    assert got == sorted(ids[:2] + [other])
    slots = sorted(get(db, i)["limit_slot"] for i in ids[:2])
    assert slots == [0, 1]
    assert get(db, other)["limit_slot"] is None
    assert claim(db, 10) == []  # both slots taken
    done = [r for r in first if r["request_id"] == ids[0]][0]
    freed = get(db, ids[0])["limit_slot"]
    complete(db, done)
    assert get(db, ids[0])["limit_slot"] is None  # a finished row gives its slot back
    [nxt] = claim(db, 10)
    assert nxt["request_id"] == ids[2] and get(db, ids[2])["limit_slot"] == freed


def test_the_star_cap_applies_to_interfaces_without_their_own(db):
    db.run("upsert_limit", interface_code="*", max_in_flight=1)
    db.run("upsert_limit", interface_code="1101", max_in_flight=3)
    a = [enqueue(db, "5301") for _ in range(3)]
    b = [enqueue(db, "1101") for _ in range(4)]
    got = claim_ids(db, 20)
    assert got == sorted(a[:1] + b[:3])


def test_the_slot_offset_only_rotates_which_free_slot_is_used(db):
    db.run("upsert_limit", interface_code="1101", max_in_flight=3)
    rid = enqueue(db, "1101")
    claim(db, 1, slot_offset=2)
    slot = get(db, rid)["limit_slot"]
    assert slot in (0, 1, 2)
    rid2 = enqueue(db, "1101")
    claim(db, 1, slot_offset=0)
    assert get(db, rid2)["limit_slot"] in {0, 1, 2} - {slot}


# -- msgids ---------------------------------------------------------------------------------
def test_next_msgid_has_the_format_and_is_fresh_each_time(db):
    values = [db.run_one("next_msgid", fixmedins_code=FIXMEDINS)["msgid"] for _ in range(5)]
    assert all(msgid_ok(v) for v in values)
    assert len(set(values)) == 5
    rid = enqueue(db)
    [r] = claim(db, 1)
    assert r["request_id"] == rid and r["msgid"] not in values  # claims share the sequence
    after = db.run_one("next_msgid", fixmedins_code=FIXMEDINS)["msgid"]
    assert after not in values + [r["msgid"]]
    assert msgid_ok(db.run_one("next_msgid", fixmedins_code="H99999999999")["msgid"],
                    code="H99999999999")


def test_assign_new_msgid_stores_a_fresh_msgid_only_under_this_claim(db):
    rid = enqueue(db)
    req = claim_one(db, rid)
    new = db.run_one("assign_new_msgid", request_id=rid, claim_token=req["claim_token"],
                     fixmedins_code=FIXMEDINS)
    assert new and msgid_ok(new["msgid"]) and new["msgid"] != req["msgid"]
    assert get(db, rid)["msgid"] == new["msgid"]
    assert db.run("assign_new_msgid", request_id=rid, claim_token="not-mine",
                  fixmedins_code=FIXMEDINS) == []
    assert get(db, rid)["msgid"] == new["msgid"]
    again = db.run_one("assign_new_msgid", request_id=rid, claim_token=req["claim_token"],
                       fixmedins_code=FIXMEDINS)
    assert again["msgid"] not in (req["msgid"], new["msgid"])
    complete(db, req)
    assert db.run("assign_new_msgid", request_id=rid, claim_token=req["claim_token"],
                  fixmedins_code=FIXMEDINS) == []  # only while PROCESSING
