"""What a workflow does next, decided from its rows alone (pure: no database, no clock).

The workflow row and its request rows are the whole state, so whichever worker runs the
advance job decides the same thing: enqueue the next step, enqueue the next undo, wait, or
end the workflow. Step rows are numbered 1..n, the undo of step n is row -n; a unique index
keeps each number to one row, so two advancers can never send a step twice.

What "took effect" means, per step row status (the compensation undoes only these):
    COMPLETED (needs_reversal 0)   yes
    ERROR / TIMEOUT / REVERSED     no (REVERSED: 2601 undid it, or it never landed)
    COMPLETED, needs_reversal 1    wait: the reversal job will make it REVERSED
    UNCERTAIN, 2601-reversible     wait for the reversal job (REVERSED = no effect,
                                   NEEDS_MANUAL = the workflow needs a person)
    UNCERTAIN / NEEDS_MANUAL, not reversible by 2601   maybe: undo it with its cancel code
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, List, Mapping, Optional, Tuple

from mi_worker.gateway import catalog
from mi_worker.states import OPEN, ErrorCode, Status, WorkflowStatus
from mi_worker.workflows.definitions import (
    MISSING,
    InputError,
    Step,
    Workflow,
    lookup,
    refs,
    resolve,
)

WS = WorkflowStatus


@dataclass(frozen=True)
class Decision:
    """``enqueue`` (step_no, code, input), ``wait`` or ``end``; with the answer the HIS gets
    if it stops waiting now (error_code, message) and the status the row must have."""

    act: str
    status: WorkflowStatus
    error_code: int
    message: str
    current_step: int = 0
    step_no: int = 0
    step: Optional[Step] = None
    code: str = ""
    input: Any = None
    result: Optional[str] = None


def active_steps(wf: Workflow, data: Mapping[str, Any]) -> List[Tuple[int, Step]]:
    """(number, step) of the steps this input runs: an optional step named in the input's
    ``skip_steps`` is left out (its number stays, so numbering never depends on input)."""
    skip = data.get("skip_steps") or []
    return [(n, s) for n, s in enumerate(wf.steps, 1) if not (s.optional and s.name in skip)]


def check_input(wf: Workflow, data: Any) -> Optional[str]:
    """Why this input cannot run (missing fields every step needs up front), or None."""
    if not isinstance(data, dict):
        return "input_data must be a JSON object"
    skip = data.get("skip_steps") or []
    if not isinstance(skip, list):
        return "skip_steps must be a list of step names"
    for name in skip:
        step = next((s for s in wf.steps if s.name == name), None)
        if step is None or not step.optional:
            return f"skip_steps: {name!r} is not an optional step of {wf.name}"
    for n, step in active_steps(wf, data):
        for ref in refs(step.input) + (refs(step.undo.input) if step.undo else []):
            if ref.startswith("input.") and lookup({"input": data}, ref) is MISSING \
                    and not _has_default(step, ref):
                return f"step {n} ({step.name} {step.code}) needs {ref}"
    return None


def _has_default(step: Step, ref: str) -> bool:
    text = json.dumps([step.input, step.undo.input if step.undo else None])
    return ("${" + ref + "|") in text


def _rows(rows: List[Mapping[str, Any]]) -> Dict[int, Mapping[str, Any]]:
    return {int(r["workflow_step"]): r for r in rows}


def _output(row: Mapping[str, Any]) -> Any:
    """A step's output: the ``output`` of the centre's answer stored in response_data."""
    try:
        answer = json.loads(row.get("response_data") or "null")
    except ValueError:
        return None
    return answer.get("output") if isinstance(answer, dict) else None


def _input(row: Mapping[str, Any]) -> Any:
    try:
        return json.loads(row.get("input_data") or "null")
    except ValueError:
        return None


def scope(wf: Workflow, data: Mapping[str, Any], by_no: Mapping[int, Mapping[str, Any]],
          own: Optional[int] = None) -> Dict[str, Any]:
    steps = {s.name: {"input": _input(by_no[n]), "output": _output(by_no[n])}
             for n, s in enumerate(wf.steps, 1) if n in by_no}
    out: Dict[str, Any] = {"input": data, "steps": steps}
    if own is not None:
        out["self"] = steps.get(wf.steps[own - 1].name, {})
    return out


def effect(step: Step, row: Mapping[str, Any]) -> str:
    """'yes', 'no', 'wait' or 'manual' for a step row in a final status (module docstring)."""
    status = Status(row["status"])
    if status in OPEN:
        return "wait"
    if status is Status.COMPLETED:
        return "wait" if int(row.get("needs_reversal") or 0) else "yes"
    if status in (Status.ERROR, Status.TIMEOUT, Status.REVERSED):
        return "no"
    if catalog.reversible(step.code):
        return "wait" if status is Status.UNCERTAIN else "manual"
    return "yes"  # may have landed: its cancel code undoes it either way


def check_trial(step: Step, output: Any, scope_: Mapping[str, Any]) -> Optional[str]:
    """A trial's answer against the amount the HIS expects (if it passed one)."""
    if not step.check:
        return None
    expected = resolve(step.check["expected"], scope_)
    if expected in (None, ""):
        return None
    got = lookup(output, step.check["field"])
    try:
        if got is not MISSING and Decimal(str(got)) == Decimal(str(expected)):
            return None
    except InvalidOperation:
        pass
    return (f"预结算金额不符: {step.code} {step.check['field']} = "
            f"{None if got is MISSING else got}, the HIS expected {expected}; nothing settled")


