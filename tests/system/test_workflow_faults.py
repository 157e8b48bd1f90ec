"""A fault at every step of the outpatient settlement (issue 14): business error, 503 before
and after the centre commits, an answer after the read timeout. The ledger must end
consistent, each undo code sent exactly once, 2601 only for the uncertain reversible step
(2207), and no state-changing step sent twice."""
from __future__ import annotations

from collections import Counter

import pytest
from workflow_helpers import codes_sent, consistent, outpatient_input, tree

from conftest import InProcessWorker, make_settings
from mi_worker.workflows.contract import call_workflow
from mi_worker.workflows.definitions import load

JOBS = {"heartbeat_seconds": 1, "heartbeat_stale_seconds": 3, "lease_recovery_seconds": 1,
        "reversal_seconds": 0.3, "expire_seconds": 0.5, "reversal_delay_seconds": 0.3,
        "reversal_max_attempts": 2}
BUSINESS = ("infcode", {"message": "模拟业务错误 simulated refusal"})
BEFORE = ("http_error", {"status": 503, "commit": False})
AFTER = ("http_error", {"status": 503, "commit": True})
LATE = ("timeout", {"seconds": 2.5})  # committed, answered after the 2 s read timeout
PRE = ["2203", "2204", "2206"]

CASES = [
    # code, fault, what the centre must have received (in order), final, HIS code
    ("2203", BUSINESS, ["2203"], "clean", -1009),
    ("2204", BUSINESS, ["2203", "2204"], "clean", -1009),
    ("2206", BUSINESS, PRE + ["2205"], "clean", -1009),
    ("2207", BUSINESS, PRE + ["2207", "2205"], "clean", -1009),
    ("2204", BEFORE, ["2203", "2204", "2205"], "clean", -1009),
    ("2204", AFTER, ["2203", "2204", "2205"], "clean", -1009),
    ("2204", LATE, ["2203", "2204", "2205"], "clean", -1009),
    ("2206", BEFORE, PRE + ["2206", "2207"], "settled", 0),   # a trial is sent again
    ("2206", LATE, PRE + ["2206", "2207"], "settled", 0),
    ("2207", BEFORE, PRE + ["2207", "2601", "2601", "2205"], "clean", -1009),  # 无原交易 x2
    ("2207", AFTER, PRE + ["2207", "2601", "2205"], "clean", -1009),
    ("2207", LATE, PRE + ["2207", "2601", "2205"], "clean", -1009),
]


@pytest.mark.parametrize("code,fault,sent,end,his", CASES,
                         ids=[f"{c[0]}-{c[1][0]}-{c[1][1].get('commit', '')}" for c in CASES])
def test_fault_at_each_step_ends_consistent(db_url, sandbox, code, fault, sent, end, his):
    psn = f"F{code}{fault[0][:2]}{str(fault[1].get('commit', ''))[:1]}"
    sandbox.add_fault(fault[0], infno=code, count=1, **fault[1])
    with InProcessWorker(make_settings(db_url, sandbox, jobs=JOBS)) as w:
        r = call_workflow(w.db, load(), "outpatient_settlement", outpatient_input(psn), 60)
        assert r.error_code == his, r
        steps = tree(w.db, r.request_id)
    got = codes_sent(sandbox, psn)
    assert got == sent, got
    assert consistent(sandbox, f"MD{psn}") == end
    counts = Counter(got)
    assert counts["2208"] == 0 and counts["2207"] <= 1 and counts["2204"] <= 1
    assert counts["2205"] == (1 if "2205" in sent else 0)
    if "2205" in sent:
        assert steps[-2]["status"] == "COMPLETED"  # the fee details were removed by 2205


def test_an_undo_that_fails_leaves_the_workflow_needing_a_person(db_url, sandbox):
    sandbox.add_fault("infcode", infno="2205", count=1, message="撤销失败 simulated")
    with InProcessWorker(make_settings(db_url, sandbox, jobs=JOBS)) as w:
        r = call_workflow(w.db, load(), "outpatient_settlement",
                          outpatient_input("UF1", expected="1.00"), 60)
        assert r.error_code == -1007, r
        wf = w.db.run_one("wf_get", workflow_id=r.request_id)
        assert wf["status"] == "FAILED_NEEDS_MANUAL"
        alerts = [a for a in w.db.run("list_open_alerts", include_resolved=1)
                  if a["alert_type"] == f"WORKFLOW_MANUAL_{r.request_id}"]
    assert alerts, "no WORKFLOW_NEEDS_MANUAL alert"
    text = alerts[0]["alert_message"]
    for part in ("visit 2203", "fee_upload 2204", "trial 2206", "settle 2207", "undo 2205"):
        assert part in text, text
    assert codes_sent(sandbox, "UF1") == PRE + ["2205"]


INPATIENT = [
    ("2402", BUSINESS, ["2301", "2402", "2302"]),
    ("2303", BUSINESS, ["2301", "2402", "2303", "2405", "2302"]),
    ("2304", AFTER, ["2301", "2402", "2303", "2304", "2601", "2405", "2302"]),
    ("2304", BUSINESS, ["2301", "2402", "2303", "2304", "2405", "2302"]),
]


@pytest.mark.parametrize("code,fault,sent", INPATIENT,
                         ids=[f"{c[0]}-{c[1][0]}" for c in INPATIENT])
def test_inpatient_fault_undoes_discharge_and_fees_in_reverse(db_url, sandbox, code, fault,
                                                              sent):
    from workflow_helpers import inpatient_input
    psn = f"I{code}{fault[0][:2]}"
    sandbox.add_fault(fault[0], infno=code, count=1, **fault[1])
    with InProcessWorker(make_settings(db_url, sandbox, jobs=JOBS)) as w:
        r = call_workflow(w.db, load(), "inpatient_settlement", inpatient_input(psn), 60)
        assert r.error_code == -1009, r
    assert codes_sent(sandbox, psn) == sent
    assert consistent(sandbox, f"ZY{psn}") == "clean"
    assert [e.status for e in sandbox.ledger.find(kind="discharge", mdtrt_id=f"ZY{psn}")] \
        in ([], ["cancelled"])
