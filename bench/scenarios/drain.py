"""Scenario 1, drain: N rows already PENDING, no-op gateway, 1 and 2 worker processes.

mi-worker on PostgreSQL (and SQLite), then procrastinate and pgqueuer on the same machine in
the same run, each in its own fresh database; ratios mi-worker / peer of the median
requests/s at the same process count.
"""
from __future__ import annotations

from typing import Any, Dict, List

from bench import common, mi_drain, peers_runner
from bench.scenarios import Context


def variants(quick: bool) -> List[Dict[str, int]]:
    """The defaults first (the ratios use them); then tunings an operator may choose: a
    bigger claim with prefetch at the same 16 threads, and more threads."""
    base = [{"threads": 16, "batch_size": 16, "prefetch": 0}]
    if quick:
        return base
    return base + [{"threads": 16, "batch_size": 128, "prefetch": 112},
                   {"threads": 64, "batch_size": 32, "prefetch": 0}]


def label(v: Dict[str, Any]) -> str:
    return f"t{v['threads']} b{v['batch_size']}" + (f" p{v['prefetch']}" if v.get("prefetch")
                                                    else "")


def _series(fn, runs: int, *args: Any, **kw: Any) -> Dict[str, Any]:
    got = [common.retrying(fn, *args, **kw) for _ in range(runs)]
    return {"rps": common.summarize([g["rps"] for g in got], 1),
            "seconds": common.summarize([g["seconds"] for g in got]),
            "wall": common.summarize([g["wall"] for g in got]),
            "wall_rps": common.summarize([g["wall_rps"] for g in got], 1),
            "extra": {k: v for k, v in got[-1].items()
                      if k not in ("rps", "seconds", "wall", "wall_rps")}}


def run(ctx: Context) -> Dict[str, Any]:
    n = 2000 if ctx.quick else 20000
    out: Dict[str, Any] = {
        "n": n, "gateway": "noop (mi_worker.gateway.factory.NoopGateway, in process)",
        "measure": "requests/s = n / (last completion - first claim) on the database clock; "
                   "wall = process spawn to the harness seeing no open row (50 ms polls)",
        "mi_worker": [], "sqlite": [], "peers": {}, "ratios": []}
    for v in variants(ctx.quick):
        for procs in (1, 2):
            common.log(f"drain mi-worker postgresql {procs}p {label(v)}")
            s = _series(mi_drain.drain_pg, ctx.runs, ctx.dbs, ctx.workdir, n, procs,
                        threads=v["threads"], batch_size=v["batch_size"],
                        worker={"prefetch": v["prefetch"]})
            s.pop("extra")
            out["mi_worker"].append({"procs": procs, **v, **s})
    for procs in (1, 2):
        common.log(f"drain mi-worker sqlite {procs}p t16 b16")
        try:
            s = _series(mi_drain.drain_sqlite, ctx.runs, ctx.workdir, n, procs)
            s.pop("extra")
            out["sqlite"].append({"procs": procs, "threads": 16, "batch_size": 16,
                                  "prefetch": 0, **s})
        except Exception as exc:  # report, do not lose the PostgreSQL figures
            out["sqlite"].append({"procs": procs, "status": f"failed: {exc}"})
    # --quick (the smoke test) gives pip a few minutes at most, then skips the peers
    reason = peers_runner.ensure_venv(create=True, timeout=240.0 if ctx.quick else 900.0)
    if reason is not None and not ctx.quick:
        raise RuntimeError(f"the full bench must run the peers: {reason}")
    for peer in peers_runner.PEERS:
        if reason is not None:
            out["peers"][peer] = {"status": f"skipped: {reason}"}
            continue
        entry: Dict[str, Any] = {"status": "ok", "results": []}
        for procs in (1, 2):
            common.log(f"drain {peer} {procs}p")
            s = _series(peers_runner.drain, ctx.runs, ctx.dbs, ctx.workdir, peer, n, procs)
            extra = s.pop("extra")
            entry["settings"] = extra.get("settings")
            entry["version"] = extra.get("version")
            entry["results"].append({"procs": procs, **s})
        out["peers"][peer] = entry
    if reason is None:
        out["peer_versions"] = peers_runner.versions()
    ref = {r["procs"]: r for r in out["mi_worker"]
           if r["threads"] == 16 and r["batch_size"] == 16 and not r.get("prefetch")}
    best = {}
    for r in out["mi_worker"]:
        if r["procs"] not in best or r["rps"]["median"] > best[r["procs"]]["rps"]["median"]:
            best[r["procs"]] = r
    for peer, entry in out["peers"].items():
        for pr in entry.get("results", []):
            procs = pr["procs"]
            ratio = ref[procs]["rps"]["median"] / pr["rps"]["median"]
            b = best[procs]
            out["ratios"].append({
                "peer": peer, "procs": procs, "ratio": round(ratio, 2),
                "mi_worker_rps": ref[procs]["rps"]["median"], "peer_rps": pr["rps"]["median"],
                "best_variant": label(b),
                "best_ratio": round(b["rps"]["median"] / pr["rps"]["median"], 2),
                "target": 1.5, "met": ratio >= 1.5})
    return out
