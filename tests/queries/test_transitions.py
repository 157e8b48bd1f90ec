"""Every named write, from every status, on every dialect: what it does is an arrow of
states.TRANSITIONS, and from a state the table does not allow it changes nothing at all.

The statements keep the guards (each names the from-state it accepts); this test holds the
three dialects' guards against the one table in Python.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from mi_worker import states
from mi_worker.states import By, Status

TOKEN = "tok-transition-test"
PAST = {"sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now', '-600 seconds')",
        "postgresql": "now() - interval '600 seconds'",
        "mssql": "DATEADD(second, -600, SYSUTCDATETIME())"}
FUTURE = {"sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now', '+600 seconds')",
          "postgresql": "now() + interval '600 seconds'",
          "mssql": "DATEADD(second, 600, SYSUTCDATETIME())"}


def _enqueue(db, code: str = "1101", psn: str = "P-T") -> int:
    row = db.run_one("enqueue_request", retry=False, interface_code=code,
                     input_data=json.dumps({"data": {"psn_no": psn}}), priority=5,
                     timeout_seconds=60, max_retry_count=3, psn_no=psn, insuplc_admdvs=None,
                     idempotency_key=None, his_fee_id=None, parent_request_id=None)
    return int(row["request_id"])


def _force(db, rid: int, status: Status, *, deadline_past: bool = False,
           attempts: int = 1) -> None:
    """Put a row in ``status`` with a lease held by TOKEN (expired), like a real row there."""
    dialect = db.name
    deadline = PAST[dialect] if deadline_past else FUTURE[dialect]
    conn = _RAW.get(id(db))
    if conn is None:
        conn = _RAW[id(db)] = db.raw()
    conn.cursor().execute(
        "UPDATE medical_insurance_requests SET status = ?, claim_token = ?, "
        f"worker_id = ?, lease_expires_at = {PAST[dialect]}, deadline_at = {deadline}, "
        f"next_attempt_at = {PAST[dialect]}, attempts = ?, needs_reversal = 0 "
        "WHERE request_id = ?", [status.value, TOKEN, "w-dead", attempts, rid])
    if not getattr(conn, "autocommit", True):
        conn.commit()


_RAW: Dict[int, Any] = {}


@pytest.fixture(autouse=True)
def _close_raw():
    yield
    for conn in _RAW.values():
        conn.close()
    _RAW.clear()


def _run_case(db, rid: int, name: str, params: Dict[str, Any]) -> None:
    params = dict(params)
    if "request_id" in params:
        params["request_id"] = rid
    if name == "complete_batch":
        rows = json.loads(params["rows"])
        rows[0]["request_id"] = rid
        params["rows"] = json.dumps(rows)
    db.run(name, **params)


def _snapshot(db, rid: int) -> Dict[str, Any]:
    row = dict(db.run_one("get_request", request_id=rid))
    row.pop("latency_ms", None)
    return row


def _complete_params(rid: int, to: Status) -> Dict[str, Any]:
    return dict(request_id=rid, claim_token=TOKEN, status=to.value, infcode="0",
                response_data="{}", error_code=None, error_message=None, msgid=None,
                attempt_log="[]", late_reversible=0)


def _writes(rid: int, seen: Status) -> List[tuple]:
    """(statement, params, target status or None when the statement picks it)."""
    out: List[tuple] = [
        ("claim_batch", dict(batch_size=5, scan_size=8, slot_offset=0, worker_id="w-new",
                             claim_token="tok-new", lease_seconds=30,
                             fixmedins_code="H00000000000"), None),
        ("requeue_request", dict(request_id=rid, claim_token=TOKEN, delay_seconds=0.0,
                                 error_code=-1004, error_message="503", msgid=None,
                                 attempt_log="[]"), None),
        ("release_request", dict(request_id=rid, claim_token=TOKEN), None),
        ("expire_pending", {}, None),
        ("timeout_if_pending", dict(request_id=rid, error_message="timeout"), None),
        ("resolve_request", dict(request_id=rid, resolved_by="tester", note="checked"), None),
    ]
    for to in (Status.COMPLETED, Status.ERROR, Status.UNCERTAIN):
        out.append(("complete_request", _complete_params(rid, to), to))
        out.append(("complete_batch", dict(rows=json.dumps([_complete_params(rid, to)])), to))
    for to in (Status.PENDING, Status.UNCERTAIN, Status.TIMEOUT):
        out.append(("recover_lease", dict(request_id=rid, claim_token=TOKEN, status=to.value,
                                          error_code=None, error_message="recovered"), to))
    for to in (Status.REVERSED, Status.NEEDS_MANUAL, Status.ERROR):
        out.append(("settle_row", dict(request_id=rid, status=to.value, error_code=-1007,
                                       error_message="settled", expected_status=seen.value),
                    to))
    return out


#: Row set-ups that between them reach every arrow (the deadline and the attempts decide
#: which of its arrows a retry, recovery or claim takes).
SETUPS = {"fresh": dict(deadline_past=False, attempts=1),
          "past-deadline": dict(deadline_past=True, attempts=1),
          "out-of-attempts": dict(deadline_past=False, attempts=9)}


def test_every_write_from_every_status_follows_the_table(db):
    """Whatever a write does is an arrow of its verb, and every arrow is taken somewhere."""
    seen = set()
    n = 0
    for setup in SETUPS.values():
        for status in Status:
            for name, params, target in _writes(0, status):
                rid = _enqueue(db, psn=f"P{n}")
                n += 1
                _force(db, rid, status, **setup)
                before = _snapshot(db, rid)
                _run_case(db, rid, name, params)
                after = _snapshot(db, rid)
                if before != after:
                    src, dst, by = Status(before["status"]), Status(after["status"]), \
                        states.WRITES[name]
                    assert states.allowed(src, dst, by), \
                        f"{db.name}: {name} moved {src} -> {dst}, not an arrow of '{by}'"
                    assert target is None or dst is target, (name, target, dst)
                    seen.add((src, dst, by))
                _force(db, rid, Status.ERROR)  # out of the way of the next claim
    missing = {t for t in states.TRANSITIONS if t[2] is not By.ENQUEUE} - seen
    assert not missing, f"{db.name}: arrows no statement took: {sorted(map(str, missing))}"


def test_forbidden_writes_change_nothing(db):
    """From every status the table does not list as a source of a verb, its writes leave
    the row exactly as it was."""
    n = 0
    for setup in SETUPS.values():
        for status in Status:
            for name, params, target in _writes(0, status):
                by = states.WRITES[name]
                if status in states.sources(by) and (
                        target is None or states.allowed(status, target, by)):
                    continue
                rid = _enqueue(db, psn=f"F{n}")
                n += 1
                _force(db, rid, status, **setup)
                before = _snapshot(db, rid)
                _run_case(db, rid, name, params)
                assert _snapshot(db, rid) == before, \
                    f"{db.name}: {name} from {status} changed the row (target {target})"
                _force(db, rid, Status.ERROR)


def test_enqueue_makes_pending_rows(db):
    rid = _enqueue(db)
    assert _snapshot(db, rid)["status"] == Status.PENDING.value
    rev = db.run_one("enqueue_reversal", input_data="{}", timeout_seconds=60, psn_no="X",
                     insuplc_admdvs=None, delay_seconds=0, parent_request_id=rid)
    assert _snapshot(db, int(rev["request_id"]))["status"] == Status.PENDING.value
    assert states.allowed(None, Status.PENDING, By.ENQUEUE)
