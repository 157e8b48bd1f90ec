"""The fake 医保中心's business rules: envelope checks, sign-in, a few interfaces, a ledger.

Only as much behaviour as the worker's guarantees need: unique msgids, sign_no validity,
settlements that can be cancelled (2208/2305/2103) or reversed (2601), 3201 totals compared
with what was committed. Amounts are deterministic (fund pays 70 %, the personal account 10 %
when acct_used_flag = 1) so tests can assert them.
"""
from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from mi_worker.gateway import catalog
from mi_worker.gateway.envelope import (
    china_date,
    china_now,
    find_psn_no,
    is_valid_msgid,
)
from mi_worker.sandbox import clinical, defaults
from mi_worker.sandbox.ledger import (
    CANCELLED,
    DONE,
    OPEN,
    REVERSED,
    SETTLEMENT_CODES,
    Ledger,
    LedgerEntry,
    business_key,
)

CENT = Decimal("0.01")
# settlement code -> (its cancel code, default clr_type)
_SETTLE = {"2102": ("2103", "41"), "2207": ("2208", "11"), "2207A": ("2208", "11"),
           "2304": ("2305", "21")}
_CANCEL_OF = {"2103": ("2102",), "2208": ("2207", "2207A"), "2305": ("2304",)}


class Reject(Exception):
    """A business refusal: infcode -1 with this err_msg, nothing committed."""


def _money(value: Any, default: str = "0") -> Decimal:
    try:
        return Decimal(str(value if value not in (None, "") else default)).quantize(
            CENT, rounding=ROUND_HALF_UP)
    except Exception:  # noqa: BLE001 - any bad amount is the caller's error
        raise Reject(f"金额格式错误 bad amount {value!r}") from None


def _data(env: dict[str, Any]) -> dict[str, Any]:
    inp = env.get("input")
    data = inp.get("data") if isinstance(inp, dict) else None
    return data if isinstance(data, dict) else {}


