"""The row's life in one place: statuses, the HIS error codes, the transitions, the decisions.

Every other module asks this one what a row may become and what the HIS is told; the SQL
keeps the guards (each write names the from-state it accepts, so a concurrent change wins
instead of being overwritten), and ``TRANSITIONS`` says which (from, to) each write may make.
A test drives every named write from every status on each dialect and checks it against this
table; ``docs/states.md`` is drawn from it and kept equal by a test.

The decisions here are pure (no database, no clock, no I/O): what a stopping worker does with
a row, what lease recovery makes of a row whose worker died, what the reversal job does next
with a row in doubt, and which HIS answer a row's state gives. Modelled on river's
``rivertype.JobState`` + ``docs/state_machine.md`` and its rescuer's pure
``makeRetryDecision``; procrastinate's finish function refusing a wrong from-state is the
model for the guards the SQL keeps.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Mapping, Optional, Tuple

from mi_worker.gateway import catalog


class Status(str, enum.Enum):
    """``medical_insurance_requests.status`` (DESIGN.md §5)."""

    PENDING = "PENDING"            # queued; waits for a claim (or for next_attempt_at)
    PROCESSING = "PROCESSING"      # leased by a worker (claim_token), maybe at the centre
    COMPLETED = "COMPLETED"        # infcode 0 (needs_reversal = 1: its caller had given up)
    ERROR = "ERROR"                # a definite failure: nothing took effect
    TIMEOUT = "TIMEOUT"            # the caller's deadline passed before anything was sent
    UNCERTAIN = "UNCERTAIN"        # a state-changing call with no definite answer
    REVERSED = "REVERSED"          # undone by 2601 (or proven never settled)
    NEEDS_MANUAL = "NEEDS_MANUAL"  # nothing automatic can settle it: a person must

    def __str__(self) -> str:  # so f-strings and SQL parameters carry the plain name
        return self.value


OPEN: FrozenSet[Status] = frozenset({Status.PENDING, Status.PROCESSING})
FINAL: FrozenSet[Status] = frozenset(set(Status) - OPEN)


class ResultStatus(str, enum.Enum):
    """``v_medical_insurance_result.result_status``: what the HIS reads of a row."""

    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    IN_PROGRESS = "IN_PROGRESS"
    UNCERTAIN = "UNCERTAIN"

    def __str__(self) -> str:
        return self.value


class ErrorCode(enum.IntEnum):
    """The HIS contract's @error_code values (DESIGN.md §6); also written to rows."""

    OK = 0
    BAD_INPUT = -1001        # missing or invalid parameter
    NO_WORKER = -1002        # no live worker (no heartbeat in 30 s)
    ENQUEUE_FAILED = -1003   # could not enqueue
    GATEWAY = -1004          # the centre answered infcode != 0 (err_msg in the message)
    TIMEOUT = -1005          # timed out (never claimed, or in doubt while PROCESSING)
    IN_TRANSACTION = -1006   # called inside an open transaction
    UNCERTAIN = -1007        # outcome uncertain; reversal under way or done
    DUPLICATE = -1008        # the same idempotency key is already in flight
    COMPENSATED = -1009      # a workflow failed and every step that took effect was undone
    UNEXPECTED = -1999       # unexpected exception, logged to medical_insurance_error_log

    def __str__(self) -> str:  # "-1001" on every Python (3.9's IntEnum would say the name)
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class By(str, enum.Enum):
    """Who moves a row: the verb of a transition."""

    ENQUEUE = "enqueue"    # the HIS procedure, `mi-worker call`, the reversal job (2601 rows)
    CLAIM = "claim"        # a worker's claim statement
    COMPLETE = "complete"  # a worker writes a finished call
    RETRY = "retry"        # a worker gives a retryable failure back (or ends it when spent)
    RELEASE = "release"    # a stopping worker gives back a row it never sent
    EXPIRE = "expire"      # the expire sweep, or the caller at its deadline
    RECOVER = "recover"    # lease recovery: the row's worker died
    REVERSE = "reverse"    # the reversal job settles a row in doubt
    RESOLVE = "resolve"    # an operator records how a row was settled by hand

    def __str__(self) -> str:
        return self.value


