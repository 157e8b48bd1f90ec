"""`python -m bench` (make bench): run the scenarios, write results/latest.json and latest.md.

    python -m bench                      full run (3 runs per figure, peers included)
    python -m bench --quick              small version of every scenario (< 2 minutes)
    python -m bench --scenarios drain,idle --runs 5 --output /tmp/b
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Dict

from bench import common, report
from bench.scenarios import ORDER, Context

DEFAULT_OUTPUT = common.ROOT / "bench" / "results"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small version of every scenario (smoke check, < 2 minutes)")
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                    help="directory for latest.json and latest.md (default bench/results)")
    ap.add_argument("--scenarios", default=",".join(ORDER),
                    help=f"comma-separated subset of {','.join(ORDER)}")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs per figure (median, min, max); default 3, 1 with --quick")
    ap.add_argument("--keep", action="store_true", help="keep worker logs and configs")
    ap.add_argument("--code", choices=["head", "worktree"], default="head",
                    help="measure the last commit (default: others may be mid-edit) or the "
                         "working tree as it is at the start")
    return ap.parse_args(argv)


def take_snapshot(workdir: Path, source: str, tries: int = 4) -> str:
    """Measure a copy of mi_worker/ taken now, once a 300-row SQLite drain works on it (the
    tree may be half-way through someone's edit). A note if it never did."""
    from bench import mi_drain
    last = ""
    for attempt in range(1, tries + 1):
        code = common.snapshot_code(workdir / "code", source)
        common.use_code(code)
        check = workdir / "check"
        check.mkdir(exist_ok=True)
        try:
            mi_drain.drain_sqlite(check, 300, 1, timeout=60, stall=15)
            return ""
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
            common.log(f"the mi-worker code does not drain ({last[:160]}); "
                       f"snapshot again in 20 s ({attempt}/{tries})")
            time.sleep(20)
    return f"the code snapshot failed its sanity drain ({last[:300]}); measured anyway"


def main(argv=None) -> int:
    args = parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in ORDER]
    if unknown:
        print(f"unknown scenarios {unknown}; known: {ORDER}", file=sys.stderr)
        return 2
    runs = args.runs or (1 if args.quick else 3)
    if not args.quick and runs < 3:
        common.log("note: fewer than 3 runs per figure; medians are less meaningful")
    t_start = time.monotonic()
    started = dt.datetime.now(dt.timezone.utc)
    workdir = Path(tempfile.mkdtemp(prefix="mi-bench-"))
    pg_reason = common.pg_available()
    snap_note = take_snapshot(workdir, args.code)
    result: Dict[str, Any] = {
        "schema": "mi-worker-bench/1", "date": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full", "runs_per_figure": runs,
        "machine": common.machine_info(),
        "code": {**common.code_identity(), "measured": args.code},
        "loadavg_at_start": common.loadavg(), "scenarios": {}, "notes": []}
    if snap_note:
        result["notes"].append(snap_note)
    dbs = common.PgDatabases()
    ctx = Context(quick=args.quick, runs=runs, workdir=workdir, dbs=dbs, pg_reason=pg_reason)
    failed = False
    try:
        if pg_reason is None:
            common.drop_leftovers()
        for name in ORDER:
            if name not in chosen:
                continue
            if pg_reason is not None:
                result["scenarios"][name] = {"status": f"skipped: PostgreSQL not reachable "
                                                       f"({pg_reason})"}
                continue
            mod = __import__(f"bench.scenarios.{name}", fromlist=["run"])
            t0 = time.monotonic()
            load0 = common.loadavg()
            try:
                data = mod.run(ctx)
                data.setdefault("status", "ok")
            except Exception as exc:
                failed = True
                data = {"status": f"failed: {type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()[-2000:]}
                common.log(f"{name} FAILED: {exc}")
            data["elapsed_seconds"] = round(time.monotonic() - t0, 1)
            data["loadavg_before"] = load0
            result["scenarios"][name] = data
            common.log(f"{name} done in {data['elapsed_seconds']}s")
    finally:
        dbs.close()
        if args.keep:
            common.log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["duration_seconds"] = round(time.monotonic() - t_start, 1)
    live = common.code_identity(common.ROOT)
    if live["sources_sha256"] != result["code"]["sources_sha256"]:
        result["code_live_at_end"] = live
        result["notes"].append("at the end of the run the working tree's mi_worker/ or sql/ "
                               f"differed from the measured code ({args.code} at the start, "
                               f"sources {result['code']['sources_sha256']}): uncommitted or "
                               "later edits are not in these figures")
    result["loadavg_at_end"] = common.loadavg()
    result["targets"] = report.targets(result)
    args.output.mkdir(parents=True, exist_ok=True)
    for fname, text in (("latest.json", json.dumps(result, indent=2, ensure_ascii=False)),
                        ("latest.md", report.markdown(result))):
        tmp = args.output / (fname + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, args.output / fname)
    common.log(f"wrote {args.output / 'latest.json'} and latest.md "
               f"({result['duration_seconds']:.0f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
