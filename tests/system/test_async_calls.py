"""Issue 15, part 1: calls that do not wait, on SQLite's embedded path and the real
PostgreSQL (SQL Server with Docker): sp_medical_insurance_submit_v2 returns the request id at
once, sp_medical_insurance_result_v2 answers now or after a wait with the call procedure's
codes, unknown ids are -1001, an async row keeps its own deadline (no waiter makes it TIMEOUT)
and ends TIMEOUT only when that deadline passes unsent. Real workers, the real sandbox, the
real `mi-worker` command."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import InProcessWorker, make_settings, settings_toml
from mi_worker.his_async import result, submit

ROOT = Path(__file__).resolve().parents[2]


def _input(psn: str) -> str:
    return json.dumps({"data": {"psn_no": psn, "insuplc_admdvs": "110000"}}, ensure_ascii=False)


def _beat(db) -> None:
    """A live heartbeat of a worker that never claims (so -1002 passes, nothing is served)."""
    db.run("heartbeat", service_name="mi-worker", worker_id="idle-1", host="h", pid=1,
           version="t", status="RUNNING", in_flight=0, processed_total=0,
           gateway_kind="nhsa", gateway_tls_verified=1)


def test_submit_returns_at_once_and_nobody_waiting_times_nothing_out(db):
    _beat(db)
    started = time.monotonic()
    sub = submit(db, "1101", _input("A1"), timeout=3600)
    assert time.monotonic() - started < 2.0
    assert sub.error_code == 0 and sub.request_id is not None and sub.result is None, sub
    row = db.run_one("get_request", request_id=sub.request_id)
    assert (row["status"], int(row["timeout_seconds"]), row["psn_no"]) == ("PENDING", 3600, "A1")
    now = result(db, sub.request_id)
    assert (now.status, now.error_code) == ("PENDING", -1005), now
    assert now.error_message.startswith("处理中"), now
    waited = time.monotonic()
    later = result(db, sub.request_id, wait_ms=400)
    assert 0.35 < time.monotonic() - waited < 3.0
    assert (later.status, later.error_code) == ("PENDING", -1005)
    # Neither the ended waits nor the expire sweep end the row: its deadline is an hour away.
    db.run("expire_pending")
    assert db.run_one("get_request", request_id=sub.request_id)["status"] == "PENDING"


def test_submit_default_deadline_is_a_day(db):
    _beat(db)
    sub = submit(db, "1101", _input("A2"))
    assert sub.error_code == 0, sub
    assert int(db.run_one("get_request", request_id=sub.request_id)["timeout_seconds"]) == 86400


def test_submit_then_result_with_and_without_wait_through_a_worker(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        sub = submit(w.db, "1101", _input("B1"), timeout=600)
        assert sub.error_code == 0, sub
        done = result(w.db, sub.request_id, wait_ms=20000)
        assert (done.status, done.error_code) == ("COMPLETED", 0), done
        assert json.loads(done.result)["output"]["baseinfo"]["psn_no"] == "B1"
        again = result(w.db, sub.request_id)  # no wait: the final state at once
        assert (again.status, again.error_code, again.result) == ("COMPLETED", 0, done.result)
        # The same key again: 0 with the first request's id and result, nothing queued.
        k1 = submit(w.db, "1101", _input("B2"), timeout=600, idempotency_key="K-B2")
        k1_done = result(w.db, k1.request_id, wait_ms=20000)
        k2 = submit(w.db, "1101", _input("B2"), timeout=600, idempotency_key="K-B2")
        assert (k2.error_code, k2.request_id, k2.result) == (0, k1.request_id, k1_done.result)


def test_a_gateway_error_maps_as_in_the_call_procedure(db_url, sandbox):
    sandbox.add_fault("infcode", infno="1101", message="人员信息不存在")
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        bad = submit(w.db, "1101", _input("B3"), timeout=600, retry_count=0)
        assert bad.error_code == 0, bad
        answer = result(w.db, bad.request_id, wait_ms=20000)
    assert answer.status == "ERROR" and answer.error_code == -1004, answer
    assert answer.result is None and "人员信息不存在" in answer.error_message


def test_unknown_id_and_a_counter_calls_id_are_minus_1001(db):
    _beat(db)
    assert result(db, 987654321).error_code == -1001
    assert "no submitted request 987654321" in result(db, 987654321).error_message
    sync_row = db.run_one("enqueue_request", interface_code="1101", input_data=_input("C1"),
                          priority=5, timeout_seconds=60, max_retry_count=3, psn_no="C1",
                          insuplc_admdvs=None, idempotency_key=None, his_fee_id=None,
                          parent_request_id=None)
    sync_answer = result(db, int(sync_row["request_id"]))
    assert (sync_answer.error_code, sync_answer.status) == (-1001, None)
    assert result(db, 1, wait_ms=-5).error_code == -1001
    assert result(db, 1, wait_ms=3_600_001).error_code == -1001


def test_submit_validates_like_the_call_procedure(db):
    assert submit(db, "1101", _input("D0")).error_code == -1002  # no heartbeat yet
    _beat(db)
    assert submit(db, "11x1", _input("D1")).error_code == -1001
    assert submit(db, "1101", "[1]").error_code == -1001
    assert submit(db, "9001", _input("D1")).error_code == -1001  # managed by mi-worker
    too_long = submit(db, "1101", _input("D1"), timeout=604801)
    assert (too_long.error_code, too_long.error_message) == (
        -1001, "参数错误: timeout must be 1..604800 seconds and retry_count 0..20")
    first = submit(db, "1101", _input("D2"), idempotency_key="K-D")
    dup = submit(db, "1101", _input("D2"), idempotency_key="K-D")
    assert first.error_code == 0 and dup.error_code == -1008, dup
    assert dup.request_id == first.request_id


def test_an_async_row_times_out_only_at_its_own_deadline(db):
    _beat(db)
    sub = submit(db, "1101", _input("E1"), timeout=1)
    assert result(db, sub.request_id).status == "PENDING"
    time.sleep(1.2)
    expired = result(db, sub.request_id)
    assert (expired.status, expired.error_code) == ("TIMEOUT", -1005), expired
    assert "within its deadline" in expired.error_message
    # The sweep does the same for a row nobody asks about.
    other = submit(db, "1101", _input("E2"), timeout=1)
    time.sleep(1.2)
    assert other.request_id in {int(r["request_id"]) for r in db.run("expire_pending")}
    assert result(db, other.request_id).status == "TIMEOUT"


def test_waiting_ends_at_the_deadline_not_at_wait_ms(db):
    _beat(db)
    sub = submit(db, "1101", _input("E3"), timeout=1)
    started = time.monotonic()
    answer = result(db, sub.request_id, wait_ms=10000)
    assert answer.status == "TIMEOUT" and time.monotonic() - started < 3.0, answer


def _cli(tmp_path, settings, *args):
    cfg = tmp_path / "async.toml"
    cfg.write_text(settings_toml(settings), encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "mi_worker", "--config", str(cfg), *args],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)


def test_cli_submit_and_result(db_url, sandbox, tmp_path):
    settings = make_settings(db_url, sandbox)
    with InProcessWorker(settings):
        sub = _cli(tmp_path, settings, "submit", "1101", "--input", _input("F1"), "--json")
        assert sub.returncode == 0, sub.stderr
        rid = json.loads(sub.stdout)["request_id"]
        done = _cli(tmp_path, settings, "result", str(rid), "--wait", "20", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["request_id"], shown["status"], shown["error_code"]) == (rid, "COMPLETED", 0)
    unknown = _cli(tmp_path, settings, "result", "99999999")
    assert unknown.returncode == 1 and "error_code: -1001" in unknown.stdout
