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
from typing import Any, Dict, Mapping, Optional

from mi_worker.alerts import raise_alert
from mi_worker.db import Database
from mi_worker.states import Act, ErrorCode, ReversalPolicy, Status, reversal_step

log = logging.getLogger("mi_worker.reversal")


def policy_from(jobs: Any) -> ReversalPolicy:
    """The reversal policy from the [jobs] settings section."""
    return ReversalPolicy(max_attempts=jobs.reversal_max_attempts,
                          done_pattern=jobs.reversal_done_pattern,
                          not_found_pattern=jobs.reversal_not_found_pattern,
                          delay_seconds=jobs.reversal_delay_seconds)


def run_reversals(db: Database, jobs: Any) -> Dict[str, int]:
    """One pass of the reversal job over every row in doubt; returns counts of what it did.

    What to do with each row is decided by ``states.reversal_step`` (pure); this function
    only reads the rows and applies the decisions.
    """
    policy = policy_from(jobs)
    counts = {"queued": 0, "reversed": 0, "manual": 0, "waiting": 0}
    for row in db.run("find_doubtful"):
        rev_id = row["rev_id"]
        rev = db.run_one("get_request", request_id=int(rev_id)) if rev_id is not None else None
        step = reversal_step(row, rev, policy)
        counts[_apply(db, row, rev, step, jobs.reversal_timeout_seconds)] += 1
    if any(counts[k] for k in ("queued", "reversed", "manual")):
        log.info("reversal job: %s", counts)
    return counts


def _apply(db: Database, row: Mapping[str, Any], rev: Optional[Mapping[str, Any]], step: Any,
           timeout_seconds: int) -> str:
    """Carry out one decision; return the name of the count it adds to."""
    if step.retire_2601 and rev is not None:
        # No answer to the 2601 itself: retire it so it does not hold the patient's queue.
        db.run("settle_row", request_id=int(rev["request_id"]), status=Status.ERROR.value,
               error_code=int(ErrorCode.UNCERTAIN), expected_status=Status.UNCERTAIN.value,
               error_message="2601 got no definite answer; another 2601 follows")
    if step.act is Act.WAIT:
        return "waiting"
    if step.act is Act.REVERSED:
        _close(db, row, Status.REVERSED, step.message)
        return "reversed"
    if step.act is Act.MANUAL:
        _close(db, row, Status.NEEDS_MANUAL, step.message)
        raise_alert(db, Status.NEEDS_MANUAL.value, "CRITICAL",
                    f"request {row['request_id']} ({row['interface_code']}) needs manual "
                    f"resolution: {step.message}")
        return "manual"
    _queue_reversal(db, row, timeout_seconds, step.delay_seconds)
    return "queued"


def _queue_reversal(db: Database, row: Mapping[str, Any], timeout_seconds: int,
                    delay: float) -> int:
    code = str(row["interface_code"]).strip()
    data = {"data": {"psn_no": row["psn_no"] or "", "omsgid": row["msgid"], "oinfno": code}}
    new = db.run_one("enqueue_reversal", input_data=json.dumps(data, ensure_ascii=False),
                     timeout_seconds=timeout_seconds, psn_no=row["psn_no"],
                     insuplc_admdvs=row["insuplc_admdvs"], delay_seconds=delay,
                     parent_request_id=int(row["request_id"]))
    log.warning("冲正: request %s (%s, msgid %s) → 2601 request %s in %.0fs", row["request_id"],
                code, row["msgid"], new["request_id"], delay)
    return int(new["request_id"])


def _close(db: Database, row: Mapping[str, Any], status: Status, message: str) -> None:
    """Settle a row in doubt, only from the state the job saw (a concurrent change wins)."""
    db.run("settle_row", request_id=int(row["request_id"]), status=status.value,
           error_code=int(ErrorCode.UNCERTAIN), error_message=message,
           expected_status=row["status"])
    log.warning("request %s → %s: %s", row["request_id"], status, message)
