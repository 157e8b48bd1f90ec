"""What every `mi-worker` command shares: the settings of this invocation, the database of a
one-shot command, and how a result is printed (masked, in the display zone)."""
from __future__ import annotations

import getpass
import json
import logging
import socket
from pathlib import Path
from typing import Optional

import click

from mi_worker import config, logs
from mi_worker.cli_errors import EXIT_DATABASE, EXIT_USAGE, UserError
from mi_worker.db.problems import location
from mi_worker.display import localize, zone
from mi_worker.masking import mask_data
from mi_worker.runner import open_database

#: The log level of one-shot commands: their output is the answer, log lines only errors.
QUIET = "ERROR"


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
            raise UserError(str(exc), "", EXIT_USAGE) from None

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
        return zone(self.settings.display.timezone)


def _require_sqlite_file(s: config.Settings) -> None:

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


def emit(data, as_json: bool, render, tz=None, unmask: bool = False) -> None:
    """Print a result: personal data masked, database times in display.timezone."""
    if not unmask:
        data = mask_data(data)
    if tz is not None:
        data = localize(data, tz, for_json=as_json)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, default=str, indent=2))
    else:
        click.echo(render(data))


def audit_unmask(request_id: Optional[int], command: str = "requests show") -> None:
    """Who looked at a patient's data in full, in the log (file and stderr) whatever the level."""
    audit = logging.getLogger("mi_worker.audit")
    audit.setLevel(logging.INFO)
    try:
        user = getpass.getuser()
    except Exception:  # no login name (some service accounts)
        user = "unknown"
    audit.warning("%s %s --unmask by OS user %s on %s: personal data shown in full", command,
                  request_id, user, socket.gethostname())
