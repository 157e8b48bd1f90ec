"""The sandbox itself: ledger, 2601, 3201, envelope checks, control endpoints, concurrency."""
from __future__ import annotations

import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from mi_worker.gateway.base import Outcome
from mi_worker.gateway.client import NHSAClient
from mi_worker.gateway.envelope import build_envelope, encode
from mi_worker.sandbox import SandboxServer, defaults
from mi_worker.sandbox.testing import (
    MsgidCounter,
    client_settings,
    make_ctx,
    running_sandbox,
)

ADMVS = defaults.ADMVS


@pytest.fixture
def box():
    with running_sandbox() as server:
        yield server


@pytest.fixture
def client(box):
    c = NHSAClient(client_settings(box))
    yield c
    c.close()


def settle(client, psn="P1", mdtrt="MD1", amount="100.00", code="2207", **extra):
    data = {"psn_no": psn, "mdtrt_id": mdtrt, "medfee_sumamt": amount, **extra}
    r = client.call(make_ctx(code, {"data": data}, insuplc_admdvs=ADMVS))
    assert r.outcome is Outcome.COMPLETED, r.error_message
    return r


def test_settlement_amounts_and_5203(box, client):
    r = settle(client, amount="200.00", acct_used_flag="1")
    info = r.response["output"]["setlinfo"]
    assert info["medfee_sumamt"] == 200.0 and info["fund_pay_sumamt"] == 140.0
    assert info["acct_pay"] == 20.0 and info["psn_cash_pay"] == 40.0
    assert info["insutype"] == "310" and info["clr_type"] == "11" and info["setl_id"]
    q = client.call(make_ctx("5203", {"data": {"psn_no": "P1", "setl_id": info["setl_id"]}},
                             insuplc_admdvs=ADMVS))
    assert q.response["output"]["setlinfo"]["setl_id"] == info["setl_id"]
    [entry] = box.ledger.open_settlements()
    assert entry.msgid == r.msgid and entry.business_key == "outpatient:P1:MD1"


def test_cancel_and_double_settlement(box, client):
    first = settle(client)
    settle(client)  # same psn_no + mdtrt_id: a double settlement
    assert len(box.ledger.double_settlements()) == 1
    setl_id = first.response["output"]["setlinfo"]["setl_id"]
    r = client.call(make_ctx("2208", {"data": {"psn_no": "P1", "mdtrt_id": "MD1",
                                               "setl_id": setl_id}}, insuplc_admdvs=ADMVS))
    assert r.outcome is Outcome.COMPLETED
    assert r.response["output"]["setlinfo"]["medfee_sumamt"] == -100.0
    assert box.ledger.double_settlements() == []
    assert len(box.ledger.open_settlements()) == 1
    again = client.call(make_ctx("2208", {"data": {"psn_no": "P1", "setl_id": setl_id}},
                                 insuplc_admdvs=ADMVS))
    assert again.outcome is Outcome.ERROR and "已撤销" in again.error_message


def test_business_key_marker(box, client):
    settle(client, mdtrt="A", his_fee_id="BILL-1")
    settle(client, mdtrt="B", his_fee_id="BILL-1")
    settle(client, mdtrt="C", setl_key="K2")
    groups = box.ledger.double_settlements()
    assert len(groups) == 1 and groups[0][0].business_key == "his_fee_id:BILL-1"


def test_2601_reversal(box, client):
    r = settle(client, code="2304")
    assert r.response["output"]["setlinfo"]["clr_type"] == "21"
    rev = client.call(make_ctx("2601", {"data": {"psn_no": "P1", "omsgid": r.msgid,
                                                 "oinfno": "2304"}}, insuplc_admdvs=ADMVS))
    assert rev.outcome is Outcome.COMPLETED
    assert box.ledger.open_settlements() == []
    assert box.ledger.get(r.msgid).status == "reversed"
    assert box.ledger.get(r.msgid).undone_by == rev.msgid
    twice = client.call(make_ctx("2601", {"data": {"psn_no": "P1", "omsgid": r.msgid,
                                                   "oinfno": "2304"}}, insuplc_admdvs=ADMVS))
    assert twice.outcome is Outcome.ERROR and "已冲正" in twice.error_message
    unknown = client.call(make_ctx("2601", {"data": {"psn_no": "P1", "omsgid": "X" * 30,
                                                     "oinfno": "2207"}}, insuplc_admdvs=ADMVS))
    assert unknown.outcome is Outcome.ERROR and "原交易不存在" in unknown.error_message
    reg = client.call(make_ctx("2201", {"data": {"psn_no": "P1"}}, insuplc_admdvs=ADMVS))
    mdtrt_id = reg.response["output"]["data"]["mdtrt_id"]
    assert mdtrt_id
    no = client.call(make_ctx("2601", {"data": {"psn_no": "P1", "omsgid": reg.msgid,
                                                "oinfno": "2201"}}, insuplc_admdvs=ADMVS))
    assert no.outcome is Outcome.ERROR and "不允许冲正" in no.error_message
    cancel = client.call(make_ctx("2202", {"data": {"psn_no": "P1", "mdtrt_id": mdtrt_id}},
                                  insuplc_admdvs=ADMVS))
    assert cancel.outcome is Outcome.COMPLETED
    assert box.ledger.get(reg.msgid).status == "cancelled"