def decide(wf: Workflow, status: WorkflowStatus, data: Mapping[str, Any],
           rows: List[Mapping[str, Any]], past_deadline: bool,
           reason: Tuple[int, str]) -> Decision:
    """The next thing to do. ``reason`` is the (code, message) a compensation started with."""
    by_no = _rows(rows)
    steps = active_steps(wf, data)
    if status is WS.RUNNING:
        for n, step in steps:
            row = by_no.get(n)
            if row is None:
                if past_deadline:
                    return _compensate(n, ErrorCode.TIMEOUT, (
                        f"请求超时: the HIS deadline passed before step {n} ({step.name} "
                        f"{step.code}); no further step is sent, what took effect is undone"))
                try:
                    built = resolve(step.input, scope(wf, data, by_no))
                except InputError as exc:
                    return _compensate(n, ErrorCode.BAD_INPUT, f"参数错误: step {n} "
                                       f"({step.name} {step.code}): {exc}")
                return Decision("enqueue", WS.RUNNING, ErrorCode.TIMEOUT, (
                    f"请求超时(流程进行中): workflow is at step {n} ({step.name} {step.code})"),
                    current_step=n, step_no=n, step=step, code=step.code, input=built)
            eff = effect(step, row)
            if eff == "wait":
                doubt = Status(row["status"]) not in OPEN
                return Decision("wait", WS.RUNNING,
                                ErrorCode.UNCERTAIN if doubt else ErrorCode.TIMEOUT, (
                                    f"结果不确定: step {n} ({step.name} {step.code}) is in "
                                    "doubt; the reversal job settles it" if doubt else
                                    f"请求超时(流程进行中): step {n} ({step.name} {step.code}) "
                                    "is being processed"), current_step=n)
            if eff == "manual":
                return Decision("end", WS.FAILED_NEEDS_MANUAL, ErrorCode.UNCERTAIN, (
                    f"需人工处理: step {n} ({step.name} {step.code}) is NEEDS_MANUAL"),
                    current_step=n)
            if eff == "no":
                code = int(row.get("error_code") or ErrorCode.GATEWAY)
                return _compensate(n, code, f"step {n} ({step.name} {step.code}) failed: "
                                   f"{row.get('error_message') or row['status']}")
            if Status(row["status"]) is not Status.COMPLETED:
                return _compensate(n, ErrorCode.UNCERTAIN, (
                    f"step {n} ({step.name} {step.code}) ended {row['status']}; it may have "
                    "taken effect and is undone with its cancel code"))
            mismatch = check_trial(step, _output(row), scope(wf, data, by_no))
            if mismatch:
                return _compensate(n, ErrorCode.GATEWAY, mismatch)
        result = {s.name: _output(by_no[n]) for n, s in steps}
        return Decision("end", WS.COMPLETED, ErrorCode.OK, "", current_step=len(wf.steps),
                        result=json.dumps(result, ensure_ascii=False))
    return _next_undo(wf, data, by_no, steps, reason)


