"""Profile of one drain run: py-spy (sampling, attached to the worker) and SQL time per query.

One 1-process drain (threads 16, batch 16, noop gateway) runs under bench.probe, which times
every named statement (round trip included); py-spy from bench/.venv-peers samples the worker
process for a fixed window (``--nonblocking --threads``: it does not stop the process). The
report lists where the worker's samples are (own and inclusive, mi_worker frames) and what
each statement costs. Skipped when py-spy is not installed or cannot attach (ptrace).
"""
from __future__ import annotations

import collections
import subprocess
import time
from typing import Any, Dict, List

from bench import common, peers_runner
from bench.scenarios import Context

IDLE_FRAMES = ("Condition.wait", "Event.wait", "_worker (concurrent/futures/thread.py:81)",
               "Queue.get", "select", "sleep")


def parse_raw(path) -> Dict[str, Any]:
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        try:
            n = int(count)
        except ValueError:
            continue
        frames = stack.split(";")[1:]  # first entry is the thread
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n

    def top(counter: collections.Counter, k: int, only_mi: bool) -> List[Dict[str, Any]]:
        rows = []
        for frame, n in counter.most_common():
            if only_mi and "mi_worker/" not in frame:
                continue
            rows.append({"frame": frame, "percent": round(100.0 * n / total, 1)})
            if len(rows) == k:
                break
        return rows

    return {"samples": total, "own": top(own, 12, False), "inclusive_mi_worker": top(incl, 15, True)}


def run(ctx: Context) -> Dict[str, Any]:
    spy = peers_runner.venv_tool("py-spy")
    if spy is None:
        return {"status": "skipped: py-spy not installed in bench/.venv-peers"}
    n = 6000 if ctx.quick else 40000
    window = 2 if ctx.quick else 8
    name = ctx.dbs.new("prof")
    raw = ctx.workdir / "profile.raw"
    try:
        common.seed_pg(name, n)
        cfg = common.write_config(ctx.workdir / f"{name}.toml",
                                  common.worker_sections(common.pg_url(name)))
        wp = common.WorkerProcs(cfg, 1, ctx.workdir, probe_dir=ctx.workdir)
        with wp:
            time.sleep(1.0)
            r = subprocess.run([str(spy), "record", "--pid", str(wp.pids[0]), "--duration",
                                str(window), "--rate", "250", "--nonblocking", "--threads",
                                "--format", "raw", "-o", str(raw)],
                               capture_output=True, text=True, timeout=window + 60)
            common.wait_until(lambda: common.pg_open_count(name) == 0 or not wp.alive(), 600,
                              what="the profiled drain")
            if not wp.alive():
                raise RuntimeError(f"the profiled worker exited early; see {ctx.workdir}")
        stmts = {}
        for c in wp.probe_counts():
            for k, v in c["statements"].items():
                if v["n"]:
                    stmts[k] = {"n": int(v["n"]), "rows_per_call": round(v["rows"] / v["n"], 2),
                                "avg_ms": round(v["seconds"] / v["n"] * 1000, 3),
                                "total_s": round(v["seconds"], 2)}
        window_db = common.pg_drain_window(name)
    finally:
        ctx.dbs.drop(name)
    out: Dict[str, Any] = {"n": n, "rps": round(n / window_db["seconds"], 1),
                           "statements": dict(sorted(stmts.items(),
                                                     key=lambda kv: -kv[1]["total_s"]))}
    if r.returncode != 0 or not raw.exists():
        out["status"] = f"py-spy failed: {(r.stderr or r.stdout)[-300:]}"
        return out
    out["status"] = "ok"
    out["py_spy"] = parse_raw(raw)
    return out
