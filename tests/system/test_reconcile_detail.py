"""Issue 15, part 4: a seeded 3201 mismatch that the automated 3202 resolves to exactly the
settlements the sandbox ledger disagrees on (中心多 ours and not ours, 医药机构多, 不一致), on
SQLite and the real PostgreSQL, real workers, 9101/9102 over loopback; `mi-worker reconcile
--fix` offers the 2601 only for the 中心多 row whose msgid is ours and whose settlement the
HIS never got, and the worker reverses it at the centre."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

from conftest import ROOT, InProcessWorker, make_settings, settings_toml, wait_until
from mi_worker import reconcile, reconcile_detail
from mi_worker.files.transfer import FileTransfer
from mi_worker.gateway.client import NHSAClient
from mi_worker.his_call import call
from mi_worker.sandbox.testing import MsgidCounter, client_settings, make_ctx


def _settle(db, psn: str, amount: str):
    data = {"data": {"psn_no": psn, "mdtrt_id": f"MD{psn}", "medfee_sumamt": amount,
                     "insutype": "310", "insuplc_admdvs": "110000"}}
    return call(db, "2207", json.dumps(data), timeout=20)


def test_seeded_mismatch_resolves_to_the_exact_rows(db_url, sandbox, tmp_path):
    settings = make_settings(db_url, sandbox, jobs={"reversal_seconds": 3600},
                             gateway={"file_directory": str(tmp_path / "files")})
    today = dt.datetime.now(reconcile.CHINA).date()
    with InProcessWorker(settings) as w:
        db = w.db
        r1, r2, r3 = (_settle(db, p, a) for p, a in (("D1", "120.00"), ("D2", "80.50"),
                                                       ("D3", "33.30")))
        assert r1.error_code == r2.error_code == r3.error_code == 0
        setl = {k: json.loads(r.result)["output"]["setlinfo"]["setl_id"]
                for k, r in (("D1", r1), ("D2", r2), ("D3", r3))}
        # 中心多, ours: the centre settled, the answer was lost; the HIS never got it.
        sandbox.add_fault("reset_after", "2207", count=1)
        lost = _settle(db, "D4", "50.00")
        assert lost.error_code in (-1005, -1007), lost
        lost_row = db.run_one("get_request", request_id=lost.request_id)
        lost_entry = sandbox.ledger.get(lost_row["msgid"])
        assert lost_entry is not None and lost_entry.kind == "settlement"
        # 中心多, not ours; 医药机构多 (cancelled at the centre behind our back); 不一致.
        client = NHSAClient(client_settings(sandbox), msgid_factory=MsgidCounter())
        other = MsgidCounter("H99000000001", 5000)
        foreign = client.call(make_ctx("2207", {"data": {"psn_no": "D5", "mdtrt_id": "MDD5",
                                                         "medfee_sumamt": "10.00",
                                                         "insutype": "310"}}, msgids=other))
        cancel = client.call(make_ctx("2208", {"data": {"psn_no": "D2", "mdtrt_id": "MDD2",
                                                        "setl_id": setl["D2"]}}, msgids=other))
        client.close()
        assert foreign.outcome.value == cancel.outcome.value == "COMPLETED"
        foreign_setl = foreign.response["output"]["setlinfo"]["setl_id"]
        sandbox.ledger.find(setl_id=setl["D3"], kind="settlement")[0].amounts[
            "medfee_sumamt"] = 99.0
        expected = {("1", lost_entry.setl_id, lost_row["msgid"]),
                    ("1", foreign_setl, foreign.msgid), ("2", setl["D2"], ""),
                    ("3", setl["D3"], sandbox.ledger.find(setl_id=setl["D3"])[0].msgid)}

        gw = NHSAClient(client_settings(sandbox, sign_in=False))
        transfer = FileTransfer(gw, str(tmp_path / "files"))
        results = reconcile.reconcile(db, today, "990000", on_mismatch=lambda r:
                                      reconcile_detail.detail(db, transfer, r, "990000"))
        gw.close()
        assert results[0]["stmt_rslt"] != "0", results
        got = {(d["stmt_rslt"], d["setl_id"], d["msgid"]) for d in results[0]["detail"]}
        assert got == expected
        stored = db.run("recon_detail_for_day", stmt_date=today.isoformat())
        assert {(r["stmt_rslt"], r["setl_id"], r["msgid"] or "") for r in stored} == expected
        alert = db.run_one("open_alert", alert_type="RECONCILIATION_DETAIL")
        assert alert and "4 settlement(s) differ" in alert["alert_message"]
        assert lost_entry.setl_id in alert["alert_message"]
        files = [f for f in (tmp_path / "files").iterdir()]
        assert {f.name for f in files} >= {f"3202_{today:%Y%m%d}_310_11.zip",
                                           f"result_3202_{today:%Y%m%d}_310_11.zip"}

        # --fix: only our lost settlement is offered; answering "n" queues nothing.
        candidates = reconcile_detail.fix_candidates(db, today)
        assert [c["msgid"] for c in candidates] == [lost_row["msgid"]]
        cfg = tmp_path / "w.toml"
        cfg.write_text(settings_toml(settings), encoding="utf-8")
        base = [sys.executable, "-m", "mi_worker", "--config", str(cfg), "reconcile",
                "--date", today.isoformat(), "--fix"]
        no = subprocess.run(base, input="n\n", cwd=str(ROOT), capture_output=True, text=True,
                            timeout=120)
        assert no.returncode == 0 and "skipped msgid" in no.stdout, no.stderr
        assert reconcile_detail.fix_candidates(db, today)
        yes = subprocess.run(base, input="y\n", cwd=str(ROOT), capture_output=True, text=True,
                             timeout=120)
        assert yes.returncode == 0 and "queued 2601 request" in yes.stdout, yes.stderr
        assert "Queue 2601 冲正?" in yes.stdout
        wait_until(lambda: lost_entry.status == "reversed", 30, message="2601 at the centre")
        assert reconcile_detail.fix_candidates(db, today) == []


def test_caught_up_day_that_does_not_balance_is_reconciled_in_detail(db_url, sandbox, tmp_path,
                                                                      monkeypatch):
    """The catch-up job (a worker back after a missed 02:00) runs the same automated 3202 as
    the scheduled run: the job table's own function, not a hand-built callback."""
    today = dt.datetime.now(reconcile.CHINA).date()
    settings = make_settings(db_url, sandbox, jobs={"reconcile_time": "02:00",
                                                    "reversal_seconds": 3600},
                             gateway={"file_directory": str(tmp_path / "files")})
    with InProcessWorker(settings) as w:
        r = _settle(w.db, "E1", "42.00")
        assert r.error_code == 0, r
        setl_id = json.loads(r.result)["output"]["setlinfo"]["setl_id"]
        entry = sandbox.ledger.find(setl_id=setl_id, kind="settlement")[0]
        entry.amounts["medfee_sumamt"] = 41.0  # 不一致 at the centre
        monkeypatch.setattr(reconcile, "due_days", lambda *a: [today])
        job = next(j for j in w.scheduler.jobs() if j.id == "reconcile_catch_up")
        job.fn()
        stored = w.db.run("recon_detail_for_day", stmt_date=today.isoformat())
        assert [(d["stmt_rslt"], d["setl_id"]) for d in stored] == [("3", setl_id)], stored
        assert w.db.run_one("open_alert", alert_type="RECONCILIATION_DETAIL")
