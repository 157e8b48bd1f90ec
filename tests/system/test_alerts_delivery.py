"""Alerts that arrive: DingTalk 加签 and keyword robots, WeCom, retries with back-off counted
in metrics (against a real loopback HTTP robot), and the reconciliation catch-up."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import threading
import time
import urllib.parse

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import InProcessWorker, make_settings
from mi_worker import alerts, config, metrics, reconcile
from mi_worker.his_call import call
from mi_worker.notify import WebhookNotifier

SECRET = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"


class Robot:
    """A DingTalk/WeCom-like group robot: checks 加签 and keyword like DingTalk does."""

    def __init__(self, secret: str = "", keyword: str = "", fail_first: int = 0) -> None:
        self.secret, self.keyword, self.fail_first = secret, keyword, fail_first
        self.received: list = []
        self.hits = 0
        robot = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                robot.hits += 1
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                status, answer = robot.judge(self.path, payload)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/robot/send?access_token=T0K"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def judge(self, path: str, payload: dict):
        if self.hits <= self.fail_first:
            return 503, {"errcode": -1, "errmsg": "busy"}
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
        if self.secret:
            ts = q.get("timestamp", "")
            if not ts.isdigit() or abs(int(ts) - time.time() * 1000) > 3600_000:
                return 200, {"errcode": 310000, "errmsg": "sign timestamp invalid"}
            digest = hmac.new(self.secret.encode(), f"{ts}\n{self.secret}".encode(),
                              hashlib.sha256).digest()
            if q.get("sign") != base64.b64encode(digest).decode():
                return 200, {"errcode": 310000, "errmsg": "sign not match"}
        text = json.dumps(payload, ensure_ascii=False)
        if self.keyword and self.keyword not in text:
            return 200, {"errcode": 310000, "errmsg": "keywords not in content"}
        self.received.append(payload)
        return 200, {"errcode": 0, "errmsg": "ok"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def robot_factory():
    made = []

    def make(**kw) -> Robot:
        r = Robot(**kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


class Counts:
    def __init__(self) -> None:
        self.events: dict = {}

    def add(self, event: str, n: int = 1) -> None:
        self.events[event] = self.events.get(event, 0) + n


def notify(robot: Robot, **kw):
    counts = Counts()
    n = WebhookNotifier(robot.url, stats=counts, backoff=0.01, **kw)
    n.send(1, "QUEUE_BACKLOG", "WARNING", "积压 120 条")
    assert n.drain(20)
    n.close()
    return counts.events


def test_dingtalk_signed_robot(robot_factory):
    robot = robot_factory(secret=SECRET)
    assert notify(robot, kind="dingtalk", secret=SECRET) == {"webhook_delivered": 1}
    msg = robot.received[0]
    assert msg["msgtype"] == "markdown" and "QUEUE_BACKLOG" in msg["markdown"]["title"]
    # Unsigned, or signed with the wrong secret: refused (errcode 310000), retried, counted.
    assert notify(robot, kind="dingtalk", attempts=2) == {"webhook_failed": 1,
                                                          "webhook_retried": 1}
    assert notify(robot, kind="dingtalk", secret="SECwrong", attempts=3) == {
        "webhook_failed": 1, "webhook_retried": 2}
    assert len(robot.received) == 1


def test_dingtalk_keyword_robot(robot_factory):
    robot = robot_factory(keyword="医保告警")
    assert notify(robot, kind="dingtalk", attempts=1) == {"webhook_failed": 1}
    assert notify(robot, kind="dingtalk", keyword="医保告警") == {"webhook_delivered": 1}
    assert robot.received[0]["markdown"]["title"].startswith("医保告警 ")


def test_wecom_robot_and_back_off_until_delivered(robot_factory):
    robot = robot_factory(fail_first=2)
    events = notify(robot, kind="wecom", attempts=4)
    assert events == {"webhook_delivered": 1, "webhook_retried": 2}
    assert robot.hits == 3 and "content" in robot.received[0]["markdown"]


def test_slow_failing_webhook_never_blocks_the_scan_and_is_counted(db_url, sandbox,
                                                                   robot_factory):
    robot = robot_factory(fail_first=100)
    s = make_settings(db_url, sandbox, alerts={"webhook_url": robot.url,
                                               "webhook_attempts": 3})
    with InProcessWorker(s) as w:
        notifier = w.scheduler.notifier
        notifier.backoff = 0.2
        started = time.monotonic()
        for i in range(3):
            notifier.send(100 + i, f"TEST_{i}", "WARNING", "x")
        alerts.scan(w.db, s, notifier)
        assert time.monotonic() - started < 1.0
        assert notifier.drain(30)
        w.scheduler.heartbeat()
        fams = {f.name: f for f in text_string_to_metric_families(metrics.render(w.db))}
        got = {s.labels["result"]: s.value for s in fams["mi_webhook_notifications"].samples
               if s.labels["worker"] == w.worker.worker_id}
        assert got == {"failed": 3.0, "retried": 6.0}, got
        assert fams["mi_webhook_notifications"].type == "counter"


def _settle(db, psn: str, amount: str) -> None:
    data = {"data": {"psn_no": psn, "mdtrt_id": f"MD{psn}", "medfee_sumamt": amount,
                     "insutype": "310", "insuplc_admdvs": "110000"}}
    r = call(db, "2207", json.dumps(data), timeout=20)
    assert r.error_code == 0, r


def test_missed_reconciliation_is_caught_up_and_alerted(db_url, sandbox):
    today = dt.datetime.now(reconcile.CHINA).date()
    tomorrow_3am = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(3, 0),
                                       reconcile.CHINA)
    settings = make_settings(db_url, sandbox, jobs={"reconcile_time": "02:00"})
    with InProcessWorker(settings) as w:
        _settle(w.db, "C1", "30.00")
        assert w.scheduler.scheduler.get_job("reconcile_catch_up") is not None
        assert w.scheduler.scheduler.get_job("reconcile_check") is not None
    from mi_worker.db import connect
    db = connect(db_url)
    try:
        # 02:00 tomorrow came with no worker running: the day's 3201 cannot be answered.
        out = reconcile.catch_up(db, "990000", "02:00", 2, now_china=tomorrow_3am, timeout=5)
        assert out["missing"] == [today.isoformat()], out
        alert = db.run_one("open_alert", alert_type="RECONCILIATION_MISSING")
        assert alert and today.isoformat() in alert["alert_message"]
    finally:
        db.close()
    # A worker returns: the day is reconciled and the alert resolved.
    with InProcessWorker(settings) as w:
        out = reconcile.catch_up(w.db, "990000", "02:00", 2, now_china=tomorrow_3am)
        assert out["caught_up"] == [today.isoformat()], out
        rows = w.db.run("list_reconciliation", stmt_date=today.isoformat())
        assert [r["stmt_rslt"] for r in rows][-1] == "0"
        assert not w.db.run_one("open_alert", alert_type="RECONCILIATION_MISSING")
        again = reconcile.catch_up(w.db, "990000", "02:00", 2, now_china=tomorrow_3am)
        assert again["caught_up"] == [] and again["missing"] == []
        assert len(w.db.run("list_reconciliation", stmt_date=today.isoformat())) == len(rows)


def test_due_days():
    at = dt.datetime(2026, 12, 2, 1, 30, tzinfo=reconcile.CHINA)
    assert reconcile.due_days(at, "02:00", 2) == [dt.date(2026, 11, 29), dt.date(2026, 11, 30)]
    at = dt.datetime(2026, 12, 2, 2, 0, tzinfo=reconcile.CHINA)
    assert reconcile.due_days(at, "02:00", 1) == [dt.date(2026, 12, 1)]


def test_config_keys():
    s = config.Settings()
    assert s.alerts.webhook_attempts >= 1 and s.jobs.reconcile_catch_up_days == 3
