"""A worker frozen past its lease, then woken: "the row is no longer ours" is an outcome.

A real `mi-worker run` process is stopped with SIGSTOP while the centre holds its 1101
(the sandbox answers after a delay with a reset, as a dropped line would). Another worker
recovers the row once the lease has run out and answers it. When the frozen worker is
woken with SIGCONT, its retry needs a fresh msgid; the database says the row is not its
own any more, and the worker logs one warning line: no stack trace, nothing sent, nothing
written. SQLite and the real PostgreSQL.
"""
from __future__ import annotations

import json
import re
import signal
import time

import pytest

from conftest import count_status, make_settings, wait_until

FAST = {"heartbeat_seconds": 1, "heartbeat_stale_seconds": 3, "lease_recovery_seconds": 1}


@pytest.mark.slow
def test_frozen_worker_past_its_lease_stops_quietly(db_url, db, sandbox, spawn):
    sandbox.add_fault("latency", "1101", count=1, seconds=4)
    sandbox.add_fault("reset_after", "1101", count=1)
    settings = make_settings(db_url, sandbox, worker={"threads": 2, "lease_seconds": 10},
                             jobs=FAST)
    settings.gateway.read_timeout = 30.0
    frozen = spawn(settings, "frozen")
    wait_until(lambda: db.run("heartbeat_rows"), timeout=30, message="first worker beats")
    rid = int(db.run_one(
        "enqueue_request", interface_code="1101",
        input_data=json.dumps({"data": {"psn_no": "LEASE1", "insuplc_admdvs": "110000"}}),
        priority=5, timeout_seconds=120, max_retry_count=3, psn_no="LEASE1",
        insuplc_admdvs="110000", idempotency_key=None, his_fee_id=None,
        parent_request_id=None)["request_id"])
    wait_until(lambda: sandbox.calls.count("1101") == 1, timeout=30, message="1101 sent")
    first = db.run_one("get_request", request_id=rid)
    frozen.signal(signal.SIGSTOP)
    try:
        other = spawn(settings, "other")  # recovers the row once the lease runs out
        wait_until(lambda: db.run_one("get_request", request_id=rid)["status"] == "COMPLETED",
                   timeout=60, message="the other worker answered the recovered row")
        done = db.run_one("get_request", request_id=rid)
        assert done["worker_id"] != first["worker_id"]
        assert sandbox.calls.count("1101") == 2
    finally:
        frozen.signal(signal.SIGCONT)
    wait_until(lambda: "lease lost" in frozen.output(), timeout=30,
               message="the woken worker notices")
    time.sleep(1.0)  # anything it would wrongly send or write happens now
    assert sandbox.calls.count("1101") == 2, "the woken worker sent the row again"
    after = db.run_one("get_request", request_id=rid)
    assert (after["status"], after["claim_token"], after["response_data"]) == \
        (done["status"], done["claim_token"], done["response_data"])
    assert frozen.stop() == 0 and other.stop() == 0
    log = frozen.output()
    lines = [ln for ln in log.splitlines() if re.search(r"lease lost", ln)]
    assert len(lines) == 1 and "WARNING" in lines[0], lines
    assert f"request {rid}" in lines[0]
    assert "Traceback" not in log and "-1999" not in log and "unexpected" not in log
    assert count_status(db, "PROCESSING") == 0
