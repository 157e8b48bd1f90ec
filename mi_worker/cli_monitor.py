"""`mi-worker health | status | monitor | alerts | metrics`: what ops and DBAs read."""
from __future__ import annotations

import socket
import sys
from typing import Optional

import click

from mi_worker import metrics as m
from mi_worker import monitor
from mi_worker.cli_context import QUIET, Context, emit, pass_ctx
from mi_worker.cli_errors import EXIT_USAGE, UserError


# -- health ------------------------------------------------------------------------------
@click.command()
@click.option("--max-age", type=float, default=30.0, show_default=True,
              help="Seconds since the last heartbeat that still counts as alive.")
@click.option("--host", default=None, help="Worker host to check (default: this host).")
@pass_ctx
def health(c: Context, max_age: float, host: Optional[str]) -> None:
    """Exit 0 if a RUNNING worker on this host beat within --max-age (liveness probes)."""
    c.setup_logging(QUIET)
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(c: Context, as_json: bool) -> None:
    """Workers, queue, last-hour figures and open alerts."""
    c.setup_logging(QUIET)
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
    emit(data, as_json, render, c.tz)


@click.command("monitor")
@click.argument("data_type", type=click.Choice(["health", "performance", "interfaces", "queue",
                                                "workers"]))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def monitor_cmd(c: Context, data_type: str, as_json: bool) -> None:
    """What sp_get_medical_insurance_monitor_data returns for DATA_TYPE."""
    c.setup_logging(QUIET)
    database = c.db()
    try:
        data = monitor.monitor(database, data_type)
    finally:
        database.close()
    emit(data, as_json, lambda d: monitor.table(d, list(d[0].keys()) if d else []), c.tz)


@click.command()
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved alerts.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def alerts(c: Context, include_resolved: bool, as_json: bool) -> None:
    """Open alerts (raised by the alert scan job)."""
    c.setup_logging(QUIET)
    database = c.db()
    try:
        data = monitor.alerts(database, include_resolved)
    finally:
        database.close()
    emit(data, as_json, lambda d: monitor.table(d, ["alert_id", "alert_type", "alert_level",
                                                     "raised_at", "resolved_at",
                                                     "alert_message"]), c.tz)


@click.command()
@click.option("--textfile", type=click.Path(dir_okay=False), default=None,
              help="Write atomically to this file (node_exporter textfile collector).")
@pass_ctx
def metrics(c: Context, textfile: Optional[str]) -> None:
    """Prometheus text exposition: counters, latency histogram, queue and worker gauges."""
    c.setup_logging(QUIET)
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
