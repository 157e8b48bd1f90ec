"""Issue 15, part 3: catalogue sync (目录下载) against the sandbox's realistic catalogues (tens
of thousands of rows, GBK and UTF-8), on SQLite and the real PostgreSQL, through a real
worker (the 13xx query is an async row), 9102 over loopback HTTP, the loader's batches.
Synced twice (the second run changes only what changed), rerun in full (nothing written),
interrupted and resumed; each run leaves a history row."""
from __future__ import annotations

import json

import pytest

from conftest import InProcessWorker, make_settings
from mi_worker import catalog_sync as cs
from mi_worker.files.transfer import FileTransfer
from mi_worker.gateway.client import NHSAClient
from mi_worker.sandbox.testing import client_settings


@pytest.fixture
def setup(db_url, sandbox, tmp_path):
    settings = make_settings(db_url, sandbox)
    with InProcessWorker(settings) as w:
        client = NHSAClient(client_settings(sandbox, sign_in=False))
        try:
            yield w.db, FileTransfer(client, str(tmp_path / "files")), sandbox
        finally:
            client.close()


def _loaded(db, code):
    return {r["item_code"]: r["row_hash"] for r in db.run("catalog_hashes", catalog_code=code)}


def test_gbk_catalogue_synced_twice_then_in_full(setup, capsys):
    db, transfer, box = setup
    box.catalogs.size["1301"] = 30000
    first = cs.sync(db, transfer, "1301")
    assert (first.outcome, first.encoding, first.rows_read, first.rows_inserted) == (
        "OK", "gbk", 30000, 30000), first
    loaded = _loaded(db, "1301")
    assert len(loaded) == 30000
    source = box.catalogs.get("1301")
    key = "XA00012345"
    assert loaded[key] == cs.row_of("1301", "\t".join(source.rows[key]))["row_hash"]
    with capsys.disabled():
        print(f"\n[catalog 1301 first load, {db.name}: {first.rows_read} rows in "
              f"{first.duration_ms} ms = {first.rows_per_second:.0f} rows/s, "
              f"{first.bytes} bytes zipped]")
    changed = set(source.change(500, add=100))
    second = cs.sync(db, transfer, "1301")
    assert (second.ver_from, second.rows_read, second.rows_updated, second.rows_inserted,
            second.rows_unchanged) == (first.ver_to, 600, 500, 100, 0), second
    after = _loaded(db, "1301")
    assert {k for k in after if after[k] != loaded.get(k)} == changed
    again = cs.sync(db, transfer, "1301", full=True)
    assert (again.rows_read, again.rows_unchanged, again.rows_inserted, again.rows_updated) == (
        30100, 30100, 0, 0)
    assert _loaded(db, "1301") == after
    nothing_new = cs.sync(db, transfer, "1301")
    assert (nothing_new.rows_read, nothing_new.ver_to) == (0, second.ver_to)
    history = db.run("catalog_sync_history", limit=10)
    assert [h["outcome"] for h in history[:4]] == ["OK"] * 4
    assert int(history[3]["rows_inserted"]) == 30000


def test_utf8_catalogue_and_the_names_survive(setup):
    db, transfer, box = setup
    box.catalogs.size["1302"] = 3000
    res = cs.sync(db, transfer, "1302")
    assert (res.outcome, res.encoding, res.rows_inserted) == ("OK", "utf-8", 3000)
    row = box.catalogs.get("1302").rows["T00000007"]
    stored = db.run("catalog_hashes", catalog_code="1302")
    assert len(stored) == 3000
    assert json.loads(cs.row_of("1302", "\t".join(row))["row_data"])["item_name"] == row[1]


