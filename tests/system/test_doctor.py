"""`mi-worker doctor` against a real database (SQLite, PostgreSQL) and the sandbox over TLS.

Each test runs the real command in a new process (as ops do on go-live day) with a TOML made
from the test's settings; the sandbox serves HTTPS with a CA made in the test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from conftest import ROOT, make_settings, settings_toml
from mi_worker.sandbox.pki import make_pki
from mi_worker.sandbox.testing import running_sandbox


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("other"))


@pytest.fixture
def tls_box(pki):
    with running_sandbox(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)) as box:
        yield box


def doctor(tmp_path: Path, settings, *args: str, env_extra=None) -> subprocess.CompletedProcess:
    cfg = tmp_path / "doctor.toml"
    cfg.write_text(settings_toml(settings), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MI_WORKER_")}
    env.update(PYTHONIOENCODING="utf-8", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "mi_worker", "--config", str(cfg), "doctor",
                           *args], cwd=str(ROOT), env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=120)


def lines(out: str, name: str) -> list[str]:
    return [ln for ln in out.splitlines() if f" {name}: " in ln]


def test_all_green_over_tls_with_sign_in(db_url, tls_box, pki, tmp_path):
    s = make_settings(db_url, tls_box, gateway={"ca_bundle": str(pki.ca_cert)})
    r = doctor(tmp_path, s, "--sign-in")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for name in ("配置", "数据库连接", "数据库结构", "时钟偏差", "网关DNS", "网关TCP", "网关TLS",
                 "9001签到"):
        (line,) = lines(out, name)
        assert line.startswith("✓"), line
    assert "全部通过" in out
    # the chain the server sent: subject, issuer, expiry of each certificate
    assert "subject: CN=sandbox.医保专网.test" in out
    assert "issuer: CN=mi-worker test 医保专网 CA" in out and "到期: " in out
    assert "gateway.ca_bundle" in lines(out, "网关TLS")[0]
    assert tls_box.calls.count("9001") == 1  # a real sign-in reached the centre
    if db_url.startswith("sqlite"):
        assert lines(out, "HIS存储过程")[0].startswith("–")
        assert lines(out, "ODBC驱动")[0].startswith("–")
    else:
        assert lines(out, "HIS存储过程")[0].startswith("✓")
        assert "PostgreSQL Unicode" in lines(out, "ODBC驱动")[0]


def test_trust_through_the_system_store(db_url, tls_box, pki, tmp_path):
    s = make_settings(db_url, tls_box)
    r = doctor(tmp_path, s, env_extra={"SSL_CERT_FILE": str(pki.ca_cert)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines(r.stdout, "网关TLS")[0].startswith("✓ 网关TLS: 握手成功, 证书已校验 (信任: 系统证书库)")


def test_unknown_ca_fails_and_shows_what_the_server_sent(db_url, tls_box, other_pki, tmp_path):
    s = make_settings(db_url, tls_box)
    r = doctor(tmp_path, s, env_extra={"SSL_CERT_FILE": str(other_pki.ca_cert)})
    assert r.returncode == 1, r.stdout + r.stderr
    (line,) = lines(r.stdout, "网关TLS")
    assert line.startswith("✗") and f"127.0.0.1:{tls_box.port}" in line
    assert "not trusted" in line and "gateway.ca_bundle" in line and "修复" in line
    assert "服务器出示的证书" in r.stdout and "issuer: CN=mi-worker test 医保专网 CA" in r.stdout
    assert "1 项未通过: 网关TLS" in r.stdout


def test_verify_tls_false_is_a_failed_check(db_url, tls_box, tmp_path):
    s = make_settings(db_url, tls_box, gateway={"verify_tls": False})
    r = doctor(tmp_path, s)
    assert r.returncode == 1
    (line,) = lines(r.stdout, "网关TLS")
    assert line.startswith("✗") and "gateway.verify_tls = false" in line


def test_mutual_tls_with_pfx(db_url, pki, tmp_path):
    with running_sandbox(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key),
                         tls_client_ca=str(pki.client_ca_cert)) as box:
        s = make_settings(db_url, box, gateway={"ca_bundle": str(pki.ca_cert)})
        r = doctor(tmp_path, s)
        assert r.returncode == 1 and lines(r.stdout, "网关TLS")[0].startswith("✗")
        s.gateway.client_cert = str(pki.client_pfx)
        r = doctor(tmp_path, s, env_extra={"MI_WORKER_GATEWAY_CLIENT_KEY_PASSWORD": pki.password})
        assert r.returncode == 0, r.stdout + r.stderr
        assert "client.pfx" in lines(r.stdout, "网关TLS")[0]
        assert pki.password not in r.stdout + r.stderr


def test_bad_config_names_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[gateway]\nkind = "nhsa"\nverify_tls = "no"\n', encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "mi_worker", "--config", str(cfg), "doctor"],
                       cwd=str(ROOT), capture_output=True, text=True, encoding="utf-8",
                       env=dict(os.environ, PYTHONIOENCODING="utf-8"), timeout=60)
    assert r.returncode == 1
    (line,) = lines(r.stdout, "配置")
    assert line.startswith("✗") and "gateway.verify_tls" in line
    assert "Traceback" not in r.stderr


def test_fake_centre_config_fails_the_preflight(db_url, tmp_path):
    s = make_settings(db_url, gateway={"kind": "noop", "allow_fake_centre": True})
    r = doctor(tmp_path, s)
    assert r.returncode == 1
    assert lines(r.stdout, "配置")[0].startswith("✗") and "假医保中心" in r.stdout


def test_missing_odbc_driver_names_the_package(db_url, tls_box, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("ODBC is for server databases")
    s = make_settings(db_url + "?driver=No+Such+Driver", tls_box)
    r = doctor(tmp_path, s)
    assert r.returncode == 1
    (line,) = lines(r.stdout, "ODBC驱动")
    assert line.startswith("✗") and "No Such Driver" in line and "odbc-postgresql" in line


def test_unreachable_database_and_missing_role(db_url, tls_box, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("a server database")
    s = make_settings("postgresql://postgres@127.0.0.1:9/none", tls_box)
    r = doctor(tmp_path, s)
    assert r.returncode == 1
    (line,) = lines(r.stdout, "数据库连接")
    assert line.startswith("✗ 数据库连接: 无法连接 127.0.0.1:9") and "database.url" in line
    s = make_settings(db_url, tls_box)
    r = doctor(tmp_path, s, "--his-role", "no_such_his_role")
    assert r.returncode == 1
    (line,) = lines(r.stdout, "HIS存储过程")
    assert line.startswith("✗") and "no_such_his_role" in line


def test_sqlite_file_missing_is_not_created(tmp_path, tls_box):
    target = tmp_path / "nowhere" / "mi.db"
    s = make_settings(f"sqlite:///{target}", tls_box)
    r = doctor(tmp_path, s)
    assert r.returncode == 1 and "不存在" in lines(r.stdout, "数据库连接")[0]
    assert not target.exists()


class _Robot(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Robot.received.append(json.loads(body))
        data = b'{"errcode": 0, "errmsg": "ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def test_webhook_check(db_url, tls_box, pki, tmp_path):
    robot = HTTPServer(("127.0.0.1", 0), _Robot)
    threading.Thread(target=robot.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{robot.server_address[1]}/cgi-bin/webhook/send?key=SECRETKEY"
        s = make_settings(db_url, tls_box, gateway={"ca_bundle": str(pki.ca_cert)})
        r = doctor(tmp_path, s, "--webhook",
                   env_extra={"MI_WORKER_ALERTS_WEBHOOK_URL": url})
        assert r.returncode == 0, r.stdout + r.stderr
        assert lines(r.stdout, "告警Webhook")[0].startswith("✓")
        assert "DOCTOR_TEST" in json.dumps(_Robot.received[-1], ensure_ascii=False)
    finally:
        robot.shutdown()
        robot.server_close()
    r = doctor(tmp_path, s, "--webhook", env_extra={"MI_WORKER_ALERTS_WEBHOOK_URL": url})
    assert r.returncode == 1
    (line,) = lines(r.stdout, "告警Webhook")
    assert line.startswith("✗") and "SECRETKEY" not in r.stdout + r.stderr
