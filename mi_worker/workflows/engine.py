"""The advance job: move every open workflow one decision at a time, from the database alone.

Runs once per cluster (a JobSpec under a database lock), so any live worker continues a
workflow whose worker died: there is no in-memory saga. Each pass reads a workflow's rows,
asks ``decide`` what is next and applies it with guarded writes: a step is enqueued as an
ordinary request row (claimed, retried, signed and 2601-reversed by the usual machinery), and
the workflow row moves only from the state this pass saw. Modelled on river's rescuer and
temporal's "state in the store, deciders are pure".
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, Mapping, Optional

from mi_worker.alerts import raise_alert
from mi_worker.db import Database, UniqueViolation
from mi_worker.gateway.envelope import find_field
from mi_worker.states import WF_FINAL, WF_TRANSITIONS, ErrorCode, WorkflowStatus
from mi_worker.workflows.decide import Decision, check_input, decide, tree_text
from mi_worker.workflows.definitions import Workflow

log = logging.getLogger("mi_worker.workflows")
WS = WorkflowStatus
STEP_PRIORITY = 4   # ahead of the HIS's default 5: a started settlement finishes first
UNDO_PRIORITY = 2   # compensation ahead of new work (2601 rows use 1)


class Engine:
    """Advances workflows with one set of definitions (the worker's, validated at start)."""

    def __init__(self, db: Database, registry: Mapping[str, Workflow]) -> None:
        self.db = db
        self.registry = registry

    def run(self, limit: int = 100) -> Dict[str, int]:
        """One pass over the open workflows; counts of what happened."""
        counts: Dict[str, int] = {}
        for row in self.db.run("wf_open", limit=limit):
            try:
                what = self.advance(row)
            except Exception as exc:  # one bad workflow must not stop the others
                log.exception("workflow %s: advance failed: %s", row["workflow_id"], exc)
                what = "failed"
            counts[what] = counts.get(what, 0) + 1
        return counts

    def advance_id(self, workflow_id: int) -> str:
        """Advance one workflow now (a step of it just ended); safe beside the job: every
        write is guarded, so a concurrent advancer's move wins and this one changes nothing."""
        row = self.db.run_one("wf_get", workflow_id=workflow_id)
        if row is None or WS(row["status"]) in WF_FINAL:
            return "final"
        return self.advance(row)

    def advance(self, row: Mapping[str, Any]) -> str:
        wid = int(row["workflow_id"])
        status = WS(row["status"])
        try:
            data = json.loads(row["input_data"])
        except ValueError:
            data = None
        if row.get("wf_definition"):
            wf = Workflow.from_json(row["wf_definition"])
        else:
            wf = self.registry.get(str(row["name"]))
            problem = "unknown workflow" if wf is None else check_input(wf, data)
            if problem:
                names = ", ".join(sorted(self.registry))
                msg = (f"参数错误: workflow {row['name']!r}: {problem}"
                       + (f" (known: {names})" if wf is None else ""))
                self._write(wid, status, WS.COMPENSATED, 0, ErrorCode.BAD_INPUT, msg,
                            reason=(ErrorCode.BAD_INPUT, msg))
                return "rejected"
            if not self._write(wid, status, WS.RUNNING, 0, ErrorCode.TIMEOUT,
                               "请求超时(流程进行中): workflow started", definition=wf.to_json()):
                return "lost"
        reason = (int(row.get("reason_code") or 0), str(row.get("reason") or ""))
        last = (row.get("error_code"), row.get("error_message"), row.get("current_step"))
        for _ in range(4 * len(wf.steps) + 4):
            rows = self.db.run("wf_steps", workflow_id=wid)
            d = decide(wf, status, data, rows, bool(int(row["past_deadline"])), reason)
            if d.act == "compensate":
                log.warning("workflow %s (%s): compensating: %s", wid, wf.name, d.message)
                if not self._write(wid, status, WS.COMPENSATING, d.current_step,
                                   ErrorCode.UNCERTAIN, f"结果不确定(撤销中): {d.message}",
                                   reason=(d.error_code, d.message)):
                    return "lost"
                status, reason = WS.COMPENSATING, (d.error_code, d.message)
                continue
            if d.act == "enqueue":
                self._enqueue(wid, row, wf, data, d)
            if d.act in ("enqueue", "wait"):
                if (d.error_code, d.message, d.current_step) != last or d.status is not status:
                    self._write(wid, status, d.status, d.current_step, d.error_code, d.message)
                return "enqueued" if d.act == "enqueue" else "waiting"
            return self._end(wid, wf, status, d, rows)
        return "waiting"

    def _enqueue(self, wid: int, row: Mapping[str, Any], wf: Workflow, data: Any,
                 d: Decision) -> None:
        assert d.step is not None
        step = d.step
        undo = d.step_no < 0
        try:
            new = self.db.run_one(
                "wf_enqueue_step", retry=False, interface_code=d.code,
                input_data=json.dumps(d.input, ensure_ascii=False),
                priority=UNDO_PRIORITY if undo else STEP_PRIORITY,
                timeout_seconds=step.timeout, max_retry_count=step.retries,
                psn_no=(row.get("psn_no") or find_field(data, "psn_no") or None),
                insuplc_admdvs=(find_field(data, "insuplc_admdvs") or "")[:6] or None,
                his_fee_id=row.get("his_fee_id"), workflow_id=wid, workflow_step=d.step_no)
        except UniqueViolation:
            log.debug("workflow %s step %s: enqueued by another worker", wid, d.step_no)
            return
        log.info("workflow %s (%s): %s %d (%s %s) → request %s", wid, wf.name,
                 "undo of step" if undo else "step", abs(d.step_no), step.name, d.code,
                 new["request_id"])

    def _end(self, wid: int, wf: Workflow, status: WorkflowStatus, d: Decision,
             rows: Any) -> str:
        if not self._write(wid, status, d.status, d.current_step, d.error_code, d.message,
                           result=d.result):
            return "lost"
        log.log(logging.INFO if d.status is WS.COMPLETED else logging.WARNING,
                "workflow %s (%s) → %s %s", wid, wf.name, d.status, d.message)
        if d.status is WS.FAILED_NEEDS_MANUAL:
            by_no = {int(r["workflow_step"]): r for r in rows}
            # one alert per workflow (alerts are de-duplicated by type)
            raise_alert(self.db, f"WORKFLOW_MANUAL_{wid}", "CRITICAL",
                        f"workflow {wid} ({wf.name}) needs manual resolution: {d.message}"[:1900],
                        detail=tree_text(wf, by_no)[:4000], dedup_minutes=0)
        return d.status.value.lower()

    def _write(self, wid: int, expected: WorkflowStatus, to: WorkflowStatus, step: int,
               code: int, message: str, *, definition: Optional[str] = None,
               result: Optional[str] = None, reason: Optional[tuple] = None) -> bool:
        """One guarded move of the workflow row (False: another advancer moved it first)."""
        assert (expected, to) in WF_TRANSITIONS and expected not in WF_FINAL, (expected, to)
        got = self.db.run("wf_update", workflow_id=wid, expected_status=expected.value,
                          status=to.value, current_step=step, wf_definition=definition,
                          wf_result=result, error_code=int(code), error_message=message[:2000],
                          reason_code=None if reason is None else int(reason[0]),
                          reason=None if reason is None else str(reason[1])[:2000])
        return bool(got)
