"""The PostgreSQL ODBC driver name per platform / installed drivers, and odbcinst.ini logging."""
from __future__ import annotations

import pyodbc

from mi_worker.db import odbcinst
from mi_worker.db.postgresql import odbc_string


def test_driver_name_follows_the_platform():
    assert odbcinst.platform_default_driver("Windows", True) == "PostgreSQL Unicode(x64)"
    assert odbcinst.platform_default_driver("Windows", False) == "PostgreSQL Unicode(x86)"
    assert odbcinst.platform_default_driver("Linux", True) == "PostgreSQL Unicode"


def test_driver_found_among_installed():
    pick = odbcinst.pick_postgres_driver
    assert pick(["SQL Server", "PostgreSQL Unicode(x64)", "PostgreSQL ANSI(x64)"],
                "Windows") == "PostgreSQL Unicode(x64)"
    assert pick(["PostgreSQL", "ODBC Driver 18 for SQL Server"], "Linux") == "PostgreSQL"
    assert pick(["KingbaseES Postgres ODBC"], "Linux") == "KingbaseES Postgres ODBC"
    assert pick([], "Windows") == "PostgreSQL Unicode(x64)"  # the error then names it


def test_this_machines_driver_is_used_without_driver_in_the_url():
    installed = pyodbc.drivers()
    chosen = odbcinst.default_postgres_driver()
    assert chosen in installed or not any("PostgreSQL" in d for d in installed)
    assert f"DRIVER={{{chosen}}}" in odbc_string("postgresql://u@h:5432/db")
    assert "DRIVER={PostgreSQL Unicode(x64)}" in odbc_string(
        "postgresql://u@h:5432/db?driver=PostgreSQL+Unicode(x64)")


def test_driver_logging_read_from_odbcinst_ini(tmp_path):
    ini = tmp_path / "odbcinst.ini"
    ini.write_text("[PostgreSQL Unicode]\nDriver=psqlodbcw.so\nDebug=0\nCommLog=1\n\n"
                   "[Other]\nCommLog=1\n", encoding="utf-8")
    assert odbcinst.driver_logging("PostgreSQL Unicode", ini) == {"CommLog": "1"}
    assert odbcinst.driver_logging("Missing", ini) == {}
    assert odbcinst.odbcinst_path({"ODBCSYSINI": str(tmp_path)}) == ini


def test_missing_driver_error_names_what_to_install():
    import pytest

    from mi_worker.db.postgresql import PostgreSQLDialect
    dialect = PostgreSQLDialect("postgresql://postgres@127.0.0.1:5432/postgres"
                                "?driver=No+Such+Driver")
    with pytest.raises(pyodbc.Error) as info:
        dialect.connect()
    text = str(info.value)
    assert "'No Such Driver' is not installed here" in text and "?driver=" in text
    assert "installed: " in text and "PostgreSQL Unicode" in text