class Centre:
    """State of the fake centre; :meth:`handle` is called once per decoded envelope."""

    def __init__(self, require_sign_in: bool = True, fixmedins_code: str | None = None,
                 admvs: str = defaults.ADMVS, accept_unknown: bool = False) -> None:
        self.require_sign_in = require_sign_in
        self.accept_unknown = accept_unknown  # else a code not in the catalogue is refused
        self.fixmedins_code = fixmedins_code
        self.admvs = admvs
        self.ledger = Ledger()
        self._lock = threading.RLock()
        self._seen_msgids: set = set()
        self._sign_ins: dict[tuple[str, str], str] = {}  # (opter, day) -> sign_no
        self._sign_nos: dict[str, tuple[str, str]] = {}  # sign_no -> (opter, day)
        self._counter = itertools.count(1)
        self._fees: dict[str, Decimal] = {}  # mdtrt_id -> uploaded fee total
        self._handlers: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
            "1101": self._h1101, "2201": self._h2201, "2202": self._h2202,
            "2204": self._h2204, "2205": self._h2205, "2206": self._h_trial,
            "2206A": self._h_trial, "2303": self._h_trial, "2101": self._h_trial,
            "2207": self._h_settle, "2207A": self._h_settle, "2304": self._h_settle,
            "2102": self._h_settle, "2208": self._h_cancel_settle,
            "2305": self._h_cancel_settle, "2103": self._h_cancel_settle,
            "2401": self._h2401, "2404": self._h2404, "2601": self._h2601,
            "3201": self._h3201, "3202": self._h3202, "5201": self._h5201,
            "5203": self._h5203, "9001": self._h9001, "9002": self._h9002,
        }
        clinical.install(self, Reject)  # fee details, discharge (the workflows' ledger)

    # ------------------------------------------------------------ envelope level

    def reset(self) -> None:
        with self._lock:
            self.ledger.clear()
            self._seen_msgids.clear()
            self._sign_ins.clear()
            self._sign_nos.clear()
            self._fees.clear()

    def expire_sign_ins(self) -> None:
        """Forget every sign_no, as a centre does at midnight or after a restart."""
        with self._lock:
            self._sign_ins.clear()
            self._sign_nos.clear()

    def check(self, env: dict[str, Any]) -> None:
        """Envelope rules, before anything is recorded. Raises :class:`Reject`."""
        msgid = env.get("msgid")
        code = env.get("fixmedins_code")
        if not isinstance(env.get("input"), dict):
            raise Reject("交易输入input必须为JSON对象 input must be a JSON object")
        if self.fixmedins_code and code != self.fixmedins_code:
            raise Reject(f"定点医药机构编号错误 unknown fixmedins_code {code!r}")
        if not is_valid_msgid(msgid, code if isinstance(code, str) else None):
            raise Reject(f"报文ID格式错误 msgid must be fixmedins_code {code!r} (12) + "
                         f"yyyyMMddHHmmss (14) + sequence (4) = 30 characters, got {msgid!r}")

    def handle(self, env: dict[str, Any]) -> dict[str, Any]:
        """Process one envelope; the whole answer (success or infcode -1)."""
        infno = catalog.normalize(str(env.get("infno") or ""))
        msgid = str(env.get("msgid") or "")
        try:
            self.check(env)
            with self._lock:
                if msgid in self._seen_msgids:
                    raise Reject(f"报文ID重复 duplicate msgid {msgid}")
                self._seen_msgids.add(msgid)
                if self.require_sign_in and infno not in ("9001", "9002"):
                    self._check_sign_no(env)
                if find_psn_no(env["input"]) and not env.get("insuplc_admdvs"):
                    raise Reject("参保地医保区划insuplc_admdvs不能为空 (input has psn_no)")
                handler = self._handlers.get(infno, self._h_default)
                output = handler(env, infno)
        except Reject as exc:
            return self.answer(msgid, -1, None, str(exc))
        return self.answer(msgid, 0, output, None)

    def answer(self, msgid: str, infcode: int, output: Any, err_msg: str | None
               ) -> dict[str, Any]:
        now = china_now()
        stamp = now.strftime("%Y%m%d%H%M%S%f")[:17]
        ref = f"{self.admvs}{now.strftime('%Y%m%d%H%M%S')}{next(self._counter) % 10**10:010d}"
        return {"infcode": infcode, "inf_refmsgid": ref, "refmsg_time": stamp,
                "respond_time": stamp, "enctype": "", "signtype": "", "cainfo": "",
                "err_msg": err_msg, "warn_msg": None, "output": output}

    def _check_sign_no(self, env: dict[str, Any]) -> None:
        sign_no = env.get("sign_no") or ""
        issued = self._sign_nos.get(sign_no)
        if not sign_no or issued is None:
            raise Reject(f"签到信息不存在，请先签到(9001) sign_no {sign_no!r} unknown")
        opter, day = issued
        if day != china_date() or opter != (env.get("opter") or ""):
            raise Reject("签到已失效，请重新签到(9001) sign_no expired or of another operator")

    # ------------------------------------------------------------ helpers

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{china_now().strftime('%Y%m%d')}{next(self._counter):08d}"

    def _entry(self, env: dict[str, Any], infno: str, **kw: Any) -> LedgerEntry:
        data = _data(env)
        return self.ledger.add(LedgerEntry(
            msgid=env["msgid"], infno=infno, psn_no=find_psn_no(env["input"]),
            day=china_date(), t=time.time(), input=env["input"],
            mdtrt_id=kw.pop("mdtrt_id", data.get("mdtrt_id")), **kw))

    def _amounts(self, data: dict[str, Any]) -> dict[str, Decimal]:
        mdtrt_id = data.get("mdtrt_id")
        fallback = self._fees.get(str(mdtrt_id), Decimal("100.00"))
        medfee = _money(data.get("medfee_sumamt"), str(fallback))
        fund = (medfee * Decimal("0.7")).quantize(CENT, rounding=ROUND_HALF_UP)
        acct = Decimal("0.00")
        if str(data.get("acct_used_flag", "0")) == "1":
            acct = (medfee * Decimal("0.1")).quantize(CENT, rounding=ROUND_HALF_UP)
        return {"medfee_sumamt": medfee, "fund_pay_sumamt": fund, "acct_pay": acct,
                "psn_cash_pay": medfee - fund - acct}

    @staticmethod
    def _floats(amounts: dict[str, Decimal]) -> dict[str, float]:
        return {k: float(v) for k, v in amounts.items()}

    def _setlinfo(self, data: dict[str, Any], psn_no: str | None, amounts: dict[str, Any],
                  setl_id: str | None, insutype: str, clr_type: str) -> dict[str, Any]:
        info = {"mdtrt_id": data.get("mdtrt_id"), "psn_no": psn_no,
                "psn_name": data.get("psn_name") or "测试患者", "insutype": insutype,
                "clr_type": clr_type, "clr_optins": self.admvs, "clr_way": "1",
                "setl_time": china_now().strftime("%Y-%m-%d %H:%M:%S"),
                "hifp_pay": amounts["fund_pay_sumamt"], "balc": 1000.0}
        info.update(amounts)
        if setl_id is not None:
            info["setl_id"] = setl_id
        return info

    # ------------------------------------------------------------ interfaces

    def _h_default(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        if not self.accept_unknown and not catalog.lookup(infno).known:
            raise Reject(f"交易编号不存在 unknown infno {infno!r}")
        if catalog.is_state_changing(infno):
            self._entry(env, infno)
        return {}

    def _h1101(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        data = _data(env)
        cert = str(data.get("mdtrt_cert_no") or data.get("certno") or "000000")
        psn_no = data.get("psn_no") or "P" + hashlib.sha1(cert.encode()).hexdigest()[:15]
        return {
            "baseinfo": {"psn_no": psn_no, "psn_cert_type": data.get("psn_cert_type", "01"),
                         "certno": data.get("certno") or cert,
                         "psn_name": data.get("psn_name") or "测试患者", "gend": "1",
                         "naty": "01", "brdy": "1980-01-01", "age": 45},
            "insuinfo": [{"balc": 1000.0, "insutype": "310", "psn_type": "11",
                          "psn_insu_stas": "1", "psn_insu_date": "2010-01-01",
                          "paus_insu_date": None, "cvlserv_flag": "0",
                          "insuplc_admdvs": env.get("insuplc_admdvs") or self.admvs,
                          "emp_name": "沙箱测试单位"}],
            "idetinfo": [],
        }

    def _h2201(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        data = _data(env)
        mdtrt_id = self._next_id("MD")
        self._entry(env, infno, kind="registration", status=OPEN, mdtrt_id=mdtrt_id,
                    insutype=data.get("insutype"))
        return {"data": {"mdtrt_id": mdtrt_id, "psn_no": find_psn_no(env["input"]),
                         "ipt_otp_no": data.get("ipt_otp_no")}}

    def _cancel_open(self, env: dict[str, Any], infno: str, kind: str, what: str
                     ) -> dict[str, Any]:
        mdtrt_id = _data(env).get("mdtrt_id")
        targets = self.ledger.find(kind=kind, mdtrt_id=mdtrt_id, status=OPEN)
        if not targets:
            raise Reject(f"{what}不存在或已撤销 no open {kind} for mdtrt_id {mdtrt_id!r}")
        for t in targets:
            t.status, t.undone_by = CANCELLED, env["msgid"]
        self._entry(env, infno, kind="cancel", ref_msgid=targets[0].msgid)
        return {}

    def _h2202(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        return self._cancel_open(env, infno, "registration", "就诊信息")

    def _h2401(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        mdtrt_id = self._next_id("ZY")
        self._entry(env, infno, kind="admission", status=OPEN, mdtrt_id=mdtrt_id)
        return {"result": {"mdtrt_id": mdtrt_id, "psn_no": find_psn_no(env["input"])}}

    def _h2404(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        return self._cancel_open(env, infno, "admission", "入院信息")

    def _h2204(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        details = env["input"].get("feedetail") or []
        if isinstance(details, dict):
            details = [details]
        result, total, mdtrt_id = [], Decimal("0.00"), None
        for d in details:
            fee = _money(d.get("det_item_fee_sumamt"),
                         str(_money(d.get("pric"), "0") * _money(d.get("cnt"), "1")))
            total += fee
            mdtrt_id = mdtrt_id or d.get("mdtrt_id")
            result.append({"feedetl_sn": d.get("feedetl_sn"), "det_item_fee_sumamt": float(fee),
                           "cnt": d.get("cnt"), "pric": d.get("pric"), "pric_uplmt_amt": None,
                           "selfpay_prop": 0, "fulamt_ownpay_amt": 0.0, "overlmt_amt": 0.0,
                           "preselfpay_amt": 0.0, "inscp_scp_amt": float(fee),
                           "chrgitm_lv": "01", "med_chrgitm_type": d.get("med_type", "09"),
                           "bas_medn_flag": "0", "hi_nego_drug_flag": "0",
                           "chld_medc_flag": "0", "list_sp_item_flag": "0",
                           "lmt_used_flag": "0", "drt_reim_flag": "0", "memo": None})
        if mdtrt_id:
            self._fees[str(mdtrt_id)] = self._fees.get(str(mdtrt_id), Decimal(0)) + total
        self._entry(env, infno, kind="fee", mdtrt_id=mdtrt_id,
                    amounts={"det_item_fee_sumamt": float(total)})
        return {"result": result}

    def _h2205(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        mdtrt_id = _data(env).get("mdtrt_id")
        self._fees.pop(str(mdtrt_id), None)
        self._entry(env, infno, kind="cancel")
        return {}

    def _h_trial(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        data = _data(env)
        amounts = self._floats(self._amounts(data))
        return {"setlinfo": self._setlinfo(data, find_psn_no(env["input"]), amounts, None,
                                           str(data.get("insutype") or "310"),
                                           str(data.get("clr_type") or "11"))}

    def _h_settle(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        data = _data(env)
        psn_no = find_psn_no(env["input"])
        amounts = self._floats(self._amounts(data))
        insutype = str(data.get("insutype") or "310")
        clr_type = str(data.get("clr_type") or _SETTLE[infno][1])
        setl_id = self._next_id("ST")
        self._entry(env, infno, kind="settlement", status=OPEN, setl_id=setl_id,
                    business_key=business_key(infno, data, psn_no, data.get("mdtrt_id")),
                    insutype=insutype, clr_type=clr_type, amounts=amounts)
        info = self._setlinfo(data, psn_no, amounts, setl_id, insutype, clr_type)
        return {"setlinfo": info, "setldetail": [
            {"fund_pay_type": "310100", "inscp_scp_amt": amounts["medfee_sumamt"],
             "fund_payamt": amounts["fund_pay_sumamt"], "setl_proc_info": "沙箱"}]}

    def _h_cancel_settle(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        setl_id = _data(env).get("setl_id")
        targets = [e for e in self.ledger.find(setl_id=setl_id, kind="settlement")
                   if e.infno in _CANCEL_OF[infno]]
        if not targets or targets[0].status != OPEN:
            raise Reject(f"结算信息不存在或已撤销 no open settlement {setl_id!r}")
        target = targets[0]
        target.status, target.undone_by = CANCELLED, env["msgid"]
        new_id = self._next_id("ST")
        self._entry(env, infno, kind="cancel", ref_msgid=target.msgid, setl_id=new_id)
        negative = {k: -v for k, v in target.amounts.items()}
        return {"setlinfo": {"setl_id": new_id, "mdtrt_id": target.mdtrt_id,
                             "psn_no": target.psn_no, **negative}}

    def _h2601(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        data = _data(env)
        omsgid, oinfno = str(data.get("omsgid") or ""), str(data.get("oinfno") or "")
        target = self.ledger.get(omsgid)
        if target is None:
            raise Reject(f"原交易不存在 original transaction {omsgid!r} not found")
        if oinfno and catalog.normalize(oinfno) != target.infno:
            raise Reject(f"原交易编号不符 oinfno {oinfno} does not match {target.infno}")
        if not catalog.reversible(target.infno):
            raise Reject(f"该交易不允许冲正 {target.infno} cannot be reversed by 2601")
        if target.status == REVERSED:
            raise Reject(f"原交易已冲正 {omsgid} was already reversed")
        if target.kind == "cancel" and target.ref_msgid:  # reversing a cancel reopens
            undone = self.ledger.get(target.ref_msgid)
            if undone is not None and undone.status == CANCELLED:
                undone.status, undone.undone_by = OPEN, None
        target.status, target.undone_by = REVERSED, env["msgid"]
        self._entry(env, infno, kind="reversal", ref_msgid=omsgid)
        return {}

    def _h3201(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        data = _data(env)
        begin = str(data.get("stmt_begndate") or china_date())[:10]
        end = str(data.get("stmt_enddate") or begin)[:10]
        rows = [e for e in self.ledger.open_settlements()
                if begin <= e.day <= end
                and (not data.get("insutype") or e.insutype == str(data["insutype"]))
                and (not data.get("clr_type") or e.clr_type == str(data["clr_type"]))]
        centre = {k: sum((_money(e.amounts.get(k)) for e in rows), Decimal("0.00"))
                  for k in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")}
        hosp = {k: _money(data.get(k)) for k in centre}
        hosp_cnt = int(data.get("fixmedins_setl_cnt") or 0)
        if len(rows) == hosp_cnt and centre == hosp:
            rslt, dscr = "0", "对平"
        elif len(rows) > hosp_cnt:
            rslt, dscr = "1", f"中心多: centre {len(rows)} settlements, hospital {hosp_cnt}"
        elif len(rows) < hosp_cnt:
            rslt, dscr = "2", f"医药机构多: centre {len(rows)}, hospital {hosp_cnt}"
        else:
            rslt, dscr = "3", ("数据不一致: centre " + ", ".join(
                f"{k}={v}" for k, v in centre.items()) + "; hospital " + ", ".join(
                f"{k}={v}" for k, v in hosp.items()))
        return {"stmtinfo": {"setl_optins": data.get("setl_optins") or self.admvs,
                             "stmt_rslt": rslt, "stmt_rslt_dscr": dscr}}

    def _h3202(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        return {"fileinfo": {"file_qury_no": uuid.uuid4().hex, "filename": "stmt_detail.zip",
                             "dld_endtime": china_now().strftime("%Y-%m-%d 23:59:59")}}

    def _h5201(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        psn_no = find_psn_no(env["input"])
        rows = [e for e in self.ledger.entries() if e.kind in ("registration", "admission")
                and e.psn_no == psn_no]
        return {"mdtrtinfo": [{"mdtrt_id": e.mdtrt_id, "psn_no": e.psn_no,
                               "vali_flag": "1" if e.status == OPEN else "0"} for e in rows]}

    def _h5203(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        data = _data(env)
        found = self.ledger.find(kind="settlement", setl_id=data.get("setl_id"))
        if not found:
            raise Reject(f"结算信息不存在 settlement {data.get('setl_id')!r} not found")
        e = found[0]
        info = self._setlinfo(e.input.get("data") or {}, e.psn_no, e.amounts, e.setl_id,
                              e.insutype or "310", e.clr_type or "11")
        info["vali_flag"] = "1" if e.status == OPEN else "0"
        return {"setlinfo": info}

    def _h9001(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        sign_in = env["input"].get("signIn") or {}
        opter = str(sign_in.get("opter_no") or env.get("opter") or "")
        day = china_date()
        sign_no = self._sign_ins.get((opter, day))
        if sign_no is None:  # the same day answers the same sign_no, as centres do
            sign_no = uuid.uuid4().hex
            self._sign_ins[(opter, day)] = sign_no
            self._sign_nos[sign_no] = (opter, day)
        return {"signinoutb": {"sign_time": china_now().strftime("%Y-%m-%d %H:%M:%S"),
                               "sign_no": sign_no}}

    def _h9002(self, env: dict[str, Any], infno: str) -> dict[str, Any]:
        sign_out = env["input"].get("signOut") or {}
        issued = self._sign_nos.pop(str(sign_out.get("sign_no") or ""), None)
        if issued is not None:
            self._sign_ins.pop(issued, None)
        return {"signoutoutb": {"sign_time": china_now().strftime("%Y-%m-%d %H:%M:%S")}}


__all__ = ["DONE", "SETTLEMENT_CODES", "Centre", "Reject"]
