"""The fake centre's fee-detail and discharge rules, for the settlement workflows (issue 14).

Ledger semantics the workflow tests assert: an uploaded fee detail (2204 门诊 / 2301 住院) is
``open`` until a settlement of its mdtrt_id makes it ``settled`` or a cancel (2205 / 2302)
makes it ``cancelled``; cancelling or 2601-reversing that settlement makes it ``open`` again
(the fees stay uploaded and must be cancelled too). A cancel with batch "0000" removes every
unsettled detail of the visit and succeeds when there is none (real centres differ; a
cancel that finds nothing is what an undo of an upload that never landed sends). 2402 出院办理
is ``open`` until 2405 cancels it. 2203 就诊信息上传 is recorded by the default handler.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from mi_worker.sandbox.ledger import CANCELLED, OPEN

SETTLED = "settled"
Handler = Callable[[Dict[str, Any], str], Dict[str, Any]]


def _data(env: Dict[str, Any]) -> Dict[str, Any]:
    data = env["input"].get("data")
    return data if isinstance(data, dict) else {}


def install(c: Any, reject: Callable[[str], Exception]) -> None:
    """Add or wrap the handlers of centre ``c`` (a sandbox.centre.Centre)."""
    h = c._handlers
    upload = h["2204"]

    def fees(mdtrt_id: Any, status: str) -> list:
        return c.ledger.find(kind="fee", mdtrt_id=mdtrt_id, status=status)

    def fee_upload(env: Dict[str, Any], infno: str) -> Dict[str, Any]:
        out = upload(env, infno)
        c.ledger.get(env["msgid"]).status = OPEN
        return out

    def fee_cancel(env: Dict[str, Any], infno: str) -> Dict[str, Any]:
        data = _data(env)
        mdtrt_id = data.get("mdtrt_id")
        batch = str(data.get("chrg_bchno") or data.get("feedetl_sn") or "0000")
        if fees(mdtrt_id, SETTLED):
            raise reject(f"费用已结算, 不能撤销 fee details of {mdtrt_id!r} are settled")
        for e in fees(mdtrt_id, OPEN):
            details = e.input.get("feedetail") or []
            details = [details] if isinstance(details, dict) else details
            if batch == "0000" or any(batch in (str(d.get("chrg_bchno")), str(d.get(
                    "feedetl_sn"))) for d in details if isinstance(d, dict)):
                e.status, e.undone_by = CANCELLED, env["msgid"]
        c._fees.pop(str(mdtrt_id), None)
        c._entry(env, infno, kind="cancel")
        return {}

    def settle(orig: Handler) -> Handler:
        def run(env: Dict[str, Any], infno: str) -> Dict[str, Any]:
            out = orig(env, infno)
            for e in fees(_data(env).get("mdtrt_id"), OPEN):
                e.status = SETTLED
            return out
        return run

    def unsettle(orig: Handler) -> Handler:
        def run(env: Dict[str, Any], infno: str) -> Dict[str, Any]:
            out = orig(env, infno)
            for e in fees((out.get("setlinfo") or {}).get("mdtrt_id"), SETTLED):
                e.status = OPEN
            return out
        return run

    reverse = h["2601"]

    def reversal(env: Dict[str, Any], infno: str) -> Dict[str, Any]:
        out = reverse(env, infno)
        target = c.ledger.get(str(_data(env).get("omsgid") or ""))
        if target is not None and target.kind == "settlement":
            for e in fees(target.mdtrt_id, SETTLED):
                e.status = OPEN
        return out

    def discharge(env: Dict[str, Any], infno: str) -> Dict[str, Any]:
        info = env["input"].get("dscginfo") or _data(env)
        c._entry(env, infno, kind="discharge", status=OPEN, mdtrt_id=info.get("mdtrt_id"))
        return {}

    h.update({
        "2204": fee_upload, "2301": fee_upload, "2205": fee_cancel, "2302": fee_cancel,
        "2207": settle(h["2207"]), "2207A": settle(h["2207A"]), "2304": settle(h["2304"]),
        "2208": unsettle(h["2208"]), "2305": unsettle(h["2305"]), "2601": reversal,
        "2402": discharge,
        "2405": lambda env, infno: c._cancel_open(env, infno, "discharge", "出院信息"),
    })
