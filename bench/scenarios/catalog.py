"""Scenario catalog: catalogue sync (目录下载, issue 15), the way `mi-worker catalog download`
runs it, on SQLite and PostgreSQL.

Each run has a sandbox of its own process (``mi-worker sandbox --catalog-rows …``) with two
catalogues of its generator: 1301 西药中成药 in GBK and 1306 医用耗材 in UTF-8 (30,000 and
20,000 rows, its defaults; 6,000 and 4,000 with --quick). Each run gets a fresh database and
one real ``mi-worker run`` process (defaults, gateway.kind = nhsa at the sandbox) that sends
the 13xx query, as in production. The harness is the `catalog download` process: the same
steps as mi_worker/cli_catalog.run_downloads (open_database, build_gateway, FileTransfer,
its non-terminal progress printer, catalog_sync.sync with batch 1000), with the transfer's
download timed, so one sync splits into

  query     sync start → 9102 starts: history row, submit, the worker's claim and 13xx call
            (the sandbox builds the zip), the result poll;
  download  9102: the zip streamed to disk, checksummed (the client's own 9001 sign-in
            first, as a fresh `catalog download` process pays it);
  load      9102 done → sync returns: file row, unzip, decode, hashes, batched upserts,
            history row.

load rows/s = rows / load s; download bytes/s = zip bytes / download s; total = the sync's
own duration_ms (what `catalog download` prints). A second sync right after (nothing changed
at the centre: an empty file) is the incremental figure. Before the measured sync one
unmeasured 13xx query warms the worker (its 9001 sign-in) and the sandbox (builds the
catalogue once). The table must then hold every row, and the second sync must read none.
"""
from __future__ import annotations

import io
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from bench import common, sandboxed
from bench.scenarios import Context

#: (code, rows full, rows --quick): one GBK, one UTF-8 catalogue of the sandbox's generator
CATALOGUES: List[Tuple[str, int, int]] = [("1301", 30000, 6000), ("1306", 20000, 4000)]
DIALECTS = ("sqlite", "postgresql")
BATCH = 1000  # `mi-worker catalog download --batch-size` default
PHASES = ("query", "download", "load")


def sizes(quick: bool) -> Dict[str, int]:
    return {code: (small if quick else full) for code, full, small in CATALOGUES}


def _heartbeats(dialect: str, where: str) -> int:
    sql = "SELECT count(*) FROM sdk_heartbeat"
    if dialect == "postgresql":
        return int(common.pg_query(where, sql)[0][0])
    conn = sqlite3.connect(where, timeout=30)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def _settings(db_url: str, sandbox_url: str, files: Path) -> Any:
    from mi_worker import config
    from mi_worker.gateway.settings import GatewaySettings
    s = config.Settings()
    s.database.url = db_url
    s.gateway = GatewaySettings(**sandboxed.gateway_settings(sandbox_url),
                                file_directory=str(files))
    return s


def _timed_sync(db: Any, transfer: Any, marks: Dict[str, float], code: str) -> Dict[str, Any]:
    from mi_worker import catalog_sync as cs
    from mi_worker.cli_catalog import progress_printer
    marks.clear()
    tick, close = progress_printer(code, io.StringIO())  # not a TTY: the plain lines
    t0 = time.perf_counter()
    try:
        res = cs.sync(db, transfer, code, batch_size=BATCH, progress=tick)
    finally:
        close()
    t1 = time.perf_counter()
    phases = {"query": marks["start"] - t0, "download": marks["end"] - marks["start"],
              "load": t1 - marks["end"]}
    return {"rows": res.rows_read, "inserted": res.rows_inserted, "bytes": res.bytes,
            "encoding": res.encoding, "total_s": res.duration_ms / 1000.0,
            "cli_rows_per_s": res.rows_per_second, **{f"{k}_s": v for k, v in phases.items()},
            "load_rows_per_s": res.rows_read / max(phases["load"], 1e-6),
            "download_bytes_per_s": res.bytes / max(phases["download"], 1e-6)}


