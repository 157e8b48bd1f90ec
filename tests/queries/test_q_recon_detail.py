"""Conformance: the detail-reconciliation statements (issue 15) on every dialect.

insert_recon_detail / recon_detail_for_day (a day's mismatched rows in order, amounts kept),
set_recon_fix (once per row), request_by_msgid (the row that sent a msgid, or none).
"""
from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qhelpers import claim_one, enqueue  # noqa: E402

COVERS = {"insert_recon_detail", "recon_detail_for_day", "set_recon_fix", "request_by_msgid"}


def _detail(db, day, setl, rslt, msgid=None):
    return int(db.run_one("insert_recon_detail", stmt_date=day, insutype="310", clr_type="11",
                          setl_id=setl, mdtrt_id="MD", psn_no="P1", msgid=msgid,
                          stmt_rslt=rslt, memo="中心多", medfee_sumamt="12.30",
                          fund_pay_sumamt="8.61", acct_pay="0.00", request_id=None)["detail_id"])


def test_details_of_a_day_in_order(db):
    a = _detail(db, "2026-12-01", "S1", "1", "M" * 30)
    b = _detail(db, "2026-12-01", "S2", "2")
    _detail(db, "2026-12-02", "S3", "3")
    rows = db.run("recon_detail_for_day", stmt_date="2026-12-01")
    assert [(int(r["detail_id"]), r["setl_id"], r["stmt_rslt"]) for r in rows] == [
        (a, "S1", "1"), (b, "S2", "2")]
    assert Decimal(str(rows[0]["medfee_sumamt"])) == Decimal("12.30")
    assert rows[0]["msgid"] == "M" * 30 and rows[1]["msgid"] is None
    assert rows[0]["fix_request_id"] is None


def test_a_fix_is_recorded_once(db):
    d = _detail(db, "2026-12-03", "S9", "1", "X" * 30)
    db.run("set_recon_fix", detail_id=d, fix_request_id=77)
    db.run("set_recon_fix", detail_id=d, fix_request_id=88)
    assert int(db.run("recon_detail_for_day", stmt_date="2026-12-03")[0]["fix_request_id"]) == 77


def test_request_by_msgid(db):
    rid = enqueue(db, "2207", psn_no="P7")
    req = claim_one(db, rid)
    row = db.run_one("request_by_msgid", msgid=req["msgid"])
    assert (int(row["request_id"]), row["interface_code"].strip(), row["status"]) == (
        rid, "2207", "PROCESSING")
    assert db.run("request_by_msgid", msgid="H" * 30) == []