S = Status
#: Every allowed (from, to, by). ``None`` as from-state is a new row.
TRANSITIONS: FrozenSet[Tuple[Optional[Status], Status, By]] = frozenset({
    (None, S.PENDING, By.ENQUEUE),
    (S.PENDING, S.PROCESSING, By.CLAIM),
    (S.PENDING, S.TIMEOUT, By.EXPIRE),
    (S.PROCESSING, S.COMPLETED, By.COMPLETE),
    (S.PROCESSING, S.ERROR, By.COMPLETE),
    (S.PROCESSING, S.UNCERTAIN, By.COMPLETE),
    (S.PROCESSING, S.PENDING, By.RETRY),
    (S.PROCESSING, S.ERROR, By.RETRY),        # out of attempts
    (S.PROCESSING, S.TIMEOUT, By.RETRY),      # the back-off would pass the deadline
    (S.PROCESSING, S.PENDING, By.RELEASE),
    (S.PROCESSING, S.PENDING, By.RECOVER),    # a retry-safe call: sent again
    (S.PROCESSING, S.TIMEOUT, By.RECOVER),    # a retry-safe call whose caller gave up
    (S.PROCESSING, S.UNCERTAIN, By.RECOVER),  # a state-changing call may have landed
    (S.UNCERTAIN, S.REVERSED, By.REVERSE),
    (S.UNCERTAIN, S.NEEDS_MANUAL, By.REVERSE),
    (S.UNCERTAIN, S.ERROR, By.REVERSE),       # a 2601 row with no answer, retired for the next
    (S.COMPLETED, S.REVERSED, By.REVERSE),    # completed after its caller gave up
    (S.COMPLETED, S.NEEDS_MANUAL, By.REVERSE),
    (S.NEEDS_MANUAL, S.NEEDS_MANUAL, By.RESOLVE),  # resolved_at/by/note; the status stays
    (S.UNCERTAIN, S.UNCERTAIN, By.RESOLVE),
})
del S

#: The named statements that move rows, and the verb each one performs. The per-dialect
#: transition test drives each of them from every status.
WRITES: Mapping[str, By] = {
    "enqueue_request": By.ENQUEUE,
    "enqueue_reversal": By.ENQUEUE,
    "enqueue_async": By.ENQUEUE,
    "wf_enqueue_step": By.ENQUEUE,  # a workflow step or undo: an ordinary PENDING row
    "claim_batch": By.CLAIM,
    "complete_request": By.COMPLETE,
    "complete_batch": By.COMPLETE,
    "requeue_request": By.RETRY,
    "release_request": By.RELEASE,
    "expire_pending": By.EXPIRE,
    "timeout_if_pending": By.EXPIRE,
    "recover_lease": By.RECOVER,
    "settle_row": By.REVERSE,
    "resolve_request": By.RESOLVE,
}


def allowed(from_status: Optional[Status], to_status: Status, by: By) -> bool:
    return (from_status, to_status, by) in TRANSITIONS


def sources(by: By) -> FrozenSet[Optional[Status]]:
    """The from-states a verb accepts (a write from any other state must change 0 rows)."""
    return frozenset(f for f, _, b in TRANSITIONS if b is by)


# -- a worker's own rows ---------------------------------------------------------------------
class Outcome(str, enum.Enum):
    """What the worker must do with a claimed row after its call (the gateway contract's
    answer, see gateway/base.py).

    COMPLETED  infcode 0: write the response, status COMPLETED.
    ERROR      a definite failure (infcode != 0, bad input, refused by config): status ERROR.
    RETRY      nothing reached the centre, or the interface is safe to resend: the row goes
               back to PENDING with next_attempt_at = now + ``retry_after`` (the statement
               checks the deadline and max_retry_count, and ends the row ERROR/TIMEOUT when
               spent).
    UNCERTAIN  a state-changing request was sent and no definite answer came back: never
               resend; the reversal job settles the doubt.
    RELEASE    nothing was sent and nothing counts as an attempt (a stopping worker): the
               row goes back to PENDING as if never claimed.
    LEASE_LOST the row is no longer ours (``CallContext.new_msgid`` said so): nothing more is
               sent and nothing is written; whoever holds the row now decides its fate.
    """

    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    RETRY = "RETRY"
    UNCERTAIN = "UNCERTAIN"
    RELEASE = "RELEASE"
    LEASE_LOST = "LEASE_LOST"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Finish:
    """How one outcome is written: the named statement, its verb, the status the row has
    afterwards (None: the statement decides, e.g. PENDING or ERROR when out of attempts) and
    whether the row keeps the claim token (what a read-back after a retried write checks)."""

    statement: str
    by: By
    status: Optional[Status]
    keeps_token: bool


