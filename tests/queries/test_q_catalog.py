"""Conformance: files and catalogue-sync statements (issue 15) on every dialect.

record_file (one file, its sha256), catalog_hashes (a catalogue's loaded hashes),
catalog_upsert_row / catalog_upsert_batch (insert, rewrite only a changed hash, leave an equal
one alone), catalog_last_version (the latest OK run's version only), catalog_sync_start /
catalog_sync_finish (a run's history row), catalog_sync_history (newest first, limited).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import raw  # noqa: E402

from mi_worker.db import DatabaseError  # noqa: E402

COVERS = {"record_file", "catalog_hashes", "catalog_upsert_row", "catalog_upsert_batch",
          "catalog_last_version", "catalog_sync_start", "catalog_sync_finish",
          "catalog_sync_history"}


def _row(code, key, h, name="阿莫西林", ver="V1"):
    return dict(catalog_code=code, item_code=key, item_name=name, ver=ver,
                updt_time="2026-12-01 10:00:00", row_hash=h * 64, row_data=json.dumps(
                    {"item_code": key, "item_name": name}, ensure_ascii=False))


def _names(db, code):
    return {r["item_code"]: (r["item_name"], r["ver"]) for r in raw(
        db, "SELECT item_code, item_name, ver FROM medical_insurance_catalog "
            "WHERE catalog_code = ?", [code])}


def test_record_file_keeps_name_path_and_checksum(db):
    first = db.run_one("record_file", direction="DOWN", purpose="1301", file_qury_no="FQ1",
                       filename="1301.zip", local_path="/data/1301.zip", size_bytes=12,
                       sha256="a" * 64, dld_endtime="2026-12-02 00:00:00")
    second = db.run_one("record_file", direction="UP", purpose="3202", file_qury_no=None,
                        filename="d.zip", local_path="/data/d.zip", size_bytes=1,
                        sha256="b" * 64, dld_endtime=None)
    assert int(second["file_id"]) > int(first["file_id"])
    rows = raw(db, "SELECT direction, filename, sha256, size_bytes FROM medical_insurance_files "
                   "ORDER BY file_id", [])
    assert [(r["direction"], r["filename"], r["sha256"], int(r["size_bytes"])) for r in rows] == [
        ("DOWN", "1301.zip", "a" * 64, 12), ("UP", "d.zip", "b" * 64, 1)]
    with pytest.raises(DatabaseError):
        db.run("record_file", direction="SIDEWAYS", purpose="x", file_qury_no=None,
               filename="x", local_path="x", size_bytes=0, sha256="c" * 64, dld_endtime=None)


def test_upsert_row_inserts_rewrites_a_changed_hash_only(db):
    db.run("catalog_upsert_row", **_row("1301", "K1", "a"))
    db.run("catalog_upsert_row", **_row("1301", "K1", "a", name="别的名字"))  # same hash
    assert _names(db, "1301") == {"K1": ("阿莫西林", "V1")}
    db.run("catalog_upsert_row", **_row("1301", "K1", "b", name="新名", ver="V2"))
    assert _names(db, "1301") == {"K1": ("新名", "V2")}
    assert db.run("catalog_hashes", catalog_code="1301") == [
        {"item_code": "K1", "row_hash": "b" * 64}]
    assert db.run("catalog_hashes", catalog_code="1302") == []


def test_upsert_batch_does_the_same_for_many(db):
    db.run("catalog_upsert_row", **_row("1302", "K1", "a"))
    batch = [_row("1302", "K1", "a", name="不变"), _row("1302", "K2", "c", name="新")]
    batch += [_row("1302", "K1", "a")]
    try:
        db.run("catalog_upsert_batch", rows=json.dumps(batch[:2], ensure_ascii=False))
    except DatabaseError as exc:  # SQL Server before 2016 refuses it before any row
        assert "catalog_upsert_batch needs OPENJSON" in str(exc)
        return
    assert _names(db, "1302") == {"K1": ("阿莫西林", "V1"), "K2": ("新", "V1")}
    db.run("catalog_upsert_batch", rows=json.dumps([_row("1302", "K1", "d", name="改")]))
    assert _names(db, "1302")["K1"] == ("改", "V1")


def test_sync_history_and_last_version(db):
    assert db.run_one("catalog_last_version", catalog_code="1301") is None
    ok = int(db.run_one("catalog_sync_start", catalog_code="1301", ver_from="0")["sync_id"])
    counts = dict(file_qury_no="FQ", file_sha256="e" * 64, bytes=10, rows_read=3,
                  rows_inserted=2, rows_updated=1, rows_unchanged=0, duration_ms=5)
    db.run("catalog_sync_finish", sync_id=ok, outcome="OK", ver_to="V9", error_message=None,
           **counts)
    bad = int(db.run_one("catalog_sync_start", catalog_code="1301", ver_from="V9")["sync_id"])
    db.run("catalog_sync_finish", sync_id=bad, outcome="FAILED", ver_to="V9",
           error_message="断了", **counts)
    running = int(db.run_one("catalog_sync_start", catalog_code="1302", ver_from="0")["sync_id"])
    assert db.run_one("catalog_last_version", catalog_code="1301")["ver_to"] == "V9"
    assert db.run_one("catalog_last_version", catalog_code="1302") is None
    history = db.run("catalog_sync_history", limit=2)
    assert [int(h["sync_id"]) for h in history] == [running, bad]
    assert (history[0]["outcome"], history[1]["outcome"], history[1]["error_message"]) == (
        "RUNNING", "FAILED", "断了")
    assert int(history[1]["rows_inserted"]) == 2 and history[1]["finished_at"] is not None
