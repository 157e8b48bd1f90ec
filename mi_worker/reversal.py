"""冲正: settle every request whose outcome is in doubt, so nothing is settled twice.

A state-changing call that may have reached the centre (UNCERTAIN), or that COMPLETED after
its HIS caller gave up, is reversed with 2601 when the catalogue says 2601 can undo it: a
2601 request row (psn_no, omsgid = the original msgid, oinfno = the original code) is queued
at top priority, linked by parent_request_id, and processed by the ordinary worker pool, so
it is visible and auditable like any call. When it succeeds the original becomes REVERSED;
after ``reversal_max_attempts`` failures, NEEDS_MANUAL with an alert. Other state-changing
codes go straight to NEEDS_MANUAL with advice naming the cancel code or the query to run.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Dict

from mi_worker.alerts import raise_alert
from mi_worker.db import Database
from mi_worker.gateway import catalog
from mi_worker.gateway.base import E_UNCERTAIN

log = logging.getLogger("mi_worker.reversal")

REVERSAL_CODE = "2601"
REVERSAL_PRIORITY = 0


def run_reversals(db: Database, max_attempts: int, done_pattern: str,
                  timeout_seconds: int = 300) -> Dict[str, int]:
    """One pass of the reversal job; returns counts of what it did."""
    counts = {"queued": 0, "reversed": 0, "manual": 0, "waiting": 0}
    done_re = re.compile(done_pattern) if done_pattern else None
    for row in db.run("find_doubtful"):
        rid, code, status = int(row["request_id"]), str(row["interface_code"]).strip(), \
            row["status"]
        if not catalog.reversible(code):
            if status == "UNCERTAIN":
                _manual(db, row, f"结果不确定, 需人工核实: {code} {catalog.name(code)} may or may "
                                 f"not have reached the centre. {catalog.doubt_advice(code)}")
                counts["manual"] += 1
            else:  # a late completion of a code 2601 cannot undo: tell a human
                _manual(db, row, f"{code} {catalog.name(code)} completed after the HIS caller "
                                 f"gave up (the HIS was told -1005). "
                                 f"{catalog.doubt_advice(code)}")
                counts["manual"] += 1
            continue
        rev_id = row["rev_id"]
        rev = db.run_one("get_request", request_id=int(rev_id)) if rev_id is not None else None
        if rev is not None and rev["status"] in ("PENDING", "PROCESSING"):
            counts["waiting"] += 1
            continue
        if rev is not None and rev["status"] == "COMPLETED":
            why = "UNCERTAIN" if status == "UNCERTAIN" else "completed after the caller's deadline"
            _settle(db, row, "REVERSED", f"已冲正: {why}; reversed by 2601 request {rev_id}")
            counts["reversed"] += 1
            continue
        if rev is not None and done_re and rev["error_message"] and \
                done_re.search(rev["error_message"]):
            _settle(db, row, "REVERSED", f"已冲正/无原交易: the centre answered 2601 request "
                                         f"{rev_id} with '{rev['error_message']}' - nothing "
                                         "stands settled for this msgid")
            counts["reversed"] += 1
            continue
        if rev is not None and rev["status"] == "UNCERTAIN":
            # No answer to the 2601 itself: retire it so it does not hold the patient's queue.
            db.run("settle_row", request_id=int(rev_id), status="ERROR",
                   error_code=E_UNCERTAIN, expected_status="UNCERTAIN",
                   error_message="2601 got no definite answer; another 2601 follows")
        if int(row["rev_count"]) >= max_attempts:
            last = rev["error_message"] if rev is not None else "no reversal possible"
            _manual(db, row, f"冲正失败, 需人工处理: {int(row['rev_count'])} reversal attempts "
                             f"(2601) failed, last: {last}. Check with the centre (5203 by "
                             f"setl_id, or 3202 detail reconciliation) and resolve the row.")
            counts["manual"] += 1
            continue
        _queue_reversal(db, row, timeout_seconds)
        counts["queued"] += 1
    if any(counts[k] for k in ("queued", "reversed", "manual")):
        log.info("reversal job: %s", counts)
    return counts


def _queue_reversal(db: Database, row: dict, timeout_seconds: int) -> int:
    code = str(row["interface_code"]).strip()
    data = {"data": {"psn_no": row["psn_no"] or "", "omsgid": row["msgid"], "oinfno": code}}
    new = db.run_one("enqueue_request", interface_code=REVERSAL_CODE,
                     input_data=json.dumps(data, ensure_ascii=False),
                     priority=REVERSAL_PRIORITY, timeout_seconds=timeout_seconds,
                     max_retry_count=3, psn_no=row["psn_no"],
                     insuplc_admdvs=row["insuplc_admdvs"], idempotency_key=None,
                     his_fee_id=None, parent_request_id=int(row["request_id"]))
    log.warning("冲正: request %s (%s, msgid %s) → 2601 request %s", row["request_id"], code,
                row["msgid"], new["request_id"])
    return int(new["request_id"])


def _settle(db: Database, row: dict, status: str, message: str) -> None:
    db.run("settle_row", request_id=int(row["request_id"]), status=status,
           error_code=E_UNCERTAIN, error_message=message, expected_status=row["status"])
    log.warning("request %s → %s: %s", row["request_id"], status, message)


def _manual(db: Database, row: dict, message: str) -> None:
    _settle(db, row, "NEEDS_MANUAL", message)
    raise_alert(db, "NEEDS_MANUAL", "CRITICAL",
                f"request {row['request_id']} ({row['interface_code']}) needs manual "
                f"resolution: {message}")
