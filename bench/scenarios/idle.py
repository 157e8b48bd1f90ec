"""Scenario 4, idle cost: claim statements per second and RSS of a worker with nothing to do.

``runs`` workers (noop gateway) start at once, each on its own empty database, under
bench.probe (which counts every named statement the process runs). After a warm-up, the
counts are read twice, ``seconds`` apart. Cross-check: pg_stat_database.xact_commit of each
worker's database over the same window (every transaction of that worker, jobs included;
the harness reads it from another database so it does not count itself). RSS is VmRSS from
/proc/<pid>/status at the end of the window.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

from bench import common
from bench.scenarios import Context


def _xact(names: List[str]) -> Dict[str, int]:
    rows = common.pg_query("postgres", "SELECT datname, xact_commit + xact_rollback "
                                       "FROM pg_stat_database")
    return {r[0]: int(r[1]) for r in rows if r[0] in names}


def _probe(wp: common.WorkerProcs) -> List[Dict[str, Any]]:
    return [{"time": c["time"], "claims": c["statements"].get("claim_batch", {}).get("n", 0),
             "all": sum(s["n"] for s in c["statements"].values())}
            for c in wp.probe_counts()]


def measure(ctx: Context, seconds: float, warm: float) -> Dict[str, Any]:
    names = [ctx.dbs.new("idle") for _ in range(ctx.runs)]
    procs: List[common.WorkerProcs] = []
    try:
        for name in names:
            cfg = common.write_config(ctx.workdir / f"{name}.toml",
                                      common.worker_sections(common.pg_url(name)))
            procs.append(common.WorkerProcs(cfg, 1, ctx.workdir, probe_dir=ctx.workdir).start())
        time.sleep(warm)
        x0, p0 = _xact(names), [_probe(wp) for wp in procs]
        time.sleep(seconds)
        # pg_stat_database is updated when a backend reports (at most every ~0.5-1 s)
        time.sleep(1.5)
        x1, p1 = _xact(names), [_probe(wp) for wp in procs]
        rss = [common.rss_mb(wp.pids[0]) for wp in procs]
        alive = all(wp.alive() for wp in procs)
    finally:
        for wp in procs:
            wp.stop()
        for name in names:
            ctx.dbs.drop(name)
    if not alive:
        raise RuntimeError(f"an idle worker exited; see {ctx.workdir}")
    claims, stmts, xacts = [], [], []
    for name, a, b in zip(names, p0, p1):
        dt = b[0]["time"] - a[0]["time"]
        claims.append((b[0]["claims"] - a[0]["claims"]) / dt)
        stmts.append((b[0]["all"] - a[0]["all"]) / dt)
        xacts.append((x1[name] - x0[name]) / (seconds + 1.5))
    return {"claims_per_s": claims, "statements_per_s": stmts, "xact_per_s": xacts,
            "rss_mb": rss}


def _defaults() -> str:
    from mi_worker.config import WorkerSettings
    w = WorkerSettings()
    return (f"worker defaults: poll_interval {w.poll_interval} s, min_poll_interval "
            f"{w.min_poll_interval} s; noop gateway")


def run(ctx: Context) -> Dict[str, Any]:
    seconds = 5.0 if ctx.quick else 30.0
    warm = 3.0 if ctx.quick else 5.0
    common.log(f"idle: {ctx.runs} workers side by side for {seconds:.0f}s")
    m = common.retrying(measure, ctx, seconds, warm)
    claims = common.summarize(m["claims_per_s"], 2)
    rss = common.summarize(m["rss_mb"], 1)
    return {"seconds": seconds, "warmup_seconds": warm, "workers": ctx.runs,
            "settings": _defaults(),
            "claims_per_s": claims,
            "statements_per_s": common.summarize(m["statements_per_s"], 2),
            "xact_commit_per_s": common.summarize(m["xact_per_s"], 2),
            "rss_mb": rss,
            "targets": {"claims_per_s": 20, "rss_mb": 80},
            "met": {"claims_per_s": claims["median"] <= 20, "rss_mb": rss["median"] <= 80}}