def _compensate(n: int, code: int, message: str) -> Decision:
    return Decision("compensate", WS.COMPENSATING, int(code), message, current_step=n)


def _next_undo(wf: Workflow, data: Mapping[str, Any], by_no: Mapping[int, Mapping[str, Any]],
               steps: List[Tuple[int, Step]], reason: Tuple[int, str]) -> Decision:
    code, why = reason
    for n, step in steps:  # a step still in flight or in doubt is waited for, never overtaken
        row = by_no.get(n)
        if row is not None and effect(step, row) == "wait":
            return Decision("wait", WS.COMPENSATING, ErrorCode.UNCERTAIN,
                            f"结果不确定(撤销中): {why}; waiting for step {n} ({step.name} "
                            f"{step.code}, {row['status']})", current_step=n)
    for n, step in reversed(steps):
        row = by_no.get(n)
        if row is None or effect(step, row) != "yes" or step.undo is None:
            continue
        undo = by_no.get(-n)
        if undo is None:
            try:
                built = resolve(step.undo.input, scope(wf, data, by_no, own=n))
            except InputError as exc:
                return _manual(wf, by_no, f"undo of step {n} ({step.name}) cannot be built: {exc}")
            return Decision("enqueue", WS.COMPENSATING, ErrorCode.UNCERTAIN,
                            f"结果不确定(撤销中): {why}; undoing step {n} with {step.undo.code}",
                            current_step=-n, step_no=-n, step=step, code=step.undo.code,
                            input=built)
        ustatus = Status(undo["status"])
        if ustatus in OPEN:
            return Decision("wait", WS.COMPENSATING, ErrorCode.UNCERTAIN,
                            f"结果不确定(撤销中): {why}; undo of step {n} in flight",
                            current_step=-n)
        if ustatus is not Status.COMPLETED or int(undo.get("needs_reversal") or 0):
            return _manual(wf, by_no, f"undo {step.undo.code} of step {n} ({step.name}) ended "
                           f"{ustatus}: {undo.get('error_message') or ''}")
    final = ErrorCode.BAD_INPUT if code == ErrorCode.BAD_INPUT else ErrorCode.COMPENSATED
    return Decision("end", WS.COMPENSATED, int(final),
                    f"已撤销: {why}; every step that took effect was undone", current_step=0)


def _manual(wf: Workflow, by_no: Mapping[int, Mapping[str, Any]], why: str) -> Decision:
    return Decision("end", WS.FAILED_NEEDS_MANUAL, ErrorCode.UNCERTAIN,
                    f"需人工处理: {why}. Steps: {tree_text(wf, by_no)}")


def tree_text(wf: Workflow, by_no: Mapping[int, Mapping[str, Any]]) -> str:
    """Every step and undo with its request id and state (the alert and the message)."""
    parts = []
    for n, s in enumerate(wf.steps, 1):
        row, undo = by_no.get(n), by_no.get(-n)
        text = f"{n} {s.name} {s.code}: " + (f"request {row['request_id']} {row['status']}"
                                              if row else "not sent")
        if undo:
            text += f", undo {undo['interface_code']} request {undo['request_id']} " \
                    f"{undo['status']}"
        parts.append(text)
    return "; ".join(parts)
