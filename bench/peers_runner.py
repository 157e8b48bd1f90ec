"""The peers (procrastinate, pgqueuer) in their own venv, bench/.venv-peers, never the project's.

``ensure_venv()`` creates it with ``pip install procrastinate pgqueuer psycopg[binary] py-spy``
the first time; each peer run gets a fresh, empty database in which the peer installs its own
schema, is seeded by the peer's own batch API, and is drained by P processes of the peer's
worker in drain mode. Timing: the peer's own event/log table (first start to last success on
the database clock) and the same harness wall clock as for mi-worker.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench import common

VENV = common.ROOT / "bench" / ".venv-peers"
PEERS_DIR = common.ROOT / "bench" / "peers"
PACKAGES = ["procrastinate", "pgqueuer", "psycopg[binary]", "py-spy"]


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_tool(name: str) -> Optional[Path]:
    path = VENV / ("Scripts" if os.name == "nt" else "bin") / name
    return path if path.exists() else None


def _has_peers(py: Path) -> bool:
    if not py.exists():
        return False
    r = subprocess.run([str(py), "-c", "import procrastinate, pgqueuer, psycopg"],
                       capture_output=True, timeout=120)
    return r.returncode == 0


def ensure_venv(create: bool = True, timeout: float = 900.0) -> Optional[str]:
    """None when the peers venv is usable, else the reason it is not."""
    py = venv_python()
    if _has_peers(py):
        return None
    if not create:
        return f"{VENV} does not exist (run `make bench` once to create it)"
    common.log(f"creating {VENV} with {' '.join(PACKAGES)} (first run only)")
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True,
                           capture_output=True, timeout=300)
        r = subprocess.run([str(py), "-m", "pip", "install", "--quiet", *PACKAGES],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            return f"pip install into {VENV} failed: {(r.stderr or r.stdout)[-400:]}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not create {VENV}: {exc}"
    return None if _has_peers(py) else f"{VENV} created but the peers do not import"


def versions() -> Dict[str, str]:
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "('procrastinate', 'pgqueuer', 'psycopg', 'psycopg-binary')}))")
    r = subprocess.run([str(venv_python()), "-c", code], capture_output=True, text=True,
                       timeout=60)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


PEERS = {
    "procrastinate": {
        "script": "procrastinate_peer.py",
        "work_args": ["--concurrency", "16"],
        # its documented defaults: run_worker(concurrency=1)
        "default_args": ["--concurrency", "1"],
        "open_sql": "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
    },
    "pgqueuer": {
        "script": "pgqueuer_peer.py",
        "work_args": ["--batch-size", "16", "--max-tasks", "32"],
        # its documented defaults: QueueManager.run(batch_size=10, max_concurrent_tasks=None)
        "default_args": ["--batch-size", "10", "--max-tasks", "0"],
        "open_sql": "SELECT count(*) FROM pgqueuer",
    },
}


def _peer(script: str, action: str, dsn: str, *args: str, timeout: float = 600
          ) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv_python()), str(PEERS_DIR / script), action, "--dsn", dsn,
                           *args], capture_output=True, text=True, timeout=timeout)


def drain(dbs: common.PgDatabases, workdir: Path, peer: str, n: int, procs: int,
          timeout: float = 900.0, defaults: bool = False) -> Dict[str, Any]:
    """One drain of n jobs by ``procs`` peer processes: at the bench's fair settings, or at
    the library's own documented defaults (``defaults=True``)."""
    spec = dict(PEERS[peer])
    if defaults:
        spec["work_args"] = spec["default_args"]
    name = dbs.empty(peer)
    dsn = common.pg_url(name)
    try:
        r = _peer(spec["script"], "setup", dsn, "--n", str(n))
        if r.returncode != 0:
            raise RuntimeError(f"{peer} setup failed: {r.stderr[-800:]}")
        procs_list: List[subprocess.Popen] = []
        t0 = time.monotonic()
        for i in range(procs):
            logf = open(workdir / f"{name}-{i}.log", "wb")
            procs_list.append(subprocess.Popen(
                [str(venv_python()), str(PEERS_DIR / spec["script"]), "work", "--dsn", dsn,
                 *spec["work_args"]], stdout=logf, stderr=subprocess.STDOUT,
                cwd=str(workdir)))
            logf.close()

        def done() -> bool:
            return int(common.pg_query(name, spec["open_sql"])[0][0]) == 0

        try:
            common.wait_until(lambda: done() or all(p.poll() is not None for p in procs_list),
                              timeout, step=0.05, what=f"{peer} to drain")
            wall = time.monotonic() - t0
            if not done():
                raise RuntimeError(f"{peer} workers exited with jobs left; see {workdir}")
        finally:
            for p in procs_list:  # drain mode exits by itself; make sure of it
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(5)
        r = _peer(spec["script"], "window", dsn, *spec["work_args"])
        if r.returncode != 0:
            raise RuntimeError(f"{peer} window failed: {r.stderr[-800:]}")
        window = json.loads(r.stdout.strip().splitlines()[-1])
        if int(window["completed"]) != n:
            raise RuntimeError(f"{peer}: {window['completed']} of {n} jobs succeeded")
        seconds = float(window["seconds"])
        settings = dict(window.get("settings") or {})
        if "concurrency" in settings:  # the window action does not know the work's args
            settings["concurrency"] = int(spec["work_args"][1])
        window["settings"] = settings
        return {"seconds": seconds, "wall": round(wall, 3), "rps": n / seconds,
                "wall_rps": n / wall, "settings": window.get("settings", {}),
                "version": window.get("version")}
    finally:
        dbs.drop(name)
