"""Inputs and ledger checks shared by the workflow tests (issue 14)."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

ADMDVS = "110000"


def outpatient_input(psn: str, expected: Optional[str] = None, **extra: Any) -> str:
    mdtrt = f"MD{psn}"
    doc: Dict[str, Any] = {
        "psn_no": psn, "mdtrt_id": mdtrt, "insuplc_admdvs": ADMDVS,
        "mdtrtinfo": {"mdtrt_id": mdtrt, "psn_no": psn, "med_type": "11",
                      "begntime": "2026-12-01 09:00:00", "main_cond_dscr": "感冒"},
        "diseinfo": [{"diag_type": "1", "diag_srt_no": "1", "diag_code": "J00"}],
        "feedetail": [{"feedetl_sn": f"{psn}-1", "mdtrt_id": mdtrt, "psn_no": psn,
                       "chrg_bchno": "B1", "med_list_codg": "X1", "det_item_fee_sumamt": "80.00",
                       "cnt": "1", "pric": "80.00"},
                      {"feedetl_sn": f"{psn}-2", "mdtrt_id": mdtrt, "psn_no": psn,
                       "chrg_bchno": "B1", "med_list_codg": "X2", "det_item_fee_sumamt": "20.00",
                       "cnt": "1", "pric": "20.00"}],
        "settle": {"psn_no": psn, "mdtrt_id": mdtrt, "chrg_bchno": "B1", "insutype": "310",
                   "mdtrt_cert_type": "02", "setl_key": f"bill-{psn}"},
    }
    if expected is not None:
        doc["expected_amount"] = expected
    doc.update(extra)
    return json.dumps(doc, ensure_ascii=False)


def inpatient_input(psn: str, expected: Optional[str] = None, **extra: Any) -> str:
    mdtrt = f"ZY{psn}"
    doc: Dict[str, Any] = {
        "psn_no": psn, "mdtrt_id": mdtrt, "insuplc_admdvs": ADMDVS,
        "feedetail": [{"feedetl_sn": f"{psn}-1", "mdtrt_id": mdtrt, "psn_no": psn,
                       "det_item_fee_sumamt": "300.00", "cnt": "1", "pric": "300.00"}],
        "discharge": {"mdtrt_id": mdtrt, "psn_no": psn, "endtime": "2026-12-01 10:00:00",
                      "dscg_way": "1"},
        "settle": {"psn_no": psn, "mdtrt_id": mdtrt, "insutype": "310",
                   "setl_key": f"ipt-{psn}"},
    }
    if expected is not None:
        doc["expected_amount"] = expected
    doc.update(extra)
    return json.dumps(doc, ensure_ascii=False)


def registration_input(psn: str) -> str:
    return json.dumps({"data": {"psn_no": psn, "insutype": "310", "insuplc_admdvs": ADMDVS,
                                "mdtrt_cert_type": "02", "ipt_otp_no": f"OP{psn}",
                                "begntime": "2026-12-01 09:00:00"}}, ensure_ascii=False)


def fees(box, mdtrt_id: str) -> List[str]:
    return sorted(e.status for e in box.ledger.find(kind="fee", mdtrt_id=mdtrt_id))


def settlements(box, mdtrt_id: str) -> List[str]:
    return sorted(e.status for e in box.ledger.settlements() if e.mdtrt_id == mdtrt_id)


def consistent(box, mdtrt_id: str) -> str:
    """'settled' (one open settlement, its fees settled), 'clean' (no open settlement and no
    fee detail left) or a description of the inconsistency."""
    s, f = settlements(box, mdtrt_id), fees(box, mdtrt_id)
    if s.count("open") == 1 and f and set(f) == {"settled"}:
        return "settled"
    if "open" not in s and "open" not in f and "settled" not in f:
        return "clean"
    return f"INCONSISTENT settlements={s} fees={f}"


def codes_sent(box, psn: str) -> List[str]:
    return [c.infno for c in sorted(box.calls.calls(psn_no=psn), key=lambda c: c.t_start)]


def tree(db, workflow_id: int) -> Dict[int, Dict[str, Any]]:
    return {int(r["workflow_step"]): r for r in db.run("wf_steps", workflow_id=workflow_id)}
