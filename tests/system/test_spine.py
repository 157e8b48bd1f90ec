"""The backbone end to end: HIS call → PENDING row → worker claim → gateway → result → caller.

Every test here runs on SQLite and the real PostgreSQL (and SQL Server where Docker exists).
"""
from __future__ import annotations

import collections
import json
import signal
import threading
import time

import pytest

from conftest import InProcessWorker, count_status, make_settings, wait_until
from mi_worker.db.queries import load
from mi_worker.his_call import call

INPUT_1101 = json.dumps({"data": {"psn_no": "P0001", "mdtrt_cert_type": "02",
                                  "mdtrt_cert_no": "110101199001011234",
                                  "insuplc_admdvs": "110000"}}, ensure_ascii=False)


def enqueue(db, code="1101", input_data=INPUT_1101, timeout=60, psn_no=None, **kw):
    row = db.run_one("enqueue_request", interface_code=code, input_data=input_data,
                     priority=kw.get("priority", 5), timeout_seconds=timeout,
                     max_retry_count=kw.get("max_retry_count", 3), psn_no=psn_no,
                     insuplc_admdvs=kw.get("insuplc_admdvs", "110000"),
                     idempotency_key=kw.get("idempotency_key"), his_fee_id=None,
                     parent_request_id=None)
    return int(row["request_id"])


def beat(db, worker_id="test-heartbeat"):
    db.run("heartbeat", service_name="medical_insurance_sdk", worker_id=worker_id, host="t",
           pid=1, version="t", status="RUNNING", in_flight=0, processed_total=0,
           gateway_kind="nhsa", gateway_tls_verified=1)


def test_every_dialect_defines_the_same_queries():
    names = {d: set(load(d)) for d in ("sqlite", "postgresql")}
    procedure_only = {"call_procedure", "call_workflow_procedure", "submit_procedure",
                      "result_procedure"}
    assert names["postgresql"] - procedure_only == names["sqlite"]
    assert procedure_only <= names["postgresql"]


def test_upgrade_is_idempotent_and_safe_concurrently(db_url):
    from mi_worker.db import connect
    from mi_worker.db.migrate import migrations, upgrade
    results, errors = [], []

    def run():
        d = connect(db_url)
        try:
            results.append(upgrade(d))
        except Exception as exc:  # pragma: no cover - the assertion shows it
            errors.append(exc)
        finally:
            d.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [[], [], []]  # the fixture already upgraded; nothing applied twice
    d = connect(db_url)
    versions = [int(r["version"]) for r in d.run("applied_migrations")]
    d.close()
    assert versions == [m.version for m in migrations(d.name)]


def test_round_trip_through_the_his_contract(db_url, sandbox):
    settings = make_settings(db_url, sandbox)
    with InProcessWorker(settings) as w:
        result = call(w.db, "1101", INPUT_1101, timeout=20)
        assert result.error_code == 0, result
        body = json.loads(result.result)
        assert int(body["infcode"]) == 0
        assert body["output"]["baseinfo"]["psn_no"] == "P0001"
        row = w.db.run_one("get_request", request_id=result.request_id)
        assert row["status"] == "COMPLETED" and row["msgid"].startswith(
            settings.gateway.fixmedins_code) and len(row["msgid"]) == 30
        assert row["psn_no"] == "P0001"
        assert sandbox.calls.msgids("1101") == [row["msgid"]]


def test_gateway_error_is_1004_with_err_msg(db_url, sandbox):
    sandbox.add_fault("infcode", infno="1101", message="人员信息不存在")
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        result = call(w.db, "1101", INPUT_1101, timeout=20)
    assert result.error_code == -1004
    assert "人员信息不存在" in result.error_message


def test_no_heartbeat_is_1002(db):
    result = call(db, "1101", INPUT_1101, timeout=2)
    assert result.error_code == -1002 and result.request_id is None


def test_deadline_before_any_claim_is_timeout(db):
    beat(db)  # a worker looks alive but never claims
    started = time.monotonic()
    result = call(db, "1101", INPUT_1101, timeout=1, poll_ms=50)
    assert result.error_code == -1005
    assert 0.9 <= time.monotonic() - started < 5
    row = db.run_one("get_request", request_id=result.request_id)
    assert row["status"] == "TIMEOUT" and row["attempts"] == 0


def test_rows_past_deadline_are_never_claimed(db):
    from mi_worker.queue import Queue
    rid = enqueue(db, timeout=1)
    time.sleep(1.2)
    assert Queue(db, "w", "H00000000000", 30).claim(10) == []
    assert db.run("expire_pending") and db.run_one("get_request", request_id=rid)[
        "status"] == "TIMEOUT"


