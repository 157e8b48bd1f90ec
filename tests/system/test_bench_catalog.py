"""The bench's catalogue scenario (bench/scenarios/catalog.py), its --quick path on SQLite:
the real sandbox process over loopback, a real `mi-worker run` process sending the 13xx
queries, the catalogue loaded by catalog_sync. No speed is asserted, only that it measured
something and that the rows are in the table (checked again here, in the database file)."""
from __future__ import annotations

import sqlite3
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.scenarios import Context, catalog  # noqa: E402


@pytest.mark.timeout(240)
def test_quick_catalog_scenario_on_sqlite(tmp_path):
    ctx = Context(quick=True, runs=1, workdir=tmp_path, dbs=common.PgDatabases())
    out = catalog.run(ctx, dialects=("sqlite",))
    sizes = catalog.sizes(quick=True)
    assert [(r["code"], r["database"]) for r in out["results"]] == [
        (code, "SQLite") for code in sizes]
    encodings = {r["code"]: r["encoding"] for r in out["results"]}
    assert encodings == {"1301": "gbk", "1306": "utf-8"}
    for r in out["results"]:
        assert r["rows"] == sizes[r["code"]] == r["rows_in_table"] > 0
        assert r["load_rows_per_s"]["median"] > 0 and r["download_bytes_per_s"]["median"] > 0
        assert r["bytes"] > 0 and r["total_s"]["median"] > 0
        assert r["incremental_s"]["median"] > 0 and r["dominant"] in catalog.PHASES
        assert abs(sum(r["phase_share"].values()) - 1) < 0.01
    # the fresh database of each run is a file in the work directory: count its rows
    for code, n in sizes.items():
        (path,) = tmp_path.glob(f"cat{code}_*.db")
        conn = sqlite3.connect(str(path))
        try:
            count, hashed = conn.execute(
                "SELECT count(*), count(DISTINCT row_hash) FROM medical_insurance_catalog "
                "WHERE catalog_code = ?", (code,)).fetchone()
            runs = conn.execute("SELECT outcome, rows_inserted, rows_read FROM "
                                "medical_insurance_catalog_sync ORDER BY sync_id").fetchall()
        finally:
            conn.close()
        assert count == n and hashed == n
        assert runs == [("OK", n, n), ("OK", 0, 0)]
