"""Never settle against a fake centre by accident (issue 11 §1).

The sandbox / noop gateways start by themselves only for the embedded default (no config
file, SQLite). With a config file or a server database gateway.kind must be given; a fake
kind on a server database needs gateway.allow_fake_centre = true, and then the heartbeat
(gateway_kind), `status`, the health monitor (SQL and CLI) and every alert scan
(FAKE_GATEWAY) show it; workers of different kinds at once raise MIXED_GATEWAY_KINDS
(CRITICAL); gateway.kind = nhsa without database.url is an error.
"""
from __future__ import annotations

import json
import signal

import pytest
from click.testing import CliRunner

from conftest import InProcessWorker, make_settings, wait_until
from mi_worker import alerts, config
from mi_worker.cli import main


def write(tmp_path, text: str):
    p = tmp_path / "mi-worker.toml"
    p.write_text(text, encoding="utf-8")
    return p


# -- config rules ---------------------------------------------------------------------------
def test_embedded_default_still_starts_the_sandbox(tmp_path):
    s = config.load(None, env={"MI_WORKER_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    config.check_fake_centre(s)
    assert s.gateway.kind == "sandbox"
    s = config.load(None, env={})
    config.check_fake_centre(s)  # the first run: no file, ./mi_worker.db, sandbox


def test_config_file_without_gateway_kind_is_an_error(tmp_path):
    path = write(tmp_path, f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n')
    s = config.load(path, env={})
    with pytest.raises(config.ConfigError, match=r"config key gateway\.kind: has no default"):
        config.check_fake_centre(s)


def test_server_database_without_gateway_kind_is_an_error():
    s = config.load(None, env={"MI_WORKER_DATABASE_URL": "postgresql://u@db.example:5432/his"})
    with pytest.raises(config.ConfigError, match=r"gateway\.kind"):
        config.check_fake_centre(s)


@pytest.mark.parametrize("kind", ["sandbox", "noop"])
def test_leftover_env_kind_on_a_server_database_needs_allow_fake_centre(tmp_path, kind):
    path = write(tmp_path, '[database]\nurl = "postgresql://u@db.example:5432/his"\n')
    s = config.load(path, env={"MI_WORKER_GATEWAY_KIND": kind})
    with pytest.raises(config.ConfigError) as info:
        config.check_fake_centre(s)
    msg = str(info.value)
    assert "gateway.allow_fake_centre" in msg and "MI_WORKER_GATEWAY_KIND" in msg
    s = config.load(path, env={"MI_WORKER_GATEWAY_KIND": kind,
                               "MI_WORKER_GATEWAY_ALLOW_FAKE_CENTRE": "true"})
    config.check_fake_centre(s)  # on purpose: allowed


def test_fake_kind_in_file_on_sqlite_with_config_file_is_fine(tmp_path):
    path = write(tmp_path, f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n'
                           '[gateway]\nkind = "sandbox"\n')
    config.check_fake_centre(config.load(path, env={}))


def test_nhsa_without_database_url_is_an_error(tmp_path):
    path = write(tmp_path, '[gateway]\nkind = "nhsa"\nurl = "https://gw.example/x"\n')
    with pytest.raises(config.ConfigError, match=r"config key database\.url:.*mi_worker\.db"):
        config.check_fake_centre(config.load(path, env={}))
    # given through the environment is fine
    config.check_fake_centre(config.load(path, env={
        "MI_WORKER_DATABASE_URL": "postgresql://u@db.example:5432/his"}))


def test_run_refuses_before_touching_anything(tmp_path):
    """`mi-worker run` itself: exits with the key named, no database file created."""
    path = write(tmp_path, '[gateway]\nkind = "nhsa"\nurl = "https://gw.example/x"\n')
    r = CliRunner().invoke(main, ["--config", str(path), "run"], env={})
    assert r.exit_code == 2 and "database.url" in r.output, r.output
    path = write(tmp_path, '[database]\nurl = "postgresql://u@127.0.0.1:9/none"\n')
    r = CliRunner().invoke(main, ["--config", str(path), "run"],
                           env={"MI_WORKER_GATEWAY_KIND": "sandbox"})
    assert r.exit_code == 2 and "gateway.allow_fake_centre" in r.output, r.output
    r = CliRunner().invoke(main, ["--config", str(path), "config", "check"], env={})
    assert r.exit_code == 2 and "gateway.kind" in r.output, r.output
    assert not (tmp_path / "mi_worker.db").exists()


def test_runner_refuses_programmatic_fake_on_server_db(db_url):
    from mi_worker.runner import run
    if db_url.startswith("sqlite"):
        pytest.skip("the embedded SQLite database may use the sandbox")
    s = make_settings(db_url, gateway={"kind": "noop"})
    with pytest.raises(config.ConfigError, match="allow_fake_centre"):
        run(s)


# -- heartbeat, status, monitor, alerts -----------------------------------------------------
def other_beat(db, worker_id: str, kind: str, tls: int | None) -> None:
    db.run("heartbeat", service_name="medical_insurance_sdk", worker_id=worker_id, host="h2",
           pid=2, version="t", status="RUNNING", in_flight=0, processed_total=0,
           gateway_kind=kind, gateway_tls_verified=tls)


def test_fake_worker_is_visible_and_alerted(db_url):
    s = make_settings(db_url, gateway={"kind": "noop", "allow_fake_centre": True})
    with InProcessWorker(s) as w:
        db = w.db
        wait_until(lambda: db.run("live_gateway_kinds", down_seconds=60), 20,
                   message="the worker's first heartbeat")
        (row,) = db.run("live_gateway_kinds", down_seconds=60)
        assert row["gateway_kind"] == "noop" and row["gateway_tls_verified"] is None
        result = alerts.scan(db, s)
        assert "FAKE_GATEWAY" in result["firing"]
        assert "MIXED_GATEWAY_KINDS" not in result["firing"]
        (fake,) = [a for a in db.run("list_open_alerts", include_resolved=0)
                   if a["alert_type"] == "FAKE_GATEWAY"]
        assert w.worker.worker_id in fake["alert_message"]
        # every scan keeps it open (refreshed, not re-notified)
        assert "FAKE_GATEWAY" in alerts.scan(db, s)["firing"]

        # a real-centre worker with TLS checks off joins the same database
        other_beat(db, "real-1", "nhsa", 0)
        result = alerts.scan(db, s)
        assert {"FAKE_GATEWAY", "MIXED_GATEWAY_KINDS", "TLS_VERIFY_OFF"} <= set(result["firing"])
        levels = {a["alert_type"]: a["alert_level"]
                  for a in db.run("list_open_alerts", include_resolved=0)}
        assert levels["MIXED_GATEWAY_KINDS"] == "CRITICAL"

        # the health monitor (the DBA's SQL on PG/MSSQL, the named query on SQLite) shows it
        health = {r["worker_id"]: r for r in db.run("monitor_health", warn_seconds=30,
                                                    down_seconds=60)}
        assert health[w.worker.worker_id]["gateway_kind"] == "noop"
        assert health["real-1"]["gateway_kind"] == "nhsa"
        assert health["*"]["gateway_kind"] == "MIXED"

        # and `status` / `monitor health` on the CLI
        env = {"MI_WORKER_DATABASE_URL": db_url}
        out = CliRunner().invoke(main, ["status"], env=env)
        assert out.exit_code == 0, out.output
        assert "!! FAKE CENTRE" in out.output and "noop" in out.output
        assert "!! MIXED GATEWAY KINDS" in out.output
        assert "!! TLS NOT VERIFIED" in out.output and "real-1" in out.output
        out = CliRunner().invoke(main, ["monitor", "health", "--json"], env=env)
        assert out.exit_code == 0, out.output
        kinds = {r["worker_id"]: r["gateway_kind"] for r in json.loads(out.output)}
        assert kinds[w.worker.worker_id] == "noop"
        import socket
        out = CliRunner().invoke(main, ["health", "--host", socket.gethostname()], env=env)
        assert out.exit_code == 0, out.output
        assert "(gateway noop)" in out.output and "WARNING: FAKE CENTRE" in out.output

    # the fake worker stopped and the real one is alone: the alerts clear
    from mi_worker.runner import open_database
    db_again = open_database(s)
    other_beat(db_again, "real-1", "nhsa", 1)
    try:
        result = alerts.scan(db_again, s)
        assert not {"FAKE_GATEWAY", "MIXED_GATEWAY_KINDS", "TLS_VERIFY_OFF"} & set(
            result["firing"]), result
        assert {"FAKE_GATEWAY", "MIXED_GATEWAY_KINDS", "TLS_VERIFY_OFF"} <= set(
            result["resolved"])
    finally:
        db_again.close()


def test_postgresql_health_function_has_gateway_kind(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("the DBA function is PostgreSQL's")
    from mi_worker.runner import open_database
    s = make_settings(db_url)
    db = open_database(s)
    try:
        other_beat(db, "sb-1", "sandbox", None)
        conn = db.raw()
        cur = conn.cursor()
        cur.execute("SELECT worker_id, gateway_kind FROM mi_monitor_health(30, 60)")
        got = {r[0]: r[1] for r in cur.fetchall()}
        cur.execute("SELECT t->>'gateway_kind' FROM "
                    "sp_get_medical_insurance_monitor_data('health') t")
        json_kinds = sorted(r[0] for r in cur.fetchall())
        # the DBA's own alert function (what a Zabbix check polls) says it too
        cur.execute("SELECT alert_type, alert_level FROM sp_check_medical_insurance_alerts()")
        dba_alerts = dict(cur.fetchall())
        conn.close()
    finally:
        db.close()
    assert got == {"*": "sandbox", "sb-1": "sandbox"}
    assert json_kinds == ["sandbox", "sandbox"]
    assert dba_alerts["FAKE_GATEWAY"] == "WARNING"
    assert "MIXED_GATEWAY_KINDS" not in dba_alerts


def test_real_worker_banner_for_fake_centre_on_server_db(db_url, spawn):
    if db_url.startswith("sqlite"):
        pytest.skip("the banner is for server databases")
    s = make_settings(db_url, gateway={"kind": "noop", "allow_fake_centre": True})
    p = spawn(s, "fake")
    wait_until(lambda: "starting as" in p.output() or p.proc.poll() is not None, 60,
               message="worker start")
    p.signal(signal.SIGTERM)
    assert p.stop() == 0, p.output()
    out = p.output()
    assert "FAKE CENTRE ON A SERVER DATABASE (postgresql)" in out
    assert "gateway.kind = noop" in out


def test_verify_tls_false_warns_at_start(db_url, spawn, tmp_path):
    from mi_worker.sandbox.testing import running_sandbox
    with running_sandbox() as box:
        s = make_settings(db_url, box)
        s.gateway.verify_tls = False
        p = spawn(s, "insecure")
        wait_until(lambda: "starting as" in p.output() or p.proc.poll() is not None, 60,
                   message="worker start")
        p.signal(signal.SIGTERM)
        assert p.stop() == 0, p.output()
    assert "TLS VERIFICATION IS OFF (gateway.verify_tls = false)" in p.output()
