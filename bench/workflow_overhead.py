"""Queue overhead of a 4-step workflow versus the same 4 calls made one by one (issue 14).

    python -m bench.workflow_overhead [DATABASE_URL] [N]

Runs the sandbox (no latency) and one worker with its jobs in this process, then N times the
outpatient settlement as one workflow (sp_medical_insurance_workflow_v2 on PostgreSQL, the
Python contract on SQLite) and N times its four calls 2203, 2204, 2206, 2207 through the
call contract, each for a new patient. Prints the medians and the difference: what the
workflow costs beyond the calls themselves (mostly the advance job's interval between
steps, ``workflows.advance_seconds``). The database must be migrated (`mi-worker db upgrade`).
"""
from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from workflow_helpers import outpatient_input  # noqa: E402

from mi_worker import config  # noqa: E402
from mi_worker.his_call import call  # noqa: E402
from mi_worker.jobs import Scheduler  # noqa: E402
from mi_worker.runner import build_gateway, open_database  # noqa: E402
from mi_worker.sandbox.testing import client_settings, running_sandbox  # noqa: E402
from mi_worker.worker import Worker  # noqa: E402
from mi_worker.workflows.contract import call_workflow  # noqa: E402
from mi_worker.workflows.definitions import load  # noqa: E402


def main(url: str, n: int) -> None:
    with running_sandbox() as box:
        s = config.Settings()
        s.database.url = url
        s.gateway = client_settings(box)
        s.worker.min_poll_interval = 0.01
        s.worker.poll_interval = 0.05
        db = open_database(s)
        worker = Worker(s, db, build_gateway(s, db, None))
        sched = Scheduler(worker, db, s, worker.gateway)
        sched.start()
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        reg = load()
        wf_times, call_times = [], []
        try:
            for _ in range(n):
                doc = outpatient_input(f"B{uuid.uuid4().hex[:8]}")
                t = time.perf_counter()
                r = call_workflow(db, reg, "outpatient_settlement", doc, 60)
                wf_times.append(time.perf_counter() - t)
                assert r.error_code == 0, r
                d = json.loads(outpatient_input(f"C{uuid.uuid4().hex[:8]}"))
                inputs = [("2203", {"mdtrtinfo": d["mdtrtinfo"], "diseinfo": d["diseinfo"]}),
                          ("2204", {"feedetail": d["feedetail"]}), ("2206", {"data": d["settle"]}),
                          ("2207", {"data": dict(d["settle"], medfee_sumamt="100.00")})]
                t = time.perf_counter()
                for code, inp in inputs:
                    one = call(db, code, json.dumps(dict(inp, insuplc_admdvs="110000"),
                                                    ensure_ascii=False), 60,
                               insuplc_admdvs="110000")
                    assert one.error_code == 0, one
                call_times.append(time.perf_counter() - t)
        finally:
            worker.stop()
            thread.join(30)
            sched.shutdown()
            db.close()
    wf, single = statistics.median(wf_times) * 1000, statistics.median(call_times) * 1000
    print(json.dumps({"database": url.split(":", 1)[0], "n": n,
                      "advance_seconds": s.workflows.advance_seconds,
                      "workflow_median_ms": round(wf, 1), "four_calls_median_ms": round(single, 1),
                      "overhead_ms": round(wf - single, 1)}))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///bench-workflow.db",
         int(sys.argv[2]) if len(sys.argv) > 2 else 20)
