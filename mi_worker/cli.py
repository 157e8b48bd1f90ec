"""`mi-worker`: the one command ops and DBAs use (run, db upgrade, call, sandbox, status…)."""
from __future__ import annotations

import json
import sys
from typing import Optional

import click

from mi_worker import __version__, config, logs
from mi_worker.cli_errors import (
    EXIT_CODES_HELP,
    EXIT_DATABASE,
    EXIT_USAGE,
    FriendlyGroup,
    UserError,
)


class Context:
    """Settings loaded once per invocation; a bad config is a clear error, not a traceback."""

    def __init__(self, config_path: Optional[str], debug: bool = False) -> None:
        self.config_path = config_path
        self.debug = debug
        self._settings: Optional[config.Settings] = None

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            try:
                self._settings = config.load(self.config_path)
            except config.ConfigError as exc:
                raise UserError(f"configuration error: {exc}", "fix the key or file named "
                                "above; `mi-worker config check` validates it", EXIT_USAGE) from None
        return self._settings

    def check_gateway(self) -> None:
        """The fake-centre rule (config.check_fake_centre), for commands that use a gateway."""
        try:
            config.check_fake_centre(self.settings)
        except config.ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    def setup_logging(self, level: Optional[str] = None) -> None:
        s = self.settings
        logs.setup(level or s.logging.level, s.logging.file, s.secrets(), s.display.timezone,
                   s.logging.format)

    def db(self, create: bool = False):
        """The configured database for a one-shot command.

        Only `run` and `db upgrade` may create the embedded SQLite file; any other command
        against a missing file says so instead of leaving an empty mi_worker.db behind. A
        one-shot command does not wait out database.reconnect_max_seconds: an unreachable
        server is reported after one connect attempt (database.connect_timeout).
        """
        from mi_worker.runner import open_database
        s = self.settings
        if not create:
            _require_sqlite_file(s)
            s.database.reconnect_max_seconds = 0
        try:
            return open_database(s)
        except (RuntimeError, ValueError) as exc:
            raise UserError(str(exc), "", EXIT_USAGE) from None

    @property
    def tz(self):
        from mi_worker.display import zone
        return zone(self.settings.display.timezone)


def _require_sqlite_file(s: config.Settings) -> None:
    from pathlib import Path

    from mi_worker.db.problems import location
    url = s.database.url
    if not url.lower().startswith("sqlite:"):
        return
    path = location(url) or "mi_worker.db"
    if path != ":memory:" and not Path(path).is_file():
        origin = ("no database.url is configured, so the embedded default is used"
                  if url == config.DEFAULT_SQLITE_URL else f"database.url = {url}")
        raise UserError(f"database {path} does not exist ({origin})",
                        "set database.url (--config FILE or MI_WORKER_DATABASE_URL); to create "
                        "an embedded database run `mi-worker db upgrade`", EXIT_DATABASE)


pass_ctx = click.make_pass_decorator(Context)


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              envvar="MI_WORKER_CONFIG", help="TOML settings file (or MI_WORKER_CONFIG).")
@click.option("--debug", is_flag=True, envvar="MI_WORKER_DEBUG",
              help="Show the Python traceback of an error (or MI_WORKER_DEBUG=1).")
@click.version_option(__version__, prog_name="mi-worker")
@click.pass_context
def main(ctx: click.Context, config_path: Optional[str], debug: bool = False) -> None:
    """mi-worker: runs HIS calls queued in the database against the NHSA gateway."""
    ctx.obj = Context(config_path, debug)


# -- run ---------------------------------------------------------------------------------
@main.command()
@click.option("--threads", type=int, default=None, help="Override worker.threads.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"],
                                               case_sensitive=False), default=None,
              help="Override logging.level.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus /metrics on this port (overrides metrics.port; 0 = off).")
@click.option("--metrics-host", default=None,
              help="Address for --metrics-port (overrides metrics.host, default 127.0.0.1).")
@click.option("--dashboard-port", type=int, default=None,
              help="Also serve the read-only dashboard on this port (see `dashboard`).")
@click.option("--dashboard-host", default="127.0.0.1", show_default=True,
              help="Address for --dashboard-port (non-loopback needs credentials).")
