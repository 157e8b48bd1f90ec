"""Conformance: the workflow statements (issue 14) on every dialect.

wf_start (a RUNNING row answering -1005 until a worker advances it), wf_find_key (the latest
workflow of a key that still stands; COMPENSATED frees the key, enforced by a unique index),
wf_get / wf_open (with past_deadline from the database clock; only open workflows, oldest
first), wf_enqueue_step / wf_steps (one request row per (workflow, step): a second enqueue
fails), wf_update (only from the state the engine saw, never out of a final state, every
arrow in states.WF_TRANSITIONS), call_workflow_procedure (the procedure's early answers).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import set_cols, set_time  # noqa: E402

from mi_worker.db import UniqueViolation  # noqa: E402
from mi_worker.states import WF_FINAL, WF_TRANSITIONS, WorkflowStatus  # noqa: E402

COVERS = {"wf_start", "wf_find_key", "wf_get", "wf_open", "wf_steps", "wf_enqueue_step",
          "wf_update", "call_workflow_procedure"}
WF = "medical_insurance_workflows"


def start(db, key=None, timeout=60, name="outpatient_settlement"):
    return int(db.run_one("wf_start", workflow=name, input_data='{"psn_no":"P1"}',
                          idempotency_key=key, his_fee_id="F1", psn_no="P1",
                          timeout_seconds=timeout)["workflow_id"])


def step(db, wid, n, code="2203"):
    return int(db.run_one("wf_enqueue_step", interface_code=code, input_data='{"data":{}}',
                          priority=4, timeout_seconds=30, max_retry_count=2, psn_no="P1",
                          insuplc_admdvs="110000", his_fee_id="F1", workflow_id=wid,
                          workflow_step=n)["request_id"])


def update(db, wid, expected, to, **kw):
    params = dict(workflow_id=wid, expected_status=expected, status=to, current_step=1,
                  wf_definition=None, wf_result=None, error_code=-1005, error_message="m",
                  reason_code=None, reason=None)
    params.update(kw)
    return db.run("wf_update", **params)


def test_start_and_get(db):
    wid = start(db, timeout=60)
    row = db.run_one("wf_get", workflow_id=wid)
    assert (row["name"], row["status"], row["current_step"], row["error_code"], row["psn_no"],
            row["his_fee_id"], int(row["past_deadline"])) == (
        "outpatient_settlement", "RUNNING", 0, -1005, "P1", "F1", 0)
    set_time(db, wid, table=WF, deadline_at=-1)
    assert int(db.run_one("wf_get", workflow_id=wid)["past_deadline"]) == 1
    assert db.run_one("wf_get", workflow_id=wid + 999) is None


def test_find_key_and_the_unique_key_while_the_workflow_stands(db):
    assert db.run_one("wf_find_key", idempotency_key="K") is None
    first = start(db, key="K")
    assert int(db.run_one("wf_find_key", idempotency_key="K")["workflow_id"]) == first
    with pytest.raises(UniqueViolation):
        start(db, key="K")
    set_cols(db, first, table=WF, status="COMPENSATED")
    assert db.run_one("wf_find_key", idempotency_key="K") is None
    second = start(db, key="K")  # nothing stood: the key is free again
    assert int(db.run_one("wf_find_key", idempotency_key="K")["workflow_id"]) == second


def test_open_lists_running_and_compensating_oldest_first(db):
    ids = [start(db) for _ in range(4)]
    set_cols(db, ids[1], table=WF, status="COMPLETED")
    set_cols(db, ids[2], table=WF, status="COMPENSATING")
    got = [int(r["workflow_id"]) for r in db.run("wf_open", limit=10)]
    assert got == [ids[0], ids[2], ids[3]]
    assert [int(r["workflow_id"]) for r in db.run("wf_open", limit=1)] == [ids[0]]


def test_enqueue_step_once_per_number_and_steps_in_order(db):
    wid = start(db)
    a, b = step(db, wid, 1), step(db, wid, 2, "2204")
    undo = step(db, wid, -2, "2205")
    with pytest.raises(UniqueViolation):
        step(db, wid, 2, "2204")
    rows = db.run("wf_steps", workflow_id=wid)
    assert [(int(r["workflow_step"]), int(r["request_id"]), r["interface_code"].strip(),
             r["status"]) for r in rows] == [
        (-2, undo, "2205", "PENDING"), (1, a, "2203", "PENDING"), (2, b, "2204", "PENDING")]
    other = start(db)
    step(db, other, 1)  # numbers are per workflow
    assert len(db.run("wf_steps", workflow_id=other)) == 1


@pytest.mark.parametrize("frm", list(WorkflowStatus))
def test_update_moves_only_from_the_state_seen_and_never_out_of_a_final_state(db, frm):
    for to in WorkflowStatus:
        wid = start(db)
        set_cols(db, wid, table=WF, status=frm.value)
        wrong = [s for s in WorkflowStatus if s is not frm][0]
        assert update(db, wid, wrong.value, to.value) == []
        moved = bool(update(db, wid, frm.value, to.value, wf_definition="{}", wf_result="r"))
        assert moved == ((frm, to) in WF_TRANSITIONS), (frm, to)
        row = db.run_one("wf_get", workflow_id=wid)
        assert row["status"] == (to if moved else frm).value
        if moved:
            assert (row["wf_definition"], row["wf_result"], row["error_code"]) == ("{}", "r",
                                                                                   -1005)
            assert (row["finished_at"] is not None) == (to in WF_FINAL)
            update(db, wid, to.value, to.value) if to not in WF_FINAL else None
            assert db.run_one("wf_get", workflow_id=wid)["wf_definition"] == "{}"  # kept


def test_call_workflow_procedure_early_answers(db):
    if not db.supports("procedures"):
        pytest.skip("SQLite runs the contract in Python (tests/test_workflows.py)")
    args = dict(input_data='{"psn_no":"P1"}', timeout=1, idempotency_key=None,
                his_fee_id=None, psn_no=None, poll_ms=50)
    bad = db.run_one("call_workflow_procedure", workflow="Bad Name", **args)
    assert int(bad["error_code"]) == -1001 and bad["request_id"] is None
    assert int(db.run_one("call_workflow_procedure", workflow="outpatient_settlement",
                          **dict(args, input_data="[1]"))["error_code"]) == -1001
    assert int(db.run_one("call_workflow_procedure", workflow="outpatient_settlement",
                          **args)["error_code"]) == -1002
    db.run("heartbeat", service_name="medical_insurance_sdk", worker_id="w1", host="h", pid=1,
           version="t", status="RUNNING", in_flight=0, processed_total=0,
           gateway_kind="sandbox", gateway_tls_verified=None)
    r = db.run_one("call_workflow_procedure", workflow="outpatient_settlement", **args)
    assert int(r["error_code"]) == -1005  # nobody advanced it within the 1 s
    assert db.run_one("wf_get", workflow_id=int(r["request_id"]))["status"] == "RUNNING"


def test_a_step_is_an_ordinary_pending_row(db):
    """wf_enqueue_step is one of the row's writes (states.WRITES): it makes PENDING, as every
    ENQUEUE does, so the claim, retry, lease and reversal rules apply to steps unchanged."""
    from mi_worker import states
    rid = step(db, start(db), 1)
    row = db.run_one("get_request", request_id=rid)
    assert row["status"] == states.Status.PENDING.value
    assert states.WRITES["wf_enqueue_step"] is states.By.ENQUEUE
    assert states.allowed(None, states.Status.PENDING, states.WRITES["wf_enqueue_step"])
