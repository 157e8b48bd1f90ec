"""Settlement workflows end to end (issue 14): the sandbox, a worker with its jobs, and the
contract the HIS calls (the procedure on PostgreSQL, the same steps in Python on SQLite).

Every test ends with the ledger consistent — one settlement with its fee details settled,
or nothing settled and no fee detail left — and counts what the centre received: each undo
code exactly once, 2601 only for an uncertain reversible step, nothing sent twice.
"""
from __future__ import annotations

import json

import pytest
from workflow_helpers import (
    codes_sent,
    consistent,
    inpatient_input,
    outpatient_input,
    registration_input,
    settlements,
    tree,
)

from conftest import InProcessWorker, make_settings, wait_until
from mi_worker.workflows.contract import call_workflow
from mi_worker.workflows.definitions import load

FAST = {"heartbeat_seconds": 1, "heartbeat_stale_seconds": 3, "lease_recovery_seconds": 1,
        "reversal_seconds": 0.5, "expire_seconds": 0.5, "reversal_delay_seconds": 0.5}
REG = load()


def run(w, name, data, timeout=30, **kw):
    return call_workflow(w.db, REG, name, data, timeout, **kw)


def final(db, wid, timeout=40):
    wait_until(lambda: db.run_one("wf_get", workflow_id=wid)["status"] in (
        "COMPLETED", "COMPENSATED", "FAILED_NEEDS_MANUAL"), timeout=timeout,
        message=f"workflow {wid} did not end")
    return db.run_one("wf_get", workflow_id=wid)


def test_outpatient_settlement_happy_path(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox, jobs=FAST)) as w:
        r = run(w, "outpatient_settlement", outpatient_input("OK1", expected="100.00"))
        assert r.error_code == 0, r
        out = json.loads(r.result)
        assert set(out) == {"visit", "fee_upload", "trial", "settle"}
        assert out["settle"]["setlinfo"]["medfee_sumamt"] == 100.0
        steps = tree(w.db, r.request_id)
        assert sorted(steps) == [1, 2, 3, 4]
        assert [steps[n]["interface_code"] for n in (1, 2, 3, 4)] == ["2203", "2204", "2206",
                                                                       "2207"]
    assert consistent(sandbox, "MDOK1") == "settled"
    assert settlements(sandbox, "MDOK1") == ["open"]
    assert codes_sent(sandbox, "OK1") == ["2203", "2204", "2206", "2207"]


def test_inpatient_settlement_and_optional_discharge(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox, jobs=FAST)) as w:
        r = run(w, "inpatient_settlement", inpatient_input("IP1"))
        assert r.error_code == 0, r
        r2 = run(w, "inpatient_settlement", inpatient_input("IP2", skip_steps=["discharge"]))
        assert r2.error_code == 0, r2
        assert "discharge" not in json.loads(r2.result)
    assert codes_sent(sandbox, "IP1") == ["2301", "2402", "2303", "2304"]
    assert codes_sent(sandbox, "IP2") == ["2301", "2303", "2304"]
    assert consistent(sandbox, "ZYIP1") == "settled"
    assert [e.status for e in sandbox.ledger.find(kind="discharge", mdtrt_id="ZYIP1")] == ["open"]


def test_outpatient_registration(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox, jobs=FAST)) as w:
        r = run(w, "outpatient_registration", registration_input("RG1"))
        assert r.error_code == 0, r
        assert json.loads(r.result)["register"]["data"]["mdtrt_id"].startswith("MD")
    assert codes_sent(sandbox, "RG1") == ["2201"]


def test_trial_amount_mismatch_stops_before_money_moves(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox, jobs=FAST)) as w:
        r = run(w, "outpatient_settlement", outpatient_input("MM1", expected="99.00"))
        assert r.error_code == -1009, r
        assert "预结算金额不符" in r.error_message
    assert codes_sent(sandbox, "MM1") == ["2203", "2204", "2206", "2205"]
    assert consistent(sandbox, "MDMM1") == "clean"
    assert settlements(sandbox, "MDMM1") == []


def test_idempotency_key_returns_the_first_result(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox, jobs=FAST)) as w:
        first = run(w, "outpatient_settlement", outpatient_input("ID1"), idempotency_key="K-1")
        again = run(w, "outpatient_settlement", outpatient_input("ID1"), idempotency_key="K-1")
        assert first.error_code == 0 and again.error_code == 0
        assert (again.request_id, again.result) == (first.request_id, first.result)
    assert codes_sent(sandbox, "ID1").count("2207") == 1


@pytest.mark.parametrize("name,data,words", [
    ("no_such_flow", "{}", "unknown workflow"),
    ("outpatient_settlement", '{"psn_no": "BAD1"}', "needs input.mdtrtinfo"),
    ("outpatient_settlement", "[1, 2]", "not a JSON object"),
    ("Bad Name", "{}", "workflow must be a workflow name"),
    ("inpatient_settlement", None, "skip_steps"),
])
def test_bad_input_is_1001_and_nothing_is_sent(db_url, sandbox, name, data, words):
    if data is None:
        data = inpatient_input("BAD2", skip_steps=["settle"])
    with InProcessWorker(make_settings(db_url, sandbox, jobs=FAST)) as w:
        r = run(w, name, data, timeout=10)
    assert r.error_code == -1001, r
    assert words in r.error_message, r
    # infno None: a body that is no envelope at all, which the worker never sends; seen once
    # from another xdist process's probe of a port this sandbox had just been given
    assert [c for c in sandbox.calls.calls()
            if c.infno is not None and c.infno not in ("9001", "9002")] == []
