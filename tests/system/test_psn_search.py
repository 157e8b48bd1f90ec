"""One psn_no (and insuplc_admdvs) search: the SQLite contract path, the PostgreSQL
procedure and the gateway client agree on where a patient's number is found.

The order is documented: the call's own @psn_no, then data.psn_no, then a top-level psn_no,
then the first one found below (depth first). With more than one psn_no below the top level
the procedures may pick differently (PostgreSQL walks jsonb in its own key order; SQL Server
2012 does a plain text search), which is why the HIS should pass @psn_no for such inputs.
"""
from __future__ import annotations

import json

import pytest

from mi_worker.gateway.envelope import find_field, find_psn_no
from mi_worker.his_call import call

INPUTS = [
    ({"data": {"psn_no": "A1"}}, "A1"),
    ({"psn_no": "B1", "data": {"mdtrt_id": "M"}}, "B1"),
    ({"data": {"psn_no": "D1"}, "psn_no": "E1"}, "D1"),
    ({"data": {"feedetail": [{"psn_no": "C1", "fee": 1}]}}, "C1"),
    ({"feedetail": [{"psn_no": "F1"}], "data": {"mdtrt_id": "M"}}, "F1"),
    ({"data": {"mdtrt_id": "M"}}, None),
]


def test_the_python_search_follows_the_documented_order():
    for doc, want in INPUTS:
        assert find_psn_no(doc) == want, doc
    assert find_field({"data": {"insuplc_admdvs": "110000"}, "insuplc_admdvs": "x"},
                      "insuplc_admdvs") == "110000"
    assert find_psn_no({"data": {"psn_no": 12345}}) == "12345"
    assert find_psn_no({"data": {"psn_no": ""}, "psn_no": "T"}) == "T"


@pytest.mark.parametrize("doc,want", INPUTS, ids=[w or "none" for _, w in INPUTS])
def test_the_contract_stores_what_the_gateway_sends(db, doc, want):
    db.run("heartbeat", service_name="medical_insurance_sdk", worker_id="psn-test", host="t",
           pid=1, version="t", status="RUNNING", in_flight=0, processed_total=0, gateway_kind="nhsa",
           gateway_tls_verified=1)
    result = call(db, "1101", json.dumps(doc, ensure_ascii=False), timeout=1, poll_ms=50)
    assert result.request_id is not None, result
    row = db.run_one("get_request", request_id=result.request_id)
    assert row["psn_no"] == want == find_psn_no(doc), (db.name, doc, row["psn_no"])
