"""Review S8 (issue 12): `db upgrade` over a database that already holds a same-named table
from an earlier integration (the original document's seed error log has `stack_trace`, no
`detail`) stops at 001's preflight with the missing columns named — exit code 3, no
traceback, nothing half-built — and succeeds once the old table is moved aside. The real
PostgreSQL (SQL Server's 001 has the same preflight, parse-gated here)."""
from __future__ import annotations

import contextlib

import pytest
from test_cli_errors import assert_user_error, run_cli

SEED = """
CREATE TABLE medical_insurance_error_log (
    id serial PRIMARY KEY, request_id bigint, error_code integer, error_message text,
    stack_trace text, create_time timestamp DEFAULT now());
"""


@pytest.fixture
def seeded_pg(empty_pg_url):
    from mi_worker.db import connect
    db = connect(empty_pg_url)
    with contextlib.closing(db.raw()) as raw:
        raw.cursor().execute(SEED)
    db.close()
    return empty_pg_url


def test_upgrade_over_a_seed_table_stops_naming_its_missing_columns(seeded_pg):
    env = {"MI_WORKER_DATABASE_URL": seeded_pg}
    rc, out, _ = run_cli(["db", "upgrade"], env=env)
    assert_user_error(rc, out, 3, "medical_insurance_error_log.detail",
                      "medical_insurance_error_log.log_id", "Rename or migrate")
    assert "medical_insurance_requests." not in out  # only tables that exist are checked
    from mi_worker.db import connect
    db = connect(seeded_pg)
    try:
        with contextlib.closing(db.raw()) as raw:
            cur = raw.cursor()
            cur.execute("SELECT to_regclass('medical_insurance_requests') IS NULL")
            assert cur.fetchone()[0] is True  # 001 rolled back: nothing half-built
            cur.execute("ALTER TABLE medical_insurance_error_log RENAME TO seed_error_log")
    finally:
        db.close()
    rc, out, _ = run_cli(["db", "upgrade"], env=env)
    assert rc == 0, out