@pass_ctx
def run(c: Context, threads: Optional[int], log_level: Optional[str],
        metrics_port: Optional[int], metrics_host: Optional[str],
        dashboard_port: Optional[int], dashboard_host: str) -> None:
    """Run a worker until SIGTERM / Ctrl-C (graceful stop)."""
    from mi_worker.runner import SchemaNotReady
    from mi_worker.runner import run as run_worker
    if threads:
        c.settings.worker.threads = threads
    if metrics_port is not None:
        c.settings.metrics.port = metrics_port
    if metrics_host:
        c.settings.metrics.host = metrics_host
    c.check_gateway()
    c.setup_logging(log_level)
    board = None
    if dashboard_port is not None:
        board = _start_dashboard(c, dashboard_host, dashboard_port)
    try:
        sys.exit(run_worker(c.settings))
    except SchemaNotReady as exc:
        raise UserError(str(exc), "", EXIT_DATABASE) from None
    except config.ConfigError as exc:
        raise UserError(str(exc), "", EXIT_USAGE) from None
    finally:
        if board is not None:
            board[0].stop()
            board[1].close()


def _start_dashboard(c: Context, host: str, port: int):
    """The dashboard on a thread of the worker; a refused bind exits 2 before any work."""
    from mi_worker.dashboard import auth
    from mi_worker.dashboard.cli import EXIT_REFUSED, start_in_worker
    try:
        return start_in_worker(c.settings, port, host)
    except auth.AuthConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_REFUSED)
    except OSError as exc:
        raise click.ClickException(f"dashboard: cannot bind {host}:{port}: {exc}") from None


# -- db ----------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(c: Context) -> None:
    """Apply missing migrations (idempotent; safe from two hosts at once)."""
    from mi_worker.gateway import catalog
    from mi_worker.runner import prepare_database
    c.setup_logging()
    database = c.db(create=True)
    try:
        applied = prepare_database(database, c.settings.jobs.his_manual_reversal)
    finally:
        database.close()
    click.echo(f"{database.name}: applied {applied or 'nothing (up to date)'}; "
               f"{len(catalog.all_interfaces())} interface names synced")


@db.command("retention")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def db_retention(c: Context, as_json: bool) -> None:
    """Run the retention job once now (jobs.retention_days; the workers run it hourly)."""
    from mi_worker.retention import run_retention
    c.setup_logging()
    database = c.db()
    try:
        with database.cluster_lock("retention") as granted:
            if not granted:
                raise click.ClickException("a worker is running retention right now; "
                                           "try again later")
            result = run_retention(database, c.settings)
    finally:
        database.close()
    _emit(result, as_json, lambda r: (
        f"{r['moved']} row(s) older than {r['retention_days']} days "
        f"{'archived' if r['mode'] == 'archive' else 'deleted'} in {r['batches']} batch(es), "
        f"{r['seconds']}s" + ("" if r["done"] else "; more left (run again)")))


# -- call --------------------------------------------------------------------------------
@main.command()
@click.argument("interface_code")
@click.option("--input", "input_data", required=True, help="The input JSON object.")
@click.option("--timeout", type=int, default=30, show_default=True)
@click.option("--retry-count", type=int, default=3, show_default=True)
@click.option("--priority", type=int, default=5, show_default=True)
@click.option("--idempotency-key", default=None)
@click.option("--his-fee-id", default=None)
@click.option("--psn-no", default=None)
@click.option("--poll-ms", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--unmask", is_flag=True, help="Show personal data in the result in full "
              "(logged with your OS user).")
@pass_ctx
def call(c: Context, interface_code: str, input_data: str, timeout: int, retry_count: int,
         priority: int, idempotency_key: Optional[str], his_fee_id: Optional[str],
         psn_no: Optional[str], poll_ms: int, as_json: bool, unmask: bool = False) -> None:
    """Enqueue one call and wait, exactly as the HIS procedure does; exit 1 on error."""
    from mi_worker.his_call import call as his_call
    c.setup_logging("WARNING")
    database = c.db()
    try:
        outcome = his_call(database, interface_code, input_data, timeout, retry_count,
                           priority=priority, idempotency_key=idempotency_key,
                           his_fee_id=his_fee_id, psn_no=psn_no, poll_ms=poll_ms)
    finally:
        database.close()
    shown = outcome.as_dict()
    if unmask:
        _audit_unmask(shown["request_id"], "call")
    else:  # the result JSON and the centre's err_msg carry names and ID numbers
        from mi_worker.masking import mask_data
        shown = mask_data(shown)
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False))
    else:
        for key, value in shown.items():
            click.echo(f"{key}: {'' if value is None else value}")
    sys.exit(0 if outcome.error_code == 0 else 1)