def test_interrupted_then_resumed(setup):
    db, transfer, box = setup
    box.catalogs.size["1306"] = 12000
    seen = {"batches": 0}

    def stop_after_three(rows, done, total):
        seen["batches"] += 1
        if seen["batches"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cs.sync(db, transfer, "1306", batch_size=1000, progress=stop_after_three)
    partial = len(_loaded(db, "1306"))
    assert partial == 3000
    failed = db.run("catalog_sync_history", limit=1)[0]
    assert failed["outcome"] == "FAILED" and "interrupted" in failed["error_message"]
    resumed = cs.sync(db, transfer, "1306", batch_size=1000)
    assert (resumed.ver_from, resumed.rows_read, resumed.rows_unchanged,
            resumed.rows_inserted) == ("0", 12000, 3000, 9000), resumed
    assert len(_loaded(db, "1306")) == 12000


def test_a_failed_download_is_a_failed_run(setup):
    db, transfer, box = setup
    box.catalogs.size["1307"] = 100
    box.add_fault("truncate", "9102")
    with pytest.raises(cs.CatalogError, match="9102 下载失败"):
        cs.sync(db, transfer, "1307")
    assert db.run("catalog_sync_history", limit=1)[0]["outcome"] == "FAILED"
    box.clear_faults()
    assert cs.sync(db, transfer, "1307").rows_inserted == 100


def test_bad_code_is_refused(setup):
    db, transfer, _ = setup
    with pytest.raises(cs.CatalogError, match="not a catalogue code"):
        cs.sync(db, transfer, "1401")


def test_history_in_the_monitoring_data_type(setup):
    db, transfer, box = setup
    box.catalogs.size["1308"] = 50
    res = cs.sync(db, transfer, "1308")
    from mi_worker import monitor
    shown = monitor.monitor(db, "catalog")
    assert shown[0]["sync_id"] == res.sync_id and shown[0]["rows_inserted"] == 50
    if db.name == "postgresql":
        from queries.qhelpers import raw
        rows = raw(db, "SELECT * FROM sp_get_medical_insurance_monitor_data('catalog')", [])
        first = next(iter(rows[0].values()))
        first = json.loads(first) if isinstance(first, str) else first
        assert first["catalog_code"] == "1308" and first["outcome"] == "OK"


def test_cli_download_with_plain_progress_lines(db_url, sandbox, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT, settings_toml
    settings = make_settings(db_url, sandbox, gateway={"file_directory": str(tmp_path / "f")})
    sandbox.catalogs.size["1305"] = 12000
    cfg = tmp_path / "c.toml"
    cfg.write_text(settings_toml(settings), encoding="utf-8")
    with InProcessWorker(settings):
        proc = subprocess.run([sys.executable, "-m", "mi_worker", "--config", str(cfg),
                               "catalog", "download", "1305", "--batch-size", "500"],
                              cwd=str(ROOT), capture_output=True, text=True, timeout=300)
        status = subprocess.run([sys.executable, "-m", "mi_worker", "--config", str(cfg),
                                 "catalog", "status", "--json"],
                                cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "1305: OK 12000 rows read (12000 new, 0 changed, 0 unchanged)" in proc.stdout
    assert "catalog 1305: 12000 rows" in proc.stderr and "ETA" in proc.stderr  # not a TTY
    assert json.loads(status.stdout)[0]["rows_inserted"] == 12000
    bad = subprocess.run([sys.executable, "-m", "mi_worker", "--config", str(cfg),
                          "catalog", "download", "1401"], cwd=str(ROOT), capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "not catalogue codes" in bad.stderr


def test_the_daily_job_is_scheduled(db_url, sandbox):
    from mi_worker.jobs import Scheduler
    settings = make_settings(db_url, sandbox, jobs={"catalog_time": "03:30",
                                                     "catalog_codes": ["1301"]})
    with InProcessWorker(settings) as w:
        specs = {j.id: j for j in Scheduler(w.worker, w.db, settings, w.gateway).jobs()}
    job = specs["catalog_sync"]
    assert job.cluster_once and job.trigger_args["hour"] == 3 and job.trigger_args["minute"] == 30
