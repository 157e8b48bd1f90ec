"""The workflow contract from Python: `mi-worker call --workflow` and the tests call exactly
what the HIS calls.

On PostgreSQL and SQL Server this runs sp_medical_insurance_workflow_v2. SQLite has no stored
procedures, so the same steps (validate, check a worker is alive, the idempotency key, insert
the workflow row, poll it until it ends or the deadline passes) run here with the same codes.
Here the definitions are at hand, so an unknown workflow or an input its steps cannot be
built from is -1001 at once; the procedures leave that check to the first advance pass.
"""
from __future__ import annotations

import json
import re
import time
from typing import Mapping, Optional

from mi_worker.db import Database, UniqueViolation
from mi_worker.gateway.envelope import find_field
from mi_worker.his_call import MAX_INPUT_CHARS, CallResult, unbindable
from mi_worker.states import WF_FINAL, ErrorCode, WorkflowStatus
from mi_worker.workflows.decide import check_input
from mi_worker.workflows.definitions import Workflow

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
WS = WorkflowStatus


def call_workflow(db: Database, registry: Mapping[str, Workflow], workflow: str,
                  input_data: str, timeout: int = 60, *, idempotency_key: Optional[str] = None,
                  his_fee_id: Optional[str] = None, psn_no: Optional[str] = None,
                  poll_ms: int = 100) -> CallResult:
    """Run one workflow and wait for its end (or the deadline), as the procedure does.
    ``request_id`` of the answer is the workflow id."""
    args = dict(workflow=workflow, input_data=input_data, timeout=timeout,
                idempotency_key=idempotency_key, his_fee_id=his_fee_id, psn_no=psn_no,
                poll_ms=poll_ms)
    problem = unbindable(args)
    if problem:
        return CallResult(None, None, ErrorCode.BAD_INPUT, problem)
    if db.supports("procedures"):
        row = db.run_one("call_workflow_procedure", retry=False, **args)
        if row is None:
            return CallResult(None, None, ErrorCode.UNEXPECTED, "the procedure returned no row")
        return CallResult(None if row["request_id"] is None else int(row["request_id"]),
                          row["result"], int(row["error_code"]), row["error_message"] or "")
    return _embedded(db, registry, **args)


def _embedded(db: Database, registry: Mapping[str, Workflow], workflow: str, input_data: str,
              timeout: Optional[int], idempotency_key: Optional[str],
              his_fee_id: Optional[str], psn_no: Optional[str], poll_ms: int) -> CallResult:
    bad = ErrorCode.BAD_INPUT
    timeout = 60 if timeout is None else timeout
    key = (idempotency_key or "").strip() or None
    if not workflow or not _NAME.match(workflow):
        shown = "NULL" if workflow is None else f"'{workflow[:64]}'"
        return CallResult(None, None, bad, "参数错误: workflow must be a workflow name such as "
                                             f"outpatient_settlement, got {shown}")
    wf = registry.get(workflow)
    if wf is None:
        return CallResult(None, None, bad, f"参数错误: unknown workflow {workflow!r} (known: "
                                             f"{', '.join(sorted(registry))})")
    if not input_data or len(input_data) > MAX_INPUT_CHARS:
        return CallResult(None, None, bad,
                          f"参数错误: input_data must be 1..{MAX_INPUT_CHARS} characters")
    try:
        doc = json.loads(input_data)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        return CallResult(None, None, bad, "参数错误: input_data is not a JSON object")
    problem = check_input(wf, doc)
    if problem:
        return CallResult(None, None, bad, f"参数错误: workflow {workflow}: {problem}")
    if not 1 <= timeout <= 3600:
        return CallResult(None, None, bad, "参数错误: timeout must be 1..3600 seconds")
    alive = db.run_one("service_status", stale_seconds=30)
    if not alive or int(alive["alive"]) != 1:
        return CallResult(None, None, ErrorCode.NO_WORKER,
                          "SDK服务未运行: no mi-worker heartbeat in the last 30 seconds")
    if key:
        prior = db.run_one("wf_find_key", idempotency_key=key)
        if prior:
            return _idempotent(prior, key)
    psn = (psn_no or "").strip() or find_field(doc, "psn_no")
    try:
        row = db.run_one("wf_start", retry=False, workflow=workflow, input_data=input_data,
                         idempotency_key=key, his_fee_id=(his_fee_id or "").strip() or None,
                         psn_no=psn[:30] if psn else None, timeout_seconds=timeout)
    except UniqueViolation:
        return CallResult(None, None, ErrorCode.DUPLICATE,
                          f"重复请求: idempotency key {key} is already in flight")
    except Exception as exc:
        return CallResult(None, None, ErrorCode.ENQUEUE_FAILED,
                          f"入队失败: could not start the workflow: {exc}")
    wid = int(row["workflow_id"])
    poll = max(poll_ms or 100, 10) / 1000.0
    step = min(0.01, poll)
    deadline = time.monotonic() + timeout
    while True:
        state = db.run_one("wf_get", workflow_id=wid)
        if WS(state["status"]) in WF_FINAL or int(state["past_deadline"]):
            break
        time.sleep(max(0.01, min(step, deadline - time.monotonic())))
        step = min(step * 2, poll)
    return answer(wid, state)


def answer(wid: int, state: Mapping) -> CallResult:
    """The HIS answer of a workflow row, final or at the deadline (as the procedures map it):
    0 + every step's output when COMPLETED, else the code the engine keeps on the row."""
    status = WS(state["status"])
    if status is WS.COMPLETED:
        return CallResult(wid, state["wf_result"], ErrorCode.OK, "")
    code = int(state["error_code"] if state["error_code"] is not None else ErrorCode.TIMEOUT)
    if status not in WF_FINAL and code not in (ErrorCode.TIMEOUT, ErrorCode.UNCERTAIN):
        code = int(ErrorCode.UNCERTAIN)
    return CallResult(wid, None, code, state["error_message"] or "")


def _idempotent(prior: Mapping, key: str) -> CallResult:
    wid = int(prior["workflow_id"])
    status = WS(prior["status"])
    if status in (WS.RUNNING, WS.COMPENSATING):
        return CallResult(wid, None, ErrorCode.DUPLICATE, f"重复请求: idempotency key {key} is "
                                                            f"already in flight as workflow {wid}")
    return answer(wid, prior)
