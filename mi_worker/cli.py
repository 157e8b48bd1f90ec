"""`mi-worker`: the one command ops and DBAs use (run, db upgrade, call, sandbox, status…)."""
from __future__ import annotations

import json
import sys
from typing import Optional

import click

from mi_worker import __version__, config, logs


class Context:
    """Settings loaded once per invocation; a bad config is a clear error, not a traceback."""

    def __init__(self, config_path: Optional[str]) -> None:
        self.config_path = config_path
        self._settings: Optional[config.Settings] = None

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            try:
                self._settings = config.load(self.config_path)
            except config.ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings

    def setup_logging(self, level: Optional[str] = None) -> None:
        s = self.settings
        logs.setup(level or s.logging.level, s.logging.file, s.secrets(), s.logging.format)

    def db(self):
        from mi_worker.runner import open_database
        try:
            return open_database(self.settings)
        except (RuntimeError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              envvar="MI_WORKER_CONFIG", help="TOML settings file (or MI_WORKER_CONFIG).")
@click.version_option(__version__, prog_name="mi-worker")
@click.pass_context
def main(ctx: click.Context, config_path: Optional[str]) -> None:
    """mi-worker: runs HIS calls queued in the database against the NHSA gateway."""
    ctx.obj = Context(config_path)


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
@pass_ctx
def run(c: Context, threads: Optional[int], log_level: Optional[str],
        metrics_port: Optional[int], metrics_host: Optional[str]) -> None:
    """Run a worker until SIGTERM / Ctrl-C (graceful stop)."""
    from mi_worker.runner import SchemaNotReady
    from mi_worker.runner import run as run_worker
    if threads:
        c.settings.worker.threads = threads
    if metrics_port is not None:
        c.settings.metrics.port = metrics_port
    if metrics_host:
        c.settings.metrics.host = metrics_host
    c.setup_logging(log_level)
    try:
        sys.exit(run_worker(c.settings))
    except SchemaNotReady as exc:
        raise click.ClickException(str(exc)) from None


# -- db ----------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(c: Context) -> None:
    """Apply missing migrations (idempotent; safe from two hosts at once)."""
    from mi_worker.db.migrate import sync_catalog, upgrade
    c.setup_logging()
    database = c.db()
    try:
        applied = upgrade(database)
        n = sync_catalog(database)
    finally:
        database.close()
    click.echo(f"{database.name}: applied {applied or 'nothing (up to date)'}; "
               f"{n} interface names synced")


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
@pass_ctx
def call(c: Context, interface_code: str, input_data: str, timeout: int, retry_count: int,
         priority: int, idempotency_key: Optional[str], his_fee_id: Optional[str],
         psn_no: Optional[str], poll_ms: int, as_json: bool) -> None:
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
    if as_json:
        click.echo(json.dumps(outcome.as_dict(), ensure_ascii=False))
    else:
        for key, value in outcome.as_dict().items():
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
        ages = ", ".join(f"{r['worker_id']} {float(r['age_seconds']):.0f}s" for r in alive)
        click.echo(f"OK: {ages}")
        sys.exit(0)
    click.echo(f"UNHEALTHY: no RUNNING worker on {host} beat within {max_age:.0f}s")
    sys.exit(1)


# -- monitoring --------------------------------------------------------------------------
def _emit(data, as_json: bool, render) -> None:
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
        parts = [
            "Workers",
            monitor.table(d["health"], ["worker_id", "host", "status",
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
    _emit(data, as_json, render)


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
    _emit(data, as_json, lambda d: monitor.table(d, list(d[0].keys()) if d else []))


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
                                                     "alert_message"]))


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
            raise click.ClickException(f"cannot write --textfile {textfile}: {exc}") from None
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
    from mi_worker.masking import mask_value
    c.setup_logging("ERROR")
    database = c.db()
    try:
        data = monitor.rows(database.run("list_requests", status=status_ and status_.upper(),
                                         interface_code=interface_code, limit_rows=limit))
    finally:
        database.close()
    for r in data:  # personal data stays masked on a shared terminal
        r["psn_no"] = mask_value(r["psn_no"]) if r.get("psn_no") else r.get("psn_no")
    _emit(data, as_json, lambda d: monitor.table(d, ["request_id", "interface_code", "status",
                                                     "psn_no", "attempts", "request_time",
                                                     "error_message"]))


@requests.command("show")
@click.argument("request_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def requests_show(c: Context, request_id: int, as_json: bool) -> None:
    """One request with its reversal rows."""
    from mi_worker import monitor
    c.setup_logging("ERROR")
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
    _emit(data, as_json, render)


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
    when = dt.date.fromisoformat(day) if day else rec.yesterday_china()
    optins = s.jobs.reconcile_setl_optins or s.gateway.mdtrtarea_admvs or s.gateway.insuplc_admdvs
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
    click.echo(f"settings OK (from {s.source}); database {s.database.url.split(':', 1)[0]}, "
               f"gateway {s.gateway.kind}/{s.gateway.transport}")


def _register_optional() -> None:
    """Commands that live in their own modules."""
    from mi_worker.sandbox.cli import sandbox
    main.add_command(sandbox)


_register_optional()

if __name__ == "__main__":  # pragma: no cover
    main()
