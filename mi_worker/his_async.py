"""Calls that do not wait: `mi-worker submit` / `mi-worker result` run exactly what the HIS
runs, sp_medical_insurance_submit_v2 and sp_medical_insurance_result_v2 (issue 15).

Batch work (catalogue downloads, 3202 detail files, fee-detail downloads) takes longer than a
counter caller waits, so the row is queued and its id returned at once; the caller asks for
the outcome later, or waits a while. SQLite has no procedures, so the same steps run here
with the same codes and messages. An async row is an ordinary request row (async_call = 1)
with its own deadline: the claim, retry, lease and reversal rules are those of every row; it
ends TIMEOUT only when that deadline passes before a worker sent it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

from mi_worker.db import Database, UniqueViolation
from mi_worker.gateway.envelope import find_field
from mi_worker.his_call import CallResult, _blank_to_none, check_call, unbindable
from mi_worker.states import ErrorCode, ResultStatus, Status, async_answer

#: sp_medical_insurance_submit_v2's default deadline (24 h) and its ceiling (7 days).
DEFAULT_DEADLINE_SECONDS = 86400
MAX_DEADLINE_SECONDS = 604800
MAX_WAIT_MS = 3_600_000


@dataclass
class AsyncResult:
    """sp_medical_insurance_result_v2's four outputs."""

    request_id: int
    status: Optional[str]
    result: Optional[str]
    error_code: int
    error_message: str

    def __post_init__(self) -> None:
        self.error_code = int(self.error_code)

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def submit(db: Database, interface_code: str, input_data: str,
           timeout: int = DEFAULT_DEADLINE_SECONDS, retry_count: int = 3, *, priority: int = 5,
           idempotency_key: Optional[str] = None, his_fee_id: Optional[str] = None,
           psn_no: Optional[str] = None, insuplc_admdvs: Optional[str] = None) -> CallResult:
    """Enqueue one call that nobody waits on; ``timeout`` is the row's own deadline (s)."""
    args = dict(interface_code=interface_code, input_data=input_data, timeout=timeout,
                retry_count=retry_count, priority=priority, idempotency_key=idempotency_key,
                his_fee_id=his_fee_id, psn_no=psn_no, insuplc_admdvs=insuplc_admdvs)
    problem = unbindable(args)
    if problem:
        return CallResult(None, None, ErrorCode.BAD_INPUT, problem)
    if db.supports("procedures"):
        row = db.run_one("submit_procedure", retry=False, **args)
        if row is None:
            return CallResult(None, None, ErrorCode.UNEXPECTED, "the procedure returned no row")
        return CallResult(None if row["request_id"] is None else int(row["request_id"]),
                          row["result"], int(row["error_code"]), row["error_message"] or "")
    return _embedded_submit(db, **args)


def _embedded_submit(db: Database, interface_code: str, input_data: str, timeout: int,
                     retry_count: int, priority: int, idempotency_key: Optional[str],
                     his_fee_id: Optional[str], psn_no: Optional[str],
                     insuplc_admdvs: Optional[str]) -> CallResult:
    timeout = DEFAULT_DEADLINE_SECONDS if timeout is None else timeout
    retry_count = 3 if retry_count is None else retry_count
    idempotency_key, his_fee_id, psn_no, insuplc_admdvs = (
        _blank_to_none(v) for v in (idempotency_key, his_fee_id, psn_no, insuplc_admdvs))
    checked = check_call(db, interface_code, input_data, timeout, retry_count, idempotency_key,
                         max_timeout=MAX_DEADLINE_SECONDS)
    if isinstance(checked, CallResult):
        return checked
    psn = psn_no or find_field(checked, "psn_no")
    admdvs = insuplc_admdvs or find_field(checked, "insuplc_admdvs")
    try:
        row = db.run_one("enqueue_async", retry=False, interface_code=interface_code,
                         input_data=input_data, priority=5 if priority is None else priority,
                         timeout_seconds=timeout, max_retry_count=retry_count,
                         psn_no=psn[:30] if psn else None,
                         insuplc_admdvs=admdvs[:6] if admdvs else None,
                         idempotency_key=idempotency_key, his_fee_id=his_fee_id)
    except UniqueViolation:
        return CallResult(None, None, ErrorCode.DUPLICATE,
                          f"重复请求: idempotency key {idempotency_key} is already in flight")
    except Exception as exc:
        return CallResult(None, None, ErrorCode.ENQUEUE_FAILED, f"入队失败: could not enqueue: {exc}")
    return CallResult(int(row["request_id"]), None, ErrorCode.OK, "")


def result(db: Database, request_id: int, wait_ms: int = 0, *,
           poll_ms: int = 100) -> AsyncResult:
    """The state of a submitted request now, or after waiting up to ``wait_ms``."""
    problem = unbindable(dict(request_id=request_id, wait_ms=wait_ms, poll_ms=poll_ms))
    if problem is None and request_id is not None and not -2**63 <= request_id < 2**63:
        problem = f"参数错误: request_id {request_id} is outside the bigint range"
    if problem:
        return AsyncResult(request_id, None, None, ErrorCode.BAD_INPUT, problem)
    if db.supports("procedures"):
        row = db.run_one("result_procedure", retry=False, request_id=request_id,
                         wait_ms=wait_ms, poll_ms=poll_ms)
        if row is None:
            return AsyncResult(request_id, None, None, ErrorCode.UNEXPECTED,
                               "the procedure returned no row")
        return AsyncResult(request_id, row["status"], row["result"], int(row["error_code"]),
                           row["error_message"] or "")
    return _embedded_result(db, request_id, wait_ms, poll_ms)


def _embedded_result(db: Database, request_id: int, wait_ms: Optional[int],
                     poll_ms: Optional[int]) -> AsyncResult:
    wait_ms = 0 if wait_ms is None else wait_ms
    if request_id is None or not 0 <= wait_ms <= MAX_WAIT_MS:
        return AsyncResult(request_id, None, None, ErrorCode.BAD_INPUT,
                           "参数错误: request_id is required and wait_ms must be 0..3600000")
    until = time.monotonic() + wait_ms / 1000.0
    poll = max(poll_ms or 100, 10) / 1000.0
    step = min(0.01, poll)  # 10 ms doubling up to poll_ms, as the procedures do
    while True:
        state = db.run_one("poll_async", request_id=request_id)
        if state is None:
            return AsyncResult(request_id, None, None, ErrorCode.BAD_INPUT,
                               f"参数错误: no submitted request {request_id}")
        if state["result_status"] == ResultStatus.IN_PROGRESS \
                and state["status"] == Status.PENDING and int(state["past_deadline"]):
            # Its own deadline passed before any worker sent it (the sweep would do the same).
            db.run("timeout_if_pending", request_id=request_id, error_message=(
                "请求超时: no worker sent the submitted request within its deadline"))
            continue
        left = until - time.monotonic()
        if state["result_status"] != ResultStatus.IN_PROGRESS or left <= 0:
            break
        time.sleep(max(0.01, min(step, left)))
        step = min(step * 2, poll)
    answer = async_answer(request_id, state)
    code = int(answer.error_code)
    return AsyncResult(request_id, state["status"], answer.result if code == 0 else None, code,
                       answer.error_message)
