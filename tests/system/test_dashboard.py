"""The read-only dashboard over real HTTP (waitress on loopback), on SQLite and PostgreSQL.

Seeded rows of every status (tests/dashboard_seed.py): the figures on the pages equal the
monitoring queries' (monitor.py, the same functions `mi-worker status` uses); the request list
filters and keyset pages; no page contains a seeded identifier; the session cannot write; a
non-loopback bind without credentials is refused with exit 2 by the real command.
"""
from __future__ import annotations

import html
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List

import httpx
import pytest
from dashboard_seed import china, seed_all, seed_many

from conftest import ROOT, wait_until
from mi_worker import monitor
from mi_worker.dashboard.server import DashboardServer, open_read_only

TOKEN = "t0ken-for-the-dashboard-test-0123456789"


@pytest.fixture
def served(db_url) -> Iterator[DashboardServer]:
    ro = open_read_only(db_url)
    server = DashboardServer(ro, None, "127.0.0.1", 0).start()
    try:
        yield server
    finally:
        server.stop()
        ro.close()


def get(server: DashboardServer, path: str, **kw) -> httpx.Response:
    r = httpx.get(server.url + path, timeout=30, **kw)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    return r


def cell(page: str, pattern: str) -> str:
    m = re.search(pattern, page, re.S)
    assert m, f"{pattern!r} not in page"
    return html.unescape(m.group(1)).strip()


def row_ids(page: str) -> List[int]:
    return [int(x) for x in re.findall(r'<tr class="row" data-id="(\d+)"', page)]


def fmt_ms(value) -> str:
    return "–" if value is None else f"{float(value):,.0f} ms"


# -- figures ------------------------------------------------------------------------------
def test_overview_figures_equal_the_monitoring_queries(db, served):
    seeded = seed_all(db)
    page = get(served, "/").text

    # workers: host, pid, version, state by heartbeat age (UP / WARNING / DOWN)
    health = {r["worker_id"]: r["status"] for r in monitor.monitor(db, "health")}
    assert health["w-up"] == "UP" and health["w-warn"] == "WARNING" and health["w-down"] == "DOWN"
    for w in monitor.monitor(db, "workers"):
        row = cell(page, rf"<tr><td>{w['worker_id']}</td>(.*?)</tr>")
        assert f"host-{w['worker_id']}" in row and str(w["pid"]) in row and "9.9.9" in row
        assert f'class="state {health[w["worker_id"]]}"' in row
    assert 'id="overall">总体状态: 正常' in page

    # queue depth by status = monitor_queue summed over priorities
    depth: Dict[str, int] = {}
    for q in monitor.monitor(db, "queue"):
        depth[q["status"]] = depth.get(q["status"], 0) + int(q["depth"])
    assert depth == {"PENDING": 2, "PROCESSING": 1, "UNCERTAIN": 1, "NEEDS_MANUAL": 1}
    for status, n in depth.items():
        assert cell(page, rf'data-status="{status}">.*?class="num depth">(\d+)<') == str(n)

    # last hour / day: totals, success rate, p95 as monitor_performance; per interface as
    # monitor_interfaces; p50 and the chart from the dashboard's own queries
    for name, hours in (("hour", 1), ("day", 24)):
        perf = monitor.monitor(db, "performance", hours=hours)[0]
        section = cell(page, rf'id="window-{name}">(.*?)</section>')
        assert cell(section, r'class="total_requests">(\d+)<') == str(perf["total_requests"])
        assert cell(section, r'class="success_rate">([^<]+)<') == f"{perf['success_rate']}%"
        assert cell(section, r'class="p95_ms">([^<]+)<') == fmt_ms(perf["p95_response_time_ms"])
        total = int(cell(section, rf'id="throughput-{name}".*?data-total="(\d+)"'))
        assert total == int(perf["total_requests"])
        assert int(cell(section, rf'id="latency-{name}".*?data-points="(\d+)"')) > 0
        for i in monitor.monitor(db, "interfaces", hours=hours):
            tr = cell(section, rf'<tr data-code="{i["interface_code"]}">(.*?)</tr>')
            assert cell(tr, r'class="num calls">(\d+)<') == str(i["total_calls"])
            assert cell(tr, r'class="num p95">([^<]+)<') == fmt_ms(i["p95_response_time_ms"])
    hour = cell(page, r'id="window-hour">(.*?)</section>')
    # nearest-rank p50 of 1101's 100..600 ms (+ 2 unanswered) and of 2207's 700, 800, 900
    assert cell(hour, r'data-code="1101">.*?class="num p50">([^<]+)<') == "300 ms"
    assert cell(hour, r'data-code="2207">.*?class="num p50">([^<]+)<') == "800 ms"
    assert int(cell(page, r'id="window-day">.*?class="total_requests">(\d+)<')) == \
        int(cell(hour, r'class="total_requests">(\d+)<')) + 3

    # open alerts and yesterday's reconciliation
    assert "NEEDS_MANUAL" in cell(page, r'<table id="open-alerts">(.*?)</table>')
    recon = cell(page, r'<section id="reconciliation">(.*?)</section>')
    assert "123.45" in recon and "一致" in recon
    assert len(seeded.all_ids) == 17