FINISH: Mapping[Outcome, Finish] = {
    Outcome.COMPLETED: Finish("complete_request", By.COMPLETE, Status.COMPLETED, True),
    Outcome.ERROR: Finish("complete_request", By.COMPLETE, Status.ERROR, True),
    Outcome.UNCERTAIN: Finish("complete_request", By.COMPLETE, Status.UNCERTAIN, True),
    Outcome.RETRY: Finish("requeue_request", By.RETRY, None, False),
    Outcome.RELEASE: Finish("release_request", By.RELEASE, Status.PENDING, False),
}


def flag_late_completion(interface_code: str, reverse_late_completions: bool) -> bool:
    """Ask the completion write to flag the row for reversal if its caller's deadline has
    passed (DESIGN.md §5): only where 2601 can undo the code and the hospital wants it."""
    return reverse_late_completions and catalog.reversible(interface_code)


class Stage(str, enum.Enum):
    """Where an in-flight row is inside one worker: decides what a graceful stop may do."""

    CLAIMED = "claimed"   # leased, not yet handed to the gateway
    SENDING = "sending"   # the gateway has it (it may have reached the centre)
    WRITING = "writing"   # the outcome is on its way to the database


def may_release_at_stop(stage: Stage, interface_code: str) -> bool:
    """A stopping worker gives a row back (PENDING) only when resending it cannot settle
    twice: it was never sent, or its interface is safe to send again. Anything else is left
    PROCESSING for lease recovery, which makes it UNCERTAIN if it is state-changing."""
    return stage is Stage.CLAIMED or (stage is Stage.SENDING
                                      and catalog.is_retry_safe(interface_code))


@dataclass(frozen=True)
class Recovery:
    """What lease recovery writes for a row whose worker stopped beating."""

    status: Status
    error_code: Optional[ErrorCode]
    message: str


def recover_abandoned(interface_code: str, worker_id: str, past_deadline: bool) -> Recovery:
    """A row whose worker died mid-call: a state-changing call may have reached the centre,
    so it is never sent again (UNCERTAIN: the reversal job settles it); a retry-safe one goes
    back to PENDING, or ends TIMEOUT when its caller's deadline has passed."""
    code = catalog.normalize(interface_code)
    if not catalog.is_retry_safe(code):
        return Recovery(Status.UNCERTAIN, ErrorCode.UNCERTAIN, (
            f"结果不确定: worker {worker_id} stopped while a {code} call was in flight; it may "
            f"have reached the centre. {catalog.doubt_advice(code)}"))
    if past_deadline:
        return Recovery(Status.TIMEOUT, ErrorCode.TIMEOUT, (
            f"请求超时: worker {worker_id} stopped while processing; the caller's deadline has "
            "passed"))
    return Recovery(Status.PENDING, None,
                    f"worker {worker_id} stopped while processing; sent again")


# -- the reversal job -------------------------------------------------------------------------
class Act(str, enum.Enum):
    """What the reversal job does next with one row in doubt."""

    WAIT = "wait"            # its 2601 is still queued or in flight
    REVERSED = "reversed"    # settle the row REVERSED
    MANUAL = "manual"        # settle it NEEDS_MANUAL and raise an alert
    QUEUE_2601 = "queue"     # queue (another) 2601, after a growing delay


@dataclass(frozen=True)
class ReversalPolicy:
    """The reversal job's settings, as the decision needs them."""

    max_attempts: int
    done_pattern: str = ""       # a failed 2601's err_msg meaning "already reversed"
    not_found_pattern: str = ""  # a failed 2601's err_msg meaning "no such original"
    delay_seconds: float = 10.0


