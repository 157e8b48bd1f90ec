"""Conformance: the maintenance sweeps and the worker's heartbeat on every dialect.

expire_pending (PENDING past its deadline → TIMEOUT -1005), find_lost_leases (lease ran out and
the worker is not beating, or ran out more than :lease_seconds ago) and recover_lease (token and
state guarded move to the state the job chose), heartbeat (one row per worker, upserted),
service_status (the -1002 check), heartbeat_rows (ages on the database clock).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import beat, claim, claim_one, enqueue, get, raw, seconds_from_now, set_cols, set_time  # noqa: E402

COVERS = {"expire_pending", "find_lost_leases", "recover_lease", "heartbeat", "service_status",
          "heartbeat_rows"}


# -- expire_pending -------------------------------------------------------------------------
def test_expire_pending_times_out_only_pending_rows_past_their_deadline(db):
    busy = enqueue(db)
    claim_one(db, busy)
    gone = enqueue(db)
    alive = enqueue(db)
    set_time(db, gone, deadline_at=-1)
    set_time(db, busy, deadline_at=-1)  # claimed: stays with its worker
    out = db.run("expire_pending")
    assert [int(r["request_id"]) for r in out] == [gone]
    row = get(db, gone)
    assert (row["status"], row["error_code"]) == ("TIMEOUT", -1005)
    assert "deadline" in row["error_message"] and row["response_time"] is not None
    assert row["attempts"] == 0
    assert get(db, alive)["status"] == "PENDING" and get(db, busy)["status"] == "PROCESSING"
    assert db.run("expire_pending") == []


# -- find_lost_leases / recover_lease -------------------------------------------------------
def _lost(db, lease_seconds=30, stale_seconds=30):
    return {int(r["request_id"]): r for r in db.run(
        "find_lost_leases", lease_seconds=lease_seconds, stale_seconds=stale_seconds)}


def test_find_lost_leases_lists_expired_leases_of_workers_that_stopped_beating(db):
    ids = [enqueue(db) for _ in range(4)]
    dead = claim(db, 1, token="t-dead", worker_id="dead")
    live_ok = claim(db, 1, token="t-ok", worker_id="alive")
    live_late = claim(db, 1, token="t-late", worker_id="alive")
    fresh = claim(db, 1, token="t-fresh", worker_id="dead")
    assert [len(x) for x in (dead, live_ok, live_late, fresh)] == [1, 1, 1, 1]
    beat(db, "alive")
    beat(db, "dead", seconds_ago=300)
    set_time(db, ids[0], lease_expires_at=-5)  # ran out, worker silent: lost
    set_time(db, ids[1], lease_expires_at=-5)  # ran out, worker beating: give it time
    set_time(db, ids[2], lease_expires_at=-100)  # ran out long ago: lost though it beats
    set_time(db, ids[3], lease_expires_at=+20)  # still leased
    set_time(db, ids[2], deadline_at=-1)
    lost = _lost(db)
    assert sorted(lost) == [ids[0], ids[2]]
    assert lost[ids[0]]["claim_token"] == "t-dead" and lost[ids[0]]["worker_id"] == "dead"
    assert lost[ids[0]]["interface_code"].strip() == "1101"
    assert int(lost[ids[0]]["past_deadline"]) == 0 and int(lost[ids[2]]["past_deadline"]) == 1
    beat(db, "alive", status="STOPPED")  # a stopped worker keeps nothing
    assert sorted(_lost(db)) == [ids[0], ids[1], ids[2]]


def test_recover_lease_moves_the_lost_row_to_the_chosen_state(db):
    db.run("upsert_limit", interface_code="2207", max_in_flight=1)
    for status, finished in [("PENDING", False), ("UNCERTAIN", True), ("TIMEOUT", True)]:
        rid = enqueue(db, "2207")
        req = claim_one(db, rid, token=f"lost-{status}")
        assert db.run("recover_lease", request_id=rid, claim_token="other", status=status,
                      error_code=-1007, error_message="lease lost") == []
        assert get(db, rid)["status"] == "PROCESSING"
        out = db.run("recover_lease", request_id=rid, claim_token=req["claim_token"],
                     status=status, error_code=-1007, error_message="lease lost")
        assert [int(r["request_id"]) for r in out] == [rid]
        row = get(db, rid)
        assert (row["status"], row["error_code"], row["error_message"]) == (
            status, -1007, "lease lost")
        assert (row["claim_token"], row["worker_id"], row["lease_expires_at"],
                row["limit_slot"]) == (None, None, None, None)  # the slot is free again
        assert (row["response_time"] is not None) == finished, status
        assert db.run("recover_lease", request_id=rid, claim_token=req["claim_token"],
                      status="TIMEOUT", error_code=-1005, error_message="x") == []  # once
        if status == "PENDING":
            set_cols(db, rid, status="ERROR")  # out of the way of the next case


# -- heartbeat / service_status / heartbeat_rows --------------------------------------------
def test_heartbeat_upserts_one_row_per_worker_and_keeps_started_at(db):
    beat(db, "w1", in_flight=3, processed_total=10, host="h1", pid=11, version="1.0")
    set_time(db, "w1", table="sdk_heartbeat", started_at=-3600, last_heartbeat=-50)
    beat(db, "w1", in_flight=1, processed_total=12, host="h2", pid=12, version="1.1",
         status="STOPPED")
    beat(db, "w2")
    rows = db.run("heartbeat_rows")
    assert [r["worker_id"] for r in rows] == ["w1", "w2"]
    w1 = rows[0]
    assert (w1["service_name"], w1["host"], w1["pid"], w1["version"], w1["status"],
            w1["in_flight"], w1["processed_total"]) == (
        "medical_insurance_sdk", "h2", 12, "1.1", "STOPPED", 1, 12)
    assert float(w1["age_seconds"]) == pytest.approx(0, abs=5)  # last_heartbeat refreshed
    assert seconds_from_now(db, "w1", "started_at", table="sdk_heartbeat") == pytest.approx(
        -3600, abs=5)  # the process start is kept
    n = raw(db, "SELECT COUNT(*) AS n FROM sdk_heartbeat WHERE worker_id = ?", ["w1"])
    assert int(n[0]["n"]) == 1


def test_heartbeat_rows_report_the_age_on_the_database_clock(db):
    beat(db, "a", seconds_ago=120)
    beat(db, "b")
    ages = {r["worker_id"]: float(r["age_seconds"]) for r in db.run("heartbeat_rows")}
    assert ages["a"] == pytest.approx(120, abs=5) and ages["b"] == pytest.approx(0, abs=5)


def test_service_status_is_1_only_while_a_running_worker_beats(db):
    def alive(stale=30):
        return int(db.run_one("service_status", stale_seconds=stale)["alive"])

    assert alive() == 0  # nobody ever beat
    beat(db, "w1", seconds_ago=60)
    assert alive(30) == 0 and alive(120) == 1
    beat(db, "w1")
    assert alive() == 1
    beat(db, "w1", status="STOPPED")
    assert alive() == 0  # a stopped worker claims nothing
