"""Retry classification of NHSAClient.call against a real loopback sandbox with faults.

The rule under test: resend only what cannot settle twice. Queries/trials are resent (new
msgid each time) after any failure; a state-changing call that may have reached the centre
ends UNCERTAIN after one send; connect failures are retried with the same msgid.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest

from mi_worker.gateway.base import (
    Outcome,
)
from mi_worker.gateway.client import NHSAClient
from mi_worker.sandbox.testing import (
    MsgidCounter,
    client_settings,
    make_ctx,
    running_sandbox,
)
from mi_worker.states import ErrorCode

PSN = {"data": {"psn_no": "P0001", "mdtrt_id": "MD1", "medfee_sumamt": "100.00",
                "insuplc_admdvs": "990000"}}


@pytest.fixture
def box():
    with running_sandbox() as server:
        yield server


@pytest.fixture
def client(box):
    c = NHSAClient(client_settings(box, read_timeout=0.5))
    yield c
    c.close()


def _calls(box, infno):
    return box.calls.calls(infno)


def test_query_resent_after_reset_after_commit_with_new_msgid(box, client):
    box.add_fault("reset_after", "1101", count=1)
    msgids = MsgidCounter()
    ctx = make_ctx("1101", {"data": {"certno": "110101198001010011"}}, msgids=msgids)
    first = ctx.msgid
    r = client.call(ctx)
    assert r.outcome is Outcome.COMPLETED and r.infcode == "0"
    sent = [c.msgid for c in _calls(box, "1101")]
    assert len(sent) == 2 and sent[0] == first and sent[1] != first
    assert r.msgid == sent[1] and sent[1] in msgids.issued
    log = [a for a in r.attempt_log if a["infno"] == "1101"]
    assert [a["msgid"] for a in log] == sent
    assert log[0]["error"] and log[0]["http_status"] is None
    assert log[1]["http_status"] == 200 and log[1]["infcode"] == "0"
    assert all(isinstance(a["latency_ms"], int) for a in log)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_query_resent_after_5xx(box, client, status):
    box.add_fault("http_error", "1101", count=2, status=status)
    r = client.call(make_ctx("1101"))
    assert r.outcome is Outcome.COMPLETED
    calls = _calls(box, "1101")
    assert [c.http_status for c in calls] == [status, status, 200]
    assert len({c.msgid for c in calls}) == 3


def test_query_garbage_body_resent(box, client):
    box.add_fault("garbage", "5203", count=1)
    r = client.call(make_ctx("5203", {"data": {"psn_no": "P1", "setl_id": "none"}},
                             insuplc_admdvs="990000"))
    assert r.outcome is Outcome.ERROR and r.error_code == ErrorCode.GATEWAY  # definite: not found
    assert "结算信息不存在" in r.error_message
    assert len(_calls(box, "5203")) == 2


def test_trial_2206_is_resent(box, client):
    box.add_fault("reset_after", "2206", count=1)
    r = client.call(make_ctx("2206", PSN))
    assert r.outcome is Outcome.COMPLETED
    assert r.response["output"]["setlinfo"]["medfee_sumamt"] == 100.0
    assert len(_calls(box, "2206")) == 2


@pytest.mark.parametrize("fault", [
    {"kind": "reset_after"}, {"kind": "timeout", "seconds": 1.5}, {"kind": "garbage"},
    {"kind": "http_error", "status": 502}, {"kind": "reset_before"}])
def test_settlement_not_resent_ends_uncertain(box, client, fault):
    box.add_fault(infno="2207", count=1, **fault)
    ctx = make_ctx("2207", PSN)
    r = client.call(ctx)
    assert r.outcome is Outcome.UNCERTAIN
    assert r.error_code == ErrorCode.UNCERTAIN
    assert "2601" in r.error_message and "2208" in r.error_message
    assert r.msgid == ctx.msgid and r.response is None
    calls = _calls(box, "2207")
    assert len(calls) == 1 and calls[0].msgid == ctx.msgid
    committed = fault["kind"] in ("reset_after", "timeout", "garbage")
    assert len(box.ledger.open_settlements()) == (1 if committed else 0)
    if committed:
        assert box.ledger.open_settlements()[0].msgid == ctx.msgid


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connect_failure_retried_with_same_msgid_then_retry():
    port = _closed_port()
    with running_sandbox() as box:
        s = client_settings(box, url=f"http://127.0.0.1:{port}/x", sign_in=False)
    c = NHSAClient(s)
    try:
        ctx = make_ctx("2207", PSN, max_attempts=3)
        r = c.call(ctx)
    finally:
        c.close()
    assert r.outcome is Outcome.RETRY
    assert r.error_code == ErrorCode.GATEWAY and "not sent" in r.error_message
    assert [a["msgid"] for a in r.attempt_log] == [ctx.msgid] * 3
    assert r.msgid == ctx.msgid and r.retry_after > 0


def test_connect_failure_during_sign_in_is_retry():
    port = _closed_port()
    with running_sandbox() as box:
        s = client_settings(box, url=f"http://127.0.0.1:{port}/x")
    c = NHSAClient(s)
    try:
        r = c.call(make_ctx("2207", PSN))
    finally:
        c.close()
    assert r.outcome is Outcome.RETRY
    assert "9001" in r.error_message
    assert {a["infno"] for a in r.attempt_log} == {"9001"}


def test_attempt_budget_counts_earlier_claims():
    port = _closed_port()
    with running_sandbox() as box:
        s = client_settings(box, url=f"http://127.0.0.1:{port}/x", sign_in=False)
    c = NHSAClient(s)
    try:
        ctx = make_ctx("1101", max_attempts=3)
        ctx.attempt = 3  # this is the row's last allowed attempt
        r = c.call(ctx)
    finally:
        c.close()
    assert len(r.attempt_log) == 1


def test_deadline_bounds_retries():
    port = _closed_port()
    with running_sandbox() as box:
        s = client_settings(box, url=f"http://127.0.0.1:{port}/x", sign_in=False,
                            retry_initial_seconds=0.2, retry_max_seconds=0.2)
    c = NHSAClient(s)
    try:
        t0 = time.monotonic()
        r = c.call(make_ctx("1101", max_attempts=50, timeout=0.5))
        elapsed = time.monotonic() - t0
        assert elapsed < 0.8
        assert r.outcome in (Outcome.RETRY, Outcome.ERROR)
        assert 1 <= len(r.attempt_log) <= 4
        late = make_ctx("1101", timeout=-1)
        r = c.call(late)
        assert r.outcome is Outcome.ERROR and r.error_code == ErrorCode.TIMEOUT
        assert r.attempt_log == []
    finally:
        c.close()


def test_query_read_timeout_capped_by_deadline(box):
    box.add_fault("timeout", "1101", seconds=3.0)
    c = NHSAClient(client_settings(box, read_timeout=10.0))
    try:
        c.sign_in()
        t0 = time.monotonic()
        r = c.call(make_ctx("1101", timeout=0.6))
        assert time.monotonic() - t0 < 2.0
        assert r.outcome is Outcome.ERROR and r.error_code == ErrorCode.TIMEOUT
    finally:
        c.close()


def test_sign_no_expiry_resigns_once_then_succeeds(box, client):
    r = client.call(make_ctx("1101"))
    assert r.outcome is Outcome.COMPLETED
    box.centre.expire_sign_ins()
    ctx = make_ctx("2207", PSN)
    r = client.call(ctx)
    assert r.outcome is Outcome.COMPLETED, r.error_message
    assert len(_calls(box, "9001")) == 2
    calls = _calls(box, "2207")
    assert len(calls) == 2 and calls[0].msgid == ctx.msgid and calls[1].msgid != ctx.msgid
    assert "签到" in calls[0].err_msg
    assert r.msgid == calls[1].msgid
    assert len(box.ledger.open_settlements()) == 1


def test_sign_no_rejected_twice_is_error_without_loop(box, client):
    box.add_fault("infcode", "2207", message="签到已失效，请重新签到")
    r = client.call(make_ctx("2207", PSN))
    assert r.outcome is Outcome.ERROR and r.error_code == ErrorCode.GATEWAY
    assert len(_calls(box, "2207")) == 2
    assert len(_calls(box, "9001")) == 2


def test_business_error_not_retried(box, client):
    box.add_fault("infcode", "2207", count=1, message="个人账户余额不足")
    r = client.call(make_ctx("2207", PSN))
    assert r.outcome is Outcome.ERROR
    assert r.error_code == ErrorCode.GATEWAY and r.error_message == "个人账户余额不足"
    assert r.infcode == "-1" and r.response["err_msg"] == "个人账户余额不足"
    assert len(_calls(box, "2207")) == 1
    assert box.ledger.open_settlements() == []


def test_duplicate_msgid_rejected(box, client):
    msgids = MsgidCounter()
    ctx = make_ctx("1101", msgids=msgids)
    assert client.call(ctx).outcome is Outcome.COMPLETED
    again = make_ctx("1101", msgids=msgids)
    again.msgid = ctx.msgid
    r = client.call(again)
    assert r.outcome is Outcome.ERROR and "报文ID重复" in r.error_message


def test_missing_insuplc_is_bad_input(box):
    c = NHSAClient(client_settings(box, insuplc_admdvs=""))
    try:
        r = c.call(make_ctx("2207", {"data": {"psn_no": "P1"}}))
    finally:
        c.close()
    assert r.outcome is Outcome.ERROR and r.error_code == ErrorCode.BAD_INPUT
    assert r.attempt_log == []
    assert box.calls.count() == 0


def test_non_object_input_is_bad_input(client):
    ctx = make_ctx("1101")
    ctx.input = ["not", "an", "object"]
    r = client.call(ctx)
    assert r.outcome is Outcome.ERROR and r.error_code == ErrorCode.BAD_INPUT


def test_unexpected_error_never_raises(box, client):
    box.add_fault("reset_after", "1101", count=1)
    ctx = make_ctx("1101")

    def broken():
        raise RuntimeError("database gone")

    ctx.new_msgid = broken
    r = client.call(ctx)
    assert r.outcome is Outcome.ERROR and r.error_code == ErrorCode.UNEXPECTED
    assert "database gone" in r.error_message


def test_retry_budget_exhausted_for_query(box, client):
    box.add_fault("http_error", "1101", status=503)
    msgids = MsgidCounter()
    r = client.call(make_ctx("1101", max_attempts=3, msgids=msgids))
    assert r.outcome is Outcome.RETRY
    sent = [c.msgid for c in _calls(box, "1101")]
    assert len(sent) == 3 == len(set(sent))
    # the row leaves with a msgid the centre has not seen, ready for the next claim
    assert r.msgid == msgids.issued[-1] and r.msgid not in sent


def test_sign_in_disabled_sends_empty_sign_no():
    with running_sandbox(require_sign_in=False) as box:
        c = NHSAClient(client_settings(box, sign_in=False))
        try:
            assert c.sign_in() == ""
            assert c.call(make_ctx("1101")).outcome is Outcome.COMPLETED
        finally:
            c.close()
        assert _calls(box, "9001") == [] and _calls(box, "9002") == []


def test_sign_in_cached_per_day_and_signed_out_on_close(box):
    c = NHSAClient(client_settings(box))
    first = c.sign_in()
    assert c.sign_in() == first
    assert c.sign_in(force=True) == first  # the centre answers the same sign_no on one day
    assert len(_calls(box, "9001")) == 2
    c.close()
    c.close()
    assert len(_calls(box, "9002")) == 1


def test_one_sign_in_for_many_threads(box, client):
    results = []

    def work(i):
        results.append(client.call(make_ctx("1101", request_id=i)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 32
    assert all(r.outcome is Outcome.COMPLETED for r in results)
    assert len(_calls(box, "9001")) == 1


def test_lost_lease_before_a_resend_is_an_outcome_not_an_error(box, client, caplog):
    """The review's probe: a 1101 reset after sending must be resent with a fresh msgid, but
    new_msgid says the row is no longer ours. The call answers LEASE_LOST: nothing more is
    sent, no stack trace, no ERROR -1999."""
    box.add_fault("reset_after", "1101", count=1)
    ctx = make_ctx("1101", {"data": {"certno": "110101198001010011"}})
    ctx.new_msgid = lambda: None
    with caplog.at_level("DEBUG"):
        r = client.call(ctx)
    assert r.outcome is Outcome.LEASE_LOST, (r.outcome, r.error_message)
    assert r.error_code is None and r.msgid == ctx.msgid
    assert box.calls.count("1101") == 1  # the first send only
    assert not [rec for rec in caplog.records if rec.exc_info or rec.levelname == "ERROR"]


def test_lost_lease_when_storing_a_fresh_msgid_for_the_next_claim(box, client):
    """A retry-safe call out of attempts gives the row back (RETRY) after storing a fresh
    msgid; if that store finds the row gone, the answer is LEASE_LOST, not RETRY."""
    box.add_fault("reset_after", "1101", count=5)
    ctx = make_ctx("1101", {"data": {"certno": "110101198001010011"}}, max_attempts=1)
    ctx.new_msgid = lambda: None
    r = client.call(ctx)
    assert r.outcome is Outcome.LEASE_LOST
    assert box.calls.count("1101") == 1


def test_settlement_over_the_connection_cap_is_not_sent_and_retried(box):
    """With every allowed request in flight (gateway/http_pool.py's cap), a settlement waits
    the pool timeout and ends RETRY as "not sent" with its msgid unchanged: never UNCERTAIN,
    and the centre sees only the call that held the slot."""
    box.add_fault("latency", "2207", seconds=1.5, count=1)
    c = NHSAClient(client_settings(box, sign_in=False, connect_timeout=0.3, read_timeout=5.0),
                   pool_size=1)
    try:
        holder = threading.Thread(target=lambda: c.call(make_ctx("2207", PSN)))
        holder.start()
        deadline = time.monotonic() + 5
        while not _calls(box, "2207") and time.monotonic() < deadline:
            time.sleep(0.01)  # the holder's request is at the centre: the one slot is taken
        ctx = make_ctx("2207", PSN, max_attempts=2)
        r = c.call(ctx)
        holder.join()
    finally:
        c.close()
    assert r.outcome is Outcome.RETRY
    assert r.error_code == ErrorCode.GATEWAY and "not sent" in r.error_message
    assert [a["msgid"] for a in r.attempt_log] == [ctx.msgid] * 2
    assert ctx.msgid not in [x.msgid for x in _calls(box, "2207")]
