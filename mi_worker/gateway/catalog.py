"""The interface catalogue: what each NHSA interface code does, as an explicit table.

Why a table and not rules on the first digits: 2206/2206A (门诊预结算), 2303 (住院预结算) and
2101 (药店预结算) sit among the settlement codes but change nothing, while 9101 (文件上传) does.
The retry policy (resend or not), the reversal job (2601 or a cancel code) and the message a
human reads after an uncertain outcome all come from here, so a wrong guess costs money: an
unknown code is therefore treated as state-changing (never resent blindly).

Kinds:
    query      reads only; safe to resend with a new msgid.
    trial      a pre-settlement calculation; changes nothing, safe to resend.
    state      changes the centre's data (registration, fee upload, settlement, filing...).
    session    9001 签到 / 9002 签退; safe to repeat.
    reconcile  3201/3202/3211/3212 对账; compares totals, changes no settlement.

2601 冲正 can reverse exactly 2102, 2103, 2207, 2208, 2304, 2305 and 2401 (the spec's list; its
second "2207 住院结算撤销" is a typo for 2305). 2207A is the newer variant of 2207 (门诊结算,
with 验密 / 电子凭证 fields); provinces that expose it answer it exactly like 2207, so it is
listed as reversible too. That is an inference: confirm with the province before relying on an
automatic 2601 of a 2207A.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

QUERY = "query"
TRIAL = "trial"
STATE = "state"
SESSION = "session"
RECONCILE = "reconcile"

KINDS = (QUERY, TRIAL, STATE, SESSION, RECONCILE)
RETRY_SAFE_KINDS = frozenset({QUERY, TRIAL, SESSION, RECONCILE})

_CODE_RE = re.compile(r"^[0-9]{4,5}[A-Z]?$")


@dataclass(frozen=True)
class Interface:
    """One catalogue row.

    ``cancel_code`` is the business cancel that undoes this call (2207 -> 2208);
    ``check_query`` is the 5xxx query that shows whether an uncertain call took effect.
    ``known`` is False for a code missing from the table (then it is handled as state-changing).
    """

    code: str
    name: str
    kind: str
    reversible_by_2601: bool = False
    cancel_code: str | None = None
    check_query: str | None = None
    known: bool = True

    @property
    def state_changing(self) -> bool:
        return self.kind == STATE

    @property
    def retry_safe(self) -> bool:
        return self.kind in RETRY_SAFE_KINDS


# code: (name, kind, cancel_code, check_query)
_TABLE: dict[str, tuple[str, str, str | None, str | None]] = {
    # 1xxx: 基础信息 and catalogue downloads — queries.
    "1101": ("人员信息获取", QUERY, None, None),
    "1201": ("医药机构信息获取", QUERY, None, None),
    "1301": ("西药中成药目录下载", QUERY, None, None),
    "1302": ("中药饮片目录下载", QUERY, None, None),
    "1303": ("医疗机构制剂目录下载", QUERY, None, None),
    "1304": ("民族药品目录查询", QUERY, None, None),
    "1305": ("医疗服务项目目录下载", QUERY, None, None),
    "1306": ("医用耗材目录下载", QUERY, None, None),
    "1307": ("疾病与诊断目录下载", QUERY, None, None),
    "1308": ("手术操作目录下载", QUERY, None, None),
    "1309": ("门诊慢特病种目录下载", QUERY, None, None),
    "1310": ("按病种付费病种目录下载", QUERY, None, None),
    "1311": ("日间手术治疗病种目录下载", QUERY, None, None),
    "1312": ("医保目录信息查询", QUERY, None, None),
    "1313": ("肿瘤形态学目录下载", QUERY, None, None),
    "1314": ("中医疾病目录下载", QUERY, None, None),
    "1315": ("中医证候目录下载", QUERY, None, None),
    "1316": ("医疗目录与医保目录匹配信息查询", QUERY, None, None),
    "1317": ("医药机构目录匹配信息查询", QUERY, None, None),
    "1318": ("医保目录限价信息查询", QUERY, None, None),
    "1319": ("医保目录先自付比例信息查询", QUERY, None, None),
    "1901": ("字典表查询", QUERY, None, None),
    "2001": ("人员待遇享受检查", QUERY, None, None),
    # 21xx: 药店.
    "2101": ("药店预结算", TRIAL, None, None),
    "2102": ("药店结算", STATE, "2103", "5203"),
    "2103": ("药店结算撤销", STATE, None, "5203"),
    # 22xx: 门诊.
    "2201": ("门诊挂号", STATE, "2202", "5201"),
    "2202": ("门诊挂号撤销", STATE, None, "5201"),
    "2203": ("门诊就诊信息上传", STATE, None, "5201"),
    "2203A": ("门诊就诊信息上传(新)", STATE, None, "5201"),
    "2204": ("门诊费用明细信息上传", STATE, "2205", "5204"),
    "2205": ("门诊费用明细信息撤销", STATE, None, "5204"),
    "2206": ("门诊预结算", TRIAL, None, None),
    "2206A": ("门诊预结算(新)", TRIAL, None, None),
    "2207": ("门诊结算", STATE, "2208", "5203"),
    "2207A": ("门诊结算(新)", STATE, "2208", "5203"),
    "2208": ("门诊结算撤销", STATE, None, "5203"),
    # 23xx: 住院.
    "2301": ("住院费用明细上传", STATE, "2302", "5204"),
    "2302": ("住院费用明细撤销", STATE, None, "5204"),
    "2303": ("住院预结算", TRIAL, None, None),
    "2304": ("住院结算", STATE, "2305", "5203"),
    "2305": ("住院结算撤销", STATE, None, "5203"),
    # 24xx: 住院办理.
    "2401": ("入院办理", STATE, "2404", "5303"),
    "2402": ("出院办理", STATE, "2405", "5201"),
    "2403": ("住院信息变更", STATE, None, "5201"),
    "2404": ("入院撤销", STATE, None, "5303"),
    "2405": ("出院撤销", STATE, None, "5201"),
    # 25xx: 备案.
    "2501": ("转院备案", STATE, "2502", "5304"),
    "2502": ("转院备案撤销", STATE, None, "5304"),
    "2503": ("人员慢特病备案", STATE, "2504", "5301"),
    "2504": ("人员慢特病备案撤销", STATE, None, "5301"),
    "2505": ("人员定点备案", STATE, "2506", "5302"),
    "2506": ("人员定点备案撤销", STATE, None, "5302"),
    "2507": ("人员意外伤害备案", STATE, None, None),
    "2601": ("冲正交易", STATE, None, None),
    # 31xx: 明细审核 (analysis; the centre stores nothing that settles money).
    "3101": ("明细审核事前分析服务", QUERY, None, None),
    "3102": ("明细审核事中分析服务", QUERY, None, None),
    "3103": ("事前事中服务反馈服务", QUERY, None, None),
    # 32xx: 对账.
    "3201": ("医药机构费用结算对总账", RECONCILE, None, None),
    "3202": ("医药机构费用结算对明细账", RECONCILE, None, None),
    "3211": ("医药机构日对总账", RECONCILE, None, None),
    "3212": ("医药机构日对明细账", RECONCILE, None, None),
    # 33xx-35xx: 目录对照, 科室, 进销存.
    "3301": ("目录对照上传", STATE, "3302", "1317"),
    "3302": ("目录对照撤销", STATE, None, "1317"),
    "3401": ("科室信息上传", STATE, "3403", "5101"),
    "3401A": ("批量科室信息上传", STATE, "3403", "5101"),
    "3402": ("科室信息变更", STATE, None, "5101"),
    "3403": ("科室信息撤销", STATE, None, "5101"),
    "3501": ("商品盘存上传", STATE, None, None),
    "3501A": ("商品盘存上传(新)", STATE, None, None),
    "3502": ("商品库存变更", STATE, None, None),
    "3502A": ("商品库存变更(新)", STATE, None, None),
    "3503": ("商品采购", STATE, None, None),
    "3503A": ("商品采购(新)", STATE, None, None),
    "3504": ("商品采购退货", STATE, None, None),
    "3504A": ("商品采购退货(新)", STATE, None, None),
    "3505": ("商品销售", STATE, None, None),
    "3506": ("商品销售退货", STATE, None, None),
    "3507": ("商品信息删除", STATE, None, None),
    # 4xxx: 医保基金监管 / 数据上报 uploads.
    "4101": ("医疗保障基金结算清单信息上传", STATE, None, "4104"),
    "4101A": ("医疗保障基金结算清单信息上传(新)", STATE, None, "4104"),
    "4102": ("医疗保障基金结算清单状态修改", STATE, None, "4104"),
    "4103": ("医疗保障基金结算清单信息查询", QUERY, None, None),
    "4104": ("医疗保障基金结算清单质控结果查询", QUERY, None, None),
    "4201": ("自费病人就诊以及费用明细上传", STATE, None, None),
    "4301": ("门急诊诊疗记录上传", STATE, None, None),
    "4401": ("住院病案首页信息上传", STATE, None, None),
    "4402": ("住院医嘱记录上传", STATE, None, None),
    "4501": ("临床检查报告记录上传", STATE, None, None),
    "4502": ("临床检验报告记录上传", STATE, None, None),
    "4503": ("细菌培养报告记录上传", STATE, None, None),
    "4504": ("药敏记录报告记录上传", STATE, None, None),
    "4505": ("病理检查报告记录上传", STATE, None, None),
    "4601": ("输血信息上传", STATE, None, None),
    "4602": ("护理操作生命体征测量记录上传", STATE, None, None),
    "4603": ("出院小结信息上传", STATE, None, None),
    "4701": ("电子病历上传", STATE, None, None),
    # 5xxx: 信息查询.
    "5101": ("科室信息查询", QUERY, None, None),
    "5102": ("医执人员信息查询", QUERY, None, None),
    "5201": ("就诊信息查询", QUERY, None, None),
    "5202": ("诊断信息查询", QUERY, None, None),
    "5203": ("结算信息查询", QUERY, None, None),
    "5204": ("费用明细查询", QUERY, None, None),
    "5205": ("人员慢特病用药记录查询", QUERY, None, None),
    "5206": ("人员累计信息查询", QUERY, None, None),
    "5301": ("人员慢特病备案查询", QUERY, None, None),
    "5302": ("人员定点信息查询", QUERY, None, None),
    "5303": ("在院信息查询", QUERY, None, None),
    "5304": ("转院信息查询", QUERY, None, None),
    "5401": ("项目互认信息查询", QUERY, None, None),
    "5402": ("报告明细信息查询", QUERY, None, None),
    # 9xxx: 签到 and files.
    "9001": ("签到", SESSION, None, None),
    "9002": ("签退", SESSION, None, None),
    "9101": ("文件上传", STATE, None, None),
    "9102": ("文件下载", QUERY, None, None),
}

REVERSIBLE_BY_2601 = frozenset({"2102", "2103", "2207", "2207A", "2208", "2304", "2305", "2401"})

# Extra words for doubt_advice where a cancel code alone does not say enough.
_CHECK_NAMES = {code: row[0] for code, row in _TABLE.items()}


def normalize(code: str) -> str:
    """Strip blanks and upper-case a letter suffix ("2207a" -> "2207A")."""
    return str(code).strip().upper()


def is_valid_code(code: str) -> bool:
    """4 or 5 digits with an optional letter suffix (2207A, 90100)."""
    return bool(_CODE_RE.match(normalize(code)))


def lookup(code: str) -> Interface:
    """The catalogue row; an unknown code gets a state-changing row with known=False."""
    c = normalize(code)
    row = _TABLE.get(c)
    if row is None:
        return Interface(code=c, name=f"未知交易 {c}", kind=STATE, known=False)
    name, kind, cancel, check = row
    return Interface(code=c, name=name, kind=kind, reversible_by_2601=c in REVERSIBLE_BY_2601,
                     cancel_code=cancel, check_query=check)


def is_state_changing(code: str) -> bool:
    """True for state-changing and unknown codes (the safe side)."""
    return lookup(code).kind == STATE


def is_retry_safe(code: str) -> bool:
    """May a request that possibly reached the centre be sent again (with a new msgid)?"""
    return lookup(code).kind in RETRY_SAFE_KINDS


def reversible(code: str) -> bool:
    """Can 2601 冲正 undo this code (omsgid = its msgid)?"""
    return normalize(code) in REVERSIBLE_BY_2601


def name(code: str) -> str:
    return lookup(code).name


def kind(code: str) -> str:
    return lookup(code).kind


def all_interfaces() -> list[Interface]:
    """Every known row, in code order (for docs, `mi-worker` listings and tests)."""
    return [lookup(c) for c in sorted(_TABLE)]


def doubt_advice(code: str) -> str:
    """What a human (or the reversal job) should do when a call's outcome is unknown.

    Chinese first for 医保办 staff, English after for IT.
    """
    it = lookup(code)
    if not it.state_changing:
        return (f"{it.code} {it.name} 不改变中心数据，可直接重发 / does not change the centre's "
                "data; it is safe to send again")
    steps_cn: list[str] = []
    steps_en: list[str] = []
    if it.check_query:
        qname = _CHECK_NAMES.get(it.check_query, "")
        steps_cn.append(f"查询 {it.check_query} {qname}")
        steps_en.append(f"query {it.check_query} to see whether it took effect")
    if it.reversible_by_2601:
        steps_cn.append(f"冲正 2601 (omsgid=原报文ID, oinfno={it.code})")
        steps_en.append(f"reverse with 2601 (omsgid = this msgid, oinfno = {it.code})")
    if it.cancel_code:
        cname = _CHECK_NAMES.get(it.cancel_code, "")
        steps_cn.append(f"或撤销 {it.cancel_code} {cname}")
        steps_en.append(f"or cancel with {it.cancel_code}")
    if not steps_cn:
        steps_cn.append("无自动撤销交易，请联系医保中心人工核实")
        steps_en.append("no automatic undo exists; confirm with the centre by hand")
    known = "" if it.known else " (未登记的交易编号 / code not in the catalogue)"
    return (f"{it.code} {it.name}{known} 结果不确定，请勿重复提交：" + "；".join(steps_cn)
            + f" / outcome of {it.code} unknown, do not resend: " + "; ".join(steps_en))


# Codes the worker manages itself, refused from the HIS procedure with -1001 (issue 12): the
# worker signs in (9001) and out (9002) on its own schedule and holds the sign_no, so a HIS
# sign-in would only replace the session the worker is using; 2601 冲正 is sent by the
# reversal job for every row in doubt, and a second, manual 2601 from the HIS could reverse a
# settlement twice or race the job. A hospital that reverses by hand from the HIS can allow
# 2601 (jobs.his_manual_reversal), never 9001 / 9002.
WORKER_MANAGED: dict[str, str] = {
    "9001": "签到由 mi-worker 自动完成 / sign-in is done by the worker",
    "9002": "签退由 mi-worker 自动完成 / sign-out is done by the worker",
    "2601": "冲正由 mi-worker 的冲正任务自动完成 / reversal is sent by the worker's 2601 job "
            "(set jobs.his_manual_reversal = true to allow a manual 2601 from the HIS)",
}


def his_refusal(code: str, allow_manual_reversal: bool = False) -> str | None:
    """Why the HIS may not call ``code`` through the procedure, or None when it may."""
    c = normalize(code)
    if c == "2601" and allow_manual_reversal:
        return None
    return WORKER_MANAGED.get(c)
