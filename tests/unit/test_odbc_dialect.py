"""Raw ODBC connection strings: the dialect is said, never guessed from the driver name
(issue 12: a KingbaseES or openGauss ODBC string used to get T-SQL)."""
from __future__ import annotations

import pytest

from mi_worker import config
from mi_worker.db import dialect_for

RAW_PG = "DRIVER={KingbaseES ODBC};SERVER=10.0.0.5;PORT=54321;DATABASE=his;UID=u;PWD={p}"
RAW_MS = "DRIVER={FreeTDS};SERVER=10.0.0.10;PORT=1433;DATABASE=his;UID=u;PWD={p};TDS_Version=7.4"


@pytest.mark.parametrize("url,dialect,want", [
    ("mssql+odbc://" + RAW_MS, "", "mssql"),
    ("postgresql+odbc://" + RAW_PG, "", "postgresql"),
    ("odbc://" + RAW_PG, "postgresql", "postgresql"),
    ("odbc://" + RAW_MS, "mssql", "mssql"),
    ("odbc://DRIVER={PostgreSQL Unicode};SERVER=x", "mssql", "mssql"),  # said wins, not the name
    (RAW_MS, "mssql", "mssql"),
    ("postgresql://u@h/db", "", "postgresql"),
    ("mssql+pyodbc://u:p@h:1433/db", "mssql", "mssql"),
])
def test_dialect_is_the_one_said(url, dialect, want):
    picked = dialect_for(url, 1, dialect)
    assert picked.name == want
    if "+odbc://" in url or url.startswith("odbc://") or "://" not in url:
        assert picked.url.startswith("odbc://DRIVER=")  # the raw string reaches the driver as is


@pytest.mark.parametrize("url,dialect,words", [
    ("odbc://" + RAW_PG, "", "does not say which SQL"),
    (RAW_MS, "", "does not say which SQL"),
    ("odbc://DRIVER={PostgreSQL Unicode and more};SERVER=x", "", "does not say which SQL"),
    ("odbc://" + RAW_MS, "oracle", "use mssql or postgresql"),
    ("mssql+odbc://" + RAW_MS, "postgresql", "but the URL says mssql"),
    ("postgresql://u@h/db", "mssql", "but the URL is postgresql"),
])
def test_unsaid_or_contradicting_dialect_is_refused(url, dialect, words):
    with pytest.raises(ValueError, match=words):
        dialect_for(url, 1, dialect)


@pytest.mark.parametrize("driver,want", [
    ("ODBC Driver 18 for SQL Server", "mssql"), ("ODBC Driver 17 for SQL Server", "mssql"),
    ("SQL Server", "mssql"), ("PostgreSQL Unicode", "postgresql"),
    ("PostgreSQL Unicode(x64)", "postgresql"),
])
def test_older_bare_strings_naming_a_known_driver_still_work(driver, want):
    """Compatibility: a bare odbc:// string of an older config keeps working when its driver
    is one whose SQL is certain; anything else must say its dialect."""
    assert dialect_for(f"odbc://DRIVER={{{driver}}};SERVER=h;DATABASE=d", 1).name == want


def test_config_refuses_a_raw_string_without_a_dialect():
    env = {"MI_WORKER_DATABASE_URL": "odbc://" + RAW_PG}
    with pytest.raises(config.ConfigError, match="database.dialect"):
        config.load(None, env=env)
    settings = config.load(None, env={**env, "MI_WORKER_DATABASE_DIALECT": "postgresql"})
    assert settings.database.dialect == "postgresql"


@pytest.mark.parametrize("var,value,key", [
    ("MI_WORKER_WORKER_LEASE_SECONDS", "2592000", "worker.lease_seconds"),
    ("MI_WORKER_JOBS_REVERSAL_TIMEOUT_SECONDS", "2592000", "jobs.reversal_timeout_seconds"),
    ("MI_WORKER_JOBS_HEARTBEAT_SECONDS", "20", "jobs.heartbeat_seconds"),
])
def test_config_bounds_what_sql_server_and_the_procedure_cannot_take(var, value, key):
    # 30 days of lease overflow SQL Server's INT milliseconds; a 20 s heartbeat leaves the
    # procedure's fixed 30 s window answering -1002 part of the time (tsql-review D12, D13).
    with pytest.raises(config.ConfigError, match=key.replace(".", r"\.")):
        config.load(None, env={var: value, "MI_WORKER_JOBS_HEARTBEAT_STALE_SECONDS": "60"})
