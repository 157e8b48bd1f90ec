"""Conformance: the latency estimates behind the HIS procedure's first poll (issue 17).

record_interface_latency (a worker's INSERT-to-result median for one catalogued interface;
an unknown code changes nothing) and interface_wait_ms (the estimate as the procedures read
it: NULL when none, when not positive, or when no worker refreshed it for 600 s).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qhelpers import db_time, raw  # noqa: E402

COVERS = {"record_interface_latency", "interface_wait_ms"}


def _catalogued(db, code: str = "1101") -> None:
    if not raw(db, "SELECT interface_code FROM medical_insurance_interfaces "
                   "WHERE interface_code = ?", [code]):
        raw(db, "INSERT INTO medical_insurance_interfaces (interface_code, interface_name, kind, "
                "reversible) VALUES (?, ?, ?, 0)", [code, "人员信息获取", "query"])


def _wait(db, code: str = "1101"):
    row = db.run_one("interface_wait_ms", interface_code=code)
    return None if row["expected_ms"] is None else int(row["expected_ms"])


def test_a_recorded_estimate_is_what_the_procedure_reads(db):
    _catalogued(db)
    assert _wait(db) is None  # nothing published yet: the fixed schedule
    db.run("record_interface_latency", interface_code="1101", expected_ms=57)
    assert _wait(db) == 57
    db.run("record_interface_latency", interface_code="1101", expected_ms=63)
    assert _wait(db) == 63  # the latest publication wins (any worker's)
    [row] = raw(db, "SELECT expected_ms, expected_at FROM medical_insurance_interfaces "
                    "WHERE interface_code = ?", ["1101"])
    assert int(row["expected_ms"]) == 63 and row["expected_at"] is not None


def test_an_unknown_interface_gets_no_estimate_and_no_row(db):
    db.run("record_interface_latency", interface_code="9999Z", expected_ms=40)
    assert raw(db, "SELECT * FROM medical_insurance_interfaces WHERE interface_code = ?",
               ["9999Z"]) == []
    assert _wait(db, "9999Z") is None


def test_a_stale_or_non_positive_estimate_is_ignored(db):
    _catalogued(db, "2207")
    db.run("record_interface_latency", interface_code="2207", expected_ms=80)
    assert _wait(db, "2207") == 80
    raw(db, "UPDATE medical_insurance_interfaces SET expected_at = "
            + db_time(db, -601) + " WHERE interface_code = ?", [-601, "2207"])
    assert _wait(db, "2207") is None  # no worker refreshed it for 600 s
    raw(db, "UPDATE medical_insurance_interfaces SET expected_at = "
            + db_time(db, -590) + " WHERE interface_code = ?", [-590, "2207"])
    assert _wait(db, "2207") == 80
    db.run("record_interface_latency", interface_code="2207", expected_ms=0)
    assert _wait(db, "2207") is None
