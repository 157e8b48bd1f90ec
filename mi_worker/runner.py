"""`mi-worker run`: wire settings, database, gateway, worker and jobs, and stop cleanly.

Signals: SIGTERM and SIGINT (Ctrl-C) on every platform, SIGBREAK (Ctrl-Break, and what a
Windows service wrapper sends) where it exists. The first signal starts a graceful stop
(no new claims, in-flight calls get worker.grace_seconds); a second one exits at once.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
from typing import Any, Callable, List, Optional

from mi_worker import __version__, metrics, sandbox
from mi_worker.config import DEFAULT_SQLITE_URL, ConfigError, Settings
from mi_worker.db import ConnectionLost, ConnectRefused, Database, connect
from mi_worker.db.migrate import migrations, upgrade
from mi_worker.gateway import catalog
from mi_worker.gateway.base import Gateway
from mi_worker.gateway.factory import build_gateway as gateway_for
from mi_worker.jobs import Scheduler
from mi_worker.worker import Worker

log = logging.getLogger("mi_worker.run")

SANDBOX_BANNER = ("SANDBOX GATEWAY — requests go to a fake 医保中心 on this machine, NOT the "
                  "national platform. Configure [gateway] kind = \"nhsa\" for production.")


NOOP_BANNER = ("NOOP GATEWAY — every call is answered at once with an empty success; nothing "
               "reaches any 医保中心. For the benchmark only.")
FAKE_KINDS = ("sandbox", "noop")


class SchemaNotReady(RuntimeError):
    """The database lacks migrations this version needs (run `mi-worker db upgrade`)."""


def open_database(settings: Settings) -> Database:
    return connect(settings.database.url, settings.database.connect_timeout,
                   settings.database.reconnect_max_seconds, settings.database.pool_size,
                   settings.database.dialect)


def sync_catalog(db: Database, allow_manual_reversal: bool = False) -> int:
    """Mirror the interface catalogue into medical_insurance_interfaces (monitors show the
    names; reconciliation reads which codes settle and which cancel; the HIS procedure reads
    which codes it refuses because the worker manages them itself)."""
    n = 0
    for itf in catalog.all_interfaces():
        db.run("upsert_interface", interface_code=itf.code, interface_name=itf.name,
               kind=itf.kind, reversible=1 if itf.reversible_by_2601 else 0,
               cancel_code=itf.cancel_code,
               his_refused=catalog.his_refusal(itf.code, allow_manual_reversal))
        n += 1
    return n


def prepare_database(db: Database, allow_manual_reversal: bool = False) -> List[int]:
    """`mi-worker db upgrade`: apply missing migrations, then make the tables that mirror
    what the code knows (the catalogue) match it. Returns the versions applied."""
    applied = upgrade(db)
    sync_catalog(db, allow_manual_reversal)
    return applied


def ensure_schema(db: Database, auto_upgrade: bool, allow_manual_reversal: bool = False) -> None:
    """The embedded SQLite database upgrades itself; a server database must be upgraded by ops."""
    if auto_upgrade:
        applied = upgrade(db)
        if applied:
            log.info("database schema created/upgraded: %s", applied)
        # Every start: the embedded catalogue (and jobs.his_manual_reversal) follow the config.
        sync_catalog(db, allow_manual_reversal)
        return
    try:
        done = {int(r["version"]) for r in db.run("applied_migrations")}
    except (ConnectionLost, ConnectRefused):
        raise  # unreachable / no driver / login refused / no database: not a schema problem
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


def refuse_fake_centre(settings: Settings, dialect: str) -> None:
    """A fake centre on a server database only when allowed on purpose.

    config.load already refuses this for settings read from a file or the environment; the
    check is repeated here for Settings built in code.
    """
    g = settings.gateway
    if g.kind in FAKE_KINDS and dialect != "sqlite" and not g.allow_fake_centre:
        raise ConfigError(f"config key gateway.allow_fake_centre: gateway.kind = {g.kind!r} "
                          f"is a FAKE centre and the database is {dialect}; set "
                          "gateway.kind = \"nhsa\" (or allow_fake_centre = true on purpose)")


def gateway_warnings(settings: Settings, dialect: str) -> None:
    """Refuse a fake centre on a server database unless allowed; say loudly what is unsafe."""
    refuse_fake_centre(settings, dialect)
    g = settings.gateway
    banner = "!" * 100
    if g.kind in FAKE_KINDS and dialect != "sqlite":
        for line in (banner, f"FAKE CENTRE ON A SERVER DATABASE ({dialect}): gateway.kind = "
                     f"{g.kind} with gateway.allow_fake_centre = true. Every call this worker "
                     "answers is made up; the FAKE_GATEWAY alert stays open while it runs.",
                     banner):
            log.warning("%s", line)
    elif g.kind == "noop":
        for line in (banner, NOOP_BANNER, banner):
            log.warning("%s", line)
    if g.kind == "nhsa" and not g.verify_tls:
        for line in (banner, "TLS VERIFICATION IS OFF (gateway.verify_tls = false): the "
                     "gateway's certificate is not checked, anyone on the network path can "
                     "pose as the 医保中心. Trust its CA instead (system store or "
                     "gateway.ca_bundle); the TLS_VERIFY_OFF alert stays open while it runs.",
                     banner):
            log.warning("%s", line)


def start_sandbox(settings: Settings) -> Any:
    server = sandbox.start_for_settings(settings.gateway)
    banner = "!" * 100
    for line in (banner, SANDBOX_BANNER, f"sandbox listening on {server.url}", banner):
        log.warning("%s", line)
    return server


def build_gateway(settings: Settings, db: Database, sandbox_url: Optional[str]) -> Gateway:
    """The configured gateway, pointed at the sandbox at ``sandbox_url`` when there is one;
    msgids of calls without a row (9001/9002) come from the database sequence."""

    def msgid() -> str:
        row = db.run_one("next_msgid", fixmedins_code=settings.gateway.fixmedins_code)
        return row["msgid"]

    gw = settings.gateway
    if sandbox_url:
        gw = sandbox.client_settings_for(gw, sandbox_url)
    return gateway_for(gw, pool_size=settings.worker.threads, msgid_factory=msgid)


def install_signals(stop: Callable[[], None]) -> None:
    """First signal: graceful stop; second: exit at once.

    The handler itself only writes the signal number to a pipe (os.write takes no Python
    lock); a daemon thread reads it and does the work. Calling ``stop()`` from the handler
    deadlocked: Python runs a handler in the main thread between two bytecodes, and when
    the main thread (the claim loop) held the worker's lock at that moment, ``stop()``
    waited for that same lock forever (the heartbeat then waited behind it, the leases ran
    out and the process had to be killed).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    read_fd, write_fd = os.pipe()

    def relay() -> None:
        count = 0
        while True:
            data = os.read(read_fd, 1)
            if not data:
                return
            count += 1
            if count > 1:
                log.error("second signal: exiting now")
                os._exit(1)
            log.info("signal %s: stopping gracefully (send again to exit at once)", data[0])
            try:
                stop()
            except Exception:  # the relay must live on: a second signal still exits
                log.exception("graceful stop failed; send the signal again to exit at once")

    threading.Thread(target=relay, name="mi-signal", daemon=True).start()

    def handler(signum, _frame):
        os.write(write_fd, bytes([signum & 0xFF]))

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, handler)
    if hasattr(signal, "SIGUSR1"):
        # `kill -USR1 <pid>`: every thread's stack to standard error (where the log's
        # console copy goes; not into logging.file), to see where a worker that does not
        # stop is waiting. The process goes on running.
        faulthandler.register(signal.SIGUSR1, all_threads=True)


