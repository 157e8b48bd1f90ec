"""`mi-worker`: the one command ops and DBAs use (run, db upgrade, call, sandbox, status…)."""
from __future__ import annotations

import json
import sys
from typing import Optional

import click

from mi_worker import __version__, config, logs
from mi_worker import doctor as doc
from mi_worker.cli_async import result_cmd, submit_cmd
from mi_worker.cli_catalog import catalog_group
from mi_worker.cli_context import Context, audit_unmask, emit, pass_ctx
from mi_worker.cli_errors import (
    EXIT_CODES_HELP,
    EXIT_DATABASE,
    EXIT_USAGE,
    FriendlyGroup,
    UserError,
)
from mi_worker.cli_monitor import alerts, health, metrics, monitor_cmd, status
from mi_worker.cli_requests import reconcile, requests
from mi_worker.cli_workflows import registry, workflows
from mi_worker.dashboard import auth
from mi_worker.dashboard.cli import EXIT_REFUSED, dashboard, start_in_worker
from mi_worker.gateway import catalog
from mi_worker.his_call import call as his_call
from mi_worker.masking import mask_data
from mi_worker.retention import run_retention
from mi_worker.runner import SchemaNotReady, prepare_database
from mi_worker.runner import run as run_worker
from mi_worker.sandbox.cli import sandbox
from mi_worker.workflows.contract import call_workflow


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
    emit(result, as_json, lambda r: (
        f"{r['moved']} row(s) older than {r['retention_days']} days "
        f"{'archived' if r['mode'] == 'archive' else 'deleted'} in {r['batches']} batch(es), "
        f"{r['seconds']}s" + ("" if r["done"] else "; more left (run again)")))


# -- call --------------------------------------------------------------------------------
@main.command()
@click.argument("interface_code", required=False)
@click.option("--workflow", default=None, help="Run a settlement workflow (see `mi-worker "
              "workflows`) instead of one interface; request_id is then the workflow id.")
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
         psn_no: Optional[str], poll_ms: int, as_json: bool, unmask: bool = False,
         workflow: Optional[str] = None) -> None:
    """Enqueue one call (or run one --workflow) and wait, exactly as the HIS procedure does;
    exit 1 on error."""
    c.setup_logging("WARNING")
    if (interface_code is None) == (workflow is None):
        raise click.UsageError("give an INTERFACE_CODE or --workflow NAME (one of them)")
    defs = registry(c) if workflow else {}
    database = c.db()
    try:
        if workflow:
            outcome = call_workflow(database, defs, workflow, input_data, timeout,
                                    idempotency_key=idempotency_key, his_fee_id=his_fee_id,
                                    psn_no=psn_no, poll_ms=poll_ms)
        else:
            outcome = his_call(database, interface_code, input_data, timeout, retry_count,
                               priority=priority, idempotency_key=idempotency_key,
                               his_fee_id=his_fee_id, psn_no=psn_no, poll_ms=poll_ms)
    finally:
        database.close()
    shown = outcome.as_dict()
    if unmask:
        audit_unmask(shown["request_id"], "call")
    else:  # the result JSON and the centre's err_msg carry names and ID numbers
        shown = mask_data(shown)
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False))
    else:
        for key, value in shown.items():
            click.echo(f"{key}: {'' if value is None else value}")
    sys.exit(0 if outcome.error_code == 0 else 1)


# -- monitoring --------------------------------------------------------------------------
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


for command in (health, status, monitor_cmd, alerts, metrics, requests, reconcile, sandbox,
                dashboard, submit_cmd, result_cmd, catalog_group, workflows):
    main.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    main()
