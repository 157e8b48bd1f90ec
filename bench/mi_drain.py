"""One mi-worker drain: N PENDING rows, P worker processes, no-op gateway, until empty.

Measured (written into each run's record):
  seconds   max(response_time) - min(claimed_at) on the database clock: first claim to last
            completion, independent of process start-up;
  wall      from spawning the processes to the harness seeing no PENDING/PROCESSING row
            (polled every 50 ms): what an operator would time, start-up included.
requests/s = completed rows / seconds.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench import common


def drain_pg(dbs: common.PgDatabases, workdir: Path, n: int, procs: int,
             threads: Optional[int] = 16, batch_size: Optional[int] = 16, label: str = "drain",
             prefix: Optional[List[str]] = None, timeout: float = 600.0,
             worker: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    name = dbs.new(label)
    try:
        common.seed_pg(name, n)
        cfg = common.write_config(
            workdir / f"{name}.toml",
            common.worker_sections(common.pg_url(name), threads=threads, batch_size=batch_size,
                                   worker=worker))
        wp = common.WorkerProcs(cfg, procs, workdir, prefix=prefix)
        t0 = time.monotonic()
        with wp:
            stall = common.Stall(lambda: common.pg_open_count(name))
            common.wait_until(lambda: stall() or not wp.alive(),
                              timeout, step=0.05, what=f"{name} to drain")
            wall = time.monotonic() - t0
            if not wp.alive():
                raise RuntimeError(f"a worker exited early; see {workdir}")
            rss = common.rss_mb(wp.pids[0])  # after the drain: every thread was started
        window = common.pg_drain_window(name)
        if window["completed"] != n:
            raise RuntimeError(f"{name}: {window['completed']} of {n} rows COMPLETED")
        return {"seconds": window["seconds"], "wall": round(wall, 3),
                "rps": n / window["seconds"] if window["seconds"] > 0 else None,
                "wall_rps": n / wall, "rss_mb": rss}
    finally:
        dbs.drop(name)


def drain_sqlite(workdir: Path, n: int, procs: int, threads: Optional[int] = 16,
                 batch_size: Optional[int] = 16, timeout: float = 600.0, stall: float = 45.0,
                 worker: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    path = workdir / f"drain-{procs}p-{int(time.time() * 1000)}.db"
    url = common.sqlite_prepare(path)
    common.seed_sqlite(path, n)
    cfg = common.write_config(
        workdir / f"{path.stem}.toml",
        common.worker_sections(url, threads=threads, batch_size=batch_size, worker=worker))
    wp = common.WorkerProcs(cfg, procs, workdir)
    t0 = time.monotonic()
    with wp:
        stalled = common.Stall(lambda: common.sqlite_open_count(path), stall)
        common.wait_until(lambda: stalled() or not wp.alive(),
                          timeout, step=0.1, what=f"{path.name} to drain")
        wall = time.monotonic() - t0
        if not wp.alive():
            raise RuntimeError(f"a worker exited early; see {workdir}")
    window = common.sqlite_drain_window(path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    if window["completed"] != n:
        raise RuntimeError(f"{path}: {window['completed']} of {n} rows COMPLETED")
    return {"seconds": window["seconds"], "wall": round(wall, 3),
            "rps": n / window["seconds"] if window["seconds"] > 0 else None,
            "wall_rps": n / wall}
