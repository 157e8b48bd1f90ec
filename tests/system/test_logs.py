"""Logs: one INFO line per finished call (text and JSON), rotation that survives a reader, and
no psqlODBC log file per process."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from unittest import mock

import pytest

from conftest import ROOT, make_settings, settings_toml, wait_until
from mi_worker import logs
from mi_worker.his_call import call


def start_worker(settings, tmp_path: Path, env_extra=None, args=()) -> tuple:
    cfg = tmp_path / f"w-{uuid.uuid4().hex[:6]}.toml"
    cfg.write_text(settings_toml(settings), encoding="utf-8")
    out = tmp_path / f"w-{uuid.uuid4().hex[:6]}.out"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    env.pop("MI_WORKER_CONFIG", None)
    fh = open(out, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mi_worker", "--config", str(cfg), "run",
                             *args], cwd=str(ROOT), env=env, stdout=fh,
                            stderr=subprocess.STDOUT)
    return proc, out, fh


def stop(proc, fh) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    finally:
        fh.close()


def wait_alive(db) -> None:
    wait_until(lambda: any(r["status"] == "RUNNING" for r in db.run("heartbeat_rows")), 30,
               message="worker heartbeat")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_one_info_line_per_finished_call(db, db_url, sandbox, tmp_path, fmt):
    logfile = tmp_path / "logs" / "mi-worker.log"
    s = make_settings(db_url, sandbox, logging={"file": str(logfile), "format": fmt})
    proc, out, fh = start_worker(s, tmp_path, args=("--log-level", "INFO"))
    try:
        wait_alive(db)
        ids = []
        for psn in ("430726198001010011", "P00012345"):
            r = call(db, "1101", json.dumps({"data": {"psn_no": psn}}), timeout=20, psn_no=psn)
            assert r.error_code == 0, r
            ids.append(r.request_id)
        wait_until(lambda: logfile.exists() and str(ids[-1]) in logfile.read_text("utf-8"),
                   10, message="the call line in the log file")
    finally:
        stop(proc, fh)
    text = logfile.read_text(encoding="utf-8")
    assert "430726198001010011" not in text and "P00012345" not in text  # masked
    if fmt == "json":
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        calls = [r for r in records if r.get("logger") == "mi_worker.calls"]
        assert [c["call"]["request_id"] for c in calls] == ids
        first = calls[0]
        assert first["level"] == "INFO" and first["call"]["outcome"] == "COMPLETED"
        assert first["call"]["interface"] == "1101" and first["call"]["attempts"] == 1
        assert len(first["call"]["msgid"]) == 30 and first["call"]["latency_ms"] >= 0
        assert first["call"]["psn_no"] == "4********1" and first["call"]["worker"]
        assert {"time", "message", "thread"} <= set(first)
    else:
        lines = [line for line in text.splitlines() if "mi_worker.calls" in line]
        assert len(lines) == 2
        assert f"finished request {ids[0]} 1101 msgid " in lines[0]
        assert "outcome COMPLETED attempts 1" in lines[0] and " INFO " in lines[0]


def test_bad_log_format_is_a_config_error(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[logging]\nformat = "xml"\n', encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "mi_worker", "--config", str(cfg), "config",
                        "check"], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "logging.format: must be text or json" in r.stderr  # config error
    assert "Traceback" not in r.stderr


def _rolling_logger(path: Path):
    handler = logs.file_handler(str(path), backup_count=5)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"rot-{uuid.uuid4().hex[:6]}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, handler


def _days_later(handler, days: int):
    """Midnight has passed ``days`` times: the handler's clock (shared via its lock file)
    reads that much later."""
    real = handler._get_current_time
    return mock.patch.object(handler, "_get_current_time", lambda: real() + days * 86400)


def _all_lines(folder: Path) -> list:
    lines = []
    for f in sorted(folder.glob("mi-worker.log*")):
        if f.suffix != ".lock" and not f.name.endswith(".lock"):
            lines += f.read_text(encoding="utf-8").splitlines()
    return lines


def test_midnight_rollover_with_a_reader_holding_the_file(tmp_path):
    """Linux: the rename succeeds under an open reader, which keeps reading the old file."""
    path = tmp_path / "mi-worker.log"
    logger, handler = _rolling_logger(path)
    try:
        for i in range(5):
            logger.info("before %d", i)
        with open(path, encoding="utf-8") as reader:  # like `Get-Content -Wait` / tail -f
            assert reader.read().splitlines() == [f"before {i}" for i in range(5)]
            with _days_later(handler, 1):
                for i in range(5):
                    logger.info("after %d", i)
            assert reader.read() == ""  # the reader still holds the old (renamed) file
        backups = [f for f in tmp_path.glob("mi-worker.log.*") if not f.name.endswith("lock")]
        assert backups, list(tmp_path.iterdir())
        assert path.read_text(encoding="utf-8").splitlines() == [f"after {i}" for i in range(5)]
        assert sorted(_all_lines(tmp_path)) == sorted(
            [f"before {i}" for i in range(5)] + [f"after {i}" for i in range(5)])
    finally:
        handler.close()


def test_rollover_refused_like_windows_loses_no_record(tmp_path):
    """Closest honest test of Windows on Linux: while a reader holds the file, rename raises
    PermissionError (WinError 32, as Windows does for a file open without FILE_SHARE_DELETE).
    The handler must keep writing to the current file and rotate once the rename works."""
    path = tmp_path / "mi-worker.log"
    logger, handler = _rolling_logger(path)
    real_rename = os.rename
    refused = []

    def windows_rename(src, dst, *a, **kw):
        if os.path.abspath(src) == str(path):
            refused.append(dst)
            raise PermissionError(32, "The process cannot access the file because it is "
                                      "being used by another process", str(src))
        return real_rename(src, dst, *a, **kw)

    try:
        logger.info("line 0")
        reader = open(path, encoding="utf-8")
        try:
            with _days_later(handler, 1), mock.patch("os.rename", windows_rename), \
                    mock.patch.object(handler, "_console_log", lambda *a, **k: None):
                for i in range(1, 6):
                    logger.info("line %d", i)
            assert refused, "the rollover never tried to rename the file"
            assert reader.read().splitlines() == [f"line {i}" for i in range(6)]
        finally:
            reader.close()
        # The reader is gone: the next due rollover succeeds.
        with _days_later(handler, 2):
            logger.info("line 6")
        assert path.read_text(encoding="utf-8").splitlines() == ["line 6"]
        assert sorted(_all_lines(tmp_path)) == sorted(f"line {i}" for i in range(7))
    finally:
        handler.close()


def _psqlodbc_logs(pid: int) -> list:
    return [p for p in Path("/tmp").glob(f"psqlodbc_*{pid}.log")]


def test_worker_run_leaves_no_psqlodbc_log(db, db_url, sandbox, tmp_path):
    if db.name != "postgresql":
        pytest.skip("psqlODBC is the PostgreSQL driver")
    if not Path("/etc/odbcinst.ini").is_file() or not shutil.which("awk"):
        pytest.skip("no /etc/odbcinst.ini (unixODBC) here")
    odbc_dir = tmp_path / "odbc"
    odbc_dir.mkdir()
    ini = odbc_dir / "odbcinst.ini"
    ini.write_text(Path("/etc/odbcinst.ini").read_text(encoding="utf-8")
                   .replace("CommLog=0", "CommLog=1"), encoding="utf-8")
    s = make_settings(db_url, sandbox)
    # Control: with CommLog=1 in odbcinst.ini (Debian's default) the file appears although the
    # connection string says CommLog=0, and the worker says where to fix it.
    proc, out, fh = start_worker(s, tmp_path, {"ODBCSYSINI": str(odbc_dir)})
    try:
        wait_alive(db)
    finally:
        stop(proc, fh)
    found = _psqlodbc_logs(proc.pid)
    try:
        assert found, "control run: psqlODBC wrote no log, so the test below proves nothing"
        assert "psqlODBC logging is on in" in out.read_text(encoding="utf-8")
    finally:
        for f in found:
            f.unlink()
    subprocess.run(["sh", str(ROOT / "deploy" / "scripts" / "psqlodbc-nolog.sh"), str(ini)],
                   check=True, capture_output=True)
    assert "CommLog=1" not in ini.read_text(encoding="utf-8")
    proc, out, fh = start_worker(s, tmp_path, {"ODBCSYSINI": str(odbc_dir)})
    try:
        wait_alive(db)
        r = call(db, "1101", json.dumps({"data": {"psn_no": "X1"}}), timeout=20)
        assert r.error_code == 0
    finally:
        stop(proc, fh)
    assert not _psqlodbc_logs(proc.pid)
    assert "psqlODBC logging is on" not in out.read_text(encoding="utf-8")
