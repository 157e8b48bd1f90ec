"""The HIS contract from Python: `mi-worker call` and the tests call exactly what the HIS calls.

On SQL Server and PostgreSQL this runs sp_medical_insurance_call_v2 itself. SQLite has no
stored procedures, so the same steps (validate, check a worker is alive, insert PENDING, poll
the view, time out only a row still PENDING) run here with the same error codes and messages.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Union

from mi_worker.db import Database, UniqueViolation
from mi_worker.gateway import catalog
from mi_worker.gateway.envelope import find_field
from mi_worker.states import (
    ErrorCode,
    HisAnswer,
    ResultStatus,
    Status,
    his_answer,
    idempotent_answer,
)
from mi_worker.wait_plan import poll_delays

MAX_INPUT_CHARS = 1_048_576


@dataclass
class CallResult:
    request_id: Optional[int]
    result: Optional[str]
    error_code: int
    error_message: str

    def __post_init__(self) -> None:
        self.error_code = int(self.error_code)  # a plain int in JSON and text, never an enum

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def call(db: Database, interface_code: str, input_data: str, timeout: int = 30,
         retry_count: int = 3, *, priority: int = 5, idempotency_key: Optional[str] = None,
         his_fee_id: Optional[str] = None, psn_no: Optional[str] = None, poll_ms: int = 100,
         insuplc_admdvs: Optional[str] = None) -> CallResult:
    """Enqueue one call and wait for its outcome, as sp_medical_insurance_call_v2 does."""
    args = dict(interface_code=interface_code, input_data=input_data, timeout=timeout,
                retry_count=retry_count, priority=priority, idempotency_key=idempotency_key,
                his_fee_id=his_fee_id, psn_no=psn_no, poll_ms=poll_ms,
                insuplc_admdvs=insuplc_admdvs)
    problem = unbindable(args)
    if problem:
        return CallResult(None, None, ErrorCode.BAD_INPUT, problem)
    if db.supports("procedures"):
        row = db.run_one("call_procedure", retry=False, **args)
        if row is None:
            return CallResult(None, None, ErrorCode.UNEXPECTED, "the procedure returned no row")
        return CallResult(None if row["request_id"] is None else int(row["request_id"]),
                          row["result"], int(row["error_code"]), row["error_message"] or "")
    return _embedded_call(db, **args)


INT_RANGE = (-2**31, 2**31 - 1)


def unbindable(args: Dict[str, Any]) -> Optional[str]:
    """Why an argument cannot even reach the procedure (the HIS's typed parameters never
    carry such values, a command line can): an integer outside SQL int, text that is not
    Unicode (a lone surrogate from undecodable argv bytes) or holds NUL, which PostgreSQL
    text cannot store. The procedure would answer -1001; the driver would raise instead.
    """
    for name, value in args.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
            return f"参数错误: {name} {value} is outside the integer range"
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return (f"参数错误: {name} is not valid UTF-8 text (undecodable byte or lone "
                        f"surrogate at character {exc.start})")
            if "\x00" in value:
                return f"参数错误: {name} contains a NUL character at {value.index(chr(0))}"
    return None


def _embedded_call(db: Database, interface_code: str, input_data: str, timeout: int,
                   retry_count: int, priority: int, idempotency_key: Optional[str],
                   his_fee_id: Optional[str], psn_no: Optional[str], poll_ms: int,
                   insuplc_admdvs: Optional[str]) -> CallResult:
    timeout = 30 if timeout is None else timeout
    retry_count = 3 if retry_count is None else retry_count
    # A blank optional text is no value, as in both procedures (a blank idempotency key was a
    # real key shared by every such call).
    idempotency_key, his_fee_id, psn_no, insuplc_admdvs = (
        _blank_to_none(v) for v in (idempotency_key, his_fee_id, psn_no, insuplc_admdvs))
    checked = check_call(db, interface_code, input_data, timeout, retry_count, idempotency_key)
    if isinstance(checked, CallResult):
        return checked
    doc = checked
    psn = psn_no or find_field(doc, "psn_no")
    admdvs = insuplc_admdvs or find_field(doc, "insuplc_admdvs")
    inserted = time.monotonic()  # the estimate below is measured from the INSERT
    try:
        row = db.run_one("enqueue_request", retry=False, interface_code=interface_code,
                         input_data=input_data, priority=priority, timeout_seconds=timeout,
                         max_retry_count=retry_count, psn_no=psn[:30] if psn else None,
                         insuplc_admdvs=admdvs[:6] if admdvs else None,
                         idempotency_key=idempotency_key, his_fee_id=his_fee_id,
                         parent_request_id=None)
    except UniqueViolation:
        return CallResult(None, None, ErrorCode.DUPLICATE,
                          f"重复请求: idempotency key {idempotency_key} is already in flight")
    except Exception as exc:
        return CallResult(None, None, ErrorCode.ENQUEUE_FAILED, f"入队失败: could not enqueue: {exc}")
    request_id = int(row["request_id"])
    deadline = time.monotonic() + timeout
    # When to look: from the interface's recent latency when a worker published one, as the
    # procedures do (mi_worker/wait_plan.py).
    waits = poll_delays(_expected_ms(db, interface_code), poll_ms)
    first = True
    while True:
        delay = next(waits)
        if first:  # the first sleep ends that long after the INSERT, not after this line
            delay, floor, first = delay - (time.monotonic() - inserted), 0.0, False
        else:
            floor = 0.005  # never a busy loop at the deadline (SQL Server's floor too)
        if delay > 0:
            # Never sleep past the deadline (the call would answer up to poll_ms late).
            time.sleep(max(floor, min(delay, deadline - time.monotonic())))
        state = db.run_one("poll_result", request_id=request_id)
        if state["result_status"] != ResultStatus.IN_PROGRESS or int(state["past_deadline"]):
            break
    if state["result_status"] == ResultStatus.IN_PROGRESS and state["status"] == Status.PENDING:
        db.run("timeout_if_pending", request_id=request_id,
               error_message=f"请求超时: no worker claimed the request within {timeout} s")
        state = db.run_one("poll_result", request_id=request_id)
    return result_from_state(request_id, state)


def _expected_ms(db: Database, interface_code: str) -> Optional[int]:
    """The published estimate for this interface, or None (then the fixed schedule)."""
    try:
        row = db.run_one("interface_wait_ms", retry=False, interface_code=interface_code)
    except Exception:  # an optimisation: never a reason to fail a call already enqueued
        return None
    value = row.get("expected_ms") if row else None
    return int(value) if value is not None else None


def check_call(db: Database, interface_code: str, input_data: str, timeout: int,
               retry_count: int, idempotency_key: Optional[str], max_timeout: int = 3600
               ) -> Union[CallResult, Dict[str, Any]]:
    """The procedures' checks before the enqueue, in their order: the answer to give at once
    (-1001, -1002, an idempotent repeat), or the parsed input object to enqueue. Shared by the
    waiting call and the submit (whose timeout is the row's own deadline, up to 7 days)."""
    bad = ErrorCode.BAD_INPUT
    if not interface_code or not catalog.is_valid_code(interface_code) \
            or interface_code != catalog.normalize(interface_code):
        shown = "NULL" if interface_code is None else f"'{interface_code[:20]}'"
        return CallResult(None, None, bad, "参数错误: interface_code must look like 1101, "
                                             f"2207A or 90100, got {shown}")
    refused = db.run_one("his_refusal", interface_code=interface_code)
    if refused and refused["his_refused"]:
        return CallResult(None, None, bad, (
            f"参数错误: interface {interface_code} is managed by mi-worker itself, the HIS must "
            f"not call it: {refused['his_refused']}")[:500])
    if not input_data:
        return CallResult(None, None, bad, "参数错误: input_data is empty")
    if len(input_data) > MAX_INPUT_CHARS:
        return CallResult(None, None, bad, f"参数错误: input_data is {len(input_data)} "
                                             f"characters, more than the {MAX_INPUT_CHARS} allowed")
    try:
        doc = json.loads(input_data)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        return CallResult(None, None, bad, "参数错误: input_data is not a JSON object")
    if not (1 <= timeout <= max_timeout and 0 <= retry_count <= 20):
        return CallResult(None, None, bad, f"参数错误: timeout must be 1..{max_timeout} seconds and "
                                             "retry_count 0..20")
    alive = db.run_one("service_status", stale_seconds=30)
    if not alive or int(alive["alive"]) != 1:
        return CallResult(None, None, ErrorCode.NO_WORKER,
                          "SDK服务未运行: no mi-worker heartbeat in the last 30 seconds")
    if idempotency_key:
        prior = db.run_one("find_idempotent", idempotency_key=idempotency_key)
        if prior:
            return _answer(int(prior["request_id"]), idempotent_answer(prior, idempotency_key))
    return doc


def _answer(request_id: int, answer: HisAnswer) -> CallResult:
    code = int(answer.error_code)
    return CallResult(request_id, answer.result if code == 0 else None, code,
                      answer.error_message)


def _blank_to_none(value: Optional[str]) -> Optional[str]:
    """'' and blanks → None; other values trimmed of blanks like T-SQL's LTRIM(RTRIM())."""
    if value is None:
        return None
    return value.strip(" ") or None


def result_from_state(request_id: int, state: Dict[str, Any]) -> CallResult:
    """Map the view's final state to the procedure's error codes (states.his_answer)."""
    return _answer(request_id, his_answer(request_id, state))
