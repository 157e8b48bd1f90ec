"""Personal data stays out of logs and screens, end to end (issue 11 §3).

A real `mi-worker run` process calls the sandbox; the inputs carry known ID numbers, a
psn_no, a mobile and a name, and the sandbox echoes them in err_msg as real centres do.
Then every log line of the worker and every CLI screen (call, requests list/show, status,
alerts, monitor) is searched for them: none may appear unmasked, while msgids and request
ids must survive whole. The database keeps the full text, and `requests show --unmask`
shows it and logs who asked.
"""
from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, make_settings, settings_toml, wait_until
from mi_worker.masking import mask_data, mask_personal

CERTNO = "430726198410283970"
CERTNO_X = "11010519491231002X"
OLD_ID = "110105491231002"
PSN_NO = "43681067260552716828"
MOBILE = "13912345678"
NAME = "欧阳娜娜"
CARD = "6222021234567890123"
SECRETS = [CERTNO, CERTNO_X, OLD_ID, PSN_NO, MOBILE, NAME, "阳娜娜", CARD]

ECHO = ("证件号码[{certno}] 人员编号 {psn_no} 参保人{psn_name}未找到有效参保信息, 联系电话 "
        "{mobile} 卡 {card_no} 旧证 {old_id}")


def _leaks(text: str) -> list:
    return [s for s in SECRETS if s in text]


# -- the rules one by one --------------------------------------------------------------
@pytest.mark.parametrize("text", [
    f"证件号码[{CERTNO}] 人员编号 {PSN_NO}",
    f"参保人{NAME}(身份证号{CERTNO_X})未找到有效参保信息",
    f"mobile {MOBILE}, +86 {MOBILE}", f"card {CARD} / 6222 0212 3456 7890 123",
    f'{{"psn_name": "{NAME[:2]} {NAME[2:]}", "certno": "{CERTNO}"}}',
    f"姓名：{NAME}，患者{NAME}的结算 old {OLD_ID}", f"psn_no={PSN_NO}&mobile={MOBILE}",
])
def test_shapes_and_keys_are_masked(text):
    masked = mask_personal(text)
    assert not _leaks(masked) and "6222 0212 3456 7890 123" not in masked, masked
    assert "欧*" in masked or NAME not in text


def test_msgids_request_ids_times_and_codes_survive():
    msgid = "H43010500123" + "20261202050749" + "0001"
    numeric_msgid = "430105001234" + "20261202050749" + "0001"  # 30 digits: not an ID
    text = (f"2207 msgid={msgid} request_id=123456 infcode=-1 at 2026-12-02 05:07:49 "
            f"omsgid {numeric_msgid} setl 12.50 ts 20261202050749 code 90100")
    assert mask_personal(text) == text
    assert mask_personal("参保人员信息不存在") == "参保人员信息不存在"
    assert mask_data({"request_id": 123456789012345, "psn_no": "P0001"}) == {
        "request_id": 123456789012345, "psn_no": "P***1"}


# -- the system run --------------------------------------------------------------------
def _cli(cfg, *args, check_rc=None):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    env.pop("MI_WORKER_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "mi_worker", "--config", str(cfg), *args],
                          cwd=str(ROOT), env=env, capture_output=True, timeout=120)
    out = proc.stdout.decode("utf-8") + proc.stderr.decode("utf-8")
    if check_rc is not None:
        assert proc.returncode == check_rc, (args, proc.returncode, out)
    assert "Traceback" not in out, out
    return out


def test_no_personal_data_in_any_log_line_or_screen(db_url, sandbox, spawn, tmp_path):
    log_file = tmp_path / "logs" / "mi-worker.log"
    settings = make_settings(db_url, sandbox, logging={"level": "DEBUG",
                                                       "file": str(log_file)})
    sandbox.add_fault("infcode", infno="2207", message=ECHO)
    worker = spawn(settings)
    cfg = tmp_path / "cli.toml"
    cfg.write_text(settings_toml(settings), encoding="utf-8")
    person = {"psn_no": PSN_NO, "certno": CERTNO, "mdtrt_cert_no": CERTNO_X,
              "psn_name": NAME, "mobile": MOBILE, "card_no": CARD, "old_id": OLD_ID,
              "insuplc_admdvs": settings.gateway.insuplc_admdvs}
    wait_until(lambda: _cli(cfg, "health").startswith("OK"), timeout=60, step=0.5,
               message="worker heartbeat")
    screens = []
    screens.append(_cli(cfg, "call", "1101", "--input", json.dumps({"data": person}),
                        "--timeout", "20", check_rc=0))
    failed = _cli(cfg, "call", "2207", "--input",
                  json.dumps({"data": {**person, "mdtrt_id": "M1", "medfee_sumamt": 10}}),
                  "--timeout", "20", "--json", check_rc=1)
    screens.append(failed)
    # stdout's one JSON line (stderr may carry warnings, e.g. psqlODBC's log files)
    answer = json.loads([ln for ln in failed.splitlines() if ln.startswith("{")][-1])
    assert answer["error_code"] == -1004 and "证件号码[4307" in answer["error_message"]
    rid = answer["request_id"]

    from mi_worker.db import connect
    db = connect(db_url)
    try:
        row = db.run_one("get_request", request_id=rid)
        first = db.run_one("get_request", request_id=rid - 1)
    finally:
        db.close()
    # the database keeps the full text: the HIS needs it
    assert CERTNO in row["error_message"] and NAME in row["error_message"]
    assert PSN_NO in row["input_data"] and row["psn_no"] == PSN_NO
    msgid = row["msgid"]
    assert len(msgid) == 30

    for args in (["requests", "list"], ["requests", "list", "--json"],
                 ["requests", "show", str(rid)], ["requests", "show", str(rid), "--json"],
                 ["requests", "show", str(first["request_id"]), "--json"],
                 ["status"], ["status", "--json"], ["alerts", "--all"],
                 ["alerts", "--all", "--json"], ["monitor", "workers", "--json"]):
        screens.append(_cli(cfg, *args, check_rc=0))
    shown = screens[3] + screens[4]
    assert f"request_id           {rid}" in shown or f'"request_id": {rid}' in shown
    assert msgid in shown, "masking destroyed the msgid"
    assert "证件号码[4307" in screens[2], "the row with the echoed err_msg was not listed"

    unmasked = _cli(cfg, "requests", "show", str(rid), "--unmask", check_rc=0)
    assert CERTNO in unmasked and NAME in unmasked
    worker.stop()
    logs = worker.output() + log_file.read_text(encoding="utf-8")
    assert "infcode=-1" in logs and msgid in logs, "the centre's answer was not logged"
    audit = log_file.read_text(encoding="utf-8")
    assert f"--unmask by OS user {getpass.getuser()}" in audit or \
        f"--unmask by OS user {getpass.getuser()}" in unmasked
    for i, text in enumerate(screens + [logs]):
        assert not _leaks(text), (i, _leaks(text), text[:3000])
