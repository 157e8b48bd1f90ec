"""Shared fixtures for every layer of the suite:

    tests/unit/     no database, seconds (catalogue, envelope, signing, retry rules, states)
    tests/queries/  one test per named statement, on every dialect (river's driver suite)
    tests/system/   real worker processes, the sandbox, crashes and outages
    tests/static/   parse gates, docs, deploy files, the import graph

Shared fixtures: a fresh database per test on SQLite, the real PostgreSQL and (with Docker)
SQL Server; a sandbox gateway on loopback; in-process and subprocess workers.

PostgreSQL: a template database is migrated once per session and each test gets a copy
(CREATE DATABASE … TEMPLATE), so every test starts empty and the suite stays fast. In CI
(CI=true or MI_WORKER_REQUIRE_PG=1) an unreachable PostgreSQL fails the run instead of
skipping, because a green run without it would prove nothing about PostgreSQL.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

PG_ADMIN_URL = os.environ.get("MI_WORKER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("MI_WORKER_REQUIRE_PG") == "1" or os.environ.get("CI") == "true"
# MI_WORKER_TEST_DIALECTS=sqlite narrows the behaviour suite (make test-fast); CI runs all.
DIALECTS = [d for d in ("sqlite", "postgresql", "mssql")
            if d in os.environ.get("MI_WORKER_TEST_DIALECTS", "sqlite,postgresql,mssql")
            .split(",")]


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


def _pg_admin():
    from mi_worker.db.odbc import import_pyodbc
    from mi_worker.db.postgresql import odbc_string
    pyodbc = import_pyodbc()
    return pyodbc.connect(odbc_string(PG_ADMIN_URL), autocommit=True, timeout=5)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database; skipped (or failed in CI) when PostgreSQL is away."""
    try:
        admin = _pg_admin()
    except Exception as exc:  # no driver, no server
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
        if REQUIRE_PG:
            pytest.fail(message + " (CI requires the PostgreSQL suite)")
        pytest.skip(message)
    name = f"mi_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    from mi_worker.db import connect
    from mi_worker.runner import prepare_database
    db = connect(_pg_url(name))
    prepare_database(db)
    db.close()
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def mssql_server() -> Iterator[str]:
    """A SQL Server 2022 container via testcontainers, where Docker and the ODBC driver exist."""
    reason = _mssql_unavailable()
    if reason:
        pytest.skip(reason)
    from testcontainers.mssql import SqlServerContainer
    with SqlServerContainer("mcr.microsoft.com/mssql/server:2022-latest",
                            password="Mi-worker-Test1") as box:
        host, port = box.get_container_host_ip(), box.get_exposed_port(1433)
        yield (f"mssql+pyodbc://sa:Mi-worker-Test1@{host}:{port}/master"
               "?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes")


def _mssql_unavailable() -> Optional[str]:
    try:
        import docker
        docker.from_env().ping()
    except Exception as exc:
        return ("SQL Server suite skipped: no Docker engine here for testcontainers "
                f"({type(exc).__name__}); the T-SQL is checked by the sqlfluff parse gate")
    try:
        import pyodbc
        if not any("SQL Server" in d for d in pyodbc.drivers()):
            return "SQL Server suite skipped: no Microsoft ODBC Driver for SQL Server installed"
    except ImportError:
        return "SQL Server suite skipped: pyodbc not installed"
    return None