# -- health ------------------------------------------------------------------------------
@main.command()
@click.option("--max-age", type=float, default=30.0, show_default=True,
              help="Seconds since the last heartbeat that still counts as alive.")
@click.option("--host", default=None, help="Worker host to check (default: this host).")
@pass_ctx
def health(c: Context, max_age: float, host: Optional[str]) -> None:
    """Exit 0 if a RUNNING worker on this host beat within --max-age (liveness probes)."""
    import socket
    c.setup_logging("ERROR")
    host = host or socket.gethostname()
    database = c.db()
    try:
        rows = [r for r in database.run("heartbeat_rows") if r["host"] == host[:255]]
    except Exception as exc:
        click.echo(f"UNHEALTHY: database unreachable: {exc}")
        sys.exit(1)
    finally:
        database.close()
    alive = [r for r in rows if r["status"] == "RUNNING" and float(r["age_seconds"]) <= max_age]
    if alive:
        ages = ", ".join(f"{r['worker_id']} {float(r['age_seconds']):.0f}s "
                         f"(gateway {r.get('gateway_kind') or '?'})" for r in alive)
        click.echo(f"OK: {ages}")
        fake = sorted({r["worker_id"] for r in alive if r.get("gateway_kind") in ("sandbox", "noop")})
        if fake:  # alive, but answering from a fake centre: say so on the probe's output too
            click.echo(f"WARNING: FAKE CENTRE (gateway.kind sandbox/noop): {', '.join(fake)}")
        sys.exit(0)
    click.echo(f"UNHEALTHY: no RUNNING worker on {host} beat within {max_age:.0f}s")
    sys.exit(1)


# -- monitoring --------------------------------------------------------------------------
def _emit(data, as_json: bool, render, tz=None, unmask: bool = False) -> None:
    """Print a result: personal data masked, database times in display.timezone."""
    from mi_worker.display import localize
    from mi_worker.masking import mask_data
    if not unmask:
        data = mask_data(data)
    if tz is not None:
        data = localize(data, tz, for_json=as_json)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, default=str, indent=2))
    else:
        click.echo(render(data))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(c: Context, as_json: bool) -> None:
    """Workers, queue, last-hour figures and open alerts."""
    from mi_worker import monitor
    c.setup_logging("ERROR")
    database = c.db()
    try:
        data = monitor.status(database)
    finally:
        database.close()

    def render(d) -> str:
        perf = d["performance"][0] if d["performance"] else {}
        parts = monitor.gateway_warnings(d.get("gateways", [])) + [
            "Workers",
            monitor.table(d["health"], ["worker_id", "host", "status", "gateway_kind",
                                        "seconds_since_heartbeat", "in_flight",
                                        "processed_total"]),
            "\nQueue (open requests)",
            monitor.table(d["queue"], ["status", "priority", "depth", "oldest_age_seconds"]),
            "\nLast hour",
            monitor.table([perf], ["total_requests", "success_count", "error_count",
                                   "timeout_count", "uncertain_count", "success_rate",
                                   "avg_response_time_ms", "p95_response_time_ms",
                                   "max_response_time_ms"]),
            "\nInterfaces (last hour)",
            monitor.table(d["interfaces"], ["interface_code", "interface_name", "total_calls",
                                            "success_rate", "avg_response_time_ms",
                                            "p95_response_time_ms"]),
            "\nOpen alerts",
            monitor.table(d["alerts"], ["alert_id", "alert_type", "alert_level", "raised_at",
                                        "alert_message"]),
        ]
        return "\n".join(parts)
    _emit(data, as_json, render, c.tz)


@main.command("monitor")
@click.argument("data_type", type=click.Choice(["health", "performance", "interfaces", "queue",
                                                "workers"]))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def monitor_cmd(c: Context, data_type: str, as_json: bool) -> None:
    """What sp_get_medical_insurance_monitor_data returns for DATA_TYPE."""
    from mi_worker import monitor
    c.setup_logging("ERROR")
    database = c.db()
    try:
        data = monitor.monitor(database, data_type)
    finally:
        database.close()
    _emit(data, as_json, lambda d: monitor.table(d, list(d[0].keys()) if d else []), c.tz)