@dataclass(frozen=True)
class ReversalStep:
    act: Act
    message: str = ""
    delay_seconds: float = 0.0
    retire_2601: bool = False  # the last 2601 itself is UNCERTAIN: end it ERROR first


def reversal_step(row: Mapping[str, Any], rev: Optional[Mapping[str, Any]],
                  policy: ReversalPolicy) -> ReversalStep:
    """Decide for one row of ``find_doubtful`` (``rev`` = its latest 2601 row, if any).

    The first 2601 waits ``delay_seconds`` and each later one waits longer: a 2601 that
    overtakes its original at the centre is answered "原交易不存在" although the original is
    about to be settled, so that answer is believed only from the last attempt.
    """
    code, status = catalog.normalize(row["interface_code"]), Status(row["status"])
    if not catalog.reversible(code):
        if status is Status.UNCERTAIN:
            return ReversalStep(Act.MANUAL, (
                f"结果不确定, 需人工核实: {code} {catalog.name(code)} may or may not have "
                f"reached the centre. {catalog.doubt_advice(code)}"))
        return ReversalStep(Act.MANUAL, (
            f"{code} {catalog.name(code)} completed after the HIS caller gave up (the HIS was "
            f"told -1005). {catalog.doubt_advice(code)}"))
    rev_status = Status(rev["status"]) if rev is not None else None
    rev_id = rev["request_id"] if rev is not None else None
    if rev_status in OPEN:
        return ReversalStep(Act.WAIT)
    if rev_status is Status.COMPLETED:
        why = "UNCERTAIN" if status is Status.UNCERTAIN else "completed after the caller's deadline"
        return ReversalStep(Act.REVERSED, f"已冲正: {why}; reversed by 2601 request {rev_id}")
    rev_error = str((rev or {}).get("error_message") or "")
    attempts = int(row["rev_count"])
    if rev is not None and policy.done_pattern and re.search(policy.done_pattern, rev_error):
        return ReversalStep(Act.REVERSED, f"已冲正: the centre answered 2601 request {rev_id} "
                                          f"with '{rev_error}' - already reversed")
    if rev is not None and attempts >= policy.max_attempts and policy.not_found_pattern \
            and re.search(policy.not_found_pattern, rev_error):
        return ReversalStep(Act.REVERSED, (
            f"无原交易: {attempts} spaced 2601 attempts all found no original (last: request "
            f"{rev_id}, '{rev_error}') - the centre never settled this msgid"))
    retire = rev_status is Status.UNCERTAIN  # no answer to the 2601 itself
    if attempts >= policy.max_attempts:
        last = rev_error or "no reversal possible"
        return ReversalStep(Act.MANUAL, (
            f"冲正失败, 需人工处理: {attempts} reversal attempts (2601) failed, last: {last}. "
            "Check with the centre (5203 by setl_id, or 3202 detail reconciliation) and "
            "resolve the row."), retire_2601=retire)
    return ReversalStep(Act.QUEUE_2601, delay_seconds=policy.delay_seconds * (attempts + 1),
                        retire_2601=retire)


# -- what the HIS is told ---------------------------------------------------------------------
@dataclass(frozen=True)
class HisAnswer:
    """The procedure's three outputs besides @request_id."""

    error_code: int
    error_message: str
    result: Optional[str] = None


#: Error codes a row may carry that the HIS sees as they are (others read as -1004).
_PASSED_THROUGH = (ErrorCode.BAD_INPUT, ErrorCode.GATEWAY, ErrorCode.UNEXPECTED)


