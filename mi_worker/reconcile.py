"""对账: daily reconciliation of local settlements with the centre (3201, optionally 3202).

Local totals are the day's COMPLETED settlements (2207/2207A outpatient, 2304 inpatient,
2102 pharmacy) that still stand: a settlement cancelled by a COMPLETED 2208/2305/2103 is left
out, and a reversed one is no longer COMPLETED. They are grouped by insurance type and
clearing type as the centre books them (from the settlement's own setlinfo) and each group
is sent as one 3201 through the ordinary queue, so every reconciliation call is a visible,
audited request row. The centre's answer is stored in medical_insurance_reconciliation; any
stmt_rslt other than 0 raises a RECONCILIATION_MISMATCH alert.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional, Tuple

from mi_worker.alerts import raise_alert
from mi_worker.db import Database
from mi_worker.gateway.envelope import CHINA_TZ
from mi_worker.his_call import call

log = logging.getLogger("mi_worker.reconcile")

CHINA = CHINA_TZ
FIELDS = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")


def day_bounds_utc(day: dt.date) -> Tuple[str, str]:
    """A China calendar day as UTC text bounds (the database stores UTC)."""
    start = dt.datetime.combine(day, dt.time(0), CHINA).astimezone(dt.timezone.utc)
    end = start + dt.timedelta(days=1)
    fmt = "%Y-%m-%d %H:%M:%S"
    return start.strftime(fmt), end.strftime(fmt)


def _output(text: Optional[str]) -> Dict[str, Any]:
    try:
        doc = json.loads(text or "{}")
    except ValueError:
        return {}
    out = doc.get("output") if isinstance(doc, dict) else None
    return out if isinstance(out, dict) else {}


def _setlinfo(row: Dict[str, Any]) -> Dict[str, Any]:
    info = _output(row["response_data"]).get("setlinfo") or {}
    return info if isinstance(info, dict) else {}


def local_totals(db: Database, day: dt.date) -> Dict[Tuple[str, str], Dict[str, Any]]:
    """(insutype, clr_type) → totals and count of the day's settlements that still stand."""
    start, end = day_bounds_utc(day)
    rows = db.run("settlements_between", start_utc=start, end_utc=end)
    cancelled = set()
    for r in db.run("cancellations_since", start_utc=start):
        try:
            data = json.loads(r["input_data"]).get("data") or {}
        except (ValueError, AttributeError):
            continue
        if data.get("setl_id"):
            cancelled.add(str(data["setl_id"]))
    groups: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for r in rows:
        info = _setlinfo(r)
        if str(info.get("setl_id", "")) in cancelled:
            continue
        key = (str(info.get("insutype") or ""), str(info.get("clr_type") or ""))
        g = groups.setdefault(key, {**{f: Decimal("0.00") for f in FIELDS}, "count": 0,
                                    "request_ids": []})
        for f in FIELDS:
            g[f] += Decimal(str(info.get(f) or 0)).quantize(Decimal("0.01"))
        g["count"] += 1
        g["request_ids"].append(int(r["request_id"]))
    return groups


def reconcile(db: Database, day: dt.date, setl_optins: str, *, extra_groups: List[str] = (),
              timeout: int = 60,
              on_mismatch: Optional[Callable[[Dict[str, Any]], Any]] = None
              ) -> List[Dict[str, Any]]:
    """Run 3201 for every group of ``day``; store and return the centre's answers.
    ``on_mismatch`` (the automated 3202, reconcile_detail.py) runs for each group the centre
    answered with stmt_rslt ≠ 0; its rows are returned under "detail"."""
    groups = local_totals(db, day)
    for spec in extra_groups:  # groups to check even with no local settlement (中心多)
        insutype, _, clr_type = spec.partition(":")
        groups.setdefault((insutype, clr_type), {**{f: Decimal("0.00") for f in FIELDS},
                                                 "count": 0, "request_ids": []})
    results = []
    for (insutype, clr_type), g in sorted(groups.items()):
        data = {"insutype": insutype, "clr_type": clr_type, "setl_optins": setl_optins,
                "stmt_begndate": day.isoformat(), "stmt_enddate": day.isoformat(),
                **{f: f"{g[f]:.2f}" for f in FIELDS}, "fixmedins_setl_cnt": g["count"],
                "refd_setl_flag": "0"}
        answer = call(db, "3201", json.dumps({"data": data}, ensure_ascii=False), timeout,
                      retry_count=3, priority=3)
        info: Dict[str, Any] = {}
        if answer.error_code == 0:
            info = _output(answer.result).get("stmtinfo") or {}
            rslt, dscr = str(info.get("stmt_rslt", "")), str(info.get("stmt_rslt_dscr", ""))
        else:
            rslt, dscr = "ERROR", f"3201 failed ({answer.error_code}): {answer.error_message}"
        db.run("insert_reconciliation", stmt_date=day.isoformat(), insutype=insutype,
               clr_type=clr_type, setl_optins=setl_optins,
               medfee_sumamt=f"{g['medfee_sumamt']:.2f}",
               fund_pay_sumamt=f"{g['fund_pay_sumamt']:.2f}", acct_pay=f"{g['acct_pay']:.2f}",
               setl_cnt=g["count"], stmt_rslt=rslt, stmt_rslt_dscr=dscr[:2000],
               request_id=answer.request_id)
        result = {"stmt_date": day.isoformat(), "insutype": insutype, "clr_type": clr_type,
                  "setl_cnt": g["count"], **{f: f"{g[f]:.2f}" for f in FIELDS},
                  "stmt_rslt": rslt, "stmt_rslt_dscr": dscr, "request_id": answer.request_id}
        results.append(result)
        if rslt != "0":
            raise_alert(db, "RECONCILIATION_MISMATCH", "CRITICAL",
                        f"对账不平 {day.isoformat()} insutype {insutype} clr_type {clr_type}: "
                        f"stmt_rslt {rslt} {dscr}", detail=json.dumps(result, ensure_ascii=False))
            log.error("reconciliation mismatch: %s", result)
            if on_mismatch is not None and rslt != "ERROR":
                try:
                    result["detail"] = on_mismatch(result)
                except Exception as exc:  # the 3201 result stands; say why 3202 did not
                    log.error("3202 detail reconciliation of %s %s/%s failed: %s", day,
                              insutype, clr_type, exc)
                    result["detail_error"] = str(exc)
        else:
            log.info("reconciliation %s %s/%s: balanced (%d settlements)", day, insutype,
                     clr_type, g["count"])
    return results