@main.command()
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved alerts.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def alerts(c: Context, include_resolved: bool, as_json: bool) -> None:
    """Open alerts (raised by the alert scan job)."""
    from mi_worker import monitor
    c.setup_logging("ERROR")
    database = c.db()
    try:
        data = monitor.alerts(database, include_resolved)
    finally:
        database.close()
    _emit(data, as_json, lambda d: monitor.table(d, ["alert_id", "alert_type", "alert_level",
                                                     "raised_at", "resolved_at",
                                                     "alert_message"]), c.tz)


@main.command()
@click.option("--textfile", type=click.Path(dir_okay=False), default=None,
              help="Write atomically to this file (node_exporter textfile collector).")
@pass_ctx
def metrics(c: Context, textfile: Optional[str]) -> None:
    """Prometheus text exposition: counters, latency histogram, queue and worker gauges."""
    from mi_worker import metrics as m
    c.setup_logging("ERROR")
    database = c.db()
    try:
        text = m.render(database, c.settings.jobs.heartbeat_stale_seconds)
    finally:
        database.close()
    if textfile:
        try:
            m.write_textfile(text, textfile)
        except OSError as exc:
            raise UserError(f"cannot write the metrics file {textfile}: {exc.strerror or exc}",
                            "choose a --textfile path in a directory this user can write",
                            EXIT_USAGE) from None
    else:
        click.echo(text, nl=False)


@main.group()
def requests() -> None:
    """Inspect and resolve request rows."""