def his_answer(request_id: int, state: Mapping[str, Any]) -> HisAnswer:
    """The HIS answer for a row's final (or deadline-time) state, as the procedures map it."""
    rs, status, msg = ResultStatus(state["result_status"]), state["status"], state["error_message"]
    if rs is ResultStatus.SUCCESS:
        return HisAnswer(ErrorCode.OK, "", state["response_data"])
    if rs is ResultStatus.ERROR:
        code = state["error_code"]
        code = int(code) if code is not None and int(code) in _PASSED_THROUGH \
            else int(ErrorCode.GATEWAY)
        return HisAnswer(code, msg or "error")
    if rs is ResultStatus.TIMEOUT:
        return HisAnswer(ErrorCode.TIMEOUT, msg or "请求超时")
    if rs is ResultStatus.IN_PROGRESS:
        return HisAnswer(ErrorCode.TIMEOUT, (
            f"请求超时(结果待定): request {request_id} is still being processed by a worker; its "
            "outcome is in doubt and will be settled (a state-changing call is reversed) - "
            "check v_medical_insurance_result"))
    return HisAnswer(ErrorCode.UNCERTAIN, f"结果不确定: request {request_id} is {status}"
                     + (f": {msg}" if msg else ""))


def async_answer(request_id: int, state: Mapping[str, Any]) -> HisAnswer:
    """The result procedure's answer for a submitted row: a final state as ``his_answer``; a
    row still open is -1005 "处理中" (the caller's wait ended, not the row: ask again)."""
    if ResultStatus(state["result_status"]) is ResultStatus.IN_PROGRESS:
        return HisAnswer(ErrorCode.TIMEOUT, f"处理中: request {request_id} is {state['status']}; "
                                            "ask again later (it keeps its own deadline)")
    return his_answer(request_id, state)


def idempotent_answer(prior: Mapping[str, Any], key: str) -> HisAnswer:
    """The answer to a call whose idempotency key an earlier, not failed row holds."""
    rid = int(prior["request_id"])
    status = Status(prior["status"])
    if status is Status.COMPLETED and int(prior["needs_reversal"]) == 0:
        return HisAnswer(ErrorCode.OK, "", prior["response_data"])
    if status in OPEN:
        return HisAnswer(ErrorCode.DUPLICATE, f"重复请求: idempotency key {key} is already in "
                                              f"flight as request {rid}")
    return HisAnswer(ErrorCode.UNCERTAIN, f"结果不确定: idempotency key {key} belongs to "
                                          f"request {rid} in state {status}")


class WorkflowStatus(str, enum.Enum):
    """``medical_insurance_workflows.status`` (DESIGN.md §11; the steps are request rows)."""

    RUNNING = "RUNNING"                    # steps are being sent in order
    COMPLETED = "COMPLETED"                # every step took effect
    COMPENSATING = "COMPENSATING"          # a step failed: undoing what took effect, in reverse
    COMPENSATED = "COMPENSATED"            # failed, and everything that took effect is undone
    FAILED_NEEDS_MANUAL = "FAILED_NEEDS_MANUAL"  # an undo (or a step's doubt) needs a person

    def __str__(self) -> str:
        return self.value


W = WorkflowStatus
WF_FINAL: FrozenSet[WorkflowStatus] = frozenset({W.COMPLETED, W.COMPENSATED,
                                                 W.FAILED_NEEDS_MANUAL})
#: Every allowed (from, to) of a workflow row; ``wf_update`` refuses to leave a final state.
WF_TRANSITIONS: FrozenSet[Tuple[Optional[WorkflowStatus], WorkflowStatus]] = frozenset({
    (None, W.RUNNING), (W.RUNNING, W.RUNNING), (W.RUNNING, W.COMPLETED),
    (W.RUNNING, W.COMPENSATING), (W.RUNNING, W.COMPENSATED),
    (W.RUNNING, W.FAILED_NEEDS_MANUAL), (W.COMPENSATING, W.COMPENSATING),
    (W.COMPENSATING, W.COMPENSATED), (W.COMPENSATING, W.FAILED_NEEDS_MANUAL),
})
del W


def diagram() -> Dict[Optional[Status], Dict[Status, Tuple[By, ...]]]:
    """TRANSITIONS grouped as from → to → verbs (for docs/states.md)."""
    out: Dict[Optional[Status], Dict[Status, Tuple[By, ...]]] = {}
    for f, t, b in sorted(TRANSITIONS, key=lambda x: (_order(x[0]), _order(x[1]), x[2].value)):
        out.setdefault(f, {}).setdefault(t, ())
        out[f][t] = out[f][t] + (b,)
    return out


def _order(s: Optional[Status]) -> int:
    return -1 if s is None else list(Status).index(s)