def one_run(ctx: Context, sandbox_url: str, dialect: str, code: str,
            rows: int) -> Dict[str, Any]:
    """A fresh database and worker; the first sync of ``code`` and the incremental one."""
    from mi_worker import catalog_sync as cs
    from mi_worker.files.transfer import FileTransfer
    from mi_worker.runner import build_gateway, open_database
    tag = f"cat{code}_{uuid.uuid4().hex[:6]}"
    if dialect == "postgresql":
        name = ctx.dbs.new(f"cat{code}")
        url, where = common.pg_url(name), name
    else:
        path = ctx.workdir / f"{tag}.db"
        url, where = common.sqlite_prepare(path), str(path)
    try:
        cfg = common.write_config(ctx.workdir / f"{tag}.toml", common.worker_sections(
            url, threads=None, batch_size=None, gateway=sandboxed.gateway_settings(sandbox_url)))
        with common.WorkerProcs(cfg, 1, ctx.workdir) as wp:
            common.wait_until(lambda: _heartbeats(dialect, where) > 0 or not wp.alive(), 60,
                              what="the worker's heartbeat")
            if not wp.alive():
                raise RuntimeError(f"the worker exited at start; see {ctx.workdir}")
            settings = _settings(url, sandbox_url, ctx.workdir / f"{tag}-files")
            db = open_database(settings)
            gateway = build_gateway(settings, db, None)
            try:
                cs.query_file(db, code, "0")  # warm-up, not measured (see the docstring)
                transfer = FileTransfer(gateway)
                marks: Dict[str, float] = {}
                download = transfer.download

                def timed(*args: Any, **kw: Any) -> Any:
                    marks["start"] = time.perf_counter()
                    try:
                        return download(*args, **kw)
                    finally:
                        marks["end"] = time.perf_counter()

                transfer.download = timed  # type: ignore[method-assign]
                first = _timed_sync(db, transfer, marks, code)
                second = _timed_sync(db, transfer, marks, code)
                in_table = len(db.run("catalog_hashes", catalog_code=code))
            finally:
                gateway.close()
                db.close()
    finally:
        if dialect == "postgresql":
            ctx.dbs.drop(where)
    if (first["rows"], first["inserted"], in_table) != (rows, rows, rows):
        raise RuntimeError(f"{dialect} {code}: read {first['rows']}, inserted "
                           f"{first['inserted']}, table holds {in_table}; wanted {rows}")
    if second["rows"] != 0:
        raise RuntimeError(f"{dialect} {code}: the incremental sync read {second['rows']} rows")
    return {"first": first, "second": second, "rows_in_table": in_table}


def _entry(dialect: str, code: str, rows: int, got: List[Dict[str, Any]]) -> Dict[str, Any]:
    from mi_worker.gateway import catalog
    first = [g["first"] for g in got]
    s = common.summarize
    phases = {p: s([f[f"{p}_s"] for f in first]) for p in PHASES}
    total = sum(v["median"] for v in phases.values()) or 1.0
    share = {p: round(phases[p]["median"] / total, 3) for p in PHASES}
    return {"database": "PostgreSQL" if dialect == "postgresql" else "SQLite",
            "dialect": dialect, "code": code, "name": catalog.name(code),
            "encoding": first[0]["encoding"], "rows": rows,
            "rows_in_table": min(g["rows_in_table"] for g in got),
            "bytes": first[0]["bytes"],
            "load_rows_per_s": s([f["load_rows_per_s"] for f in first], 0),
            "download_bytes_per_s": s([f["download_bytes_per_s"] for f in first], 0),
            "total_s": s([f["total_s"] for f in first]),
            "cli_rows_per_s": s([f["cli_rows_per_s"] for f in first], 0),
            "phases_s": phases, "phase_share": share,
            "dominant": max(share, key=lambda p: share[p]),
            "incremental_s": s([g["second"]["total_s"] for g in got]),
            "incremental_phases_s": {p: s([g["second"][f"{p}_s"] for g in got])
                                     for p in PHASES}}


def run(ctx: Context, dialects: Sequence[str] = DIALECTS) -> Dict[str, Any]:
    rows = sizes(ctx.quick)
    out: Dict[str, Any] = {
        "catalogues": rows, "batch_size": BATCH, "dialects": list(dialects),
        "worker": "1 process, every key at its default, gateway.kind = nhsa (the sandbox)",
        "measure": "first sync into a fresh database split into query / download / load "
                   "(see bench/scenarios/catalog.py); load rows/s = rows / load s; download "
                   "bytes/s = zip bytes / 9102 s; total = the sync's duration_ms; incremental "
                   "= a second sync right after, nothing changed",
        "results": []}
    args = [a for code, n in rows.items() for a in ("--catalog-rows", f"{code}={n}")]
    for dialect in dialects:
        for code, n in rows.items():
            common.log(f"catalog: {dialect} {code} ({n} rows) x {ctx.runs}")
            got = [common.retrying(_run_with_own_sandbox, ctx, args, dialect, code, n)
                   for _ in range(ctx.runs)]
            out["results"].append(_entry(dialect, code, n, got))
    return out


def _run_with_own_sandbox(ctx: Context, args: List[str], dialect: str, code: str,
                          rows: int) -> Dict[str, Any]:
    """One run against a sandbox of its own: every run's database is fresh, so its msgid
    sequence starts again, and a centre that outlives the database (one sandbox for all
    runs) rejects the second run's msgids of the same second as duplicates (报文ID重复) —
    as a real centre would if a hospital recreated its database."""
    with sandboxed.sandbox(ctx.workdir, 0.0, args) as url:
        return one_run(ctx, url, dialect, code, rows)
