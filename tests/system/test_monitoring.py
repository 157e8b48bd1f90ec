"""Monitoring, alerts, metrics and reconciliation (issue 5), on SQLite and PostgreSQL.

Rows are seeded with known times and latencies, so every figure has a known answer:
20 rows in the last hour with latencies 100, 200 … 2000 ms → average 1050, p95 (nearest
rank) 1900, max 2000; rows 9 and 10 ERROR, 19 TIMEOUT, 20 REVERSED, the rest SUCCESS.
"""
from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
import time

import pytest
from click.testing import CliRunner

from conftest import InProcessWorker, make_settings, wait_until
from mi_worker import alerts, config, metrics, monitor, reconcile
from mi_worker.cli import main


def _sql_time(db, seconds_ago: float) -> str:
    if db.name == "postgresql":
        return f"now() - interval '{seconds_ago:.3f} seconds'"
    return f"strftime('%Y-%m-%d %H:%M:%f', 'now', '{-seconds_ago:+.3f} seconds')"


def seed(db, code: str, status: str, latency_ms, seconds_ago: float, *,
         priority: int = 5, needs_reversal: int = 0, psn_no=None) -> None:
    """Insert a row with exact times (test-only SQL: the worker never writes rows this way)."""
    req = _sql_time(db, seconds_ago)
    resp = "NULL" if latency_ms is None else _sql_time(db, seconds_ago - latency_ms / 1000.0)
    conn = db.raw()
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority,"
        " request_time, response_time, deadline_at, needs_reversal, psn_no) VALUES "
        f"('{code}', '{{}}', '{status}', {priority}, {req}, {resp}, {_sql_time(db, -600)},"
        f" {needs_reversal}, {'NULL' if psn_no is None else repr(psn_no)})")
    if db.name != "sqlite":
        conn.commit() if not getattr(conn, "autocommit", True) else None
    conn.close()


def beat_at(db, worker_id: str, seconds_ago: float, status: str = "RUNNING") -> None:
    db.run("heartbeat", service_name="medical_insurance_sdk", worker_id=worker_id, host="h1",
           pid=1, version="t", status=status, in_flight=2, processed_total=10,
           gateway_kind="nhsa", gateway_tls_verified=1)
    conn = db.raw()
    conn.cursor().execute(f"UPDATE sdk_heartbeat SET last_heartbeat = {_sql_time(db, seconds_ago)}"
                          f" WHERE worker_id = '{worker_id}'")
    conn.close()


def seed_known(db) -> None:
    for i in range(1, 21):
        status = {9: "ERROR", 10: "ERROR", 19: "TIMEOUT", 20: "REVERSED"}.get(i, "COMPLETED")
        seed(db, "1101" if i <= 10 else "2207", status, 100 * i, 600 + i)
    for _ in range(5):  # older than the hour, inside the day
        seed(db, "1101", "COMPLETED", 50, 7200)


def test_performance_figures(db):
    seed_known(db)
    [perf] = monitor.monitor(db, "performance")
    assert perf["total_requests"] == 20
    assert (perf["success_count"], perf["error_count"], perf["timeout_count"],
            perf["uncertain_count"]) == (16, 2, 1, 1)
    assert float(perf["success_rate"]) == 80.0 and float(perf["error_rate"]) == 10.0
    assert float(perf["avg_response_time_ms"]) == pytest.approx(1050, abs=2)
    assert perf["p95_response_time_ms"] == pytest.approx(1900, abs=2)
    assert perf["max_response_time_ms"] == pytest.approx(2000, abs=2)


def test_interface_figures_with_chinese_names(db):
    seed_known(db)
    by_code = {r["interface_code"]: r for r in monitor.monitor(db, "interfaces")}
    a, b = by_code["1101"], by_code["2207"]
    assert a["interface_name"] == "人员信息获取" and "结算" in b["interface_name"]
    assert (a["total_calls"], a["success_calls"], a["error_calls"]) == (15, 13, 2)
    assert float(a["success_rate"]) == pytest.approx(86.67, abs=0.01)
    assert float(a["avg_response_time_ms"]) == pytest.approx(383.33, abs=1)
    assert a["p95_response_time_ms"] == pytest.approx(1000, abs=2)
    assert (b["total_calls"], b["success_calls"], b["timeout_calls"], b["uncertain_calls"]) \
        == (10, 8, 1, 1)
    assert b["p95_response_time_ms"] == pytest.approx(2000, abs=2)


