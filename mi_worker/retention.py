"""Retention: old terminal rows leave medical_insurance_requests so the live table stays small.

Why: a hospital doing 100k calls a day has 180 M rows in five years; the claim and the open-
row monitors use partial indexes and do not care, but backups, ad-hoc DBA queries, the
alert scan's hourly windows and every index maintenance do. The default window (400 days)
keeps a full year of 对账 and audits online; the archive table keeps everything else in the
same database (``jobs.retention_archive = false`` deletes instead, for sites that archive
with their own backups).

What moves (the rule lives in the named queries, identical on all three dialects): rows in a
terminal state (COMPLETED, ERROR, TIMEOUT, REVERSED), not flagged for reversal, requested and
answered before the window, with no open child row (a 2601 reversal still running) and not
part of a reconciliation day still unbalanced. PENDING, PROCESSING, UNCERTAIN and
NEEDS_MANUAL rows never move, however old.

How: small batches (``jobs.retention_batch_rows``), each its own short statement, so claims
never wait behind a long delete; copy first, then delete only what the archive holds, so an
interruption between the two is finished by the next run. Run once per cluster under the
cluster lock (jobs.py), at most ``jobs.retention_max_rows`` rows per run.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Optional

from mi_worker.db import Database

log = logging.getLogger("mi_worker.retention")

# Pause between batches: lets claims and result writes in between (SQLite has one writer).
PAUSE_SECONDS = 0.02


def run_retention(db: Database, settings: Any,
                  stopping: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
    """Move (or delete) rows past the retention window; return what was done.

    ``settings`` is the whole Settings (its ``jobs`` section is read). The result has
    ``moved`` (rows that left the live table), ``archived`` (copies made), ``batches``,
    ``seconds`` and ``done`` (True when nothing old is left).
    """
    js = settings.jobs
    result: Dict[str, Any] = {"moved": 0, "archived": 0, "batches": 0, "seconds": 0.0,
                              "done": True, "mode": "archive" if js.retention_archive
                              else "delete", "retention_days": js.retention_days}
    if js.retention_days <= 0:
        return result
    started = time.monotonic()
    days = int(js.retention_days)
    archived = 1 if js.retention_archive else 0
    while result["moved"] < js.retention_max_rows:
        if stopping is not None and stopping():
            result["done"] = False
            break
        batch = db.run_one("retention_batch", retention_days=days,
                           batch_rows=min(js.retention_batch_rows,
                                          js.retention_max_rows - result["moved"]))
        if not batch or not int(batch["n"] or 0):
            break
        lo, hi = int(batch["lo"]), int(batch["hi"])
        if archived:
            db.run("retention_archive", retention_days=days, lo=lo, hi=hi)
        deleted = db.run("retention_delete", retention_days=days, lo=lo, hi=hi,
                         archived=archived)
        result["batches"] += 1
        result["moved"] += len(deleted)
        if archived:
            result["archived"] += len(deleted)
        if not deleted:
            # Rows matched but none could be removed (their copy is missing): stop rather
            # than loop on the same batch; the next run tries again.
            log.warning("retention: batch %d..%d moved nothing; stopping this run", lo, hi)
            result["done"] = False
            break
        time.sleep(PAUSE_SECONDS)
    else:
        result["done"] = False
    result["seconds"] = round(time.monotonic() - started, 3)
    if result["moved"]:
        log.info("retention: %d row(s) older than %d days %s in %d batch(es), %.1fs%s",
                 result["moved"], days,
                 "moved to medical_insurance_requests_archive" if archived else "deleted",
                 result["batches"], result["seconds"],
                 "" if result["done"] else " (more left for the next run)")
    return result