def setl_optins(settings: Any) -> str:
    """结算经办机构 sent in 3201: jobs.reconcile_setl_optins, else gateway.mdtrtarea_admvs,
    else gateway.insuplc_admdvs."""
    gw = settings.gateway
    return settings.jobs.reconcile_setl_optins or gw.mdtrtarea_admvs or gw.insuplc_admdvs


def yesterday_china() -> dt.date:
    return (dt.datetime.now(CHINA) - dt.timedelta(days=1)).date()


def _day(value: Any) -> dt.date:
    """A stmt_date as the driver returns it (date, datetime or 'YYYY-MM-DD' text)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def due_days(now_china: dt.datetime, reconcile_time: str, days: int) -> List[dt.date]:
    """The past China days whose daily 3201 should have run by ``now_china``, oldest first.

    Yesterday counts only once today's reconcile_time has passed (the job reconciles the
    previous day at that time); ``days`` bounds how far back a returning worker looks.
    """
    hour, minute = (int(x) for x in reconcile_time.split(":"))
    today = now_china.date()
    latest = today - dt.timedelta(days=1)
    if (now_china.hour, now_china.minute) < (hour, minute):
        latest -= dt.timedelta(days=1)
    return [latest - dt.timedelta(days=i) for i in range(days - 1, -1, -1)]


def catch_up(db: Database, setl_optins: str, reconcile_time: str, days: int, *,
             extra_groups: List[str] = (), now_china: Optional[dt.datetime] = None,
             timeout: int = 60, notifier: Any = None,
             on_mismatch: Optional[Callable[[Dict[str, Any]], Any]] = None) -> Dict[str, Any]:
    """Run the 3201 of every due day that has no answered one stored (worker down at the
    scheduled time, or the centre unreachable then), and raise RECONCILIATION_MISSING for a
    due day still without one.

    A day with no local settlement and no ``extra_groups`` has nothing to reconcile and is
    not missing. Call under the "reconcile" cluster lock (jobs.py), with workers running:
    the 3201 rows go through the ordinary queue. ``on_mismatch`` is the automated 3202, as
    for the scheduled run: a caught-up day that does not balance is reconciled in detail too.
    """
    out: Dict[str, Any] = {"caught_up": [], "missing": [], "nothing_to_do": []}
    if not reconcile_time or days <= 0:
        return out
    now_china = now_china or dt.datetime.now(CHINA)
    wanted = due_days(now_china, reconcile_time, days)
    done = {_day(r["stmt_date"]) for r in db.run("reconciliation_days",
                                                 since_date=wanted[0].isoformat())}
    problems = []
    for day in wanted:
        if day in done:
            continue
        try:
            results = reconcile(db, day, setl_optins, extra_groups=extra_groups,
                                timeout=timeout, on_mismatch=on_mismatch)
        except Exception as exc:  # the day stays missing; say why in the alert
            log.error("reconciliation catch-up of %s failed: %s", day, exc)
            problems.append(f"{day.isoformat()} ({exc})")
            out["missing"].append(day.isoformat())
            continue
        failed = [r for r in results if r["stmt_rslt"] == "ERROR"]
        if failed:
            problems.append(f"{day.isoformat()} ({failed[0]['stmt_rslt_dscr'][:200]})")
            out["missing"].append(day.isoformat())
        elif results:
            log.warning("reconciliation of %s had not run (no worker at the scheduled time, "
                        "or the centre did not answer): caught up, %d group(s)", day,
                        len(results))
            out["caught_up"].append(day.isoformat())
        else:
            out["nothing_to_do"].append(day.isoformat())
    if problems:
        message = "对账未完成: no 3201 reconciliation answered for " + ", ".join(problems)
        new_id = raise_alert(db, "RECONCILIATION_MISSING", "CRITICAL", message,
                             detail=json.dumps(out, ensure_ascii=False))
        if new_id is not None and notifier is not None:
            notifier.send(new_id, "RECONCILIATION_MISSING", "CRITICAL", message)
    else:
        current = db.run_one("open_alert", alert_type="RECONCILIATION_MISSING")
        if current:
            db.run("resolve_alert", alert_id=current["alert_id"])
            log.info("alert RECONCILIATION_MISSING resolved: every due day is reconciled")
    return out
