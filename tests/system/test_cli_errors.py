"""Errors a person can act on (issue 11 §4; operations-review §3 cases 18, 20–23, 29–31).

Each case runs the real `mi-worker` process: a short message (what failed, why, what to
do), the documented exit code, no traceback; `--debug` shows the traceback.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from conftest import PG_ADMIN_URL, ROOT

PG_BASE = PG_ADMIN_URL.rpartition("/")[0]


def run_cli(args, cwd=None, env=None, timeout=60):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MI_WORKER_")}
    full_env.update(PYTHONIOENCODING="utf-8", PYTHONPATH=str(ROOT))
    full_env.update(env or {})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mi_worker", *args], cwd=str(cwd or ROOT),
                          env=full_env, capture_output=True, timeout=timeout)
    out = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
    return proc.returncode, out, time.monotonic() - started


def assert_user_error(rc, out, code, *words):
    assert rc == code, (rc, out)
    assert "Traceback" not in out, out
    error_lines = [line for line in out.splitlines() if line.strip()]
    assert 1 <= len(error_lines) <= 4, out  # message + advice (+ click usage lines)
    for w in words:
        assert w in out, (w, out)


def test_help_documents_exit_codes():
    rc, out, _ = run_cli(["--help"])
    assert rc == 0
    for text in ("Exit codes", "0 ok", "2 usage", "3 database", "4 gateway", "--debug"):
        assert text in out, out


def test_read_only_command_never_creates_a_database(tmp_path):
    rc, out, _ = run_cli(["status"], cwd=tmp_path)
    assert_user_error(rc, out, 3, "does not exist", "database.url")
    assert not (tmp_path / "mi_worker.db").exists()
    for args in (["requests", "list"], ["alerts"], ["metrics"], ["call", "1101", "--input", "{}"]):
        rc, out, _ = run_cli(args, cwd=tmp_path)
        assert rc == 3 and "Traceback" not in out, out
    assert list(tmp_path.iterdir()) == []


def test_gbk_config_file_says_save_as_utf8(tmp_path):
    cfg = tmp_path / "gbk.toml"
    cfg.write_bytes('[logging]\nlevel = "INFO"\n# 中文注释\n'.encode("gbk"))
    rc, out, _ = run_cli(["--config", str(cfg), "config", "check"])
    assert_user_error(rc, out, 2, "UTF-8", str(cfg))


def test_bad_date_and_unwritable_textfile_are_usage_errors(tmp_path):
    url = f"sqlite:///{tmp_path / 'mi.db'}"
    env = {"MI_WORKER_DATABASE_URL": url}
    assert run_cli(["db", "upgrade"], env=env)[0] == 0
    rc, out, _ = run_cli(["reconcile", "--date", "2026/11/24"], env=env)
    assert_user_error(rc, out, 2, "YYYY-MM-DD")
    rc, out, _ = run_cli(["metrics", "--textfile", "/proc/nope/x.prom"], env=env)
    assert_user_error(rc, out, 2, "/proc/nope/x.prom", "--textfile")


def test_unreachable_database_answers_within_connect_timeout_naming_host_port():
    env = {"MI_WORKER_DATABASE_URL": f"{PG_BASE.rsplit(':', 1)[0]}:1/postgres",
           "MI_WORKER_DATABASE_CONNECT_TIMEOUT": "3"}
    rc, out, elapsed = run_cli(["status"], env=env)
    assert_user_error(rc, out, 3, "127.0.0.1:1", "unreachable")
    assert elapsed < 3 + 5, elapsed  # not 31 s of silence


def _pg_or_skip():
    try:
        from conftest import _pg_admin
        _pg_admin().close()
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")


def test_unknown_role_missing_driver_and_missing_database_fail_at_once():
    _pg_or_skip()
    host = PG_BASE.split("@")[-1]
    cases = [
        (f"postgresql://nosuch_{uuid.uuid4().hex[:6]}@{host}/postgres", ["status"],
         ("role", "user and password")),
        (f"postgresql://postgres@{host}/postgres?driver=NoSuchDriver", ["status"],
         ("NoSuchDriver", "ODBC driver")),
        (f"postgresql://postgres@{host}/nosuch_{uuid.uuid4().hex[:6]}", ["run"],
         ("does not exist", "CREATE DATABASE")),
        (f"postgresql://nosuch_{uuid.uuid4().hex[:6]}@{host}/postgres", ["db", "upgrade"],
         ("role", "user and password")),
    ]
    for url, args, words in cases:
        rc, out, elapsed = run_cli(args, env={"MI_WORKER_DATABASE_URL": url,
                                              "MI_WORKER_GATEWAY_KIND": "noop",
                                              "MI_WORKER_GATEWAY_ALLOW_FAKE_CENTRE": "true"})
        assert_user_error(rc, out, 3, *words)
        assert "db upgrade` first" not in out
        assert elapsed < 15, (args, elapsed)


def test_database_without_schema_says_db_upgrade(tmp_path):
    path = tmp_path / "empty.db"
    import sqlite3
    sqlite3.connect(path).close()
    rc, out, _ = run_cli(["status"], env={"MI_WORKER_DATABASE_URL": f"sqlite:///{path}"})
    assert_user_error(rc, out, 3, "db upgrade")


def test_debug_shows_the_traceback(tmp_path):
    env = {"MI_WORKER_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/postgres",
           "MI_WORKER_DATABASE_CONNECT_TIMEOUT": "2"}
    rc, out, _ = run_cli(["--debug", "status"], env=env)
    assert rc != 0 and "Traceback" in out


@pytest.mark.parametrize("args", [
    ["--timeout", "2147483648"], ["--retry-count", "-9223372036854775809"],
    ["--priority", "99999999999"],
])
def test_out_of_range_integers_are_1001(db_url, args):
    rc, out, _ = run_cli(["call", "1101", "--input", '{"data": {}}', "--json", *args],
                         env={"MI_WORKER_DATABASE_URL": db_url})
    assert rc == 1 and "Traceback" not in out, out
    assert json.loads(out.strip().splitlines()[-1])["error_code"] == -1001


def test_invalid_utf8_and_lone_surrogates_are_1001(db_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MI_WORKER_")}
    env.update(MI_WORKER_DATABASE_URL=db_url, PYTHONIOENCODING="utf-8", PYTHONPATH=str(ROOT),
               LC_ALL="C.UTF-8")
    for bad in (b'{"a": "\xff\xfe"}', b'{"a": "\xed\xa0\x80"}'):  # bad byte; UTF-8 surrogate
        for argv in ([b"call", b"1101", b"--input", bad, b"--json"],
                     [b"call", b"11\xff01", b"--input", b"{}", b"--json"]):
            proc = subprocess.run([os.fsencode(sys.executable), b"-m", b"mi_worker", *argv],
                                  cwd=str(ROOT), env=env, capture_output=True, timeout=60)
            out = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
            assert proc.returncode == 1 and "Traceback" not in out, out
            assert json.loads(out.strip().splitlines()[-1])["error_code"] == -1001, out
