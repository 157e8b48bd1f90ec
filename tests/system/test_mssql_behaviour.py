"""The SQL Server run-first checklist (tsql-review.md §6) as tests, for the first machine with
Docker: each test makes its own database on a SQL Server 2022 container (testcontainers,
conftest.mssql_server) and calls the HIS procedure the way a HIS does, raw pyodbc with the
session settings under test. Without Docker or the Microsoft ODBC driver every test here
skips, with the reason (the T-SQL is then checked statically by test_tsql_parse.py and
test_tsql_semantics.py).

Covered: RCSI on and off; callers with ANSI_WARNINGS/ARITHABORT OFF, IMPLICIT_TRANSACTIONS
ON, inside BEGIN TRAN (-1006), READ UNCOMMITTED and SNAPSHOT isolation, LOCK_TIMEOUT 0; a
supplementary-character-aware (_SC) database; blank idempotency keys; grants surviving an
upgrade over the seed's procedure (D2); two hosts upgrading an empty database at once (D8);
the table hints of the claim (S1); ONLINE rebuilds of 005 (D7, D10); four workers draining
20,000 rows with no short claim while the queue is full (D1); the psn_no search order (D14);
one cached plan per statement whatever the string lengths (S3).
"""
from __future__ import annotations

import contextlib
import json
import threading
import uuid
from typing import Iterator, List

import pytest

from conftest import InProcessWorker, make_settings

CALL_BATCH = (
    "DECLARE @rid BIGINT, @res NVARCHAR(MAX), @ec INT, @em NVARCHAR(500); "
    "EXEC dbo.sp_medical_insurance_call_v2 @interface_code = ?, @input_data = ?, "
    "@timeout = ?, @retry_count = 3, @request_id = @rid OUTPUT, @result = @res OUTPUT, "
    "@error_code = @ec OUTPUT, @error_message = @em OUTPUT, @idempotency_key = ?; "
    "SELECT @rid, @res, @ec, @em;")
INPUT = json.dumps({"data": {"psn_no": "P1", "insuplc_admdvs": "110000"}})


def _pyodbc():
    from mi_worker.db.odbc import import_pyodbc
    return import_pyodbc()


def _odbc(url: str):
    from mi_worker.db.mssql import odbc_string
    return _pyodbc().connect(odbc_string(url), autocommit=True, timeout=10)


@pytest.fixture
def new_db(mssql_server) -> Iterator:
    """make(options="", upgrade=True) -> URL of a fresh database, dropped afterwards."""
    made: List[str] = []
    master = _odbc(mssql_server)

    def make(create_options: str = "", alter: str = "", upgrade: bool = True) -> str:
        from mi_worker.db import connect
        from mi_worker.db.migrate import upgrade as run_upgrade
        from mi_worker.runner import sync_catalog
        name = f"mi_b_{uuid.uuid4().hex[:10]}"
        master.cursor().execute(f"CREATE DATABASE [{name}] {create_options}")
        made.append(name)
        for stmt in filter(None, alter.split(";")):
            master.cursor().execute(stmt.replace("{db}", f"[{name}]"))
        url = mssql_server.replace("/master?", f"/{name}?")
        if upgrade:
            db = connect(url)
            run_upgrade(db)
            sync_catalog(db)
            db.close()
        return url

    yield make
    for name in made:
        with contextlib.suppress(Exception):
            master.cursor().execute(f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK "
                                    f"IMMEDIATE; DROP DATABASE [{name}]")
    master.close()


def _call(url: str, session_sql: str = "", code: str = "1101", data: str = INPUT,
          timeout: int = 20, key=None):
    conn = _odbc(url)
    try:
        cur = conn.cursor()
        for stmt in filter(None, session_sql.split(";")):
            cur.execute(stmt)
        cur.execute(CALL_BATCH, [code, data, timeout, key])
        while cur.description is None and cur.nextset():
            pass
        return tuple(cur.fetchone())
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        conn.close()


@pytest.mark.parametrize("rcsi", ["OFF", "ON"])
def test_call_and_claim_hints_with_rcsi(new_db, sandbox, rcsi):
    url = new_db(alter=f"ALTER DATABASE {{db}} SET READ_COMMITTED_SNAPSHOT {rcsi}")
    conn = _odbc(url)
    conn.cursor().execute("SELECT TOP (1) 1 FROM dbo.medical_insurance_requests "
                          "WITH (UPDLOCK, ROWLOCK, READPAST, READCOMMITTEDLOCK)")  # S1
    conn.close()
    with InProcessWorker(make_settings(url, sandbox)):
        rid, result, code, message = _call(url)
    assert code == 0, message
    assert json.loads(result)["output"]["baseinfo"]["psn_no"] == "P1"


