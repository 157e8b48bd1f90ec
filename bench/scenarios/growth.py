"""Scenario 5, growth: drain time for 1k / 10k / 100k rows, and the claim's plan at 100k.

Same drain as scenario 1 (1 process, 16 threads, batch 16, noop gateway). Linear growth means
the time per 1,000 rows stays flat. The plan is EXPLAIN (ANALYZE, BUFFERS) of the worker's own
claim_batch statement (rolled back) with 100k PENDING rows, and again with those 100k rows
COMPLETED (history) and 16 new PENDING ones: the partial index ix_mir_claim must be used in
both, so the claim does not slow down as history accumulates. Between the two, the empty
claim through the worker's own driver path shows whether its plan is prepared (generic) or
re-planned each time (bench/explain.prepared_claim).
"""
from __future__ import annotations

from typing import Any, Dict

from bench import common, explain, mi_drain
from bench.scenarios import Context


def plans(ctx: Context, n: int) -> Dict[str, Any]:
    name = ctx.dbs.new("plan")
    try:
        common.seed_pg(name, n)
        pending = explain.explain_claim(name)
        common.pg_exec(name, "UPDATE medical_insurance_requests SET status = 'COMPLETED', "
                             "response_time = now(), claimed_at = now()")
        common.pg_exec(name, "VACUUM ANALYZE medical_insurance_requests")
        prepared = explain.prepared_claim(name)  # nothing PENDING: the empty claim
        common.seed_pg(name, 16)
        history = explain.explain_claim(name)
    finally:
        ctx.dbs.drop(name)
    return {"rows": n, "pending": pending, "history": history, "prepared": prepared}


def run(ctx: Context) -> Dict[str, Any]:
    sizes = [200, 1000, 5000] if ctx.quick else [1000, 10000, 100000]
    out: Dict[str, Any] = {"sizes": sizes, "procs": 1, "threads": 16, "batch_size": 16,
                           "results": []}
    for n in sizes:
        common.log(f"growth: drain {n} rows x {ctx.runs}")
        got = [common.retrying(mi_drain.drain_pg, ctx.dbs, ctx.workdir, n, 1)
               for _ in range(ctx.runs)]
        out["results"].append({
            "n": n, "seconds": common.summarize([g["seconds"] for g in got]),
            "rps": common.summarize([g["rps"] for g in got], 1),
            "ms_per_1k": common.summarize([g["seconds"] / n * 1000 * 1000 for g in got], 1)})
    per_k = [r["ms_per_1k"]["median"] for r in out["results"]]
    out["linearity"] = round(per_k[-1] / per_k[1], 2) if per_k[1] else None
    out["linear"] = out["linearity"] is not None and out["linearity"] <= 1.5
    common.log(f"growth: EXPLAIN claim_batch at {sizes[-1]} rows")
    out["plan"] = common.retrying(plans, ctx, sizes[-1])
    # the claim must read PENDING rows only, whatever the history (bench/explain.py)
    out["index_seek"] = (out["plan"]["pending"]["pending_only"]
                         and out["plan"]["history"]["pending_only"])
    return out
