"""ODBC driver registry facts: which PostgreSQL driver name exists here, and whether the
driver's own logging is switched on in odbcinst.ini.

Why the logging check: psqlODBC decides at driver load, from its section in odbcinst.ini
(``CommLog`` / ``Debug``), whether every process writes a ``psqlodbc_<prog>_<user><pid>.log``
into /tmp; the connection string's ``CommLog=0`` comes too late to stop the file being
created. Debian's odbc-postgresql package ships ``CommLog=1``. The fix belongs in
odbcinst.ini (deploy/scripts/psqlodbc-nolog.sh sets it); the worker warns once when it finds it on.
"""
from __future__ import annotations

import configparser
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Dict, Iterable, Optional

log = logging.getLogger("mi_worker.db")
_warned: set = set()

# The names psqlODBC registers: Debian/Ubuntu, the Windows x64 and x86 MSIs, RHEL's package.
KNOWN_POSTGRES_DRIVERS = ("PostgreSQL Unicode", "PostgreSQL Unicode(x64)", "PostgreSQL Unicode(x86)",
                          "PostgreSQL")


def platform_default_driver(system: Optional[str] = None, bits64: Optional[bool] = None) -> str:
    """The name psqlODBC's installer registers on this platform."""
    system = system or platform.system()
    bits64 = sys.maxsize > 2 ** 32 if bits64 is None else bits64
    if system == "Windows":
        return "PostgreSQL Unicode(x64)" if bits64 else "PostgreSQL Unicode(x86)"
    return "PostgreSQL Unicode"


def pick_postgres_driver(installed: Iterable[str], system: Optional[str] = None) -> str:
    """The installed PostgreSQL driver to use: the platform's name if installed, else any
    installed psqlODBC Unicode name, else any driver named like PostgreSQL, else the platform
    name (the connect error then names what to install)."""
    names = list(installed)
    preferred = platform_default_driver(system)
    if preferred in names:
        return preferred
    for name in KNOWN_POSTGRES_DRIVERS:
        if name in names:
            return name
    for name in names:
        if "postgres" in name.lower() and "ansi" not in name.lower():
            return name
    return preferred


def default_postgres_driver() -> str:
    try:
        import pyodbc
        return pick_postgres_driver(pyodbc.drivers())
    except Exception:  # no pyodbc or no driver manager: the connect error says more
        return platform_default_driver()


def odbcinst_path(env: Optional[Dict[str, str]] = None) -> Path:
    """The odbcinst.ini unixODBC reads: $ODBCSYSINI/$ODBCINSTINI, else /etc/odbcinst.ini."""
    env = os.environ if env is None else env
    folder = env.get("ODBCSYSINI") or "/etc"
    return Path(folder) / (env.get("ODBCINSTINI") or "odbcinst.ini")


def driver_logging(driver: str, path: Optional[Path] = None) -> Dict[str, str]:
    """The CommLog / Debug values set to non-zero in the driver's odbcinst.ini section."""
    path = path or odbcinst_path()
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keep the key names as written
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return {}
    if not parser.has_section(driver):
        return {}
    on = {}
    for key, value in parser.items(driver):
        if key.lower() in ("commlog", "debug") and value.strip() not in ("", "0"):
            on[key] = value.strip()
    return on


def warn_driver_logging(driver: str) -> None:
    """Warn once per driver when odbcinst.ini makes psqlODBC write its own log files."""
    if os.name == "nt" or driver in _warned:
        return
    _warned.add(driver)
    on = driver_logging(driver)
    if on:
        path = odbcinst_path()
        log.warning("psqlODBC logging is on in %s [%s] (%s): every process writes "
                    "/tmp/psqlodbc_*.log; set CommLog=0 and Debug=0 there "
                    "(sudo sh deploy/scripts/psqlodbc-nolog.sh does)", path, driver,
                    ", ".join(f"{k}={v}" for k, v in on.items()))