@pytest.fixture(params=DIALECTS)
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh, migrated database of each dialect (the behaviour suite runs on all three)."""
    from mi_worker.db import connect
    from mi_worker.runner import prepare_database
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'mi.db'}"
        db = connect(url)
        prepare_database(db)
        db.close()
        yield url
    elif request.param == "postgresql":
        with _pg_database("mi_t", request.getfixturevalue("pg_template")) as url:
            yield url
    else:
        server = request.getfixturevalue("mssql_server")
        name = f"mi_t_{uuid.uuid4().hex[:10]}"
        master = connect(server)
        master.raw().cursor().execute(f"CREATE DATABASE [{name}]")
        url = server.replace("/master?", f"/{name}?")
        db = connect(url)
        prepare_database(db)
        db.close()
        try:
            yield url
        finally:
            with contextlib.suppress(Exception):
                master.raw().cursor().execute(
                    f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; "
                    f"DROP DATABASE [{name}]")
            master.close()


@contextlib.contextmanager
def _pg_database(prefix: str, template: Optional[str] = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of ``template``, or empty), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = _pg_admin()
    admin.cursor().execute(f'CREATE DATABASE "{name}"'
                           + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield _pg_url(name)
    finally:
        with contextlib.suppress(Exception):
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def empty_pg_url(pg_template) -> Iterator[str]:
    """A new, empty (never migrated) PostgreSQL database: installs over what a hospital has.
    (``pg_template`` only for its verdict: skip here, or fail in CI, when PostgreSQL is away.)"""
    with _pg_database("mi_e") as url:
        yield url


@pytest.fixture
def db(db_url):
    from mi_worker.db import connect
    database = connect(db_url)
    yield database
    database.close()


@pytest.fixture
def sandbox():
    from mi_worker.sandbox.testing import running_sandbox
    with running_sandbox() as box:
        yield box


def make_settings(db_url: str, box=None, **sections: Dict[str, Any]):
    """Settings for a test worker: the given database, the test sandbox, fast jobs."""
    from mi_worker import config
    from mi_worker.sandbox.testing import client_settings
    s = config.Settings()
    s.database.url = db_url
    s.worker.threads = 8
    s.worker.poll_interval = 0.1
    s.worker.min_poll_interval = 0.01
    s.worker.grace_seconds = 5
    s.worker.lease_seconds = 30
    s.jobs.heartbeat_seconds = 1
    s.jobs.expire_seconds = 0.5
    s.jobs.lease_recovery_seconds = 1
    s.jobs.reversal_seconds = 0.5
    s.jobs.alerts_seconds = 3600
    if box is not None:
        s.gateway = client_settings(box)
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(s, section), key, value)
    return s


def settings_toml(settings) -> str:
    """The TOML a subprocess worker reads (only the keys that differ from the defaults)."""
    import dataclasses
    import json

    from mi_worker import config
    lines: List[str] = []
    defaults = config.Settings()
    for name, _ in config._sections():
        section, base = getattr(settings, name), getattr(defaults, name)
        lines.append(f"[{name}]")
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if value == getattr(base, f.name):
                continue
            if isinstance(value, dict):
                inner = ", ".join(f"{json.dumps(k)} = {json.dumps(v, ensure_ascii=False)}"
                                  for k, v in value.items())
                lines.append(f"{f.name} = {{{inner}}}")
            else:
                lines.append(f"{f.name} = {json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


class WorkerProcess:
    """A real `mi-worker run` process, to be stopped with a real signal."""

    def __init__(self, settings, tmp_path: Path, name: str = "w") -> None:
        self.config = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.toml"
        self.config.write_text(settings_toml(settings), encoding="utf-8")
        self.log = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("MI_WORKER_CONFIG", None)
        self._logf = open(self.log, "wb")
        self._termed = False
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mi_worker", "--config", str(self.config), "run"],
            cwd=str(ROOT), env=env, stdout=self._logf, stderr=subprocess.STDOUT)

    def signal(self, sig: int) -> None:
        if sig == signal.SIGTERM:
            self._termed = True
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM once (a second SIGTERM means "exit now" to the worker, by design)."""
        if self.proc.poll() is None and not self._termed:
            self._termed = True
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # Every thread's stack to its stderr, i.e. into self.log (runner.install_signals).
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            self.proc.kill()
            return self.proc.wait(10)
        finally:
            self._logf.close()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def spawn(tmp_path):
    procs: List[WorkerProcess] = []

    def start(settings, name: str = "w") -> WorkerProcess:
        p = WorkerProcess(settings, tmp_path, name)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


class InProcessWorker:
    """Worker + jobs on threads of the test process: fast, for behaviour tests."""

    def __init__(self, settings, sandbox_url: Optional[str] = None) -> None:
        from mi_worker.jobs import Scheduler
        from mi_worker.runner import build_gateway, open_database, sync_limits
        from mi_worker.worker import Worker
        self.db = open_database(settings)
        sync_limits(self.db, settings.worker.limits)
        self.gateway = build_gateway(settings, self.db, sandbox_url)
        self.worker = Worker(settings, self.db, self.gateway)
        self.scheduler = Scheduler(self.worker, self.db, settings, self.gateway)
        self.thread = threading.Thread(target=self.worker.run, name="test-worker", daemon=True)

    def __enter__(self) -> InProcessWorker:
        self.scheduler.start()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.worker.stop()
        self.thread.join(30)
        self.scheduler.shutdown()
        self.gateway.close()
        self.db.close()


def wait_until(predicate, timeout: float = 30.0, step: float = 0.05, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")


def count_status(db, status: str) -> int:
    rows = db.run("count_by_status")
    return sum(int(r["n"]) for r in rows if r["status"] == status)


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None


def finish_now(q, req, outcome, **result) -> bool:
    """Queue.finish() for a test, synchronously: True when the outcome was written.
    (A Queue whose writer was never started writes on the calling thread.)"""
    from mi_worker.gateway.base import GatewayResult
    got: List[bool] = []
    q.finish(req, GatewayResult(outcome=outcome, **result), got.append)
    assert len(got) == 1, "on_done must run exactly once"
    return got[0]
