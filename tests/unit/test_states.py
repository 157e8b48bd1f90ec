"""states.py: the table and the pure decisions, without a database."""
from __future__ import annotations

import pytest

from mi_worker import states
from mi_worker.states import (
    Act,
    By,
    ErrorCode,
    Outcome,
    ReversalPolicy,
    Stage,
    Status,
    his_answer,
    idempotent_answer,
    may_release_at_stop,
    recover_abandoned,
    reversal_step,
)


def test_every_status_is_reachable_and_every_write_has_a_verb():
    reached = {to for _, to, _ in states.TRANSITIONS}
    assert reached == set(Status)
    assert set(states.WRITES.values()) == set(By)
    for outcome, finish in states.FINISH.items():
        assert finish.statement in states.WRITES
        assert states.WRITES[finish.statement] is finish.by
        if finish.status is not None:
            assert states.allowed(Status.PROCESSING, finish.status, finish.by), outcome


def test_final_states_are_left_only_by_reversal_or_resolution():
    for f, _, by in states.TRANSITIONS:
        if f in states.FINAL:
            assert by in (By.REVERSE, By.RESOLVE), (f, by)
    assert states.sources(By.CLAIM) == {Status.PENDING}
    assert states.sources(By.ENQUEUE) == {None}


def test_error_codes_print_as_numbers_on_every_python():
    assert str(ErrorCode.BAD_INPUT) == "-1001" and f"{ErrorCode.UNEXPECTED}" == "-1999"
    assert [int(c) for c in ErrorCode][1:] == [-1001, -1002, -1003, -1004, -1005, -1006,
                                               -1007, -1008, -1009, -1999]


@pytest.mark.parametrize("stage,code,release", [
    (Stage.CLAIMED, "2207", True),     # never sent: give it back
    (Stage.SENDING, "1101", True),     # a query may be sent again
    (Stage.SENDING, "2207", False),    # a settlement may have landed: lease recovery decides
    (Stage.WRITING, "1101", False),    # its outcome is on the way
    (Stage.SENDING, "9999", False),    # unknown codes count as state-changing
])
def test_what_a_stopping_worker_gives_back(stage, code, release):
    assert may_release_at_stop(stage, code) is release


@pytest.mark.parametrize("code,past,status,err", [
    ("1101", False, Status.PENDING, None),
    ("1101", True, Status.TIMEOUT, ErrorCode.TIMEOUT),
    ("2207", False, Status.UNCERTAIN, ErrorCode.UNCERTAIN),
    ("2207", True, Status.UNCERTAIN, ErrorCode.UNCERTAIN),
    ("2206", True, Status.TIMEOUT, ErrorCode.TIMEOUT),  # a trial is safe to resend
])
def test_lease_recovery_decision(code, past, status, err):
    r = recover_abandoned(code, "host:1:abc", past)
    assert (r.status, r.error_code) == (status, err)
    assert states.allowed(Status.PROCESSING, r.status, By.RECOVER)
    assert "host:1:abc" in r.message


POLICY = ReversalPolicy(max_attempts=3, done_pattern="已冲正", not_found_pattern="原交易不存在",
                        delay_seconds=10)


def _row(code="2207", status="UNCERTAIN", rev_count=0):
    return {"request_id": 7, "interface_code": code, "status": status, "rev_count": rev_count}


def _rev(status, msg=None):
    return {"request_id": 9, "status": status, "error_message": msg}