@pytest.mark.parametrize("session", [
    "SET ANSI_WARNINGS OFF; SET ARITHABORT OFF",
    "SET IMPLICIT_TRANSACTIONS ON",
    "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
    "SET TRANSACTION ISOLATION LEVEL SNAPSHOT",
    "SET LOCK_TIMEOUT 0",
])
def test_caller_session_settings_do_not_change_the_answer(new_db, sandbox, session):
    url = new_db(alter="ALTER DATABASE {db} SET ALLOW_SNAPSHOT_ISOLATION ON")
    with InProcessWorker(make_settings(url, sandbox)):
        for _ in range(5):  # LOCK_TIMEOUT 0: polls meet the worker's result writes
            rid, _, code, message = _call(url, session)
            assert code == 0, (session, message)


def test_inside_a_transaction_is_1006(new_db):
    url = new_db()
    conn = _odbc(url)
    cur = conn.cursor()
    cur.execute("BEGIN TRANSACTION")
    cur.execute(CALL_BATCH, ["1101", INPUT, 5, None])
    while cur.description is None and cur.nextset():
        pass
    rid, _, code, _ = cur.fetchone()
    cur.execute("ROLLBACK TRANSACTION")
    conn.close()
    assert code == -1006 and rid is None


def test_supplementary_characters_under_an_sc_collation(new_db, sandbox):
    url = new_db(create_options="COLLATE Latin1_General_100_CI_AS_SC")
    data = json.dumps({"data": {"psn_name": "\U00020000三", "psn_no": "P1"}}, ensure_ascii=False)
    conn = _odbc(url)
    assert conn.cursor().execute("SELECT dbo.fn_mi_json_text(?, N'psn_no')", data) \
        .fetchone()[0] == "P1"
    conn.close()
    with InProcessWorker(make_settings(url, sandbox)):
        rid, _, code, message = _call(url, data=data)
    assert code == 0, message  # a false -1001 "not a JSON object" before D3


# D14: the occurrence PostgreSQL's procedure takes (data.psn_no, then a top-level psn_no,
# then a nested one), and numbers read like strings (011_psn_no_search.sql).
PSN_CASES = [
    ('{"data":{"psn_no":"A"}}', "A"),
    ('{"x":{"psn_no":"N"},"psn_no":"T","data":{"y":{"psn_no":"Q"}, "psn_no": 123}}', "123"),
    ('{"x":{"psn_no":"N"},"psn_no":"T"}', "T"),
    ('{"note":"psn_no","psn_no":"Z"}', "Z"),
    ('{"data":{"feedetail":[{"psn_no":"F"}],"psn_no":"D"}}', "D"),
    ('{"input":{"data":{"psn_no":"deep"}}}', "deep"),
    ('{"data" : {\n "k":1, "psn_no" : "S" }}', "S"),
    ('{"psn_no":null}', None),
]


def test_psn_no_search_order_matches_postgresql(new_db):
    conn = _odbc(new_db())
    try:
        for text, want in PSN_CASES:
            got = conn.cursor().execute("SELECT dbo.fn_mi_json_text(?, N'psn_no')", text) \
                .fetchone()[0]
            assert got == want, text
    finally:
        conn.close()


def test_blank_keys_are_no_keys(new_db, sandbox):
    url = new_db()
    with InProcessWorker(make_settings(url, sandbox)):
        first = _call(url, key="")
        second = _call(url, key="  ", data=json.dumps({"data": {"psn_no": "P2"}}))
    assert first[2] == second[2] == 0 and first[0] != second[0]
    assert json.loads(second[1])["output"]["baseinfo"]["psn_no"] == "P2"


def test_grants_survive_an_upgrade_over_the_seed(new_db, mssql_server):
    """D2: the seed's procedure with EXECUTE granted to a HIS user directly; after `db
    upgrade` (stub + ALTER) the grant is still there."""
    from mi_worker.db import connect
    from mi_worker.db.migrate import upgrade
    url = new_db(upgrade=False)
    login = f"his_{uuid.uuid4().hex[:8]}"
    conn = _odbc(url)
    cur = conn.cursor()
    cur.execute("CREATE PROCEDURE dbo.sp_medical_insurance_call_v2 @x INT = 0 AS RETURN 0;")
    cur.execute(f"CREATE USER {login} WITHOUT LOGIN")
    cur.execute(f"GRANT EXECUTE ON OBJECT::dbo.sp_medical_insurance_call_v2 TO {login}")
    db = connect(url)
    upgrade(db)
    db.close()
    granted = cur.execute(
        "SELECT COUNT(*) FROM sys.database_permissions AS p "
        "JOIN sys.database_principals AS u ON u.principal_id = p.grantee_principal_id "
        "WHERE p.major_id = OBJECT_ID(N'dbo.sp_medical_insurance_call_v2') "
        "AND p.permission_name = N'EXECUTE' AND u.name = ?", login).fetchone()[0]
    params = cur.execute("SELECT COUNT(*) FROM sys.parameters WHERE object_id = "
                         "OBJECT_ID(N'dbo.sp_medical_insurance_call_v2')").fetchone()[0]
    conn.close()
    assert granted == 1 and params == 14


