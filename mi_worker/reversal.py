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



def run_reversals(db: Database, max_attempts: int, done_pattern: str, not_found_pattern: str,
                  delay_seconds: float, timeout_seconds: int = 300) -> Dict[str, int]:
    """One pass of the reversal job; returns counts of what it did.

    The first 2601 waits ``delay_seconds`` and each later one waits longer: a 2601 that
    overtakes its original at the centre is answered "原交易不存在" although the original is
    about to be settled. That answer is therefore believed only from the last attempt.
    """
    counts = {"queued": 0, "reversed": 0, "manual": 0, "waiting": 0}
    done_re = re.compile(done_pattern) if done_pattern else None
    not_found_re = re.compile(not_found_pattern) if not_found_pattern else None
    for row in db.run("find_doubtful"):
        code, status = str(row["interface_code"]).strip(), row["status"]
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
        rev_error = (rev or {}).get("error_message") or ""
        attempts = int(row["rev_count"])
        if rev is not None and done_re and done_re.search(rev_error):
            _settle(db, row, "REVERSED", f"已冲正: the centre answered 2601 request {rev_id} "
                                         f"with '{rev_error}' - already reversed")
            counts["reversed"] += 1
            continue
        if rev is not None and attempts >= max_attempts and not_found_re \
                and not_found_re.search(rev_error):
            _settle(db, row, "REVERSED", f"无原交易: {attempts} spaced 2601 attempts all found no "
                                         f"original (last: request {rev_id}, '{rev_error}') - "
                                         "the centre never settled this msgid")
            counts["reversed"] += 1
            continue
        if rev is not None and rev["status"] == "UNCERTAIN":
            # No answer to the 2601 itself: retire it so it does not hold the patient's queue.
            db.run("settle_row", request_id=int(rev_id), status="ERROR",
                   error_code=E_UNCERTAIN, expected_status="UNCERTAIN",
                   error_message="2601 got no definite answer; another 2601 follows")
        if attempts >= max_attempts:
            last = rev_error or "no reversal possible"
            _manual(db, row, f"冲正失败, 需人工处理: {attempts} reversal attempts "
                             f"(2601) failed, last: {last}. Check with the centre (5203 by "
                             f"setl_id, or 3202 detail reconciliation) and resolve the row.")
            counts["manual"] += 1
            continue
        _queue_reversal(db, row, timeout_seconds, delay_seconds * (attempts + 1))
        counts["queued"] += 1
    if any(counts[k] for k in ("queued", "reversed", "manual")):
        log.info("reversal job: %s", counts)
    return counts


def _queue_reversal(db: Database, row: dict, timeout_seconds: int, delay: float) -> int:
    code = str(row["interface_code"]).strip()
    data = {"data": {"psn_no": row["psn_no"] or "", "omsgid": row["msgid"], "oinfno": code}}
    new = db.run_one("enqueue_reversal", input_data=json.dumps(data, ensure_ascii=False),
                     timeout_seconds=timeout_seconds, psn_no=row["psn_no"],
                     insuplc_admdvs=row["insuplc_admdvs"], delay_seconds=delay,
                     parent_request_id=int(row["request_id"]))
    log.warning("冲正: request %s (%s, msgid %s) → 2601 request %s in %.0fs", row["request_id"],
                code, row["msgid"], new["request_id"], delay)
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
