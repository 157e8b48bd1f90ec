"""`mi-worker dashboard`: serve the read-only web dashboard (loopback unless credentials)."""
from __future__ import annotations

import os
import sys
from typing import Optional

import click

from mi_worker import logs
from mi_worker.dashboard import auth
from mi_worker.dashboard.server import DEFAULT_HOST, DEFAULT_PORT, DashboardServer, open_read_only

EXIT_REFUSED = 2


@click.command("dashboard")
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to bind; anything but loopback needs MI_WORKER_DASHBOARD_TOKEN "
                   "or MI_WORKER_DASHBOARD_USER/PASSWORD.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--database-url", envvar="MI_WORKER_DASHBOARD_DATABASE_URL", default=None,
              help="A read-only login's URL (default: database.url); or "
                   "MI_WORKER_DASHBOARD_DATABASE_URL.")
@click.pass_obj
def dashboard(c, host: str, port: int, database_url: Optional[str]) -> None:
    """Serve the read-only web dashboard (中文 by default, English switch)."""
    try:
        creds = auth.from_env()
        auth.check_bind(host, creds)
    except auth.AuthConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_REFUSED)
    s = c.settings
    logs.setup(s.logging.level, s.logging.file, list(s.secrets()) + creds.secrets()
               + ([database_url] if database_url else []))
    try:
        db = open_read_only(database_url or s.database.url, s)
    except (RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        server = DashboardServer(db, s, host, port, creds)
    except OSError as exc:
        raise click.ClickException(f"cannot bind {host}:{port}: {exc}") from None
    click.echo(f"mi-worker dashboard on {server.url} (read-only; Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.close()
        db.close()


def start_in_worker(settings, port: int, host: str = DEFAULT_HOST):
    """For `mi-worker run --dashboard-port`: the dashboard on a thread of the worker process.

    Raises auth.AuthConfigError for a refused bind (the caller exits 2)."""
    creds = auth.from_env()
    auth.check_bind(host, creds)
    db = open_read_only(os.environ.get("MI_WORKER_DASHBOARD_DATABASE_URL")
                        or settings.database.url, settings)
    return DashboardServer(db, settings, host, port, creds).start(), db