def test_two_hosts_upgrade_an_empty_database_at_once(new_db):
    from mi_worker.db import connect
    from mi_worker.db.migrate import upgrade
    from mi_worker.runner import sync_catalog
    url = new_db(upgrade=False)
    errors: List[BaseException] = []
    barrier = threading.Barrier(2)

    def host() -> None:
        db = connect(url)
        try:
            barrier.wait()
            upgrade(db)
            sync_catalog(db)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=host) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    db = connect(url)
    versions = [int(r["version"]) for r in db.run("applied_migrations")]
    db.close()
    assert versions == sorted(set(versions)) and versions[-1] >= 5


def test_one_cached_plan_per_statement_whatever_the_string_lengths(new_db):
    """S3: the worker's fixed parameter types (mssql_params.py) give a statement one
    parameter declaration, so 40 messages of 40 lengths leave one cached plan, not 40."""
    from mi_worker.db import connect
    url = new_db()
    db = connect(url)
    try:
        for n in range(1, 41):
            db.run("log_error", request_id=n, error_code=-1999, error_message="m" * n * 7,
                   detail="d" * n)
    finally:
        db.close()
    conn = _odbc(url)
    plans = conn.cursor().execute(
        "SELECT COUNT(*) FROM sys.dm_exec_cached_plans AS p "
        "CROSS APPLY sys.dm_exec_sql_text(p.plan_handle) AS t "
        "WHERE t.text LIKE N'%INSERT INTO dbo.medical_insurance_error_log (request_id, "
        "error_code, error_message, detail)%' AND t.text NOT LIKE N'%dm_exec_cached_plans%'"
    ).fetchone()[0]
    conn.close()
    assert plans == 1, plans


def test_005_rebuilt_the_indexes(new_db):
    url = new_db()
    conn = _odbc(url)
    rows = conn.cursor().execute(
        "SELECT i.name, COL_NAME(ic.object_id, ic.column_id) FROM sys.indexes AS i "
        "JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id "
        "WHERE i.object_id = OBJECT_ID(N'dbo.medical_insurance_requests')").fetchall()
    collation = conn.cursor().execute(
        "SELECT collation_name FROM sys.columns WHERE object_id = "
        "OBJECT_ID(N'dbo.medical_insurance_requests') AND name = N'idempotency_key'").fetchone()[0]
    conn.close()
    cols = {(a, b) for a, b in rows}
    assert ("ix_mir_open_rows", "resolved_at") in cols
    assert ("ix_mir_claim", "request_time") in cols
    assert ("ux_mir_idempotency", "idempotency_key") in cols
    assert collation == "Latin1_General_BIN2"


def test_four_workers_drain_20000_rows_with_full_claims(new_db):
    from mi_worker.db import connect
    from mi_worker.queue import Queue
    url = new_db()
    total, batch, workers = 20000, 16, 4
    conn = _odbc(url)
    conn.cursor().execute(
        "WITH n AS (SELECT TOP (?) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS i "
        "FROM sys.all_objects AS a CROSS JOIN sys.all_objects AS b) "
        "INSERT INTO dbo.medical_insurance_requests (interface_code, input_data, deadline_at) "
        "SELECT '1101', N'{}', DATEADD(HOUR, 1, SYSUTCDATETIME()) FROM n", total)
    conn.close()
    sizes: List[List[int]] = [[] for _ in range(workers)]

    def drain(k: int) -> None:
        db = connect(url)
        q = Queue(db, f"w{k}", "H00000000000", 300)
        empty = 0
        while empty < 3:
            got = q.claim(batch)
            sizes[k].append(len(got))
            empty = empty + 1 if not got else 0
        db.close()

    threads = [threading.Thread(target=drain, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = sum(sum(s) for s in sizes)
    assert claimed == total
    # Short claims only at the very end (at most one per worker before its empty claims).
    short = sum(1 for s in sizes for n in s[:-3] if n < batch)
    assert short <= workers, f"{short} short claims while the queue was full (D1)"