@pytest.mark.parametrize("code, data, fragment", [
    ("", INPUT_1101, "interface_code"),
    (None, INPUT_1101, "interface_code"),
    ("ABCD", INPUT_1101, "interface_code"),
    ("11O1", INPUT_1101, "interface_code"),
    ("1101", "not json", "JSON object"),
    ("1101", "[1, 2]", "JSON object"),
    ("1101", "", "empty"),
    ("1101", '{"data": "' + "x" * (10 * 1024 * 1024) + '"}', "1048576"),
])
def test_bad_input_is_1001_and_the_worker_goes_on(db_url, sandbox, code, data, fragment):
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        bad = call(w.db, code, data, timeout=5)
        assert bad.error_code == -1001 and fragment in bad.error_message, bad
        good = call(w.db, "1101", INPUT_1101, timeout=20)
        assert good.error_code == 0


def test_malformed_row_becomes_error_without_calling_the_gateway(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        rid = enqueue(w.db, input_data="{broken")
        wait_until(lambda: w.db.run_one("get_request", request_id=rid)["status"] == "ERROR")
        row = w.db.run_one("get_request", request_id=rid)
        assert row["error_code"] == -1001 and "JSON" in row["error_message"]
        assert sandbox.calls.count("1101") == 0
        assert call(w.db, "1101", INPUT_1101, timeout=20).error_code == 0


def test_unknown_interface_code_gets_a_clean_error(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        result = call(w.db, "8888", INPUT_1101, timeout=20)
        assert result.error_code == -1004, result
        assert call(w.db, "1101", INPUT_1101, timeout=20).error_code == 0


@pytest.mark.slow
def test_four_processes_drain_5000_rows_each_claimed_once(db_url, sandbox, spawn, db):
    settings = make_settings(db_url, sandbox, worker={"threads": 8, "batch_size": 16})
    n = 5000
    ids = [enqueue(db, input_data=json.dumps({"data": {"psn_no": f"P{i:05d}",
                                                       "insuplc_admdvs": "110000"}}),
                   timeout=600) for i in range(n)]
    started = time.monotonic()
    procs = [spawn(settings, f"w{i}") for i in range(4)]
    wait_until(lambda: count_status(db, "COMPLETED") == n, timeout=240,
               message="all rows COMPLETED")
    elapsed = time.monotonic() - started
    for p in procs:
        assert p.stop() == 0, p.output()[-3000:]
    assert count_status(db, "PENDING") == 0 and count_status(db, "PROCESSING") == 0
    msgids = [db.run_one("get_request", request_id=i)["msgid"] for i in ids]
    sent = sandbox.calls.msgids("1101")
    repeated = [m for m, k in collections.Counter(sent).items() if k > 1]
    extra = sorted(set(sent) - set(msgids)) + sorted(repeated)
    why = [line for p in procs for line in p.output().splitlines()
           if any(w in line for w in ("attempt failed", "lease", "recover", "took", "skipped"))]
    # every row sent exactly once
    assert len(sent) == n and sorted(sent) == sorted(msgids), (extra, why[-40:])
    workers = {db.run_one("get_request", request_id=i)["worker_id"] for i in ids[::50]}
    assert len(workers) > 1
    print(f"\n{db.name}: 4 processes x 8 threads drained {n} rows in {elapsed:.1f}s "
          f"({n / elapsed:.0f} rows/s, sandbox gateway on loopback)")


@pytest.mark.parametrize("prefetch", [0, 8])
def test_sigterm_during_inflight_calls_leaves_nothing_processing(db_url, sandbox, spawn, db,
                                                                 prefetch):
    sandbox.latency = 1.0
    settings = make_settings(db_url, sandbox, worker={"threads": 4, "grace_seconds": 30,
                                                      "prefetch": prefetch})
    ids = [enqueue(db, timeout=120) for _ in range(12)]
    p = spawn(settings)
    # signal once calls are really at the centre (not merely claimed)
    wait_until(lambda: sandbox.calls.count("1101") > 0, timeout=20)
    p.signal(signal.SIGTERM)
    assert p.proc.wait(30) == 0, p.output()[-3000:]
    assert count_status(db, "PROCESSING") == 0
    states = {db.run_one("get_request", request_id=i)["status"] for i in ids}
    assert states <= {"COMPLETED", "PENDING"}
    assert "COMPLETED" in states, p.output()[-4000:]
    beats = db.run("heartbeat_rows") if "heartbeat_rows" in db.queries else []
    assert all(b["status"] == "STOPPED" for b in beats)
