"""The CLI's one top-level error handler: a person gets what failed, why, and what to do.

Any exception that reaches the top of a `mi-worker` command becomes one or two lines on
stderr and a documented exit code, never a traceback (``--debug`` or MI_WORKER_DEBUG=1 shows
it). The pattern is procrastinate's ``execute_command``: catch at the top, print the cause
chain, keep the traceback for whoever asks for it.

Exit codes (README "Exit codes", and ``mi-worker --help``):

    0  ok
    1  the call or check failed (call error_code ≠ 0, unhealthy, reconcile mismatch, other)
    2  usage or configuration error (bad option, bad config key, file not writable…)
    3  database unreachable, refused, missing, or without the mi-worker schema
    4  gateway unreachable
"""
from __future__ import annotations

import logging
from typing import Optional

import click

from mi_worker.config import ConfigError
from mi_worker.db import ConnectionLost, ConnectRefused, DatabaseError
from mi_worker.db.problems import advice, driver_message, location, permanent_kind
from mi_worker.masking import mask_personal, mask_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DATABASE, EXIT_GATEWAY = 0, 1, 2, 3, 4

EXIT_CODES_HELP = ("Exit codes: 0 ok; 1 the call or check failed; 2 usage or configuration "
                   "error; 3 database unreachable, refused or without schema; 4 gateway "
                   "unreachable. --debug shows the traceback of an error.")

_SCHEMA_WORDS = ("no such table", "relation \"", "invalid object name", "could not find stored "
                 "procedure", "procedure sp_", "function mi_", "no mi-worker schema",
                 "missing migrations", "does not exist")


class UserError(click.ClickException):
    """An error meant for a person: ``message`` (what failed: cause) and ``hint`` (what to do)."""

    def __init__(self, message: str, hint: str = "", exit_code: int = EXIT_FAILED) -> None:
        text = mask_personal(mask_url(message))
        super().__init__(text + (f"\n  → {hint}" if hint else ""))
        self.exit_code = exit_code


def _chain(exc: BaseException) -> str:
    """The exception and its causes as one line (the traceback is for --debug).

    When the root cause is a driver error (pyodbc, sqlite3), its cleaned text is the whole
    story: the wrappers above it only repeat it.
    """
    root, hops = exc, 0
    while root.__cause__ is not None and root.__cause__ is not root and hops < 20:
        root, hops = root.__cause__, hops + 1
    if type(root).__module__.startswith(("pyodbc", "sqlite3")):
        return driver_message(root)[:600]
    parts, seen = [], set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = " ".join(str(current).split()) or type(current).__name__
        if not any(text in p for p in parts):
            parts.append(text)
        current = current.__cause__ or current.__context__
    return "; ".join(parts)[:600]


def explain(exc: BaseException, database_url: str = "") -> UserError:
    """Map any exception to a UserError with the right exit code and advice."""
    if isinstance(exc, UserError):
        return exc
    where = location(database_url) if database_url else "the configured database"
    cause = _chain(exc)
    if isinstance(exc, ConfigError):
        return UserError(f"configuration error: {exc}", "fix the key named above (`mi-worker "
                         "config check` validates the file)", EXIT_USAGE)
    if isinstance(exc, ConnectRefused):
        return UserError(f"database {exc.where} refused the connection: {cause}",
                         advice(exc.kind, exc.where), EXIT_DATABASE)
    if isinstance(exc, ConnectionLost):
        return UserError(f"database {where} unreachable: {cause}", advice("unreachable", where),
                         EXIT_DATABASE)
    type_name = type(exc).__module__ + "." + type(exc).__name__
    is_driver_error = type_name.startswith(("pyodbc.", "sqlite3."))
    if isinstance(exc, DatabaseError) or is_driver_error:
        kind = permanent_kind(exc)
        lowered = cause.lower()
        if kind == "no_database" and any(w in lowered for w in ("relation \"", "procedure",
                                                               "function", "no such table")):
            kind = None
        if kind:
            return UserError(f"cannot use database {where}: {cause}", advice(kind, where),
                             EXIT_DATABASE)
        if any(w in lowered for w in ("connection refused", "could not connect", "timeout",
                                      "08001", "08s01", "unable to open database")):
            return UserError(f"database {where} unreachable: {cause}",
                             advice("unreachable", where), EXIT_DATABASE)
        if any(w in lowered for w in _SCHEMA_WORDS):
            return UserError(f"database {where} has no (current) mi-worker schema: {cause}",
                             "run `mi-worker db upgrade` against this database (as its owner)",
                             EXIT_DATABASE)
        return UserError(f"database error on {where}: {cause}", "", EXIT_DATABASE)
    if type_name.startswith(("httpx.", "httpcore.")) or isinstance(exc, ConnectionError):
        return UserError(f"gateway unreachable: {cause}", "check gateway.url, the 医保专网 "
                         "route and the TLS settings", EXIT_GATEWAY)
    if isinstance(exc, UnicodeError):
        return UserError(f"text that is not valid UTF-8: {cause}",
                         "save files as UTF-8 and pass arguments as UTF-8", EXIT_USAGE)
    if isinstance(exc, OSError):
        return UserError(f"{type(exc).__name__}: {cause}", "", EXIT_FAILED)
    return UserError(f"unexpected error ({type(exc).__name__}): {cause}",
                     "run again with --debug for the traceback and report it", EXIT_FAILED)


class FriendlyGroup(click.Group):
    """A click group whose commands never end in a traceback (unless --debug)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException, SystemExit,
                KeyboardInterrupt):
            raise
        except Exception as exc:
            obj = ctx.obj
            if getattr(obj, "debug", False):
                raise
            url = ""
            try:
                settings = getattr(obj, "_settings", None)
                url = settings.database.url if settings is not None else ""
            except Exception:
                url = ""
            error = explain(exc, url)
            logging.getLogger("mi_worker.cli").debug("command failed", exc_info=exc)
            raise error from None
