"""Nothing lost, nothing settled twice (issue 4): crash, timeout race, ordering, limits, outage,
idempotency, back-off in the row. SQLite and the real PostgreSQL; real processes and signals.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict

import pytest

from conftest import InProcessWorker, count_status, finish_now, make_settings, wait_until
from mi_worker.his_call import call
from mi_worker.queue import Queue
from mi_worker.states import Outcome

FAST_RECOVERY = {"heartbeat_seconds": 1, "heartbeat_stale_seconds": 3,
                 "lease_recovery_seconds": 1, "reversal_seconds": 0.5, "expire_seconds": 0.5,
                 "reversal_delay_seconds": 1.5}


def settle_input(psn: str, n: int = 0) -> str:
    return json.dumps({"data": {"psn_no": psn, "mdtrt_id": f"MD{psn}{n}", "chrg_bchno": "1",
                                "insutype": "310", "medfee_sumamt": "100.00",
                                "insuplc_admdvs": "110000"}}, ensure_ascii=False)


def query_input(psn: str) -> str:
    return json.dumps({"data": {"psn_no": psn, "insuplc_admdvs": "110000"}})


def enqueue(db, code, data, psn=None, timeout=120, **kw):
    return int(db.run_one(
        "enqueue_request", interface_code=code, input_data=data, priority=kw.get("priority", 5),
        timeout_seconds=timeout, max_retry_count=kw.get("max_retry_count", 3), psn_no=psn,
        insuplc_admdvs="110000", idempotency_key=None, his_fee_id=None,
        parent_request_id=None)["request_id"])


def statuses(db, ids):
    return {i: db.run_one("get_request", request_id=i) for i in ids}


def all_settled(db) -> bool:
    """No row is waiting, in flight, or in doubt (2601 rows included)."""
    counts = {r["status"]: int(r["n"]) for r in db.run("count_by_status")}
    open_states = sum(counts.get(s, 0) for s in ("PENDING", "PROCESSING", "UNCERTAIN"))
    return open_states == 0 and not db.run("find_doubtful")


@pytest.mark.slow
def test_sigkill_with_200_calls_in_flight(db_url, sandbox, spawn, db):
    sandbox.latency = 3.0
    fast = {"threads": 200, "batch_size": 50, "lease_seconds": 10}
    settings = make_settings(db_url, sandbox, worker=fast, jobs=FAST_RECOVERY,
                             gateway={"max_connections": 256, "read_timeout": 10})
    queries = [enqueue(db, "1101", query_input(f"Q{i:03d}"), f"Q{i:03d}") for i in range(100)]
    settles = [enqueue(db, "2207", settle_input(f"S{i:03d}"), f"S{i:03d}") for i in range(100)]
    first = spawn(settings, "victim")
    wait_until(lambda: count_status(db, "PROCESSING") == 200 and sandbox.calls.count() >= 150,
               timeout=60, message="200 calls in flight")
    first.signal(signal.SIGKILL)
    first.proc.wait(10)
    in_flight_at_kill = count_status(db, "PROCESSING")
    assert in_flight_at_kill >= 150
    sandbox.latency = 0.05
    second = spawn(make_settings(db_url, sandbox, worker={"threads": 16, "lease_seconds": 10},
                                 jobs=FAST_RECOVERY), "rescuer")
    wait_until(lambda: all_settled(db), timeout=120, message="every row terminal")
    assert second.stop() == 0
    rows = statuses(db, queries + settles)
    assert {rows[i]["status"] for i in queries} == {"COMPLETED"}  # queries were re-sent
    settle_states = {rows[i]["status"] for i in settles}
    assert settle_states <= {"COMPLETED", "REVERSED"}, settle_states
    assert "REVERSED" in settle_states
    per_psn = defaultdict(int)
    for c in sandbox.calls.calls("2207"):
        per_psn[c.psn_no] += 1
    assert max(per_psn.values()) == 1  # no settlement was ever sent twice
    assert sandbox.ledger.double_settlements() == []
    completed_msgids = {rows[i]["msgid"] for i in settles if rows[i]["status"] == "COMPLETED"}
    assert {e.msgid for e in sandbox.ledger.open_settlements()} == completed_msgids
    reversals = [c for c in sandbox.calls.calls("2601")]
    assert len(reversals) >= len([i for i in settles if rows[i]["status"] == "REVERSED"])


def test_late_settlement_after_the_callers_deadline_is_reversed(db_url, sandbox):
    sandbox.add_fault("latency", infno="2207", seconds=1.5, count=1)  # read timeout is 2 s
    settings = make_settings(db_url, sandbox, jobs=FAST_RECOVERY)
    with InProcessWorker(settings) as w:
        result = call(w.db, "2207", settle_input("LATE1"), timeout=1, poll_ms=50)
        assert result.error_code == -1005, result
        assert "doubt" in result.error_message
        wait_until(lambda: w.db.run_one("get_request", request_id=result.request_id)["status"]
                   == "REVERSED", timeout=30, message="late completion reversed")
        row = w.db.run_one("get_request", request_id=result.request_id)
        assert "2601" in row["error_message"]
    assert sandbox.ledger.open_settlements() == []
    assert sandbox.ledger.double_settlements() == []
    assert [e.status for e in sandbox.ledger.settlements()] == ["reversed"]


def test_uncertain_settlement_is_reversed_and_the_caller_told_1007(db_url, sandbox):
    sandbox.add_fault("reset_after", infno="2207", count=1)  # centre commits, answer lost
    with InProcessWorker(make_settings(db_url, sandbox, jobs=FAST_RECOVERY)) as w:
        result = call(w.db, "2207", settle_input("UNC1"), timeout=20)
        assert result.error_code == -1007, result
        wait_until(lambda: w.db.run_one("get_request", request_id=result.request_id)["status"]
                   == "REVERSED", timeout=30)
        child = [r for r in w.db.run("find_children", parent_request_id=result.request_id)]
        assert child and child[0]["interface_code"] == "2601"
        assert json.loads(child[0]["input_data"])["data"]["oinfno"] == "2207"
    assert sandbox.calls.count("2207") == 1
    assert sandbox.ledger.open_settlements() == []


def test_uncertain_registration_goes_to_needs_manual_with_advice(db_url, sandbox):
    sandbox.add_fault("reset_after", infno="2201", count=1)
    with InProcessWorker(make_settings(db_url, sandbox, jobs=FAST_RECOVERY)) as w:
        data = json.dumps({"data": {"psn_no": "REG1", "insutype": "310", "insuplc_admdvs": "1"}})
        result = call(w.db, "2201", data, timeout=20)
        assert result.error_code == -1007
        wait_until(lambda: w.db.run_one("get_request", request_id=result.request_id)["status"]
                   == "NEEDS_MANUAL", timeout=30)
        row = w.db.run_one("get_request", request_id=result.request_id)
        assert "2202" in row["error_message"]
        # the alert is written just after the status changes
        wait_until(lambda: w.db.run_one("open_alert", alert_type="NEEDS_MANUAL"), timeout=10)
    assert sandbox.calls.count("2201") == 1


@pytest.mark.slow
def test_per_patient_ordering_under_contention(db_url, sandbox, spawn, db):
    sandbox.add_fault("latency", seconds=0.0, max_seconds=0.02)
    settings = make_settings(db_url, sandbox, worker={"threads": 8, "batch_size": 8})
    ids = defaultdict(list)
    for _ in range(20):
        for p in range(50):
            psn = f"ORD{p:02d}"
            ids[psn].append(enqueue(db, "1101", query_input(psn), psn, timeout=300))
    procs = [spawn(settings, f"o{i}") for i in range(3)]
    wait_until(lambda: count_status(db, "COMPLETED") == 1000, timeout=180)
    for p in procs:
        assert p.stop() == 0
    assert sandbox.calls.psn_overlaps() == []
    assert sandbox.calls.max_concurrent("1101") > 1  # patients did run in parallel
    msgid_to_id = {}
    for rids in ids.values():
        for rid in rids:
            msgid_to_id[db.run_one("get_request", request_id=rid)["msgid"]] = rid
    for psn, rids in ids.items():
        sent = sorted(sandbox.calls.calls("1101", psn_no=psn), key=lambda c: c.t_start)
        assert [msgid_to_id[c.msgid] for c in sent] == rids  # strictly in arrival order


@pytest.mark.slow
def test_per_interface_limit_holds_across_workers(db_url, sandbox, spawn, db):
    sandbox.add_fault("latency", seconds=0.2)
    settings = make_settings(db_url, sandbox, worker={"threads": 8, "limits": {"2207": 2}})
    ids = [enqueue(db, "2207", settle_input(f"L{i:02d}"), f"L{i:02d}") for i in range(30)]
    ids += [enqueue(db, "1101", query_input(f"LQ{i:02d}"), f"LQ{i:02d}") for i in range(30)]
    procs = [spawn(settings, f"l{i}") for i in range(2)]
    wait_until(lambda: count_status(db, "COMPLETED") == 60, timeout=120)
    for p in procs:
        assert p.stop() == 0
    assert sandbox.calls.max_concurrent("2207") == 2
    assert sandbox.calls.max_concurrent("1101") > 2  # other codes are not held back


def test_idempotency_key_one_gateway_call(db_url, sandbox):
    sandbox.add_fault("latency", infno="2207", seconds=1.0)
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        results = []

        def go():
            results.append(call(w.db, "2207", settle_input("IDEM"), timeout=20,
                                idempotency_key="HIS-FEE-0001"))

        threads = [threading.Thread(target=go) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.error_code for r in results)
        assert codes in ([-1008, 0], [0, 0]), results
        again = call(w.db, "2207", settle_input("IDEM"), timeout=20,
                     idempotency_key="HIS-FEE-0001")
        assert again.error_code == 0
        assert again.result == [r for r in results if r.error_code == 0][0].result
    assert sandbox.calls.count("2207") == 1


def test_retry_backoff_lives_in_the_row(db):
    q1 = Queue(db, "w1", "H00000000000", 30)
    rid = enqueue(db, "1101", query_input("B1"), "B1", timeout=60, max_retry_count=1)
    [req] = q1.claim(5)
    assert finish_now(q1, req, Outcome.RETRY, retry_after=1.5, error_code=-1004,
                      error_message="503")
    assert Queue(db, "w2", "H00000000000", 30).claim(5) == []  # not before next_attempt_at
    time.sleep(1.7)
    [again] = Queue(db, "w2", "H00000000000", 30).claim(5)  # another worker takes it
    assert again.request_id == rid and again.attempts == 2 and again.msgid != req.msgid
    assert finish_now(q1, req, Outcome.COMPLETED) is False  # the old lease cannot write
    finish_now(Queue(db, "w2", "H00000000000", 30), again, Outcome.RETRY, retry_after=0.1,
               error_code=-1004, error_message="503 again")
    assert db.run_one("get_request", request_id=rid)["status"] == "ERROR"  # out of retries
    rid2 = enqueue(db, "1101", query_input("B2"), "B2", timeout=2)
    [r2] = q1.claim(5)
    finish_now(q1, r2, Outcome.RETRY, retry_after=5.0, error_code=-1004, error_message="503")
    assert db.run_one("get_request", request_id=rid2)["status"] == "TIMEOUT"  # past deadline


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.slow
@pytest.mark.serial
def test_database_outage_workers_reconnect_nothing_lost(db_url, sandbox, spawn, db):
    if os.geteuid() != 0 or not os.path.isdir("/etc/postgresql"):
        pytest.skip("needs root and a local Debian PostgreSQL cluster to stop and start")
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    sandbox.add_fault("latency", seconds=0.05)
    settings = make_settings(db_url, sandbox, worker={"threads": 4},
                             database={"reconnect_max_seconds": 5})
    ids = [enqueue(db, "1101", query_input(f"DB{i:03d}"), f"DB{i:03d}", timeout=600)
           for i in range(300)]
    procs = [spawn(settings, f"d{i}") for i in range(2)]
    wait_until(lambda: count_status(db, "COMPLETED") > 20, timeout=60)
    ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
    subprocess.run(ctl + ["stop", "-m", "fast"], check=True, capture_output=True)
    try:
        time.sleep(10)
    finally:
        subprocess.run(ctl + ["start"], check=True, capture_output=True)
    wait_until(lambda: count_status(db, "COMPLETED") == len(ids), timeout=120,
               message="all rows completed after the outage")
    wait_until(lambda: all(float(b["age_seconds"]) < 3 for b in db.run("heartbeat_rows")
                           if b["status"] == "RUNNING"), timeout=30, message="heartbeats")
    for p in procs:
        assert p.proc.poll() is None, p.output()[-2000:]  # survived the outage
        assert p.stop() == 0
    assert count_status(db, "PROCESSING") == 0
    sent = sandbox.calls.msgids("1101")
    assert len(set(sent)) == len(sent)


def test_patient_waits_while_a_settlement_is_in_doubt_but_its_2601_does_not(db):
    """README: a patient's later requests wait for the reversal of an UNCERTAIN settlement,
    and the 2601 row itself is not held back by the doubt it settles."""
    q = Queue(db, "w1", "H00000000000", 30, group_commit=False)
    first = enqueue(db, "2207", settle_input("DOUBT"), "DOUBT")
    [req] = q.claim(5)
    assert finish_now(q, req, Outcome.UNCERTAIN, error_code=-1007, error_message="no answer")
    later = enqueue(db, "1101", query_input("DOUBT"), "DOUBT")
    other = enqueue(db, "1101", query_input("OTHER"), "OTHER")
    assert [r.request_id for r in q.claim(5)] == [other]  # DOUBT's query waits
    rev = int(db.run_one("enqueue_reversal", input_data=json.dumps({"data": {}}),
                         timeout_seconds=60, psn_no="DOUBT", insuplc_admdvs=None,
                         delay_seconds=0, parent_request_id=first)["request_id"])
    assert [r.request_id for r in q.claim(5)] == [rev]  # the 2601 goes first
    assert db.run_one("get_request", request_id=later)["status"] == "PENDING"
