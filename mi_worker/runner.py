"""`mi-worker run`: wire settings, database, gateway, worker and jobs, and stop cleanly.

Signals: SIGTERM and SIGINT (Ctrl-C) on every platform, SIGBREAK (Ctrl-Break, and what a
Windows service wrapper sends) where it exists. The first signal starts a graceful stop
(no new claims, in-flight calls get worker.grace_seconds); a second one exits at once.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any, Callable, Optional

from mi_worker import __version__
from mi_worker.config import DEFAULT_SQLITE_URL, Settings
from mi_worker.db import Database, connect
from mi_worker.db.migrate import migrations, sync_catalog, upgrade
from mi_worker.gateway.base import Gateway

log = logging.getLogger("mi_worker.run")

SANDBOX_BANNER = ("SANDBOX GATEWAY — requests go to a fake 医保中心 on this machine, NOT the "
                  "national platform. Configure [gateway] kind = \"nhsa\" for production.")


class SchemaNotReady(RuntimeError):
    """The database lacks migrations this version needs (run `mi-worker db upgrade`)."""


def open_database(settings: Settings) -> Database:
    return connect(settings.database.url, settings.database.connect_timeout,
                   settings.database.reconnect_max_seconds, settings.database.pool_size)


def ensure_schema(db: Database, auto_upgrade: bool) -> None:
    """The embedded SQLite database upgrades itself; a server database must be upgraded by ops."""
    if auto_upgrade:
        applied = upgrade(db)
        if applied:
            log.info("database schema created/upgraded: %s", applied)
            sync_catalog(db)
        return
    try:
        done = {int(r["version"]) for r in db.run("applied_migrations")}
    except Exception as exc:
        raise SchemaNotReady(f"database has no mi-worker schema ({exc}); run "
                             "`mi-worker db upgrade` first") from None
    missing = [m.version for m in migrations(db.name) if m.version not in done]
    if missing:
        raise SchemaNotReady(f"database is missing migrations {missing}; run "
                             "`mi-worker db upgrade` first")


def sync_limits(db: Database, limits: dict) -> None:
    """Make the cluster-wide caps match this worker's config, changing rows in place."""
    for code, cap in sorted(limits.items()):
        db.run("upsert_limit", interface_code=code, max_in_flight=int(cap))
    for row in db.run("list_limits"):
        if row["interface_code"] not in limits:
            db.run("delete_limit", interface_code=row["interface_code"])


def start_sandbox(settings: Settings) -> Any:
    from mi_worker.sandbox import start_for_settings
    server = start_for_settings(settings.gateway)
    banner = "!" * 100
    for line in (banner, SANDBOX_BANNER, f"sandbox listening on {server.url}", banner):
        log.warning("%s", line)
    return server


def build_gateway(settings: Settings, db: Database, sandbox_url: Optional[str]) -> Gateway:
    from mi_worker.gateway.factory import build_gateway as factory

    def msgid() -> str:
        row = db.run_one("next_msgid", fixmedins_code=settings.gateway.fixmedins_code)
        return row["msgid"]

    return factory(settings.gateway, sandbox_url, pool_size=settings.worker.threads,
                   msgid_factory=msgid)


def install_signals(stop: Callable[[], None]) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    count = {"n": 0}

    def handler(signum, _frame):
        count["n"] += 1
        if count["n"] > 1:
            log.error("second signal: exiting now")
            os._exit(1)
        log.info("signal %s: stopping gracefully (send again to exit at once)", signum)
        stop()

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, handler)


def run(settings: Settings) -> int:
    """Run one worker process until a signal; return the exit code."""
    from mi_worker.jobs import Scheduler
    from mi_worker.worker import Worker

    if settings.source == "defaults" and settings.database.url == DEFAULT_SQLITE_URL:
        log.warning("no configuration file: using the embedded SQLite database %s and the "
                    "built-in SANDBOX gateway", settings.database.url)
    db = open_database(settings)
    ensure_schema(db, auto_upgrade=db.name == "sqlite")
    sync_limits(db, settings.worker.limits)
    sandbox = start_sandbox(settings) if settings.gateway.kind == "sandbox" else None
    gateway = build_gateway(settings, db, sandbox.url if sandbox else None)
    worker = Worker(settings, db, gateway)
    scheduler = Scheduler(worker, db, settings, gateway)
    install_signals(worker.stop)
    metrics_server = None
    if settings.metrics.port:
        from mi_worker.metrics import serve
        try:
            metrics_server = serve(db, settings.metrics.port, settings.metrics.host,
                                   settings.jobs.heartbeat_stale_seconds)
        except OSError as exc:  # metrics are not worth refusing to settle calls
            log.error("metrics endpoint not started: cannot listen on %s:%d (%s)",
                      settings.metrics.host, settings.metrics.port, exc)
    log.info("mi-worker %s starting as %s (python %s)", __version__, worker.worker_id,
             sys.version.split()[0])
    try:
        scheduler.start()
        worker.run()
    finally:
        scheduler.shutdown()
        if metrics_server is not None:
            metrics_server.shutdown()
        try:
            gateway.close()
        except Exception as exc:
            log.warning("gateway close: %s", exc)
        if sandbox is not None:
            sandbox.stop()
        db.close()
    return 0
