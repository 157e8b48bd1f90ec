"""Smoke check of the benchmark harness: `python -m bench --quick` runs and writes valid JSON.

No speed is asserted (this machine is shared and small); the figures are `make bench`'s job.
The output goes to a temporary directory so bench/results/latest.* are never overwritten.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["drain", "latency", "saturation", "idle", "growth", "profile", "catalog"]


def _summary_ok(s) -> bool:
    return isinstance(s, dict) and {"median", "min", "max", "runs"} <= set(s) \
        and (s["median"] is None or s["min"] <= s["median"] <= s["max"])


def _status_ok(status: str) -> bool:
    return status == "ok" or status.startswith("skipped: ")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_bench_writes_valid_json(tmp_path):
    env = dict(os.environ)
    env.pop("MI_WORKER_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--output", str(tmp_path)],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    assert (tmp_path / "latest.md").read_text(encoding="utf-8").startswith("# mi-worker bench")
    assert not (tmp_path / "latest.json.tmp").exists()

    assert data["schema"] == "mi-worker-bench/1"
    assert data["mode"] == "quick"
    assert data["runs_per_figure"] >= 1
    for key in ("cores", "memory_mb", "cpu_model", "postgresql_version", "python_version"):
        assert key in data["machine"], key
    assert data["date"] and data["duration_seconds"] > 0
    assert isinstance(data["targets"], list)
    assert set(data["scenarios"]) == set(SCENARIOS)
    for name, sc in data["scenarios"].items():
        assert _status_ok(sc["status"]), f"{name}: {sc['status']}"

    drain = data["scenarios"]["drain"]
    if drain["status"] != "ok":  # PostgreSQL away: everything says why, nothing else to check
        return
    assert drain["mi_worker"], "no mi-worker drain figures"
    for r in drain["mi_worker"]:
        assert r["procs"] in (1, 2)
        assert _summary_ok(r["rps"]) and r["rps"]["median"] > 0
        assert _summary_ok(r["seconds"]) and _summary_ok(r["wall"])
    for peer in ("procrastinate", "pgqueuer"):
        entry = drain["peers"][peer]
        assert _status_ok(entry["status"]), entry["status"]
        if entry["status"] == "ok":
            assert entry["settings"] and {r["procs"] for r in entry["results"]} == {1, 2}
            assert all(_summary_ok(r["rps"]) for r in entry["results"])
    for ratio in drain["ratios"]:
        assert ratio["peer"] in ("procrastinate", "pgqueuer") and ratio["ratio"] > 0

    lat = data["scenarios"]["latency"]
    assert {v["poll_ms"] for v in lat["variants"]} == {100}  # the 10 ms poll: full run only
    for v in lat["variants"]:
        for key in ("overhead_p50_ms", "overhead_p95_ms", "overhead_p99_ms", "overhead_max_ms"):
            assert _summary_ok(v[key]), key
    sat = data["scenarios"]["saturation"]
    assert _summary_ok(sat["fraction"]) and sat["ideal_rps"] == 320
    idle = data["scenarios"]["idle"]
    assert _summary_ok(idle["claims_per_s"]) and _summary_ok(idle["rss_mb"])
    growth = data["scenarios"]["growth"]
    assert [r["n"] for r in growth["results"]] == growth["sizes"]
    assert isinstance(growth["plan"]["pending"]["plan"], list)
    assert isinstance(growth["index_seek"], bool)
    cat = data["scenarios"]["catalog"]
    assert {(r["dialect"], r["code"]) for r in cat["results"]} == {
        (d, c) for d in ("sqlite", "postgresql") for c in cat["catalogues"]}
    for r in cat["results"]:
        assert r["rows_in_table"] == r["rows"] and r["load_rows_per_s"]["median"] > 0
        assert _summary_ok(r["total_s"]) and _summary_ok(r["incremental_s"])
