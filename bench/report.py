"""latest.md from latest.json: the figures, the targets (met or how far), and the notes."""
from __future__ import annotations

from typing import Any, Dict, List, Optional


def _m(s: Optional[Dict[str, Any]], unit: str = "", digits: int = 0) -> str:
    """'median (min–max)' of a summary."""
    if not s or s.get("median") is None:
        return "–"
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'])}{unit} ({f.format(s['min'])}–{f.format(s['max'])})"


def _ok(s: Dict[str, Any]) -> bool:
    return str(s.get("status", "ok")) == "ok"


def targets(r: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each target of issue 6 with the measured median, met or not, and the distance."""
    out: List[Dict[str, Any]] = []
    sc = r.get("scenarios", {})

    def add(name: str, target: str, measured: Any, met: Optional[bool], gap: str = "") -> None:
        out.append({"target": name, "wanted": target, "measured": measured, "met": met,
                    "distance": "" if met else gap})

    d = sc.get("drain", {})
    if _ok(d):
        for x in d.get("ratios", []):
            if x.get("mi_worker", "mi-worker") != "mi-worker" or x.get("ratio") is None:
                continue
            need = 1.5 / (x.get("median") or x["ratio"])
            rounds = x.get("rounds", 1)
            few = " (too few rounds to count)" if x.get("met_but_too_few_rounds") else ""
            kind = "its own defaults" if x.get("peer_settings") == "defaults" else "fair settings"
            add(f"drain vs {x['peer']} at {kind} "
                f"({x['procs']} process{'es' if x['procs'] > 1 else ''})",
                "≥ 1.5× (median of paired ratios, ≥ 5 rounds)",
                f"{x['ratio']}× (rounds {x.get('min')}–{x.get('max')}× over {rounds}; "
                f"{x['mi_worker_rps']:,.0f} vs {x['peer_rps']:,.0f}/s){few}",
                x.get("met"), f"needs ×{need:.3f} more (median {x.get('median')})"
                if need > 1 else
                f"fewer than {d.get('min_rounds_for_met', 5)} rounds")
        for peer, e in d.get("peers", {}).items():
            if not str(e.get("status", "")).startswith("ok"):
                add(f"drain vs {peer}", "≥ 1.5×", e.get("status"), None)
        t64 = [x for x in d.get("mi_worker", []) if x.get("system") == "mi-worker t64"
               and (x.get("rss_mb") or {}).get("median") is not None]
        if t64:
            m = max(x["rss_mb"]["median"] for x in t64)
            add("worker RSS at 64 threads (after a drain)", "≤ 80 MB", f"{m:.1f} MB", m <= 80,
                f"{m - 80:.1f} MB over")
    lat = sc.get("latency", {})
    if _ok(lat) and lat.get("variants"):
        for v in lat["variants"]:
            if not v.get("target", True):
                continue  # a comparison (a tuned caller): shown in its section only
            p50 = v["overhead_p50_ms"]["median"]
            p99 = v["overhead_p99_ms"]["median"]
            polls = (v.get("caller_polls_per_s") or {}).get("median")
            ptxt = f"; waiting caller {polls:.0f} polls/s" if polls is not None else ""
            add(f"queue overhead p50, {v['label']}", "≤ 12 ms", f"{p50:.1f} ms{ptxt}",
                p50 <= 12, f"{p50 - 12:.1f} ms over")
            add(f"queue overhead p99, {v['label']}", "≤ 30 ms", f"{p99:.1f} ms", p99 <= 30,
                f"{p99 - 30:.1f} ms over")
            if polls is not None:
                add(f"waiting caller polls, {v['label']}", "≤ 30 /s", f"{polls:.0f} /s",
                    polls <= 30, f"{polls - 30:.0f}/s over")
    sat = sc.get("saturation", {})
    if _ok(sat) and sat.get("fraction"):
        f = sat["fraction"]["median"]
        add("saturation, 32 slots × 100 ms", "≥ 97 % of 320/s",
            f"{100 * f:.1f} % ({sat['rps']['median']:.0f}/s)", sat.get("met", f >= 0.97),
            f"{100 * (0.97 - f):.1f} points short")
    idle = sc.get("idle", {})
    if _ok(idle) and idle.get("claims_per_s"):
        c = idle["claims_per_s"]["median"]
        m = idle["rss_mb"]["median"]
        add("idle claim queries per worker", "≤ 10 /s", f"{c:.2f} /s", c <= 10, f"{c - 10:.2f}/s over")
        add("idle worker RSS", "≤ 80 MB", f"{m:.1f} MB", m <= 80, f"{m - 80:.1f} MB over")
    g = sc.get("growth", {})
    if _ok(g) and g.get("results"):
        add("claim reads PENDING rows only (an index seek, history never read)", "yes",
            "yes" if g["index_seek"] else "no", bool(g["index_seek"]),
            "the candidate scan is not restricted to PENDING rows")
        add("drain time grows ~linearly", f"ms/1k rows at {g['sizes'][-1]:,} ≤ 1.5× at "
            f"{g['sizes'][1]:,}", f"{g['linearity']}×", bool(g["linear"]), "super-linear")
    return out


def markdown(r: Dict[str, Any]) -> str:
    m = r["machine"]
    sc = r.get("scenarios", {})
    L: List[str] = []
    L.append(f"# mi-worker benchmark — {r['date']} ({r['mode']}, {r['runs_per_figure']} "
             "run(s) per figure)")
    L.append("")
    L.append(f"Machine: {m.get('cores')} cores, {m.get('memory_mb')} MB, {m.get('cpu_model')}; "
             f"{(m.get('postgresql_version') or 'PostgreSQL ?').split(' on ')[0]} "
             f"(synchronous_commit={m.get('postgresql_settings', {}).get('synchronous_commit')}, "
             f"shared_buffers={m.get('postgresql_settings', {}).get('shared_buffers')}); "
             f"Python {m.get('python_version')}; SQLite {m.get('sqlite_version')}. "
             f"Code: HEAD {str(r['code'].get('git_head'))[:10]}, sources "
             f"{r['code'].get('sources_sha256')}. Load average at start "
             f"{r.get('loadavg_at_start')}, at end {r.get('loadavg_at_end')}. "
             f"Whole run: {r.get('duration_seconds', 0):.0f} s.")
    L.append("")
    L.append("Every figure: median (min–max) of the runs. Machine shared with other work: "
             "see the load averages per scenario in latest.json.")
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | wanted | measured (median) | met | distance |")
    L.append("|---|---|---|---|---|")
    for t in r.get("targets", []):
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        L.append(f"| {t['target']} | {t['wanted']} | {t['measured']} | {met} | "
                 f"{t['distance']} |")
    L.append("")

    d = sc.get("drain")
    if d:
        L.append("## 1. Drain (no-op gateway), interleaved")
        L.append("")
        if not _ok(d):
            L.append(f"{d.get('status')}")
        else:
            L.append(f"{d['n']:,} rows PENDING (procrastinate: fewer, see n); {d['measure']}.")
            L.append("")
            L.append("| system | database | processes | settings | n | requests/s | active s | "
                     "wall s |")
            L.append("|---|---|---|---|---|---|---|---|")
            for x in d["mi_worker"]:
                L.append(f"| {x.get('system', 'mi-worker')} | PostgreSQL | {x['procs']} | "
                         f"{x.get('settings', '')} | {d['n']:,} | {_m(x['rps'])} | "
                         f"{_m(x['seconds'], '', 2)} | {_m(x['wall'], '', 2)} |")
            for x in d["sqlite"]:
                if "rps" in x:
                    L.append(f"| mi-worker | SQLite | {x['procs']} | defaults | {d['n']:,} | "
                             f"{_m(x['rps'])} | {_m(x['seconds'], '', 2)} | "
                             f"{_m(x['wall'], '', 2)} |")
                else:
                    L.append(f"| mi-worker | SQLite | {x['procs']} | | | {x.get('status')} "
                             "| | |")
            for peer, e in d["peers"].items():
                if e.get("status") != "ok":
                    L.append(f"| {peer} | PostgreSQL | | | | {e.get('status')} | | |")
                    continue
                for kind, block in (("fair", e), ("defaults", e.get("defaults") or {})):
                    st = block.get("settings") or {}
                    short = ", ".join(f"{k} {v}" for k, v in st.items()
                                      if k in ("concurrency", "wait", "batch_size",
                                               "max_concurrent_tasks", "mode"))
                    for x in block.get("results", []):
                        L.append(f"| {peer} {e.get('version') or ''} ({kind}) | PostgreSQL | "
                                 f"{x['procs']} | {short} | {x.get('n', d['n']):,} | "
                                 f"{_m(x['rps'])} | {_m(x['seconds'], '', 2)} | "
                                 f"{_m(x['wall'], '', 2)} |")
            if d.get("ratios"):
                L.append("")
                L.append("Paired ratios (same round, back to back): median (min–max) over the "
                         "rounds, and each round's ratio.")
                L.append("")
                L.append("| mi-worker | / peer | processes | median ratio | range | rounds | "
                         "per round |")
                L.append("|---|---|---|---|---|---|---|")
                for x in d["ratios"]:
                    per = ", ".join(f"{v:.2f}" for v in x.get("per_round", []))
                    L.append(f"| {x.get('mi_worker', 'mi-worker')} | {x['peer']} "
                             f"({x.get('peer_settings', 'fair')}) | {x['procs']} | "
                             f"{x['ratio']}× | {x.get('min')}–{x.get('max')}× | "
                             f"{x.get('rounds', '')} | {per} |")
            gain = d.get("gain_over_previous_defaults") or {}
            for procs, g in sorted(gain.items()):
                if g.get("median") is not None:
                    L.append("")
                    L.append(f"Defaults now / defaults before issue 17 ({procs} process(es), "
                             f"paired): {g['median']}× ({g['min']}–{g['max']}×, "
                             f"{g['rounds']} rounds).")
            for procs, rnds in sorted((d.get("rounds") or {}).items()):
                L.append("")
                L.append(f"Rounds, {procs} process(es): requests/s of each run, and the 1-minute "
                         "load average / machine CPU busy share after it.")
                L.append("")
                names = list(rnds[0]["runs"]) if rnds else []
                L.append("| round | " + " | ".join(names) + " |")
                L.append("|---|" + "---|" * len(names))
                for rr in rnds:
                    cells = []
                    for nm in names:
                        run = rr["runs"].get(nm, {})
                        la = (run.get("loadavg_after") or [None])[0]
                        busy = run.get("cpu_busy")
                        cells.append(f"{run.get('rps', 0):,.0f} (load {la}, "
                                     f"cpu {'' if busy is None else f'{100 * busy:.0f} %'})")
                    L.append(f"| {rr['round']} | " + " | ".join(cells) + " |")
        L.append("")

    before = r.get("drain_before")
    if before:
        L.append(f"Same drain on the previous code (HEAD {str(before['code'].get('git_head'))[:10]},"
                 f" {before['date']}; {before.get('why', '')}):")
        L.append("")
        L.append("| processes | settings | requests/s then | ratio to procrastinate | "
                 "ratio to pgqueuer |")
        L.append("|---|---|---|---|---|")
        ratios = {(x["peer"], x["procs"]): x["ratio"] for x in before.get("ratios", [])}
        for x in before["mi_worker"]:
            ref = x["threads"] == 16 and x["batch_size"] == 16
            L.append(f"| {x['procs']} | threads {x['threads']}, batch {x['batch_size']} | "
                     f"{_m(x['rps'])} | "
                     f"{str(ratios.get(('procrastinate', x['procs']), '')) + '×' if ref else ''}"
                     f" | {str(ratios.get(('pgqueuer', x['procs']), '')) + '×' if ref else ''} |")
        L.append("")

    lat = sc.get("latency")
    if lat:
        L.append("## 2. Latency through the HIS procedure (50 ms gateway)")
        L.append("")
        if not _ok(lat):
            L.append(f"{lat.get('status')}")
        else:
            L.append(f"{lat['rate_per_s']:.0f} calls/s for {lat['seconds']:.0f} s per run "
                     f"(+{lat['warmup_seconds']:.0f} s warm-up not counted); {lat['caller']}; "
                     f"worker {lat['worker']}; {lat['measure']}.")
            L.append("")
            L.append("| variant | overhead p50 ms | p95 | p99 | max | claim wait p50 | rest p50 "
                     "| seen after p50 / p99 | end-to-end p50 | looks per call | polls/s "
                     "| achieved rate/s | errors |")
            L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            na = {"median": None}
            for v in lat["variants"]:
                L.append(f"| {v['label']} | {_m(v['overhead_p50_ms'], '', 1)} | "
                         f"{_m(v['overhead_p95_ms'], '', 1)} | {_m(v['overhead_p99_ms'], '', 1)}"
                         f" | {_m(v['overhead_max_ms'], '', 1)} | "
                         f"{_m(v['claim_wait_p50_ms'], '', 1)} | {_m(v['rest_p50_ms'], '', 1)} "
                         f"| {_m(v.get('seen_after_p50_ms', na), '', 1)} / "
                         f"{_m(v.get('seen_after_p99_ms', na), '', 1)} "
                         f"| {_m(v['e2e_p50_ms'], '', 1)} | "
                         f"{_m(v.get('polls_per_call', na), '', 2)} | "
                         f"{_m(v.get('caller_polls_per_s', na), '', 1)} | "
                         f"{_m(v['achieved_rate'], '', 1)} | "
                         f"{v['errors']} of {v['calls']} |")
            if any(not v.get("target", True) for v in lat["variants"]):
                L.append("")
                L.append("Targets apply to the default poll only; a variant with another "
                         "p_poll_ms is a caller's tuning, shown for comparison.")
        L.append("")

    sat = sc.get("saturation")
    if sat:
        L.append("## 3. Saturation (100 ms gateway, threads 32)")
        L.append("")
        if not _ok(sat):
            L.append(f"{sat.get('status')}")
        else:
            L.append(f"{sat['n']:,} rows; steady-state throughput {_m(sat['rps'], '/s', 1)} = "
                     f"{_m({k: (v * 100 if isinstance(v, float) else v) for k, v in sat['fraction'].items() if k != 'runs'}, ' %', 1)}"
                     f" of the ideal {sat['ideal_rps']:.0f}/s; worker RSS "
                     f"{_m(sat['worker_rss_mb'], ' MB', 1)}; rows not COMPLETED: "
                     f"{sat['not_completed']}.")
            # the bound is slots / the mean exchange (a slot's rate is 1 / its mean cycle)
            mean = (sat.get("gateway_mean_ms") or {}).get("median") or 0.0
            if mean > 0:
                bound = sat["threads"] / (mean / 1000.0)
                L.append("")
                L.append(f"Gateway time measured by the worker around each exchange in the "
                         f"steady window: mean {_m(sat['gateway_mean_ms'], ' ms', 2)}, median "
                         f"{_m(sat['gateway_ms'], ' ms', 1)} (the sandbox's 100 ms sleep plus "
                         f"its HTTP server, loopback and the client's parsing), so no client "
                         f"could pass {bound:.0f}/s ({bound / sat['ideal_rps'] * 100:.1f} % of the ideal) "
                         f"with {sat['threads']} slots here; mi-worker reached "
                         f"{sat['of_measured_bound']['median'] * 100:.1f} % of that bound.")
            for t in sat.get("variants", []):
                L.append("")
                L.append(f"With worker.prefetch = {t['prefetch']}: {_m(t['rps'], '/s', 1)} = "
                         f"{t['fraction']['median'] * 100:.1f} % of the ideal "
                         f"({'meets' if t['met'] else 'misses'} the 97 % target).")
        L.append("")

    idle = sc.get("idle")
    if idle:
        L.append("## 4. Idle cost")
        L.append("")
        if not _ok(idle):
            L.append(f"{idle.get('status')}")
        else:
            L.append(f"{idle['workers']} idle workers side by side, {idle['seconds']:.0f} s "
                     f"after {idle['warmup_seconds']:.0f} s warm-up ({idle['settings']}): "
                     f"claim_batch {_m(idle['claims_per_s'], '/s', 2)} per worker (counted in "
                     f"the process by bench.probe), all statements "
                     f"{_m(idle['statements_per_s'], '/s', 2)}, pg_stat_database transactions "
                     f"{_m(idle['xact_commit_per_s'], '/s', 2)}; VmRSS "
                     f"{_m(idle['rss_mb'], ' MB', 1)}.")
        L.append("")

    g = sc.get("growth")
    if g:
        L.append("## 5. Growth")
        L.append("")
        if not _ok(g):
            L.append(f"{g.get('status')}")
        else:
            L.append("| rows | drain s | requests/s | ms per 1k rows |")
            L.append("|---|---|---|---|")
            for x in g["results"]:
                L.append(f"| {x['n']:,} | {_m(x['seconds'], '', 2)} | {_m(x['rps'])} | "
                         f"{_m(x['ms_per_1k'], '', 1)} |")
            p = g["plan"]
            L.append("")
            L.append(f"claim_batch plan with {p['rows']:,} PENDING rows: candidate scan on "
                     f"{p['pending'].get('candidate_index')} (PENDING only: "
                     f"{p['pending'].get('pending_only')}), execution "
                     f"{p['pending']['execution_ms']} ms; with {p['rows']:,} COMPLETED rows of "
                     f"history + 16 PENDING: on {p['history'].get('candidate_index')} (PENDING "
                     f"only: {p['history'].get('pending_only')}), execution "
                     f"{p['history']['execution_ms']} ms (ix_mir_claim is the partial index on "
                     "PENDING rows; ix_mir_status_id with Index Cond status = 'PENDING', which "
                     "the planner takes when it knows few rows are PENDING, reads the same rows)."
                     " The candidate scan of the first plan:")
            L.append("")
            L.append("```")
            L.extend(_scan_lines(p["pending"]["plan"]))
            L.append("```")
            pc = p.get("prepared")
            if pc:
                L.append("")
                L.append(f"The empty claim (history only) through the worker's driver path, "
                         f"{pc['claims']} times: {pc['auto_ms']} ms each as it runs (the "
                         f"prepared statement used a generic plan {pc['generic_plans']} times, "
                         f"a custom one {pc['custom_plans']} times over both series), "
                         f"{pc['force_custom_plan_ms']} ms re-planned every time "
                         "(plan_cache_mode = force_custom_plan): "
                         + ("the claim plan is prepared (psqlODBC UseServerSidePrepare=1, one "
                            "cursor per statement), EXPLAIN's Planning Time is not paid per "
                            "claim." if pc["generic_plans"] > 0
                            and pc["auto_ms"] < pc["force_custom_plan_ms"] else
                            "**the claim is re-planned on every call** here."))
        L.append("")

    cat = sc.get("catalog")
    if cat:
        L.extend(_catalog(cat))

    pr = sc.get("profile")
    if pr:
        L.append("## Profile of one drain (1 process, threads 16, batch 16)")
        L.append("")
        if pr.get("statements"):
            L.append(f"{pr['n']:,} rows at {pr['rps']:,.0f}/s. Time per named statement "
                     "(round trip included, summed over threads):")
            L.append("")
            L.append("| statement | calls | rows per call | avg ms | total s |")
            L.append("|---|---|---|---|---|")
            for k, v in list(pr["statements"].items())[:8]:
                L.append(f"| {k} | {v['n']:,} | {v['rows_per_call']} | {v['avg_ms']} | "
                         f"{v['total_s']} |")
            L.append("")
        if pr.get("py_spy"):
            L.append("py-spy, share of all samples (all threads, idle included) — mi_worker "
                     "frames, inclusive:")
            L.append("")
            for x in pr["py_spy"]["inclusive_mi_worker"][:10]:
                L.append(f"- {x['percent']} % {x['frame']}")
            L.append("")
        else:
            L.append(f"py-spy: {pr.get('status')}")
            L.append("")

    notes = r.get("notes") or []
    L.append("## Notes")
    L.append("")
    for n in NOTES + notes:
        L.append(f"- {n}")
    L.append("")
    return "\n".join(L)


def _catalog(cat: Dict[str, Any]) -> List[str]:
    L = ["## Catalogue load (目录下载, `mi-worker catalog download`)", ""]
    if not _ok(cat):
        return L + [f"{cat.get('status')}", ""]
    L.append(f"Sandbox catalogues {', '.join(f'{c} {n:,} rows' for c, n in cat['catalogues'].items())}"
             f"; batch {cat['batch_size']}; worker {cat['worker']}; {cat['measure']}.")
    L.append("")
    L.append("| database | catalogue | rows | zip | load rows/s | download | total s | "
             "query / download / load s (median) | dominant | incremental s |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in cat["results"]:
        ph, share = r["phases_s"], r["phase_share"]
        mbps = {k: (v / 1e6 if isinstance(v, (int, float)) else v)
                for k, v in r["download_bytes_per_s"].items() if k != "runs"}
        L.append(f"| {r['database']} | {r['code']} {r['name']} ({r['encoding']}) | "
                 f"{r['rows']:,} | {r['bytes'] / 1e6:.2f} MB | {_m(r['load_rows_per_s'])} | "
                 f"{_m(mbps, ' MB/s', 1)} | {_m(r['total_s'], '', 2)} | "
                 + " / ".join(f"{ph[p]['median']:.2f}" for p in ("query", "download", "load"))
                 + f" | {r['dominant']} ({100 * share[r['dominant']]:.0f} %) | "
                 f"{_m(r['incremental_s'], '', 2)} |")
    L.append("")
    return L


def _scan_lines(plan: List[str]) -> List[str]:
    keep = []
    for line in plan:
        if any(w in line for w in ("ix_mir_claim", "LockRows", "CTE cand", "Limit",
                                   "Execution Time", "Planning Time")):
            keep.append(line.rstrip()[:160])
    return keep[:12]


NOTES = [
    "Drain: requests/s is n / (max(response_time) - min(claimed_at)) on the database clock for "
    "mi-worker, and first 'started' to last 'succeeded' in procrastinate_events / first "
    "'picked' to last 'successful' in pgqueuer_log for the peers; wall (spawn to empty queue, "
    "polled every 50 ms) is given too. Each system gets its own fresh database per run.",
    "Peers, configured fairly: procrastinate — one async no-op task, run_worker(concurrency=16, "
    "wait=False) (its drain mode), listen_notify on, finished jobs kept (delete_jobs=never, as "
    "mi-worker keeps its rows); pgqueuer — one async no-op entrypoint, QueueManager.run(mode="
    "drain, batch_size=16, max_concurrent_tasks=32: the smallest the library accepts for batch "
    "16), default durable tables; both over psycopg 3 from bench/.venv-peers, installed only "
    "there.",
    "Latency: sp_medical_insurance_call_v2 sleeps until the interface's published "
    "INSERT-to-result median (medical_insurance_interfaces.expected_ms, written by the worker "
    "every 2 s) has passed since its INSERT, looks, then looks every 10 ms growing by half up "
    "to p_poll_ms (mi_worker/wait_plan.py; without an estimate, as in the first seconds of a "
    "run: a look at once, then 10 ms doubling). Looks are counted by the server: every look is "
    "one call of mi_his_poll, and the run's database has track_functions = 'all' "
    "(pg_stat_user_functions); polls/s = looks / summed caller wait, warm-up included. "
    "Breakdown: claim wait = claimed_at - request_time (the worker's idle back-off, "
    "worker.min_poll_interval doubling to worker.poll_interval); rest = overhead - claim wait; "
    "seen after = caller end-to-end - (response_time - request_time): from the result's write "
    "to the caller having it (the poll's share plus the return trip).",
    "Saturation: rate between the 10th and 90th percentile of response_time (steady state), "
    "sandbox in its own process (python -m mi_worker sandbox --latency 0.1), worker with "
    "gateway.kind = nhsa (the production HTTP client).",
    "Idle: bench.probe wraps mi_worker.db.base.Database.run in the worker process to count "
    "statements by name (pg_stat_statements is not preloaded here); pg_stat_database "
    "transactions of the worker's own database are the cross-check.",
    "The machine has 2 cores shared by PostgreSQL, the workers, the peers, the sandbox and the "
    "harness (and possibly other test suites: see loadavg_before of each scenario), so "
    "absolute figures are modest; the ratios in the same run are the meaningful part.",
]
