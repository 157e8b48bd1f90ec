"""`mi-worker requests list | show | resolve` and `mi-worker reconcile`: rows a person looks at."""
from __future__ import annotations

import datetime as dt
import getpass
import sys
from typing import Optional

import click

from mi_worker import monitor
from mi_worker import reconcile as rec
from mi_worker import reconcile_detail as rd
from mi_worker.cli_context import QUIET, Context, audit_unmask, emit, pass_ctx
from mi_worker.cli_workflows import render_tree, workflow_tree
from mi_worker.files.transfer import FileTransfer
from mi_worker.gateway.client import NHSAClient
from mi_worker.runner import build_gateway


@click.group()
def requests() -> None:
    """Inspect and resolve request rows."""


@requests.command("list")
@click.option("--status", "status_", default=None, help="e.g. NEEDS_MANUAL, UNCERTAIN.")
@click.option("--interface", "interface_code", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def requests_list(c: Context, status_: Optional[str], interface_code: Optional[str], limit: int,
                  as_json: bool) -> None:
    """Newest requests first."""
    c.setup_logging(QUIET)
    database = c.db()
    try:
        data = monitor.rows(database.run("list_requests", status=status_ and status_.upper(),
                                         interface_code=interface_code, limit_rows=limit))
    finally:
        database.close()
    # personal data stays masked on a shared terminal (_emit masks every value)
    emit(data, as_json, lambda d: monitor.table(d, ["request_id", "interface_code", "status",
                                                     "psn_no", "attempts", "request_time",
                                                     "error_message"]), c.tz)


@requests.command("show")
@click.argument("request_id", type=int)
@click.option("--workflow", "is_workflow", is_flag=True,
              help="REQUEST_ID is a workflow id: show its whole tree.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--unmask", is_flag=True, help="Show personal data in full (the HIS row keeps it "
              "anyway); logged with your OS user.")
@pass_ctx
def requests_show(c: Context, request_id: int, as_json: bool, unmask: bool,
                  is_workflow: bool = False) -> None:
    """One request with its reversal rows; a step of a workflow (or --workflow ID) shows the
    whole workflow tree (personal data masked unless --unmask)."""
    c.setup_logging(QUIET)
    if unmask:
        audit_unmask(request_id)
    database = c.db()
    try:
        row = None if is_workflow else database.run_one("get_request", request_id=request_id)
        children = [] if is_workflow else database.run("find_children",
                                                       parent_request_id=request_id)
        wid = request_id if is_workflow else (row or {}).get("workflow_id")
        tree = workflow_tree(database, int(wid)) if wid is not None else None
    finally:
        database.close()
    if tree is not None:
        emit(tree, as_json, render_tree, c.tz, unmask=unmask)
        return
    if not row:
        raise click.ClickException(f"request {request_id} not found")
    data = {**monitor.rows([row])[0], "reversals": monitor.rows(children)}

    def render(d) -> str:
        lines = [f"{k:20} {v}" for k, v in d.items() if k != "reversals"]
        lines.append("reversals:")
        lines.append(monitor.table(d["reversals"], ["request_id", "interface_code", "status",
                                                    "error_message"]))
        return "\n".join(lines)
    emit(data, as_json, render, c.tz, unmask=unmask)


@requests.command("resolve")
@click.argument("request_id", type=int)
@click.option("--note", required=True, help="What was checked and done (kept on the row).")
@click.option("--by", "resolved_by", default=None, help="Operator name (default: OS user).")
@pass_ctx
def requests_resolve(c: Context, request_id: int, note: str, resolved_by: Optional[str]) -> None:
    """Record the manual settlement of a NEEDS_MANUAL (or UNCERTAIN) row."""
    c.setup_logging(QUIET)
    database = c.db()
    try:
        done = database.run("resolve_request", request_id=request_id, note=note,
                            resolved_by=resolved_by or getpass.getuser())
    finally:
        database.close()
    if not done:
        raise click.ClickException(f"request {request_id} is not an unresolved NEEDS_MANUAL or "
                                   "UNCERTAIN row")
    click.echo(f"request {request_id} resolved")


@click.command()
@click.option("--date", "day", default=None, help="China calendar day YYYY-MM-DD "
                                                  "(default: yesterday).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--fix", is_flag=True, help="Offer (ask, one by one) the 2601 for the day's 中心多 "
              "rows whose msgid is ours and whose settlement the HIS never got; no 3201.")
@click.option("--yes", is_flag=True, help="With --fix: queue every offered 2601 without asking.")
@pass_ctx
def reconcile(c: Context, day: Optional[str], as_json: bool, fix: bool = False,
              yes: bool = False) -> None:
    """对账: the day's totals to the centre (3201) and, for a group that does not balance, the
    detail (3202) with the stored mismatched rows; a worker must be running."""

    c.setup_logging("WARNING")
    s = c.settings
    try:
        when = dt.date.fromisoformat(day) if day else rec.yesterday_china()
    except ValueError:
        raise click.BadParameter(f"{day!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-24",
                                 param_hint="--date") from None
    optins = rec.setl_optins(s)
    database = c.db()
    gateway = None
    try:
        if fix:
            offer_fixes(database, when, s.jobs.reversal_timeout_seconds, yes)
            return
        on_mismatch = None
        gateway = build_gateway(s, database, None)
        if isinstance(gateway, NHSAClient):
            transfer = FileTransfer(gateway)
            on_mismatch = lambda r: rd.detail(database, transfer, r, optins)  # noqa: E731
        results = rec.reconcile(database, when, optins, extra_groups=s.jobs.reconcile_groups,
                                on_mismatch=on_mismatch)
        details = monitor.rows(database.run("recon_detail_for_day", stmt_date=when.isoformat()))
    finally:
        if gateway is not None:
            gateway.close()
        database.close()
    emit(results, as_json, lambda d: monitor.table(d, ["stmt_date", "insutype", "clr_type",
                                                        "setl_cnt", "medfee_sumamt",
                                                        "stmt_rslt", "stmt_rslt_dscr"]))
    if details and not as_json:
        click.echo("\n明细对账 (3202) rows that differ:")
        emit(details, False, lambda d: monitor.table(d, ["detail_id", "insutype", "clr_type",
                                                          "stmt_rslt", "setl_id", "msgid",
                                                          "psn_no", "medfee_sumamt", "memo"]))
    if any(r["stmt_rslt"] != "0" for r in results):
        sys.exit(1)


def offer_fixes(database, when: dt.date, timeout_seconds: int, yes: bool) -> None:
    """`reconcile --fix`: ask per 中心多 row of ours; log and queue the 2601s agreed to."""
    candidates = rd.fix_candidates(database, when)
    if not candidates:
        click.echo(f"{when}: no 中心多 row of ours to reverse (run `mi-worker reconcile --date "
                   f"{when}` first)")
        return
    operator = getpass.getuser()
    for cand in candidates:
        orig = cand["original"]
        prompt = (f"中心多 setl_id {cand['setl_id']} {cand['medfee_sumamt']}: msgid "
                  f"{cand['msgid']} is request {orig['request_id']} ({orig['interface_code']}, "
                  f"{orig['status']}); the HIS never got this settlement. Queue 2601 冲正?")
        if yes or click.confirm(prompt, default=False):
            rid = rd.queue_fix(database, cand, timeout_seconds, operator)
            click.echo(f"queued 2601 request {rid} for msgid {cand['msgid']}")
        else:
            click.echo(f"skipped msgid {cand['msgid']}")


# -- config ------------------------------------------------------------------------------