def test_doubtful_page_lists_what_needs_a_person_with_the_procedure(db, served):
    seeded = seed_all(db)
    page = get(served, "/doubtful").text
    want = sorted(seeded.ids["UNCERTAIN"] + seeded.ids["NEEDS_MANUAL"]
                  + [i for i in seeded.ids["COMPLETED"] if i == seeded.all_ids[8]])
    assert row_ids(page) == want
    assert "mi-worker requests resolve" in page and "5203" in page
    assert f'href="/requests/{seeded.uncertain_id}"' in page
    assert f'href="/requests/{seeded.child_id}"' in page  # its 2601 row


def test_request_page_shows_attempts_answer_and_reversal_chain(db, served):
    seeded = seed_all(db)
    page = get(served, f"/requests/{seeded.uncertain_id}").text
    assert 'id="status">结果不确定' in page
    chain = cell(page, r'<table id="chain">(.*?)</table>')
    assert f'href="/requests/{seeded.child_id}"' in chain and "2601" in chain
    assert '<tr class="attempt">' in page
    child = get(served, f"/requests/{seeded.child_id}").text
    assert f'href="/requests/{seeded.uncertain_id}"' in cell(
        child, r'<table id="chain">(.*?)</table>')
    done = seeded.ids["COMPLETED"][0]
    answer = cell(get(served, f"/requests/{done}").text, r'<pre id="answer">(.*?)</pre>')
    assert '"infcode": 0' in answer and '"gend": "1"' in answer
    missing = httpx.get(served.url + "/requests/999999", timeout=10)
    assert missing.status_code == 404 and "找不到该请求" in missing.text
    assert httpx.get(served.url + "/requests/abc", timeout=10).status_code == 404


# -- filters and keyset paging -----------------------------------------------------------
def test_request_list_pages_by_keyset_through_every_row(db, served):
    seeded = seed_many(db, 120)
    seen: List[int] = []
    path = "/requests"
    pages = 0
    while path:
        page = get(served, path).text
        ids = row_ids(page)
        assert ids == sorted(ids, reverse=True)
        seen += ids
        pages += 1
        m = re.search(r'<a id="older" href="([^"]+)"', page)
        path = html.unescape(m.group(1)) if m else ""
        if path:
            assert "before=" in path and "offset" not in path.lower()
    assert pages == 3 and seen == sorted(seeded.all_ids, reverse=True)
    code = "\n".join(line for line in _dashboard_sql().splitlines()
                     if not line.lstrip().startswith("--"))
    assert "OFFSET" not in code.upper() and "before_id" in code