def test_queue_and_health(db):
    for age in (120, 30, 10):
        seed(db, "1101", "PENDING", None, age)
    seed(db, "2601", "PENDING", None, 5, priority=0)
    seed(db, "2207", "PROCESSING", None, 3)
    seed(db, "2207", "NEEDS_MANUAL", 100, 50)
    seed(db, "1101", "COMPLETED", 100, 50)
    q = {(r["status"], r["priority"]): r for r in monitor.monitor(db, "queue")}
    assert q[("PENDING", 5)]["depth"] == 3 and 118 <= q[("PENDING", 5)]["oldest_age_seconds"] <= 125
    assert q[("PENDING", 0)]["depth"] == 1 and q[("PROCESSING", 5)]["depth"] == 1
    assert q[("NEEDS_MANUAL", 5)]["depth"] == 1 and ("COMPLETED", 5) not in q
    beat_at(db, "w-up", 2)
    beat_at(db, "w-warn", 45)
    beat_at(db, "w-down", 120)
    health = {r["worker_id"]: r["status"] for r in monitor.monitor(db, "health")}
    assert health == {"w-up": "UP", "w-warn": "WARNING", "w-down": "DOWN", "*": "UP"}
    workers = monitor.monitor(db, "workers")
    assert len(workers) == 3 and all(w["processed_total"] == 10 for w in workers)
    with pytest.raises(ValueError):
        monitor.monitor(db, "nonsense")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_functions_answer_like_the_cli(db, db_url):
    seed_known(db)
    rows = db.raw().cursor().execute(
        "SELECT * FROM sp_get_medical_insurance_monitor_data('performance')").fetchall()
    perf = json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]
    assert perf["total_requests"] == 20 and perf["p95_response_time_ms"] == 1900
    with pytest.raises(Exception, match="unknown @data_type"):
        db.raw().cursor().execute("SELECT * FROM sp_get_medical_insurance_monitor_data('x')")
    result = CliRunner().invoke(main, ["monitor", "performance", "--json"],
                                env={"MI_WORKER_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["p95_response_time_ms"] == 1900


def test_cli_status_and_json(db, db_url):
    seed_known(db)
    beat_at(db, "w1", 1)
    env = {"MI_WORKER_DATABASE_URL": db_url}
    text = CliRunner().invoke(main, ["status"], env=env)
    assert text.exit_code == 0, text.output
    assert "Workers" in text.output and "人员信息获取" in text.output
    data = json.loads(CliRunner().invoke(main, ["status", "--json"], env=env).output)
    assert data["performance"][0]["total_requests"] == 20


class Hook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errcode": 0, "errmsg": "ok"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cgi-bin/webhook/send?key=test", Hook
    server.shutdown()


def test_alerts_raised_once_deduplicated_and_resolved(db, webhook):
    from mi_worker.notify import WebhookNotifier
    url, hook = webhook
    s = config.Settings()
    s.alerts.webhook_url = url
    notifier = WebhookNotifier(url, "wecom", source="test",
                               on_delivered=lambda i: db.run("mark_alert_notified", alert_id=i))
    # 50 calls, 10 errors (20 %), slow average, a backlog and a NEEDS_MANUAL row; no worker.
    for i in range(50):
        seed(db, "1101", "ERROR" if i % 5 == 0 else "COMPLETED", 6000, 300 + i)
    for i in range(120):
        seed(db, "1101", "PENDING", None, 90 + i / 100)
    seed(db, "2207", "NEEDS_MANUAL", 100, 100)
    first = alerts.scan(db, s, notifier)
    expected = {"SERVICE_DOWN", "HIGH_ERROR_RATE", "SLOW_RESPONSE", "QUEUE_BACKLOG",
                "NEEDS_MANUAL"}
    assert set(first["raised"]) == expected
    again = alerts.scan(db, s, notifier)
    assert again["raised"] == [] and set(again["firing"]) == expected  # de-duplicated
    assert len(monitor.alerts(db)) == 5
    wait_until(lambda: len(hook.received) == 5, timeout=10, message="5 webhook posts")
    kinds = {m["markdown"]["content"].split("\n")[0] for m in hook.received}
    assert "### 医保接口告警 HIGH_ERROR_RATE" in kinds and all(
        m["msgtype"] == "markdown" for m in hook.received)
    wait_until(lambda: all(a["notified_at"] for a in monitor.alerts(db)), timeout=10)
    beat_at(db, "w1", 0)  # the service comes back: SERVICE_DOWN clears
    third = alerts.scan(db, s, notifier)
    assert third["resolved"] == ["SERVICE_DOWN"]
    assert "SERVICE_DOWN" not in {a["alert_type"] for a in monitor.alerts(db)}
    assert any(a["alert_type"] == "SERVICE_DOWN" and a["resolved_at"]
               for a in monitor.alerts(db, include_resolved=True))
    notifier.close()


def test_error_rate_rule_needs_ten_calls(db):
    for i in range(9):
        seed(db, "1101", "ERROR", 100, 100 + i)
    beat_at(db, "w1", 0)
    kinds = {c["alert_type"] for c in monitor.current_alert_conditions(db, config.AlertSettings())}
    assert "HIGH_ERROR_RATE" not in kinds
    seed(db, "1101", "ERROR", 100, 50)
    kinds = {c["alert_type"] for c in monitor.current_alert_conditions(db, config.AlertSettings())}
    assert "HIGH_ERROR_RATE" in kinds


def test_dead_webhook_does_not_stall_the_scan(db):
    from mi_worker.notify import WebhookNotifier
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    notifier = WebhookNotifier(dead, "dingtalk", attempts=3, timeout=1)
    settings = config.Settings()
    started = time.monotonic()
    result = alerts.scan(db, settings, notifier)
    assert "SERVICE_DOWN" in result["raised"]
    assert time.monotonic() - started < 2.0
    notifier.close(wait=0.1)


def test_metrics_parse_with_prometheus_client(db, db_url, tmp_path):
    # Counters come from the workers' heartbeat counters (tests/test_metrics.py), never from
    # the history rows seeded here; the gauges read the open rows and the heartbeats.
    from prometheus_client.parser import text_string_to_metric_families
    seed_known(db)
    seed(db, "1101", "PENDING", None, 5)
    beat_at(db, "w1", 1)
    text = metrics.render(db)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"mi_requests", "mi_request_duration_seconds", "mi_queue_depth",
            "mi_worker_up"} <= set(families)
    assert not [s for s in families["mi_requests"].samples]  # no worker has counted a call
    depth = [s.value for s in families["mi_queue_depth"].samples
             if s.labels["status"] == "PENDING"]
    assert depth == [1]
    assert [s.value for s in families["mi_worker_processed"].samples
            if s.labels["worker"] == "w1"] == [10]
    target = tmp_path / "textfile" / "mi_worker.prom"
    result = CliRunner().invoke(main, ["metrics", "--textfile", str(target)],
                                env={"MI_WORKER_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert list(text_string_to_metric_families(target.read_text(encoding="utf-8")))


def settle(w, psn: str, amount: str):
    from mi_worker.his_call import call
    data = {"data": {"psn_no": psn, "mdtrt_id": f"MD{psn}", "medfee_sumamt": amount,
                     "insutype": "310", "insuplc_admdvs": "110000"}}
    r = call(w.db, "2207", json.dumps(data), timeout=20)
    assert r.error_code == 0, r
    return r


def test_reconciliation_balanced_then_mismatch(db_url, sandbox):
    from mi_worker.gateway.client import NHSAClient
    from mi_worker.sandbox.testing import MsgidCounter, client_settings, make_ctx
    today = reconcile.CHINA and dt.datetime.now(reconcile.CHINA).date()
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        settle(w, "R1", "120.00")
        settle(w, "R2", "80.50")
        results = reconcile.reconcile(w.db, today, "990000")
        assert [r["stmt_rslt"] for r in results] == ["0"], results
        assert results[0]["setl_cnt"] == 2 and results[0]["medfee_sumamt"] == "200.50"
        assert not w.db.run_one("open_alert", alert_type="RECONCILIATION_MISMATCH")
        # A settlement the centre has and the hospital does not (中心多): made behind our back.
        client = NHSAClient(client_settings(sandbox), msgid_factory=MsgidCounter())
        extra = client.call(make_ctx("2207", {"data": {"psn_no": "R3", "mdtrt_id": "MDR3",
                                                       "medfee_sumamt": "10.00",
                                                       "insutype": "310"}},
                                     msgids=MsgidCounter("H99000000001", 5000)))
        client.close()
        assert extra.outcome.value == "COMPLETED"
        results = reconcile.reconcile(w.db, today, "990000")
        assert results[0]["stmt_rslt"] == "1"
        alert = w.db.run_one("open_alert", alert_type="RECONCILIATION_MISMATCH")
        assert alert and "对账不平" in alert["alert_message"]
        stored = w.db.run("list_reconciliation", stmt_date=today.isoformat())
        assert [r["stmt_rslt"] for r in stored] == ["0", "1"]