def run(settings: Settings) -> int:
    """Run one worker process until a signal; return the exit code."""
    if settings.source == "defaults" and settings.database.url == DEFAULT_SQLITE_URL:
        log.warning("no configuration file: using the embedded SQLite database %s and the "
                    "built-in SANDBOX gateway", settings.database.url)
    db = open_database(settings)
    try:
        refuse_fake_centre(settings, db.name)
        # once, logged, before anything depends on it; a database that refuses us (no such
        # database, login refused) is said here, before any banner
        db.decide_features()
    except Exception:
        db.close()
        raise
    gateway_warnings(settings, db.name)
    ensure_schema(db, auto_upgrade=db.supports("self_upgrade"),
                  allow_manual_reversal=settings.jobs.his_manual_reversal)
    sync_limits(db, settings.worker.limits)
    sandbox = start_sandbox(settings) if settings.gateway.kind == "sandbox" else None
    gateway = build_gateway(settings, db, sandbox.url if sandbox else None)
    worker = Worker(settings, db, gateway)
    scheduler = Scheduler(worker, db, settings, gateway)
    install_signals(worker.stop)
    metrics_server = None
    if settings.metrics.port:
        try:
            metrics_server = metrics.serve(db, settings.metrics.port, settings.metrics.host,
                                   settings.jobs.heartbeat_stale_seconds)
        except OSError as exc:  # metrics are not worth refusing to settle calls
            log.error("metrics endpoint not started: cannot listen on %s:%d (%s)",
                      settings.metrics.host, settings.metrics.port, exc)
    log.info("mi-worker %s starting as %s (python %s), gateway.kind = %s", __version__,
             worker.worker_id, sys.version.split()[0], settings.gateway.kind)
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
