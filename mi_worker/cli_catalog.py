"""`mi-worker catalog download CODE…` and `mi-worker catalog status`: the national catalogues
(1301-1319) loaded into the hospital's database (mi_worker/catalog_sync.py).

Progress on a terminal is a tqdm bar (bytes with ETA, rows in the postfix): tqdm is pure
Python, installs everywhere without a compiler and handles terminal width, rates and ETA,
which is not this project's business to hand-write. Without a terminal (a scheduled task, a
log file) it prints a plain line every few seconds instead, which a log can hold.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, List, Tuple

import click
from tqdm import tqdm

from mi_worker import catalog_sync as cs
from mi_worker import monitor
from mi_worker.cli_context import QUIET, Context, emit, pass_ctx
from mi_worker.files.transfer import FileTransfer
from mi_worker.gateway.client import NHSAClient
from mi_worker.runner import build_gateway


def progress_printer(code: str, stream: Any, every_s: float = 2.0
                     ) -> Tuple[cs.Progress, Callable[[], None]]:
    """A progress callback for ``stream`` and a function that closes it."""
    if getattr(stream, "isatty", lambda: False)():
        bar = tqdm(total=0, unit="B", unit_scale=True, desc=f"catalog {code}", file=stream)

        def tick(rows: int, done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.set_postfix(rows=rows, refresh=False)
            bar.refresh()
        return tick, bar.close
    started, last = time.monotonic(), [0.0]

    def line(rows: int, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < every_s and done < total:
            return
        last[0] = now
        elapsed = now - started
        eta = elapsed / done * (total - done) if done else 0.0
        pct = 100.0 * done / total if total else 100.0
        click.echo(f"catalog {code}: {rows} rows, {done / 1e6:.1f} of {total / 1e6:.1f} MB "
                   f"({pct:.0f}%), {rows / max(elapsed, 1e-6):.0f} rows/s, ETA {eta:.0f} s",
                   file=stream)
    return line, lambda: None


def run_downloads(c: Context, codes: List[str], full: bool, batch_size: int,
                  wait_s: float) -> List[cs.SyncResult]:
    database = c.db()
    gateway = build_gateway(c.settings, database, None)
    try:
        if not isinstance(gateway, NHSAClient):
            raise click.ClickException("catalog download needs a real gateway (gateway.kind "
                                       "nhsa, or a sandbox's URL): files come by 9102")
        transfer = FileTransfer(gateway)
        done = []
        for code in codes:
            tick, close = progress_printer(code, sys.stderr)
            try:
                done.append(cs.sync(database, transfer, code, full=full, batch_size=batch_size,
                                    progress=tick, wait_s=wait_s))
            except cs.CatalogError as exc:
                raise click.ClickException(str(exc)) from None
            finally:
                close()
        return done
    finally:
        gateway.close()
        database.close()


@click.group("catalog")
def catalog_group() -> None:
    """National catalogues 1301-1319 (目录下载) in the hospital's database."""


@catalog_group.command("download")
@click.argument("codes", nargs=-1, required=True)
@click.option("--full", is_flag=True, help="Ask from version 0 (rewrites only what changed).")
@click.option("--batch-size", type=click.IntRange(1, 10000), default=1000, show_default=True)
@click.option("--wait", "wait_s", type=click.FloatRange(1, 3600), default=120.0,
              show_default=True, help="Seconds to wait for the centre's answer to the query.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def catalog_download(c: Context, codes: Tuple[str, ...], full: bool, batch_size: int,
                     wait_s: float, as_json: bool) -> None:
    """Download and load catalogues, e.g. `mi-worker catalog download 1301 1302`."""
    c.setup_logging("WARNING")
    c.check_gateway()
    bad = [x for x in codes if x not in cs.CODES]
    if bad:
        raise click.UsageError(f"not catalogue codes (1301…1319): {', '.join(bad)}")
    results = run_downloads(c, list(codes), full, batch_size, wait_s)
    emit([r.as_dict() for r in results], as_json, lambda d: "\n".join(
        f"{r['catalog_code']}: {r['outcome']} {r['rows_read']} rows read "
        f"({r['rows_inserted']} new, {r['rows_updated']} changed, {r['rows_unchanged']} "
        f"unchanged), {r['bytes']} bytes {r['encoding']}, {r['duration_ms']} ms, "
        f"{r['rows_per_second']} rows/s, version {r['ver_from']} -> {r['ver_to']}" for r in d))


@catalog_group.command("status")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def catalog_status(c: Context, limit: int, as_json: bool) -> None:
    """The latest sync runs (the monitoring data type 'catalog')."""
    c.setup_logging(QUIET)
    database = c.db()
    try:
        history = monitor.rows(database.run("catalog_sync_history", limit=limit))
    finally:
        database.close()
    emit(history, as_json, lambda d: "\n".join(
        f"#{r['sync_id']} {r['catalog_code']} {r['outcome']} {r['started_at']} "
        f"rows {r['rows_read']} (+{r['rows_inserted']} ~{r['rows_updated']}) "
        f"{r['duration_ms']} ms {r['error_message'] or ''}" for r in d) or "no sync runs yet")
