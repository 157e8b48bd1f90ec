"""Simplified Chinese first (the people reading it are hospital IT and 医保办), English on a switch.

A plain table instead of gettext catalogues: a few dozen strings, no compile step, and a
missing translation shows the key instead of breaking a page.
"""
from __future__ import annotations

from typing import Dict, Tuple

from mi_worker.states import ResultStatus, Status

LANGS = ("zh", "en")

_T: Dict[str, Tuple[str, str]] = {
    "title": ("医保接口监控", "NHSA gateway monitor"),
    "overview": ("总览", "Overview"),
    "requests": ("请求", "Requests"),
    "doubtful": ("待人工处理", "Needs attention"),
    "alerts": ("告警", "Alerts"),
    "reconciliation": ("对账", "Reconciliation"),
    "workers": ("工作进程", "Workers"),
    "overall": ("总体状态", "Overall"),
    "host": ("主机", "Host"),
    "pid": ("进程号", "PID"),
    "version": ("版本", "Version"),
    "worker_id": ("进程标识", "Worker"),
    "last_heartbeat": ("最后心跳", "Last heartbeat"),
    "seconds_ago": ("秒前", "s ago"),
    "in_flight": ("处理中", "In flight"),
    "processed_total": ("累计处理", "Processed"),
    "state": ("状态", "State"),
    "queue": ("队列（未完成）", "Queue (open rows)"),
    "depth": ("数量", "Depth"),
    "oldest_age": ("最久等待(秒)", "Oldest (s)"),
    "last_hour": ("最近一小时", "Last hour"),
    "last_day": ("最近一天", "Last day"),
    "throughput": ("调用量", "Calls"),
    "latency": ("响应时间 p50 / p95", "Latency p50 / p95"),
    "total_requests": ("调用总数", "Calls"),
    "success_rate": ("成功率", "Success rate"),
    "avg_ms": ("平均耗时", "Average"),
    "p95_ms": ("p95 耗时", "p95"),
    "p50": ("p50", "p50"),
    "p95": ("p95", "p95"),
    "interface": ("接口", "Interface"),
    "interface_code": ("接口编号", "Interface code"),
    "interface_name": ("接口名称", "Name"),
    "calls": ("次数", "Calls"),
    "open_alerts": ("未关闭告警", "Open alerts"),
    "none": ("无", "none"),
    "recon_of": ("对账结果", "Reconciliation of"),
    "recon_missing": ("该日尚无对账结果", "no reconciliation result for that day yet"),
    "recon_ok": ("一致", "matches"),
    "recon_bad": ("不一致", "differs"),
    "request_id": ("请求号", "Request"),
    "status": ("状态", "Status"),
    "psn_no": ("人员编号", "psn_no"),
    "msgid": ("报文ID", "msgid"),
    "his_fee_id": ("HIS费用号", "HIS fee id"),
    "attempts": ("尝试次数", "Attempts"),
    "request_time": ("请求时间", "Requested"),
    "response_time": ("应答时间", "Answered"),
    "latency_ms": ("耗时", "Latency"),
    "error": ("错误", "Error"),
    "error_code": ("错误码", "Error code"),
    "infcode": ("infcode", "infcode"),
    "from": ("开始时间", "From"),
    "to": ("结束时间", "To"),
    "any": ("全部", "any"),
    "filter": ("筛选", "Filter"),
    "reset": ("清除", "Reset"),
    "newest": ("最新", "Newest"),
    "older": ("更早 →", "Older →"),
    "no_rows": ("没有符合条件的请求", "No matching requests"),
    "bad_filter": ("以下筛选条件无效，已忽略", "Ignored invalid filters"),
    "request": ("请求", "Request"),
    "input": ("请求参数（已脱敏）", "Input (masked)"),
    "answer": ("中心应答（已脱敏）", "Centre's answer (masked)"),
    "attempt_log": ("尝试记录", "Attempt log"),
    "reversal_chain": ("冲正链", "Reversal chain"),
    "parent": ("原交易", "Original"),
    "children": ("冲正/撤销请求", "Reversal rows"),
    "not_found": ("找不到该请求", "Request not found"),
    "procedure": ("处理步骤", "What to do"),
    "procedure_uncertain": (
        "结果不确定（UNCERTAIN）：冲正（2601）任务会自动处理，一般无需操作。若长时间未变化，"
        "请检查工作进程和网关。",
        "UNCERTAIN: the reversal job sends 2601 by itself; nothing to do unless it stays "
        "here for long (then check the workers and the gateway)."),
    "procedure_manual": (
        "需人工处理（NEEDS_MANUAL）：1. 打开请求查看报文ID、错误信息和冲正记录；"
        "2. 向医保中心核实（5203 结算信息查询、3202 明细对账或省平台）；"
        "3. 按实际情况撤销或保留，并更新 HIS；"
        "4. 在服务器上登记处理结果：mi-worker requests resolve 请求号 --note \"核实情况\"。",
        "NEEDS_MANUAL: 1. open the request: msgid, message, reversal rows; 2. check with the "
        "centre (5203 settlement lookup, 3202 detail reconciliation, or the province's "
        "portal); 3. cancel or keep as appropriate and update the HIS; 4. record it on the "
        "server: mi-worker requests resolve ID --note \"what was checked and done\"."),
    "procedure_late": (
        "已成功但调用方已超时（待冲正）：冲正任务会自动发送 2601。",
        "COMPLETED after the caller gave up (to be reversed): the reversal job sends 2601."),
    "needs_reversal": ("待冲正", "to be reversed"),
    "reversals": ("冲正次数", "Reversals"),
    "nothing_doubtful": ("没有需要处理的请求", "Nothing needs attention"),
    "alert_type": ("类型", "Type"),
    "alert_level": ("级别", "Level"),
    "alert_message": ("内容", "Message"),
    "raised_at": ("发生时间", "Raised"),
    "last_seen_at": ("最近出现", "Last seen"),
    "resolved_at": ("解除时间", "Resolved"),
    "open": ("未解除", "open"),
    "stmt_date": ("对账日期", "Day"),
    "insutype": ("险种", "Insurance type"),
    "clr_type": ("清算类别", "Clearing type"),
    "setl_cnt": ("结算笔数", "Settlements"),
    "medfee_sumamt": ("医疗费总额", "Total fee"),
    "fund_pay_sumamt": ("基金支付", "Fund paid"),
    "acct_pay": ("个人账户", "Account paid"),
    "stmt_rslt": ("结果", "Result"),
    "stmt_rslt_dscr": ("说明", "Description"),
    "times_in": ("时间均为", "Times in"),
    "read_only": ("只读页面，个人信息已脱敏", "Read-only; personal data masked"),
    "refresh": ("每 30 秒自动刷新", "refreshes every 30 s"),
    "UP": ("正常", "UP"),
    "WARNING": ("心跳延迟", "WARNING"),
    "DOWN": ("停止响应", "DOWN"),
    "STOPPED": ("已停止", "STOPPED"),
}
# What the HIS reads (result_status) and the row statuses, in both languages.
_T.update({
    ResultStatus.SUCCESS.value: ("成功", "success"),
    ResultStatus.ERROR.value: ("失败", "error"),
    ResultStatus.TIMEOUT.value: ("超时", "timeout"),
    ResultStatus.UNCERTAIN.value: ("不确定", "uncertain"),
    ResultStatus.IN_PROGRESS.value: ("处理中", "in progress"),
})
_T.update({f"st_{s.value}": (zh, s.value) for s, zh in (
    (Status.PENDING, "待处理"), (Status.PROCESSING, "处理中"), (Status.COMPLETED, "成功"),
    (Status.ERROR, "失败"), (Status.TIMEOUT, "超时"), (Status.UNCERTAIN, "结果不确定"),
    (Status.REVERSED, "已冲正"), (Status.NEEDS_MANUAL, "需人工处理"))})


def translate(key: str, lang: str) -> str:
    pair = _T.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "en" else pair[0]


def status_label(status: str, lang: str) -> str:
    """A request status in the page's language (the code itself stays visible in English)."""
    label = translate(f"st_{status}", lang)
    return status if label.startswith("st_") else label