@requests.command("list")
@click.option("--status", "status_", default=None, help="e.g. NEEDS_MANUAL, UNCERTAIN.")
@click.option("--interface", "interface_code", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def requests_list(c: Context, status_: Optional[str], interface_code: Optional[str], limit: int,
                  as_json: bool) -> None:
    """Newest requests first."""
    from mi_worker import monitor
    c.setup_logging("ERROR")
    database = c.db()
    try:
        data = monitor.rows(database.run("list_requests", status=status_ and status_.upper(),
                                         interface_code=interface_code, limit_rows=limit))
    finally:
        database.close()
    # personal data stays masked on a shared terminal (_emit masks every value)
    _emit(data, as_json, lambda d: monitor.table(d, ["request_id", "interface_code", "status",
                                                     "psn_no", "attempts", "request_time",
                                                     "error_message"]), c.tz)


@requests.command("show")
@click.argument("request_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.option("--unmask", is_flag=True, help="Show personal data in full (the HIS row keeps it "
              "anyway); logged with your OS user.")
@pass_ctx
def requests_show(c: Context, request_id: int, as_json: bool, unmask: bool) -> None:
    """One request with its reversal rows (personal data masked unless --unmask)."""
    from mi_worker import monitor
    c.setup_logging("ERROR")
    if unmask:
        _audit_unmask(request_id)
    database = c.db()
    try:
        row = database.run_one("get_request", request_id=request_id)
        children = database.run("find_children", parent_request_id=request_id)
    finally:
        database.close()
    if not row:
        raise click.ClickException(f"request {request_id} not found")
    data = {**monitor.rows([row])[0], "reversals": monitor.rows(children)}

    def render(d) -> str:
        lines = [f"{k:20} {v}" for k, v in d.items() if k != "reversals"]
        lines.append("reversals:")
        lines.append(monitor.table(d["reversals"], ["request_id", "interface_code", "status",
                                                    "error_message"]))
        return "\n".join(lines)
    _emit(data, as_json, render, c.tz, unmask=unmask)


def _audit_unmask(request_id: Optional[int], command: str = "requests show") -> None:
    """Who looked at a patient's data in full, in the log (file and stderr) whatever the level."""
    import getpass
    import logging
    import socket
    audit = logging.getLogger("mi_worker.audit")
    audit.setLevel(logging.INFO)
    try:
        user = getpass.getuser()
    except Exception:  # no login name (some service accounts)
        user = "unknown"
    audit.warning("%s %s --unmask by OS user %s on %s: personal data shown in full", command,
                  request_id, user, socket.gethostname())


@requests.command("resolve")
@click.argument("request_id", type=int)
@click.option("--note", required=True, help="What was checked and done (kept on the row).")
@click.option("--by", "resolved_by", default=None, help="Operator name (default: OS user).")
@pass_ctx
def requests_resolve(c: Context, request_id: int, note: str, resolved_by: Optional[str]) -> None:
    """Record the manual settlement of a NEEDS_MANUAL (or UNCERTAIN) row."""
    import getpass
    c.setup_logging("ERROR")
    database = c.db()
    try:
        done = database.run("resolve_request", request_id=request_id, note=note,
                            resolved_by=resolved_by or getpass.getuser())
    finally:
        database.close()
    if not done:
        raise click.ClickException(f"request {request_id} is not an unresolved NEEDS_MANUAL or "
                                   "UNCERTAIN row")
    click.echo(f"request {request_id} resolved")


@main.command()
@click.option("--date", "day", default=None, help="China calendar day YYYY-MM-DD "
                                                  "(default: yesterday).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def reconcile(c: Context, day: Optional[str], as_json: bool) -> None:
    """对账: send the day's settlement totals to the centre (3201); a worker must be running."""
    import datetime as dt

    from mi_worker import monitor
    from mi_worker import reconcile as rec
    c.setup_logging("WARNING")
    s = c.settings
    try:
        when = dt.date.fromisoformat(day) if day else rec.yesterday_china()
    except ValueError:
        raise click.BadParameter(f"{day!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-24",
                                 param_hint="--date") from None
    optins = rec.setl_optins(s)
    database = c.db()
    try:
        results = rec.reconcile(database, when, optins, extra_groups=s.jobs.reconcile_groups)
    finally:
        database.close()
    _emit(results, as_json, lambda d: monitor.table(d, ["stmt_date", "insutype", "clr_type",
                                                        "setl_cnt", "medfee_sumamt",
                                                        "stmt_rslt", "stmt_rslt_dscr"]))
    if any(r["stmt_rslt"] != "0" for r in results):
        sys.exit(1)


# -- config ------------------------------------------------------------------------------
@main.group("config")
def config_group() -> None:
    """Inspect settings."""


@config_group.command("reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown table; README embeds it)."""
    click.echo(config.reference_markdown(), nl=False)


@config_group.command("check")
@pass_ctx
def config_check(c: Context) -> None:
    """Load and validate the settings; print where they came from."""
    s = c.settings
    c.check_gateway()
    click.echo(f"settings OK (from {s.source}); database {s.database.url.split(':', 1)[0]}, "
               f"gateway {s.gateway.kind}/{s.gateway.transport}")


# -- doctor ------------------------------------------------------------------------------
@main.command()
@click.option("--sign-in", "sign_in", is_flag=True,
              help="Also sign in for real (9001 with gateway.opter, then 9002).")
@click.option("--webhook", is_flag=True, help="Also send a test message to alerts.webhook_url.")
@click.option("--his-role", default="", help="Database role/login the HIS calls the procedure "
              "as (default: mi_his_caller_role on SQL Server, this login on PostgreSQL).")
@pass_ctx
def doctor(c: Context, sign_in: bool, webhook: bool, his_role: str) -> None:
    """Go-live preflight: config, database, schema, procedure, clock, gateway DNS/TCP/TLS.

    One line per check (in Chinese, with the config key names), ✗ with the fix; exit 1 when
    any check fails.
    """
    from mi_worker import doctor as doc
    try:  # secrets masked in any log line from the start (a bad config is a ✗ line below)
        secrets = config.load(c.config_path).secrets()
    except config.ConfigError:
        secrets = []
    logs.setup("ERROR", "", secrets)
    stream = click.get_text_stream("stdout")
    d = doc.Doctor(c.config_path, sign_in=sign_in, webhook=webhook, his_role=his_role,
                   report=lambda check: click.echo(doc.render(check, stream)))
    d.run()
    failed = [x.name for x in d.checks if x.ok is False]
    click.echo(f"\n{len(failed)} 项未通过: {', '.join(failed)}" if failed else "\n全部通过, 可以上线")
    sys.exit(1 if failed else 0)


def _register_optional() -> None:
    """Commands that live in their own modules."""
    from mi_worker.dashboard.cli import dashboard
    from mi_worker.sandbox.cli import sandbox
    main.add_command(sandbox)
    main.add_command(dashboard)


_register_optional()

if __name__ == "__main__":  # pragma: no cover
    main()