@pytest.mark.parametrize("row,rev,act,retire,delay", [
    # 2601 cannot undo the code: a person must
    (_row("2201"), None, Act.MANUAL, False, 0),
    (_row("2201", "COMPLETED"), None, Act.MANUAL, False, 0),
    # first 2601, after the delay
    (_row(), None, Act.QUEUE_2601, False, 10),
    # the 2601 is still under way
    (_row(rev_count=1), _rev("PENDING"), Act.WAIT, False, 0),
    (_row(rev_count=1), _rev("PROCESSING"), Act.WAIT, False, 0),
    # it worked
    (_row(rev_count=1), _rev("COMPLETED"), Act.REVERSED, False, 0),
    (_row("2207", "COMPLETED", 1), _rev("COMPLETED"), Act.REVERSED, False, 0),
    # the centre says it was already reversed
    (_row(rev_count=1), _rev("ERROR", "该交易已冲正"), Act.REVERSED, False, 0),
    # "no original" is believed only from the last attempt
    (_row(rev_count=1), _rev("ERROR", "原交易不存在"), Act.QUEUE_2601, False, 20),
    (_row(rev_count=3), _rev("ERROR", "原交易不存在"), Act.REVERSED, False, 0),
    # a 2601 without an answer is retired, and another follows
    (_row(rev_count=1), _rev("UNCERTAIN"), Act.QUEUE_2601, True, 20),
    # out of attempts
    (_row(rev_count=3), _rev("ERROR", "系统繁忙"), Act.MANUAL, False, 0),
    (_row(rev_count=3), _rev("UNCERTAIN"), Act.MANUAL, True, 0),
])
def test_reversal_decision_table(row, rev, act, retire, delay):
    step = reversal_step(row, rev, POLICY)
    assert (step.act, step.retire_2601, step.delay_seconds) == (act, retire, delay)
    if act in (Act.REVERSED, Act.MANUAL):
        to = Status.REVERSED if act is Act.REVERSED else Status.NEEDS_MANUAL
        assert states.allowed(Status(row["status"]), to, By.REVERSE)
        assert step.message


@pytest.mark.parametrize("state,code", [
    ({"result_status": "SUCCESS", "status": "COMPLETED", "response_data": "{}"}, 0),
    ({"result_status": "ERROR", "status": "ERROR", "error_code": -1001}, -1001),
    ({"result_status": "ERROR", "status": "ERROR", "error_code": -1004}, -1004),
    ({"result_status": "ERROR", "status": "ERROR", "error_code": -1999}, -1999),
    ({"result_status": "ERROR", "status": "ERROR", "error_code": None}, -1004),
    ({"result_status": "ERROR", "status": "ERROR", "error_code": -1005}, -1004),
    ({"result_status": "TIMEOUT", "status": "TIMEOUT"}, -1005),
    ({"result_status": "IN_PROGRESS", "status": "PROCESSING"}, -1005),
    ({"result_status": "UNCERTAIN", "status": "UNCERTAIN"}, -1007),
    ({"result_status": "UNCERTAIN", "status": "REVERSED"}, -1007),
    ({"result_status": "UNCERTAIN", "status": "NEEDS_MANUAL"}, -1007),
    ({"result_status": "UNCERTAIN", "status": "COMPLETED"}, -1007),  # late, being reversed
])
def test_status_to_his_answer(state, code):
    state = {"error_message": None, "response_data": None, "error_code": None, **state}
    answer = his_answer(5, state)
    assert answer.error_code == code
    assert (answer.result is not None) == (code == 0)


def test_idempotent_answers():
    done = {"request_id": 3, "status": "COMPLETED", "needs_reversal": 0, "response_data": "{}"}
    assert idempotent_answer(done, "K").error_code == 0
    assert idempotent_answer({**done, "needs_reversal": 1}, "K").error_code == -1007
    for status in ("PENDING", "PROCESSING"):
        assert idempotent_answer({**done, "status": status}, "K").error_code == -1008
    assert idempotent_answer({**done, "status": "UNCERTAIN"}, "K").error_code == -1007


def test_outcomes_map_onto_writes():
    assert states.FINISH[Outcome.RETRY].status is None  # the statement decides
    assert Outcome.LEASE_LOST not in states.FINISH      # nothing is written
    assert states.flag_late_completion("2207", True) is True
    assert states.flag_late_completion("2207", False) is False
    assert states.flag_late_completion("1101", True) is False
