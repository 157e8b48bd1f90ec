"""`mi-worker submit` and `mi-worker result`: calls that do not wait (issue 15), through the
same procedures the HIS calls (sp_medical_insurance_submit_v2 / _result_v2)."""
from __future__ import annotations

import json
import sys
from typing import Any, Dict, Optional

import click

from mi_worker.cli_context import Context, audit_unmask, pass_ctx
from mi_worker.his_async import MAX_DEADLINE_SECONDS, result, submit
from mi_worker.masking import mask_data
from mi_worker.states import OPEN, ErrorCode

#: `mi-worker result` exit status while the request is still open (0 done, 1 failed).
EXIT_OPEN = 5


def _show(shown: Dict[str, Any], as_json: bool, unmask: bool, command: str) -> None:
    if unmask:
        audit_unmask(shown.get("request_id"), command)
    else:  # the result JSON and the centre's err_msg carry names and ID numbers
        shown = mask_data(shown)
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False))
    else:
        for key, value in shown.items():
            click.echo(f"{key}: {'' if value is None else value}")


@click.command("submit")
@click.argument("interface_code")
@click.option("--input", "input_data", required=True, help="The input JSON object.")
@click.option("--deadline", "timeout", type=int, default=None,
              help=f"The row's own deadline in seconds (1..{MAX_DEADLINE_SECONDS}; default "
                   "worker.async_deadline_seconds).")
@click.option("--retry-count", type=int, default=3, show_default=True)
@click.option("--priority", type=int, default=5, show_default=True)
@click.option("--idempotency-key", default=None)
@click.option("--his-fee-id", default=None)
@click.option("--psn-no", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as one JSON object.")
@pass_ctx
def submit_cmd(c: Context, interface_code: str, input_data: str, timeout: Optional[int],
               retry_count: int, priority: int, idempotency_key: Optional[str],
               his_fee_id: Optional[str], psn_no: Optional[str], as_json: bool) -> None:
    """Queue one call and print its request id at once (exit 1 if it was refused)."""
    c.setup_logging("WARNING")
    if timeout is None:
        timeout = c.settings.worker.async_deadline_seconds
    database = c.db()
    try:
        outcome = submit(database, interface_code, input_data, timeout, retry_count,
                         priority=priority, idempotency_key=idempotency_key,
                         his_fee_id=his_fee_id, psn_no=psn_no)
    finally:
        database.close()
    _show(outcome.as_dict(), as_json, False, "submit")
    sys.exit(0 if outcome.error_code == ErrorCode.OK else 1)


@click.command("result")
@click.argument("request_id", type=int)
@click.option("--wait", "wait_s", type=click.FloatRange(0, 3600), default=0.0,
              show_default=True, help="Wait up to this many seconds for a final state.")
@click.option("--poll-ms", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as one JSON object.")
@click.option("--unmask", is_flag=True, help="Show personal data in the result in full "
              "(logged with your OS user).")
@pass_ctx
def result_cmd(c: Context, request_id: int, wait_s: float, poll_ms: int, as_json: bool,
               unmask: bool) -> None:
    """A submitted request's state: exit 0 done, 1 failed, 5 still open (ask again)."""
    c.setup_logging("WARNING")
    database = c.db()
    try:
        answer = result(database, request_id, int(round(wait_s * 1000)), poll_ms=poll_ms)
    finally:
        database.close()
    _show(answer.as_dict(), as_json, unmask, "result")
    still_open = answer.status in {s.value for s in OPEN}
    sys.exit(0 if answer.error_code == ErrorCode.OK else EXIT_OPEN if still_open else 1)
