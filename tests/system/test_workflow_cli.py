"""`mi-worker call --workflow`, `mi-worker workflows` and `requests show` of a workflow tree,
as real processes against a real worker (issue 14)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from workflow_helpers import consistent, outpatient_input

from conftest import ROOT, make_settings, settings_toml, wait_until

JOBS = {"heartbeat_seconds": 1}


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mi_worker", "--config", str(config), *args],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)


def test_call_workflow_and_show_the_tree(db_url, sandbox, spawn, db, tmp_path):
    settings = make_settings(db_url, sandbox, jobs=JOBS)
    config = tmp_path / "cli.toml"
    config.write_text(settings_toml(settings), encoding="utf-8")
    spawn(settings)
    wait_until(lambda: int(db.run_one("service_status", stale_seconds=30)["alive"]) == 1,
               timeout=60)
    done = cli(config, "call", "--workflow", "outpatient_settlement", "--input",
               outpatient_input("CLI1"), "--timeout", "60", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["error_code"] == 0 and set(json.loads(out["result"])) == {
        "visit", "fee_upload", "trial", "settle"}
    assert consistent(sandbox, "MDCLI1") == "settled"
    step = db.run("wf_steps", workflow_id=out["request_id"])[2]
    shown = cli(config, "requests", "show", str(step["request_id"]))
    assert shown.returncode == 0, shown.stderr
    for text in ("outpatient_settlement: COMPLETED", "step 1", "2203", "step 4", "2207"):
        assert text in shown.stdout, shown.stdout
    as_json = json.loads(cli(config, "requests", "show", "--workflow", str(out["request_id"]),
                             "--json").stdout)
    assert [int(s["workflow_step"]) for s in as_json["steps"]] == [1, 2, 3, 4]
    bad = cli(config, "call", "--workflow", "no_such_flow", "--input", "{}", "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["error_code"] == -1001
    listed = cli(config, "workflows")
    assert "inpatient_settlement" in listed.stdout and "2304 住院结算" in listed.stdout
    neither = cli(config, "call", "--input", "{}")
    assert neither.returncode != 0 and "INTERFACE_CODE or --workflow" in neither.stderr
