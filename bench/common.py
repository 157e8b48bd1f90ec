"""What every scenario shares: databases, seeding, worker processes, timing and statistics.

The harness talks to PostgreSQL through pyodbc + psqlODBC (the project's own driver), creates
one fresh database per run from a migrated template (CREATE DATABASE … TEMPLATE, as the test
suite does), and runs workers as real ``python -m mi_worker --config FILE run`` processes so
the figures include everything production pays for (its own process, its pool, its jobs).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("MI_WORKER_BENCH_PG",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
PREFIX = "mibench_"
# The mi-worker code being measured: a snapshot of mi_worker/ and sql/ taken when the bench
# starts (other engineers edit the tree while a 20-minute run goes on); ROOT until then.
CODE_ROOT = ROOT


def snapshot_code(dest: Path, source: str = "head") -> Path:
    """Copy mi_worker/ and sql/ to dest: from the last commit (``git archive HEAD``, read-only)
    or from the working tree; the bench measures that copy from now on."""
    import io
    import shutil
    import tarfile
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if source == "head":
        r = subprocess.run(["git", "archive", "--format=tar", "HEAD", "mi_worker", "sql"],
                           cwd=str(ROOT), capture_output=True, timeout=60)
        if r.returncode == 0:
            with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
                tar.extractall(dest)
            return dest
        log(f"git archive HEAD failed ({r.stderr.decode(errors='replace')[:200]}); "
            "measuring the working tree")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "mi_worker", dest / "mi_worker", ignore=ignore, dirs_exist_ok=True)
    shutil.copytree(ROOT / "sql", dest / "sql", ignore=ignore, dirs_exist_ok=True)
    return dest


def use_code(root: Path) -> None:
    """Import mi_worker from ``root`` in this process and start workers there."""
    global CODE_ROOT
    CODE_ROOT = root
    for name in [m for m in sys.modules if m == "mi_worker" or m.startswith("mi_worker.")]:
        del sys.modules[name]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def child_env() -> Dict[str, str]:
    """Environment of a child python: the measured code first, then the repo (for bench.*)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("MI_WORKER_CONFIG", None)
    parts = [str(CODE_ROOT), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------- stats

def summarize(values: Sequence[float], digits: int = 3) -> Dict[str, Any]:
    """median / min / max of the runs, and the runs themselves."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {"median": round(statistics.median(vals), digits), "min": round(min(vals), digits),
            "max": round(max(vals), digits), "runs": [round(v, digits) for v in vals]}


def percentile(sorted_vals: Sequence[float], p: float) -> Optional[float]:
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


# ------------------------------------------------------------------------------ machine

def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_mb = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = int(line.split()[1]) // 1024
    pg_version = None
    pg_settings: Dict[str, str] = {}
    with contextlib.suppress(Exception):
        rows = pg_query("postgres", "SELECT version()")
        pg_version = rows[0][0]
        for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections",
                     "shared_preload_libraries"):
            pg_settings[name] = pg_query("postgres", f"SHOW {name}")[0][0]
    return {"cores": os.cpu_count(), "memory_mb": mem_mb, "cpu_model": cpu,
            "postgresql_version": pg_version, "postgresql_settings": pg_settings,
            "python_version": sys.version.split()[0], "python_executable": sys.executable,
            "platform": platform.platform(), "sqlite_version": sqlite3.sqlite_version}


# --------------------------------------------------------------------------- PostgreSQL

def pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


def pg_connect(dbname: str = "postgres") -> Any:
    from mi_worker.db.odbc import import_pyodbc
    from mi_worker.db.postgresql import odbc_string
    pyodbc = import_pyodbc()
    return pyodbc.connect(odbc_string(pg_url(dbname)), autocommit=True, timeout=10)


def pg_query(dbname: str, sql: str, params: Sequence[Any] = ()) -> List[tuple]:
    conn = pg_connect(dbname)
    try:
        cur = conn.cursor()
        cur.execute(sql, *params) if params else cur.execute(sql)
        rows: List[tuple] = []
        while True:
            if cur.description:
                rows = [tuple(r) for r in cur.fetchall()]
            if not cur.nextset():
                break
        return rows
    finally:
        conn.close()


def pg_exec(dbname: str, sql: str) -> None:
    conn = pg_connect(dbname)
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def pg_available() -> Optional[str]:
    """None if PostgreSQL answers, else why not."""
    try:
        pg_query("postgres", "SELECT 1")
        return None
    except Exception as exc:  # no driver, no server
        return f"{type(exc).__name__}: {exc}"


def drop_db(name: str) -> None:
    with contextlib.suppress(Exception):
        pg_exec("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_leftovers() -> None:
    """Drop databases a killed earlier run left behind (this harness's prefix, and only those
    nobody is connected to: another bench may be running)."""
    with contextlib.suppress(Exception):
        for (name,) in pg_query("postgres", "SELECT datname FROM pg_database d "
                                            f"WHERE datname LIKE '{PREFIX}%' AND NOT EXISTS "
                                            "(SELECT 1 FROM pg_stat_activity a "
                                            "WHERE a.datname = d.datname)"):
            with contextlib.suppress(Exception):
                pg_exec("postgres", f'DROP DATABASE IF EXISTS "{name}"')


class PgDatabases:
    """A migrated template once per bench run; a fresh copy per scenario run."""

    def __init__(self) -> None:
        self.template: Optional[str] = None
        self.template_versions: List[int] = []
        self.created: List[str] = []

    def _template(self) -> str:
        from mi_worker.db.migrate import migrations
        versions = [m.version for m in migrations("postgresql")]
        if self.template is not None and versions != self.template_versions:
            # the code gained a migration while the bench runs (others edit mi_worker too)
            log(f"migrations changed {self.template_versions} -> {versions}: new template")
            self.drop(self.template)
            self.template = None
        if self.template is None:
            self.template_versions = versions
            from mi_worker.db import connect
            from mi_worker.runner import prepare_database
            name = f"{PREFIX}tpl_{uuid.uuid4().hex[:6]}"
            pg_exec("postgres", f'CREATE DATABASE "{name}"')
            self.created.append(name)
            db = connect(pg_url(name))
            try:
                prepare_database(db)
            finally:
                db.close()
            self.template = name
        return self.template

    def new(self, label: str) -> str:
        tpl = self._template()
        name = f"{PREFIX}{label}_{uuid.uuid4().hex[:6]}"
        try:
            pg_exec("postgres", f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"')
        except Exception as exc:
            if "does not exist" not in str(exc):
                raise
            # someone dropped the template (a cleanup of mibench_* elsewhere): make it again
            log(f"template {tpl} vanished; creating it again")
            self.template = None
            tpl = self._template()
            pg_exec("postgres", f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"')
        self.created.append(name)
        return name

    def empty(self, label: str) -> str:
        """A database with nothing in it (the peers install their own schema)."""
        name = f"{PREFIX}{label}_{uuid.uuid4().hex[:6]}"
        pg_exec("postgres", f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        drop_db(name)
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            self.drop(name)


SEED_PG = """
INSERT INTO medical_insurance_requests (interface_code, input_data, status, deadline_at,
                                        request_time, next_attempt_at)
SELECT '1101', '{{"data":{{}}}}', 'PENDING', now() + interval '1 day',
       now() - interval '1 second', now() - interval '1 second'
FROM generate_series(1, {n})
"""


def seed_pg(dbname: str, n: int, status: str = "PENDING") -> None:
    """n runnable rows (psn_no NULL: no per-patient ordering in the way), then ANALYZE."""
    sql = SEED_PG.format(n=int(n))
    if status != "PENDING":
        sql = sql.replace("'PENDING'", f"'{status}'")
    pg_exec(dbname, sql + ";\nANALYZE medical_insurance_requests;")


def pg_open_count(dbname: str) -> int:
    rows = pg_query(dbname, "SELECT count(*) FROM medical_insurance_requests "
                            "WHERE status IN ('PENDING', 'PROCESSING')")
    return int(rows[0][0])


def pg_drain_window(dbname: str) -> Dict[str, Any]:
    """First claim to last completion on the database clock, and the final status counts."""
    rows = pg_query(dbname, """
        SELECT EXTRACT(EPOCH FROM (max(response_time) - min(claimed_at)))::float8,
               count(*) FILTER (WHERE status = 'COMPLETED'), count(*)
        FROM medical_insurance_requests""")
    seconds, completed, total = rows[0]
    return {"seconds": float(seconds or 0.0), "completed": int(completed), "total": int(total)}


# ------------------------------------------------------------------------------- SQLite

def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_prepare(path: Path) -> str:
    from mi_worker.db import connect
    from mi_worker.runner import prepare_database
    url = sqlite_url(path)
    db = connect(url)
    try:
        prepare_database(db)
    finally:
        db.close()
    return url


def seed_sqlite(path: Path, n: int) -> None:
    conn = sqlite3.connect(str(path))
    try:
        conn.execute(f"""
            WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {int(n)})
            INSERT INTO medical_insurance_requests (interface_code, input_data, status,
                                                    deadline_at, request_time, next_attempt_at)
            SELECT '1101', '{{"data":{{}}}}', 'PENDING',
                   strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 day'),
                   strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 second'),
                   strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 second')
            FROM s""")
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()


def sqlite_open_count(path: Path) -> int:
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM medical_insurance_requests "
                                "WHERE status IN ('PENDING', 'PROCESSING')").fetchone()[0])
    finally:
        conn.close()


def sqlite_drain_window(path: Path) -> Dict[str, Any]:
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        seconds, completed, total = conn.execute("""
            SELECT (julianday(max(response_time)) - julianday(min(claimed_at))) * 86400.0,
                   sum(status = 'COMPLETED'), count(*)
            FROM medical_insurance_requests""").fetchone()
    finally:
        conn.close()
    return {"seconds": float(seconds or 0.0), "completed": int(completed or 0),
            "total": int(total)}


# ------------------------------------------------------------------------ worker config

def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return json.dumps(value, ensure_ascii=False)


def write_config(path: Path, sections: Dict[str, Dict[str, Any]]) -> Path:
    lines: List[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def worker_sections(db_url: str, threads: Optional[int] = 16, batch_size: Optional[int] = 16,
                    gateway: Optional[Dict[str, Any]] = None,
                    worker: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """mi-worker settings (only keys of mi_worker/config.py): defaults unless named here
    (None: the key is left out, the worker's own default applies)."""
    w = {k: v for k, v in (("threads", threads), ("batch_size", batch_size)) if v is not None}
    w.update(worker or {})
    return {"database": {"url": db_url},
            "worker": w,
            # noop on a server database is a fake centre: allowed explicitly (issue 11)
            "gateway": gateway or {"kind": "noop", "allow_fake_centre": True},
            "logging": {"level": "WARNING"}}


@dataclass
class WorkerProcs:
    """``n`` real ``mi-worker run`` processes on one config file."""

    config: Path
    n: int
    logdir: Path
    extra_args: List[str] = field(default_factory=list)
    prefix: Optional[List[str]] = None  # e.g. py-spy record … -- before python
    probe_dir: Optional[Path] = None  # run under bench.probe, counts in probe_dir/<i>.json
    procs: List[subprocess.Popen] = field(default_factory=list)
    started: float = 0.0

    def start(self) -> WorkerProcs:
        env = child_env()
        self.started = time.monotonic()
        for i in range(self.n):
            logf = open(self.logdir / f"{self.config.stem}-{i}.log", "ab")
            cmd = [sys.executable, "-m", "mi_worker", "--config", str(self.config), "run"]
            if self.probe_dir is not None:
                cmd[2:3] = ["bench.probe", str(self.probe_out(i)), "--"]
            if self.prefix:
                cmd = [*self.prefix, *cmd]
            self.procs.append(subprocess.Popen(cmd, cwd=str(CODE_ROOT), env=env, stdout=logf,
                                               stderr=subprocess.STDOUT))
            logf.close()
        return self

    def probe_out(self, i: int) -> Path:
        assert self.probe_dir is not None
        return self.probe_dir / f"{self.config.stem}-probe-{i}.json"

    def probe_counts(self) -> List[Dict[str, Any]]:
        out = []
        for i in range(self.n):
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(self.probe_out(i).read_text(encoding="utf-8")))
        return out

    @property
    def pids(self) -> List[int]:
        return [p.pid for p in self.procs]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self, timeout: float = 30.0) -> List[Optional[int]]:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        codes: List[Optional[int]] = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait(10))
        return codes

    def __enter__(self) -> WorkerProcs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_pg(timeout: float = 180.0) -> bool:
    """Wait for PostgreSQL to answer again (another suite may be restarting it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg_available() is None:
            return True
        time.sleep(2.0)
    return False


def is_connection_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("08001", "08s01", "57p01", "57p03", "connection",
                                   "shutting down", "terminating", "server closed",
                                   "could not connect", "unreachable"))


def retrying(fn, *args: Any, tries: int = 3, **kwargs: Any) -> Any:
    """Run one measurement; if PostgreSQL went away under it (a test suite on the same
    machine restarts it), wait for it and run the measurement again from scratch."""
    for attempt in range(1, tries + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == tries or not is_connection_error(exc):
                raise
            log(f"run lost PostgreSQL ({str(exc)[:120]}); waiting and running it again")
            wait_for_pg()
    raise AssertionError("unreachable")


def loadavg() -> Optional[List[float]]:
    with contextlib.suppress(OSError, ValueError):
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    return None


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def code_identity(base: Optional[Path] = None) -> Dict[str, Any]:
    """Which mi-worker code was measured: HEAD (read-only git) and a hash of the sources."""
    import hashlib
    h = hashlib.sha256()
    base = base or CODE_ROOT
    for path in sorted([*base.glob("mi_worker/**/*.py"), *base.glob("sql/**/*.sql")]):
        h.update(str(path.relative_to(base)).encode())
        h.update(path.read_bytes())
    head = None
    with contextlib.suppress(Exception):
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(ROOT), capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    return {"git_head": head, "sources_sha256": h.hexdigest()[:16]}


class Stall:
    """A drain predicate that also fails when the open count stops moving for ``limit`` s."""

    def __init__(self, count, limit: float = 45.0) -> None:
        self.count, self.limit = count, limit
        self.last: Optional[int] = None
        self.since = time.monotonic()

    def __call__(self) -> bool:
        n = self.count()
        if n != self.last:
            self.last, self.since = n, time.monotonic()
        elif n and time.monotonic() - self.since > self.limit:
            raise RuntimeError(f"no progress for {self.limit:.0f}s with {n} rows open "
                               "(workers stuck: see their logs)")
        return n == 0


def wait_until(predicate, timeout: float, step: float = 0.05, what: str = "") -> float:
    """Poll until predicate() is true; the seconds it took. TimeoutError after ``timeout``."""
    t0 = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def rss_mb(pid: int) -> Optional[float]:
    """VmRSS of a process in MB (Linux /proc), None where there is no /proc."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


@contextlib.contextmanager
def tempdir(base: Path, name: str) -> Iterator[Path]:
    path = base / f"{name}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True, exist_ok=True)
    yield path