def test_request_list_filters(db, served):
    seeded = seed_many(db, 40, spacing=30)
    by = seeded.by_id

    def ids(query: str) -> List[int]:
        return row_ids(get(served, "/requests?" + query).text)

    assert ids("status=ERROR") == sorted((i for i in by if by[i]["status"] == "ERROR"),
                                         reverse=True)
    assert ids("interface_code=2207&status=COMPLETED") == sorted(
        (i for i in by if by[i]["code"] == "2207" and by[i]["status"] == "COMPLETED"),
        reverse=True)
    pick = seeded.all_ids[7]
    assert ids(f"psn_no={by[pick]['psn_no']}") == [pick]
    assert ids(f"msgid={by[pick]['msgid']}") == [pick]
    assert ids(f"his_fee_id={by[pick]['his_fee_id']}") == [pick]
    # time range in China time (to the second): rows seeded 3000 - 30 k seconds ago
    window = ids(f"from={china(2715)}&to={china(2415)}")
    assert window == sorted((i for i in by if 2415 < by[i]["seconds_ago"] <= 2715),
                            reverse=True) and len(window) == 10
    bad = get(served, "/requests?status=BOGUS&from=yesterday&before=x").text
    assert 'id="filter-errors"' in bad and len(row_ids(bad)) == 40


def _dashboard_sql() -> str:
    """Every dash_* statement of the three dialects, as written."""
    from mi_worker.db.queries import load
    return "\n".join(q.sql for d in ("sqlite", "postgresql", "mssql")
                     for name, q in sorted(load(d).items()) if name.startswith("dash_"))


def test_dashboard_queries_are_selects_in_every_dialect():
    from mi_worker.db.queries import load
    names = {n for n in load("postgresql") if n.startswith("dash_")}
    assert names == {"dash_session_read_only", "dash_session_plans", "dash_requests_page",
                     "dash_throughput", "dash_latency", "dash_doubtful", "dash_reconciliation"}
    for dialect in ("sqlite", "mssql"):
        assert names <= set(load(dialect)), dialect
    for dialect in ("sqlite", "postgresql", "mssql"):
        queries = load(dialect)
        for name in names:
            body = "\n".join(line for line in queries[name].sql.splitlines()
                             if not line.lstrip().startswith("--"))
            assert not re.search(r"\b(INSERT|UPDATE|DELETE|MERGE|DROP|ALTER|CREATE|EXEC)\b",
                                 body, re.I), (dialect, name)


# -- masking and read-only ---------------------------------------------------------------
def test_no_page_contains_a_seeded_identifier(db, served):
    seeded = seed_all(db)
    more = seed_many(db, 5, start=500)
    pages = ["/", "/?lang=en", "/requests", "/requests?lang=en", "/doubtful", "/alerts",
             "/reconciliation"] + [f"/requests/{i}" for i in seeded.all_ids + more.all_ids]
    secrets = seeded.identifiers + more.identifiers
    assert len(set(secrets)) > 40
    for path in pages:
        text = get(served, path).text
        leaked = [s for s in secrets if s in text or html.escape(s) in text]
        assert not leaked, f"{path} shows {leaked[:3]}"
    # the masked stubs are there instead (recognisable, useless to a reader)
    assert "4********1" in get(served, "/requests").text


def test_the_dashboard_session_cannot_write(db_url):
    ro = open_read_only(db_url)
    try:
        conn = ro.raw()
        with pytest.raises(Exception, match=r"(?i)read.?only|readonly"):
            conn.cursor().execute("DELETE FROM sdk_heartbeat")
        conn.close()
    finally:
        ro.close()


# -- the bind rule -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dashboard_cmd(tmp_path: Path, db_url: str, host: str, port: int, **env: str):
    config = tmp_path / "dash.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    full = {k: v for k, v in os.environ.items() if not k.startswith("MI_WORKER_")}
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "mi_worker", "--config", str(config),
                             "dashboard", "--host", host, "--port", str(port)],
                            cwd=str(ROOT), env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("env", [{}, {"MI_WORKER_DASHBOARD_TOKEN": "short"},
                                 {"MI_WORKER_DASHBOARD_USER": "ops"}])
