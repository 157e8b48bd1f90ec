"""kill -9 of a worker at the step boundaries of a workflow, and the HIS deadline passing
mid-workflow (issue 14). Real worker processes; the workflow lives only in the database, so
a second worker finishes or compensates it, and no state-changing call is sent twice."""
from __future__ import annotations

import signal
from collections import Counter

import pytest
from workflow_helpers import codes_sent, consistent, outpatient_input

from conftest import InProcessWorker, make_settings, wait_until
from mi_worker.workflows.contract import call_workflow
from mi_worker.workflows.definitions import load

JOBS = {"heartbeat_seconds": 1, "heartbeat_stale_seconds": 3, "lease_recovery_seconds": 1,
        "reversal_seconds": 0.3, "expire_seconds": 0.5, "reversal_delay_seconds": 0.3,
        "reversal_max_attempts": 2}
PRE = ["2203", "2204", "2206"]

CRASHES = [
    # the call in flight when the worker dies, other faults, what the centre received, end
    ("2204", [], ["2203", "2204", "2205"], "clean", "COMPENSATED"),
    ("2206", [], PRE + ["2206", "2207"], "settled", "COMPLETED"),  # a trial is sent again
    ("2207", [], PRE + ["2207", "2601", "2205"], "clean", "COMPENSATED"),
    # during compensation: the 2205 may or may not have landed, so a person must look
    ("2205", [("infcode", "2207")], PRE + ["2207", "2205"], "?", "FAILED_NEEDS_MANUAL"),
]


def _start(db, psn, timeout=120):
    return int(db.run_one("wf_start", workflow="outpatient_settlement",
                          input_data=outpatient_input(psn), idempotency_key=None,
                          his_fee_id=None, psn_no=psn, timeout_seconds=timeout)["workflow_id"])


@pytest.mark.slow
@pytest.mark.parametrize("code,faults,sent,ledger,end", CRASHES, ids=[c[0] for c in CRASHES])
def test_kill_9_mid_workflow_another_worker_finishes_it(db_url, sandbox, spawn, db, code,
                                                        faults, sent, ledger, end):
    psn = f"K{code}"
    sandbox.add_fault("latency", infno=code, seconds=1.5, count=1)
    for kind, infno in faults:
        sandbox.add_fault(kind, infno=infno, count=1)
    # the shortest lease the config allows: the dead worker's row is recovered sooner
    settings = make_settings(db_url, sandbox, jobs=JOBS, worker={"lease_seconds": 10})
    first = spawn(settings, "a")
    wid = _start(db, psn)
    wait_until(lambda: sandbox.calls.count(code) >= 1, timeout=60,
               message=f"{code} never reached the centre")
    first.signal(signal.SIGKILL)
    first.proc.wait(10)
    second = spawn(settings, "b")
    wait_until(lambda: db.run_one("wf_get", workflow_id=wid)["status"] in (
        "COMPLETED", "COMPENSATED", "FAILED_NEEDS_MANUAL"), timeout=90,
        message="the second worker did not end the workflow")
    second.stop()
    row = db.run_one("wf_get", workflow_id=wid)
    assert row["status"] == end, row
    got = codes_sent(sandbox, psn)
    assert got == sent, got
    counts = Counter(got)
    assert all(counts[c] <= 1 for c in ("2203", "2204", "2205", "2207", "2208"))
    if ledger != "?":
        assert consistent(sandbox, f"MD{psn}") == ledger
    if end == "FAILED_NEEDS_MANUAL":
        alerts = [a for a in db.run("list_open_alerts", include_resolved=1)
                  if a["alert_type"] == f"WORKFLOW_MANUAL_{wid}"]
        assert alerts and "undo 2205" in alerts[0]["alert_message"]


def test_his_deadline_mid_workflow_still_ends_consistent(db_url, sandbox):
    sandbox.add_fault("latency", infno="2204", seconds=1.2, count=1)
    sandbox.add_fault("latency", infno="2206", seconds=1.2, count=1)
    with InProcessWorker(make_settings(db_url, sandbox, jobs=JOBS)) as w:
        r = call_workflow(w.db, load(), "outpatient_settlement", outpatient_input("DL1"), 2)
        assert r.error_code in (-1005, -1007), r
        wait_until(lambda: w.db.run_one("wf_get", workflow_id=r.request_id)["status"]
                   in ("COMPLETED", "COMPENSATED"), timeout=30)
        assert w.db.run_one("wf_get", workflow_id=r.request_id)["status"] == "COMPENSATED"
    assert codes_sent(sandbox, "DL1") == PRE + ["2205"]  # 2207 never sent after the deadline
    assert consistent(sandbox, "MDDL1") == "clean"
