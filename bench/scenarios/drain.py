"""Scenario 1, drain: N rows already PENDING, no-op gateway, 1 and 2 worker processes.

mi-worker (defaults, and the previous defaults), pgqueuer and procrastinate (each at the
bench's fair settings and at its own documented defaults) run interleaved: round after round
every system drains once, in a fresh database, order rotated (bench/interleave.py). A ratio
is the median of the paired ratios of the rounds, with their range and each run's load.
"""
from __future__ import annotations

import functools
from typing import Any, Dict

from bench import common, interleave, mi_drain, peers_runner
from bench.scenarios import Context

# mi-worker systems: (name, settings label, worker_sections arguments). The first is the
# defaults (no tuning key at all): the ratios use it. The second is the previous defaults
# (fixed claim of 16 for idle threads only), measured in the same rounds to show the gain.
MI_SYSTEMS = [
    ("mi-worker", "defaults (threads 16, adaptive claim 16..256, adaptive prefetch)",
     {"threads": None, "batch_size": None, "worker": {}}),
    ("mi-worker fixed-16", "threads 16, batch 16, max_batch_size 16, prefetch 0 "
                           "(the defaults before issue 17)",
     {"threads": 16, "batch_size": 16, "worker": {"prefetch": 0, "max_batch_size": 16}}),
]
MI_FULL_ONLY = [
    ("mi-worker t64", "threads 64, other defaults",
     {"threads": 64, "batch_size": None, "worker": {}}),
]
PEER_SYSTEMS = [  # (name, peer, at its own defaults?)
    ("pgqueuer", "pgqueuer", False), ("pgqueuer defaults", "pgqueuer", True),
    ("procrastinate", "procrastinate", False),
    ("procrastinate defaults", "procrastinate", True),
]


def _peer_n(name: str, n: int, quick: bool) -> int:
    """procrastinate drains at a few hundred jobs/s: fewer jobs keep a round short (its rate
    hardly depends on the backlog); the others drain the full n."""
    if name == "procrastinate":
        return 1000 if quick else 5000
    if name == "procrastinate defaults":
        return 500 if quick else 2000
    return n


def _series(fn, runs: int, *args: Any, **kw: Any) -> Dict[str, Any]:
    got = [common.retrying(fn, *args, **kw) for _ in range(runs)]
    return {"rps": common.summarize([g["rps"] for g in got], 1),
            "seconds": common.summarize([g["seconds"] for g in got]),
            "wall": common.summarize([g["wall"] for g in got]),
            "wall_rps": common.summarize([g["wall_rps"] for g in got], 1)}


def run(ctx: Context) -> Dict[str, Any]:
    n = 2000 if ctx.quick else 20000
    n_rounds = ctx.runs if ctx.quick else max(interleave.MIN_ROUNDS, ctx.runs)
    out: Dict[str, Any] = {
        "n": n, "gateway": "noop (mi_worker.gateway.factory.NoopGateway, in process)",
        "measure": "requests/s = n / (last completion - first claim) on the database clock; "
                   "wall = process spawn to the harness seeing no open row (50 ms polls); "
                   f"interleaved: {n_rounds} round(s), every system once per round, order "
                   "rotated, fresh database each run; ratios are the median of the paired "
                   "ratios of the rounds",
        "rounds_per_comparison": n_rounds, "min_rounds_for_met": interleave.MIN_ROUNDS,
        "mi_worker": [], "sqlite": [], "peers": {}, "ratios": [], "rounds": {}}
    # --quick (the smoke test) gives pip a few minutes at most, then skips the peers
    reason = peers_runner.ensure_venv(create=True, timeout=240.0 if ctx.quick else 900.0)
    if reason is not None and not ctx.quick:
        raise RuntimeError(f"the full bench must run the peers: {reason}")
    mi = MI_SYSTEMS + ([] if ctx.quick else MI_FULL_ONLY)
    for procs in (1, 2):
        systems = []
        for name, _, kw in mi:
            systems.append((name, functools.partial(
                mi_drain.drain_pg, ctx.dbs, ctx.workdir, n, procs, threads=kw["threads"],
                batch_size=kw["batch_size"], worker=kw["worker"])))
        # --quick keeps to the peers at the fair settings (the smoke test must stay short)
        peer_systems = [p for p in PEER_SYSTEMS if not (ctx.quick and p[2])]
        if reason is None:
            for name, peer, defaults in peer_systems:
                systems.append((name, functools.partial(
                    peers_runner.drain, ctx.dbs, ctx.workdir, peer,
                    _peer_n(name, n, ctx.quick), procs, defaults=defaults)))
        rnds = interleave.rounds(systems, n_rounds, label=f"drain {procs}p")
        out["rounds"][str(procs)] = interleave.slim(rnds)
        for name, label, _ in mi:
            out["mi_worker"].append({
                "procs": procs, "system": name, "settings": label,
                "threads": 16 if name != "mi-worker t64" else 64, "batch_size": 16,
                "rss_mb": interleave.series(rnds, name, "rss_mb"),
                "rps": interleave.series(rnds, name), "seconds": interleave.series(
                    rnds, name, "seconds", 3), "wall": interleave.series(rnds, name, "wall", 3)})
        if reason is None:
            for name, peer, defaults in peer_systems:
                entry = out["peers"].setdefault(peer, {"status": "ok", "results": []})
                last = rnds[-1]["runs"][name]
                res = {"procs": procs, "n": _peer_n(name, n, ctx.quick),
                       "rps": interleave.series(rnds, name),
                       "seconds": interleave.series(rnds, name, "seconds", 3),
                       "wall": interleave.series(rnds, name, "wall", 3)}
                if defaults:
                    d = entry.setdefault("defaults", {"results": []})
                    d["settings"] = last.get("settings")
                    d["results"].append(res)
                else:
                    entry["settings"], entry["version"] = last.get("settings"), last.get("version")
                    entry["results"].append(res)
                for ref in ("mi-worker", "mi-worker fixed-16"):
                    pr = interleave.paired(rnds, ref, name, target=1.5)
                    if ref != "mi-worker":
                        pr.pop("met", None)
                        pr.pop("met_but_too_few_rounds", None)
                    out["ratios"].append({
                        "peer": peer, "peer_settings": "defaults" if defaults else "fair",
                        "mi_worker": ref, "procs": procs, "ratio": None if pr["median"] is None else round(pr["median"], 2),
                        "mi_worker_rps": interleave.series(rnds, ref)["median"],
                        "peer_rps": res["rps"]["median"], **pr})
        gain = interleave.paired(rnds, "mi-worker", "mi-worker fixed-16")
        out.setdefault("gain_over_previous_defaults", {})[str(procs)] = gain
    for procs in (1, 2):
        common.log(f"drain mi-worker sqlite {procs}p defaults")
        try:
            s = _series(mi_drain.drain_sqlite, ctx.runs, ctx.workdir, n, procs, threads=None,
                        batch_size=None)
            out["sqlite"].append({"procs": procs, "settings": "defaults", **s})
        except Exception as exc:  # report, do not lose the PostgreSQL figures
            out["sqlite"].append({"procs": procs, "status": f"failed: {exc}"})
    for peer in peers_runner.PEERS:
        if reason is not None:
            out["peers"][peer] = {"status": f"skipped: {reason}"}
    if reason is None:
        out["peer_versions"] = peers_runner.versions()
    return out