def test_non_loopback_bind_without_credentials_is_refused(tmp_path, env):
    proc = _dashboard_cmd(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", "0.0.0.0", _free_port(),
                          **env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "MI_WORKER_DASHBOARD" in out and "Traceback" not in out


def test_non_loopback_bind_with_a_token_serves_only_with_it(tmp_path, db_url):
    port = _free_port()
    proc = _dashboard_cmd(tmp_path, db_url, "0.0.0.0", port, MI_WORKER_DASHBOARD_TOKEN=TOKEN)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(base), timeout=60, message="dashboard up")
        assert httpx.get(base + "/", timeout=10).status_code == 401
        assert httpx.get(base + "/", headers={"Authorization": "Bearer wrong"},
                         timeout=10).status_code == 401
        assert httpx.get(base + "/", headers={"Authorization": f"Bearer {TOKEN}"},
                         timeout=30).status_code == 200
        with httpx.Client(base_url=base, timeout=30) as browser:
            first = browser.get(f"/doubtful?token={TOKEN}&lang=en")
            assert first.status_code == 303 and first.headers["location"] == "/doubtful?lang=en"
            assert browser.get("/doubtful").status_code == 200  # the cookie carries it
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert TOKEN not in out


def test_basic_auth_credentials(db_url):
    from mi_worker.dashboard.auth import Credentials
    ro = open_read_only(db_url)
    creds = Credentials(user="ops", password="a-long-enough-password")
    server = DashboardServer(ro, None, "0.0.0.0", 0, creds).start()
    try:
        r = httpx.get(server.url + "/alerts", timeout=10)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert httpx.get(server.url + "/alerts", auth=("ops", "wrong"),
                         timeout=10).status_code == 401
        assert httpx.get(server.url + "/alerts", auth=("ops", "a-long-enough-password"),
                         timeout=30).status_code == 200
    finally:
        server.stop()
        ro.close()


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- inside the worker -------------------------------------------------------------------
@pytest.mark.slow
def test_run_with_dashboard_port_shows_the_live_worker(tmp_path):
    """The embedded default (no config: SQLite + sandbox) with --dashboard-port."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MI_WORKER_")}
    proc = subprocess.Popen([sys.executable, "-m", "mi_worker", "run", "--dashboard-port",
                             str(port)], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(base), timeout=60, message="dashboard up")
        host = socket.gethostname()[:255]

        def worker_up() -> bool:
            page = httpx.get(base + "/", timeout=10).text
            return host in page and 'class="state UP"' in page
        wait_until(worker_up, timeout=60, message="a live worker on the overview")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]


# -- the documented PostgreSQL read-only role --------------------------------------------
PG_ROLE_GRANTS = """
GRANT SELECT ON medical_insurance_requests, v_medical_insurance_result, sdk_heartbeat,
    medical_insurance_alerts, medical_insurance_reconciliation, medical_insurance_interfaces
    TO {role};
"""


def test_pages_work_under_the_documented_postgresql_read_only_role(db_url):
    """README's GRANTs (SELECT only) are enough for every page, and nothing more is needed."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL role test")
    import uuid

    from mi_worker.db import connect
    role = f"mi_dash_{uuid.uuid4().hex[:8]}"
    admin = connect(db_url)
    conn = admin.raw()
    conn.cursor().execute(f"CREATE ROLE {role} LOGIN")
    conn.cursor().execute(PG_ROLE_GRANTS.format(role=role))
    seeded = seed_all(admin)
    base, _, rest = db_url.partition("://")
    ro = open_read_only(f"{base}://{role}@{rest.split('@', 1)[1]}")
    server = DashboardServer(ro, None, "127.0.0.1", 0).start()
    try:
        for path in ["/", "/requests", f"/requests/{seeded.uncertain_id}", "/doubtful",
                     "/alerts", "/reconciliation", "/requests?status=ERROR"]:
            get(server, path)
        denied = ro.raw()
        with pytest.raises(Exception, match="(?i)permission denied|read-only"):
            denied.cursor().execute("SELECT * FROM mi_schema_version")
        denied.close()
    finally:
        server.stop()
        ro.close()
        conn.cursor().execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        conn.close()
        admin.close()
        cleanup = connect(db_url).raw()
        try:
            cleanup.cursor().execute(f"DROP OWNED BY {role}")
            cleanup.cursor().execute(f"DROP ROLE {role}")
        except Exception:
            pass
        cleanup.close()