def test_reversing_a_cancel_reopens_the_settlement(box, client):
    r = settle(client)
    setl_id = r.response["output"]["setlinfo"]["setl_id"]
    c = client.call(make_ctx("2208", {"data": {"psn_no": "P1", "setl_id": setl_id}},
                             insuplc_admdvs=ADMVS))
    assert box.ledger.open_settlements() == []
    client.call(make_ctx("2601", {"data": {"psn_no": "P1", "omsgid": c.msgid,
                                           "oinfno": "2208"}}, insuplc_admdvs=ADMVS))
    assert [e.msgid for e in box.ledger.open_settlements()] == [r.msgid]


def _stmt(client, **data):
    base = {"insutype": "310", "clr_type": "11", "setl_optins": ADMVS}
    r = client.call(make_ctx("3201", {"data": {**base, **data}}))
    assert r.outcome is Outcome.COMPLETED, r.error_message
    return r.response["output"]["stmtinfo"]


def test_3201_reconciliation(box, client):
    settle(client, mdtrt="A", amount="100.00", acct_used_flag="1")
    settle(client, mdtrt="B", amount="50.00")
    settle(client, code="2304", mdtrt="C", amount="999.00")  # clr_type 21: other group
    ok = {"medfee_sumamt": "150.00", "fund_pay_sumamt": "105.00", "acct_pay": "10.00",
              "fixmedins_setl_cnt": 2}
    assert _stmt(client, **ok)["stmt_rslt"] == "0"
    assert _stmt(client, **{**ok, "fixmedins_setl_cnt": 1})["stmt_rslt"] == "1"
    assert _stmt(client, **{**ok, "fixmedins_setl_cnt": 3})["stmt_rslt"] == "2"
    mismatch = _stmt(client, **{**ok, "medfee_sumamt": "151.00"})
    assert mismatch["stmt_rslt"] == "3" and "数据不一致" in mismatch["stmt_rslt_dscr"]
    # 3202 needs the detail file uploaded by 9101 (tests/test_reconcile_detail.py).
    refused = client.call(make_ctx("3202", {"data": {}}))
    assert refused.response["infcode"] == -1 and "文件不存在" in refused.response["err_msg"]


def test_envelope_checks(box):
    http = httpx.Client()
    settings = client_settings(box)

    def post(env):
        return http.post(box.url, content=encode(env)).json()

    msgids = MsgidCounter()
    bad = build_envelope(settings, "1101", "short", {"data": {}})
    assert "报文ID格式错误" in post(bad)["err_msg"]
    no_sign = build_envelope(settings, "1101", msgids(), {"data": {}})
    answer = post(no_sign)
    assert answer["infcode"] == -1 and "签到" in answer["err_msg"]
    no_insuplc = build_envelope(settings, "9001", msgids(), {"signIn": {"psn_no": "P"}})
    assert "insuplc_admdvs" in post(no_insuplc)["err_msg"]
    r = http.post(box.url, content=b"{not json")
    assert r.status_code == 400 and r.json()["infcode"] == -1
    assert http.post(box.base_url + "/elsewhere", content=encode(no_sign)).status_code == 404
    http.close()


