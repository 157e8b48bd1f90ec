"""Issue 12 on every dialect (SQLite's embedded path, the real PostgreSQL, SQL Server with
Docker): blank optional texts are no value, idempotency keys compare exactly, the poll never
overshoots the deadline, supplementary characters do not break the input checks, and codes
the worker manages itself are refused from the HIS with -1001 naming the reason.
"""
from __future__ import annotations

import json
import time

from conftest import InProcessWorker, make_settings
from mi_worker.gateway import catalog
from mi_worker.his_call import call
from mi_worker.runner import sync_catalog


def _input(psn: str) -> str:
    return json.dumps({"data": {"psn_no": psn, "insuplc_admdvs": "110000"}}, ensure_ascii=False)


def _beat(db) -> None:
    """A live heartbeat of a worker that never claims (so -1002 passes, nothing is served)."""
    db.run("heartbeat", service_name="mi-worker", worker_id="idle-1", host="h", pid=1,
           version="t", status="RUNNING", in_flight=0, processed_total=0, gateway_kind="nhsa",
           gateway_tls_verified=1)


def _stored(db, request_id: int) -> dict:
    return db.run_one("get_request", request_id=request_id)


def test_blank_idempotency_key_is_no_key(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        first = call(w.db, "1101", _input("PA"), timeout=20, idempotency_key="")
        second = call(w.db, "1101", _input("PB"), timeout=20, idempotency_key="   ")
        assert first.error_code == 0 and second.error_code == 0, (first, second)
        assert first.request_id != second.request_id
        assert json.loads(second.result)["output"]["baseinfo"]["psn_no"] == "PB"
        assert _stored(w.db, first.request_id)["idempotency_key"] is None
        assert _stored(w.db, second.request_id)["idempotency_key"] is None


def test_idempotency_keys_are_case_sensitive(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        upper = call(w.db, "1101", _input("PC"), timeout=20, idempotency_key="FEE-1")
        lower = call(w.db, "1101", _input("PD"), timeout=20, idempotency_key="fee-1")
        again = call(w.db, "1101", _input("PC"), timeout=20, idempotency_key="FEE-1")
    assert upper.error_code == lower.error_code == again.error_code == 0
    assert upper.request_id != lower.request_id
    assert again.request_id == upper.request_id
    assert json.loads(lower.result)["output"]["baseinfo"]["psn_no"] == "PD"


def test_blank_psn_no_parameter_falls_back_to_the_input(db_url, db):
    _beat(db)
    res = call(db, "1101", _input("PE"), timeout=1, psn_no="")
    assert res.error_code == -1005
    assert _stored(db, res.request_id)["psn_no"] == "PE"


def test_poll_never_sleeps_past_the_deadline(db_url, db):
    # 3 s with a 60 s poll ceiling: the 10 ms doubling steps reach 2,560 ms at about 2.55 s,
    # which ended near 5.1 s before each wait was capped by the time left.
    _beat(db)
    started = time.monotonic()
    res = call(db, "1101", _input("PF"), timeout=3, poll_ms=60000)
    elapsed = time.monotonic() - started
    assert res.error_code == -1005, res
    assert elapsed < 3.8, f"the call overran its 3 s timeout: {elapsed:.2f} s"


def test_supplementary_characters_in_the_input(db_url, sandbox):
    # U+20000 (CJK Ext-B, a 生僻字 outside the BMP) before psn_no: a surrogate pair in UTF-16.
    data = json.dumps({"data": {"psn_name": "\U00020000三", "psn_no": "PG",
                                "insuplc_admdvs": "110000"}}, ensure_ascii=False)
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        res = call(w.db, "1101", data, timeout=20)
        assert res.error_code == 0, res
        assert _stored(w.db, res.request_id)["psn_no"] == "PG"


def test_worker_managed_codes_are_refused(db_url, db):
    _beat(db)
    for code in ("9001", "9002", "2601"):
        res = call(db, code, _input("PH"), timeout=1)
        assert res.error_code == -1001 and res.request_id is None, res
        assert "managed by mi-worker" in res.error_message
        assert catalog.WORKER_MANAGED[code].split(" / ")[0] in res.error_message
    assert db.run("count_by_status") == []


def test_manual_reversal_switch_lets_2601_through(db_url, db):
    sync_catalog(db, allow_manual_reversal=True)
    _beat(db)
    res = call(db, "2601", _input("PI"), timeout=1)
    assert res.error_code == -1005 and res.request_id is not None, res  # enqueued, not refused
    assert call(db, "9001", _input("PI"), timeout=1).error_code == -1001
    sync_catalog(db)  # back to the default: refused again
    assert call(db, "2601", _input("PI"), timeout=1).error_code == -1001


def test_catalogue_says_which_codes_the_worker_manages():
    assert set(catalog.WORKER_MANAGED) == {"9001", "9002", "2601"}
    assert catalog.his_refusal("2601") and catalog.his_refusal("2601", True) is None
    assert catalog.his_refusal("9001", True) and catalog.his_refusal("1101") is None
