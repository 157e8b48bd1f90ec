"""Workflow definitions and the pure decider (issue 14), no database: bad definitions are
refused at start with every problem named; the decider undoes only what took effect."""
from __future__ import annotations

import json

import pytest

from mi_worker.config import ConfigError, Settings
from mi_worker.states import WF_FINAL, WF_TRANSITIONS, WorkflowStatus
from mi_worker.workflows.decide import check_input, decide
from mi_worker.workflows.definitions import DefinitionError, load, parse_one

WS = WorkflowStatus
REG = load()


def body(**step):
    base = {"name": "s1", "code": "2207", "input": {"data": "${input.x}"},
            "produces": ["setlinfo.setl_id"],
            "undo": {"code": "2208", "input": {"data": {"setl_id": "${self.output.setlinfo.setl_id}"}}}}
    base.update(step)
    return {"steps": [base]}


def test_shipped_definitions():
    assert set(REG) == {"outpatient_registration", "outpatient_settlement",
                        "inpatient_settlement"}
    assert [s.code for s in REG["outpatient_settlement"].steps] == ["2203", "2204", "2206", "2207"]
    assert [(s.code, s.undo and s.undo.code) for s in REG["inpatient_settlement"].steps] == [
        ("2301", "2302"), ("2402", "2405"), ("2303", None), ("2304", "2305")]
    assert REG["inpatient_settlement"].steps[1].optional


@pytest.mark.parametrize("change,words", [
    ({"code": "2999"}, "not in the interface catalogue"),
    ({"undo": {"code": "2205", "input": {}}}, "is not the cancel code of 2207"),
    ({"undo": None}, "needs an 'undo' or a 'no_undo'"),
    ({"undo": {"code": "2208", "input": {"d": "${self.output.setlinfo.nope}"}}},
     "does not produce setlinfo.nope"),
    ({"input": {"d": "${steps.later.output.x}"}}, "names no earlier step"),
    ({"code": "2204", "undo": {"code": "2205", "input": {}}, "undo_uncertain": "2601"},
     "undo_uncertain must be 2601 and only on a code 2601 can reverse"),
    ({"check": {"field": "a", "expected": "1"}}, "'check' belongs on a trial step"),
    ({"code": "9001", "undo": None, "no_undo": "x"}, "sent by the worker itself"),
    ({"colour": "red"}, "unknown key 'colour'"),
])
def test_bad_definitions_are_refused_with_a_clear_reason(change, words):
    with pytest.raises(DefinitionError) as e:
        parse_one("wf", body(**change))
    assert words in str(e.value)


def test_an_output_not_produced_by_an_earlier_step():
    raw = {"steps": [
        {"name": "a", "code": "2206", "input": {}, "produces": ["setlinfo"]},
        {"name": "b", "code": "2207", "input": {"x": "${steps.a.output.other}"},
         "produces": ["setlinfo"], "undo": {"code": "2208", "input": {}}}]}
    with pytest.raises(DefinitionError, match="a does not produce other"):
        parse_one("wf", raw)


def test_override_file_is_checked_at_start(tmp_path):
    from mi_worker.jobs import Scheduler
    bad = tmp_path / "wf.json"
    bad.write_text(json.dumps({"outpatient_settlement": body(code="2999")}), encoding="utf-8")
    s = Settings()
    s.workflows.file = str(bad)
    with pytest.raises(ConfigError, match="(?s)workflows.file.*2999 is not in the interface"):
        Scheduler(worker=None, db=None, settings=s)  # type: ignore[arg-type]
    good = tmp_path / "ok.json"
    good.write_text(json.dumps({"my_settle": body()}), encoding="utf-8")
    assert "my_settle" in load(str(good)) and "outpatient_settlement" in load(str(good))


def test_input_problems_name_the_field():
    wf = REG["outpatient_settlement"]
    assert "needs input.mdtrtinfo" in check_input(wf, {"feedetail": []})
    assert "not an optional step" in check_input(wf, {"skip_steps": ["settle"]})


def test_workflow_transitions_table():
    assert all(f not in WF_FINAL for f, _ in WF_TRANSITIONS if f is not None)
    assert (WS.COMPENSATING, WS.COMPLETED) not in WF_TRANSITIONS
    assert (WS.COMPENSATING, WS.RUNNING) not in WF_TRANSITIONS


def _row(n, code, status, output=None, needs_reversal=0):
    return {"workflow_step": n, "request_id": 100 + n, "interface_code": code, "status": status,
            "needs_reversal": needs_reversal, "error_code": None, "error_message": None,
            "input_data": "{}", "response_data": json.dumps({"output": output or {}})}


def test_decider_undoes_only_what_took_effect_in_reverse():
    wf = REG["outpatient_settlement"]
    data = json.loads('{"psn_no":"P","mdtrt_id":"M","feedetail":[{"chrg_bchno":"B"}]}')
    rows = [_row(1, "2203", "COMPLETED"), _row(2, "2204", "COMPLETED"),
            _row(3, "2206", "COMPLETED"), _row(4, "2207", "ERROR")]
    d = decide(wf, WS.RUNNING, data, rows, False, (0, ""))
    assert (d.act, d.status) == ("compensate", WS.COMPENSATING)
    d = decide(wf, WS.COMPENSATING, data, rows, False, (-1004, "x"))
    assert (d.act, d.code, d.step_no, d.input["data"]["chrg_bchno"]) == ("enqueue", "2205", -2, "B")
    d = decide(wf, WS.COMPENSATING, data, rows + [_row(-2, "2205", "COMPLETED")], False,
               (-1004, "x"))
    assert (d.act, d.status, d.error_code) == ("end", WS.COMPENSATED, -1009)
    # an uncertain 2207 waits for the reversal job; REVERSED means it did not take effect
    unc = rows[:3] + [_row(4, "2207", "UNCERTAIN")]
    assert decide(wf, WS.RUNNING, data, unc, False, (0, "")).act == "wait"
    manual = rows[:3] + [_row(4, "2207", "NEEDS_MANUAL")]
    assert decide(wf, WS.RUNNING, data, manual, False, (0, "")).status is WS.FAILED_NEEDS_MANUAL
    # past the HIS deadline no further step is sent
    d = decide(wf, WS.RUNNING, data, rows[:2], True, (0, ""))
    assert (d.act, d.error_code) == ("compensate", -1005)


def test_compensation_waits_for_a_step_still_in_flight():
    wf = REG["outpatient_settlement"]
    data = {"psn_no": "P", "mdtrt_id": "M", "feedetail": []}
    rows = [_row(1, "2203", "COMPLETED"), _row(2, "2204", "COMPLETED"),
            _row(3, "2206", "COMPLETED"), _row(4, "2207", "PROCESSING")]
    d = decide(wf, WS.COMPENSATING, data, rows, True, (-1005, "deadline"))
    assert (d.act, d.status) == ("wait", WS.COMPENSATING)
    rows[3] = _row(4, "2207", "COMPLETED", output={"setlinfo": {"setl_id": "S1"}})
    d = decide(wf, WS.COMPENSATING, data, rows, True, (-1005, "deadline"))
    assert (d.act, d.code) == ("enqueue", "2208")  # it settled: undone first, in reverse