def test_control_endpoints(box, client):
    http = httpx.Client(base_url=box.base_url)
    faults = http.post("/_control/faults", json={"faults": [
        {"kind": "infcode", "infno": "1101", "count": 1, "message": "模拟失败"}]}).json()
    assert faults["faults"][0]["kind"] == "infcode"
    r = client.call(make_ctx("1101"))
    assert r.outcome is Outcome.ERROR and r.error_message == "模拟失败"
    assert client.call(make_ctx("1101")).outcome is Outcome.COMPLETED
    settle(client)
    ledger = http.get("/_control/ledger").json()
    assert len(ledger["open_settlements"]) == 1 and ledger["double_settlements"] == []
    calls = http.get("/_control/calls").json()["calls"]
    assert [c["infno"] for c in calls] == ["9001", "1101", "1101", "2207"]
    assert http.post("/_control/faults", json={"kind": "nope"}).status_code == 400
    http.post("/_control/expire_sign_in")
    assert client.call(make_ctx("1101")).outcome is Outcome.COMPLETED  # re-signed
    http.post("/_control/reset")
    assert box.ledger.entries() == [] and box.calls.count() == 0
    assert http.get("/_control/health").json()["sandbox"] is True
    http.close()


def test_fault_count_probability_and_latency():
    with running_sandbox(require_sign_in=False) as box:
        c = NHSAClient(client_settings(box, sign_in=False))
        box.add_fault("http_error", "1101", probability=0.0)
        box.add_fault("latency", "1101", seconds=0.2, count=1)
        t0 = time.monotonic()
        assert c.call(make_ctx("1101")).outcome is Outcome.COMPLETED
        assert time.monotonic() - t0 >= 0.2
        t0 = time.monotonic()
        assert c.call(make_ctx("1101")).outcome is Outcome.COMPLETED
        assert time.monotonic() - t0 < 0.2
        c.close()


def test_reset_before_commit_records_nothing():
    with running_sandbox(require_sign_in=False, faults=[
            {"kind": "reset_before", "infno": "2207", "count": 1}]) as box:
        c = NHSAClient(client_settings(box, sign_in=False))
        r = c.call(make_ctx("2207", {"data": {"psn_no": "P1"}}, insuplc_admdvs=ADMVS))
        c.close()
        assert r.outcome is Outcome.UNCERTAIN
        assert box.ledger.entries() == [] and box.calls.count("2207") == 1


def test_64_concurrent_connections():
    with running_sandbox(require_sign_in=False, latency=0.3) as box:
        c = NHSAClient(client_settings(box, sign_in=False), pool_size=64)
        results = []
        start = threading.Barrier(64)

        def work(i):
            start.wait()
            results.append(c.call(make_ctx("1101", {"data": {"psn_no": f"P{i}"}},
                                           insuplc_admdvs=ADMVS)))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(64)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        c.close()
        assert all(r.outcome is Outcome.COMPLETED for r in results) and len(results) == 64
        assert box.calls.max_concurrent("1101") >= 48
        assert elapsed < 3.0
        assert box.calls.psn_overlaps() == []  # every psn_no is different


def test_psn_overlap_detection(box):
    c1 = NHSAClient(client_settings(box))
    box.add_fault("latency", "1101", seconds=0.3)
    threads = [threading.Thread(target=c1.call, args=(make_ctx(
        "1101", {"data": {"psn_no": "SAME"}}, insuplc_admdvs=ADMVS),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c1.close()
    assert box.calls.max_concurrent(psn_no="SAME") == 2
    assert len(box.calls.psn_overlaps()) == 1


def test_cli_prints_sandbox_banner(monkeypatch):
    from mi_worker.sandbox import cli

    started = {}

    def fake_serve(self):
        started["url"] = self.url
        self.stop()

    monkeypatch.setattr(SandboxServer, "serve_forever", fake_serve)
    result = CliRunner().invoke(cli.sandbox, ["--port", "0", "--transport", "tif"])
    assert result.exit_code == 0, result.output
    assert "SANDBOX" in result.output and "NOT the real" in result.output
    assert "gateway.paasid" in result.output and started["url"].endswith(defaults.TIF_BASE)


def test_unknown_code_refused_unless_accepted(box, client):
    r = client.call(make_ctx("8888"))
    assert r.outcome is Outcome.ERROR and "交易编号不存在" in r.error_message
    assert client.call(make_ctx("1201")).response["output"] == {}  # known, no handler
    with running_sandbox(accept_unknown=True) as other:
        c = NHSAClient(client_settings(other))
        r = c.call(make_ctx("90100"))
        c.close()
    assert r.outcome is Outcome.COMPLETED
    assert [e.infno for e in other.ledger.entries()] == ["90100"]  # unknown = state-changing
