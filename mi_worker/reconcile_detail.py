"""对明细账 (3202), automated when a 3201 group does not balance (stmt_rslt ≠ 0).

The steps of the protocol (../shared reference §6): the group's local settlements as a text
file (one line per settlement, TAB-separated, ``\\n``, no header: setl_id, mdtrt_id, psn_no,
medfee_sumamt, fund_pay_sumamt, acct_pay, refd_setl_flag), zipped, uploaded with 9101; 3202
with the file_qury_no and the group's totals (cash_payamt = medfee - fund - acct), through the
ordinary queue like 3201; the result file fetched with 9102; each row it lists (1 中心多,
2 医药机构多, 3 不一致) stored in medical_insurance_recon_detail, and one alert naming them.

中心多 rows carry the msgid the centre booked. When that msgid is one of ours and its request
never told the HIS it succeeded (UNCERTAIN, ERROR, TIMEOUT, NEEDS_MANUAL…), the settlement
exists only at the centre: ``mi-worker reconcile --fix`` offers the 2601 with that omsgid —
asked per row, logged, queued through enqueue_reversal like the reversal job's — never sent
unasked.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import logging
import zipfile
from decimal import Decimal
from typing import Any, Dict, List, Optional

from mi_worker import reconcile as rec
from mi_worker.alerts import raise_alert
from mi_worker.catalog_sync import read_zip, record_file
from mi_worker.db import Database
from mi_worker.files.transfer import FileTransfer, inside
from mi_worker.his_call import call
from mi_worker.masking import mask_personal
from mi_worker.states import Status

log = logging.getLogger("mi_worker.reconcile")

RESULT_COLUMNS = ("psn_no", "mdtrt_id", "setl_id", "msgid", "stmt_rslt", "refd_setl_flag",
                  "memo", "medfee_sumamt", "fund_pay_sumamt", "acct_pay")
MEANING = {"1": "中心多", "2": "医药机构多", "3": "不一致"}


def local_rows(db: Database, day: dt.date, request_ids: List[int]) -> List[List[str]]:
    """The detail file's lines: the group's standing settlements (reconcile.local_totals)."""
    start, end = rec.day_bounds_utc(day)
    wanted = set(request_ids)
    out = []
    for r in db.run("settlements_between", start_utc=start, end_utc=end):
        if int(r["request_id"]) not in wanted:
            continue
        info = rec._setlinfo(r)
        out.append([str(info.get("setl_id") or ""), str(info.get("mdtrt_id") or ""),
                    str(info.get("psn_no") or "")]
                   + [f"{Decimal(str(info.get(f) or 0)):.2f}" for f in rec.FIELDS] + ["0"])
    return out


def detail(db: Database, transfer: FileTransfer, result: Dict[str, Any], setl_optins: str,
           *, timeout: int = 120) -> List[Dict[str, Any]]:
    """3202 for one unbalanced 3201 group (``result`` as reconcile.reconcile returns it)."""
    day = dt.date.fromisoformat(result["stmt_date"])
    groups = rec.local_totals(db, day)
    g = groups.get((result["insutype"], result["clr_type"]), {"request_ids": []})
    lines = local_rows(db, day, g["request_ids"])
    name = f"3202_{day:%Y%m%d}_{result['insutype']}_{result['clr_type']}.zip"
    path = inside(transfer.directory, name)
    transfer.directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name[:-4] + ".txt", "".join("\t".join(x) + "\n" for x in lines))
    path.write_bytes(buf.getvalue())
    up = transfer.upload(str(path))
    record_file(db, up, "UP", "3202")
    medfee, fund, acct = (Decimal(result[f]) for f in rec.FIELDS)
    data = {"setl_optins": setl_optins, "file_qury_no": up.file_qury_no,
            "stmt_begndate": day.isoformat(), "stmt_enddate": day.isoformat(),
            "medfee_sumamt": f"{medfee:.2f}", "fund_pay_sumamt": f"{fund:.2f}",
            "cash_payamt": f"{medfee - fund - acct:.2f}", "fixmedins_setl_cnt": len(lines),
            "clr_type": result["clr_type"], "insutype": result["insutype"],
            "refd_setl_flag": "0"}
    answer = call(db, "3202", json.dumps({"data": data}, ensure_ascii=False), timeout,
                  retry_count=3, priority=3)
    if answer.error_code != 0:
        raise RuntimeError(f"3202 failed ({answer.error_code}): {answer.error_message}")
    info = (json.loads(answer.result or "{}").get("output") or {}).get("fileinfo") or {}
    down = transfer.download(str(info.get("file_qury_no") or ""), str(info.get("filename")),
                             save_as=f"result_{name}")
    down.dld_endtime = str(info.get("dld_endtime") or "")
    record_file(db, down, "DOWN", "3202")
    raw, _ = read_zip(down.path)
    rows = []
    for line in raw.decode("utf-8", "replace").splitlines():
        cols = line.split("\t")
        if len(cols) < 5 or not cols[2]:
            continue
        row = dict(zip(RESULT_COLUMNS, cols + [""] * (len(RESULT_COLUMNS) - len(cols))))
        detail_id = db.run_one(
            "insert_recon_detail", stmt_date=day.isoformat(), insutype=result["insutype"],
            clr_type=result["clr_type"], setl_id=row["setl_id"], mdtrt_id=row["mdtrt_id"] or None,
            psn_no=row["psn_no"] or None, msgid=row["msgid"] or None, stmt_rslt=row["stmt_rslt"],
            memo=row["memo"] or None, medfee_sumamt=_money(row["medfee_sumamt"]),
            fund_pay_sumamt=_money(row["fund_pay_sumamt"]), acct_pay=_money(row["acct_pay"]),
            request_id=answer.request_id)["detail_id"]
        rows.append({**row, "detail_id": int(detail_id)})
    if rows:
        listed = "; ".join(f"{MEANING.get(r['stmt_rslt'], r['stmt_rslt'])} setl_id "
                           f"{r['setl_id']} msgid {r['msgid'] or '-'} {r['medfee_sumamt']}"
                           for r in rows[:20])
        more = f" (+{len(rows) - 20} more)" if len(rows) > 20 else ""
        raise_alert(db, "RECONCILIATION_DETAIL", "CRITICAL", mask_personal(
            f"对明细账 {day} insutype {result['insutype']} clr_type {result['clr_type']}: "
            f"{len(rows)} settlement(s) differ: {listed}{more}. `mi-worker reconcile --date "
            f"{day} --fix` offers 2601 for 中心多 rows of ours"),
            detail=json.dumps(rows, ensure_ascii=False))
    log.warning("3202 %s %s/%s: %d row(s) differ", day, result["insutype"], result["clr_type"],
                len(rows))
    return rows


def _money(text: str) -> Optional[str]:
    try:
        return f"{Decimal(text):.2f}"
    except Exception:
        return None


def fix_candidates(db: Database, day: dt.date) -> List[Dict[str, Any]]:
    """中心多 rows whose msgid is ours and whose request never told the HIS it settled."""
    out = []
    for r in db.run("recon_detail_for_day", stmt_date=day.isoformat()):
        if str(r["stmt_rslt"]) != "1" or not r["msgid"] or r["fix_request_id"] is not None:
            continue
        req = db.run_one("request_by_msgid", msgid=r["msgid"])
        if req is None or req["status"] == Status.COMPLETED.value:
            continue  # not ours, or the HIS was told (the hospital's books are the mismatch)
        out.append({**dict(r), "original": dict(req)})
    return out


def queue_fix(db: Database, candidate: Dict[str, Any], timeout_seconds: int,
              operator: str) -> int:
    """Queue the 2601 for one candidate (after the operator said yes); returns its id."""
    req = candidate["original"]
    data = {"data": {"psn_no": req["psn_no"] or candidate["psn_no"] or "",
                     "omsgid": candidate["msgid"], "oinfno": str(req["interface_code"]).strip()}}
    new = db.run_one("enqueue_reversal", input_data=json.dumps(data, ensure_ascii=False),
                     timeout_seconds=timeout_seconds, psn_no=req["psn_no"],
                     insuplc_admdvs=req["insuplc_admdvs"], delay_seconds=0,
                     parent_request_id=int(req["request_id"]))
    rid = int(new["request_id"])
    db.run("set_recon_fix", detail_id=int(candidate["detail_id"]), fix_request_id=rid)
    log.warning("对明细账 --fix by %s: 中心多 setl_id %s msgid %s (request %s, %s) → 2601 "
                "request %s", operator, candidate["setl_id"], candidate["msgid"],
                req["request_id"], req["status"], rid)
    return rid
