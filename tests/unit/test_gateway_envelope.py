"""Envelope rules: msgid, China time whatever the host zone, insuplc_admdvs, parsing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from mi_worker.gateway import envelope
from mi_worker.gateway.settings import GatewaySettings


def test_format_msgid():
    t = datetime(2024, 3, 5, 8, 9, 7)
    m = envelope.format_msgid("H11010100001", t, 42)
    assert m == "H11010100001" "20240305080907" "0042"
    assert len(m) == 30 and envelope.is_valid_msgid(m, "H11010100001")
    assert envelope.format_msgid("H11010100001", t, 10001).endswith("0001")
    with pytest.raises(ValueError):
        envelope.format_msgid("SHORT", t, 1)


def test_is_valid_msgid():
    assert not envelope.is_valid_msgid("H11010100001" "2024030508090" "0042")
    assert not envelope.is_valid_msgid("H11010100001" "2024030508090X" "0042")
    assert not envelope.is_valid_msgid("H11010100001" "20240305080907" "0042", "H00000000000")


def test_inf_time_explicit_utc():
    now = datetime(2024, 12, 31, 16, 30, 5, tzinfo=timezone.utc)
    assert envelope.inf_time(now) == "2025-01-01 00:30:05"
    assert envelope.china_date(now) == "2025-01-01"
    naive = datetime(2024, 12, 31, 16, 30, 5)  # taken as UTC
    assert envelope.inf_time(naive) == "2025-01-01 00:30:05"


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_inf_time_ignores_host_zone(tz):
    code = ("from datetime import datetime, timezone; from mi_worker.gateway import envelope;"
            "print(envelope.inf_time(datetime(2024,7,1,20,0,0,tzinfo=timezone.utc)));"
            "import time; t=time.time(); now=envelope.inf_time();"
            "ref=datetime.fromtimestamp(t, timezone.utc).astimezone(envelope.CHINA_TZ);"
            "print(now[:13] == ref.strftime('%Y-%m-%d %H'))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TZ": tz},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0:2] == ["2024-07-02", "04:00:00"]
    assert out[2] == "True"


def test_china_tz_fallback_offset():
    now = datetime(2024, 7, 1, 20, 0, 0, tzinfo=timezone.utc)
    assert envelope.china_now(now).utcoffset().total_seconds() == 8 * 3600


def _settings(**kw):
    base = {"fixmedins_code": "H11010100001", "fixmedins_name": "测试医院", "mdtrtarea_admvs": "110100",
                "insuplc_admdvs": "110000", "recer_sys_code": "YBXT", "opter": "001", "opter_name": "张三"}
    base.update(kw)
    return GatewaySettings(**base)


def test_build_envelope_fields_and_order():
    env = envelope.build_envelope(_settings(), "1101", "M" * 30, {"data": {"a": 1}},
                                  sign_no="S1", insuplc_admdvs="")
    assert list(env) == ["infno", "msgid", "mdtrtarea_admvs", "insuplc_admdvs",
                         "recer_sys_code", "dev_no", "dev_safe_info", "cainfo", "signtype",
                         "infver", "opter_type", "opter", "opter_name", "inf_time",
                         "fixmedins_code", "fixmedins_name", "sign_no", "input"]
    assert env["infver"] == "V1.0" and env["opter_type"] == "1"
    assert env["input"] == {"data": {"a": 1}}
    assert len(env["inf_time"]) == 19


def test_province_extras_only_when_set():
    env = envelope.build_envelope(_settings(enc_type="SM4", serv_code="X1"), "1101", "M" * 30,
                                  {})
    assert env["enc_type"] == "SM4" and env["serv_code"] == "X1"
    assert "fixmedins_soft_fcty" not in env and "serv_sign" not in env
    assert list(env)[-1] == "input"


def test_encode_is_utf8():
    body = envelope.encode({"infno": "1101", "input": {"data": {"psn_name": "王小明"}}})
    assert "王小明".encode() in body
    assert json.loads(body.decode("utf-8"))["input"]["data"]["psn_name"] == "王小明"


def test_insuplc_rules():
    r = envelope.resolve_insuplc_admdvs
    with_psn = {"data": {"psn_no": "P1", "insuplc_admdvs": "120000"}}
    assert r(with_psn, "130000", "110000") == ("130000", True)  # the call wins
    assert r(with_psn, None, "110000") == ("120000", True)  # then input.data
    assert r({"data": {"psn_no": "P1"}}, None, "110000") == ("110000", True)  # then default
    assert r({"data": {"psn_no": "P1"}}, None, "") == ("", True)  # required, missing
    nested = {"feedetail": [{"psn_no": "P2"}]}
    assert r(nested, None, "110000") == ("110000", True)
    assert r({"data": {"certno": "x"}}, None, "110000") == ("", False)  # not required
    assert envelope.find_psn_no({"data": {"x": {"psn_no": 123}}}) == "123"


@pytest.mark.parametrize("raw,expected", [(0, "0"), ("0", "0"), (" 0 ", "0"), (0.0, "0"),
                                          (-1, "-1"), ("-1", "-1"), (None, None),
                                          ("E01", "E01")])
def test_infcode_str(raw, expected):
    assert envelope.infcode_str(raw) == expected


def test_parse_response():
    ok = envelope.parse_response('{"infcode":0,"output":{"a":"中"}}'.encode())
    assert envelope.is_success(ok)
    assert envelope.is_success(envelope.parse_response(b'\xef\xbb\xbf{"infcode":"0"}'))
    bad = envelope.parse_response('{"infcode":"-1","err_msg":"失败"}'.encode())
    assert not envelope.is_success(bad) and envelope.error_message(bad) == "失败"
    assert "without err_msg" in envelope.error_message({"infcode": -1})
    for body in (b"", b"<html>", b'{"output":{}}', b"[1]", b"\xff\xfe"):
        with pytest.raises(envelope.BadResponse):
            envelope.parse_response(body)


def test_china_tz_fallback_without_tzdata(monkeypatch):
    import zoneinfo

    def missing(key):
        raise zoneinfo.ZoneInfoNotFoundError(key)

    monkeypatch.setattr(zoneinfo, "ZoneInfo", missing)
    tz = envelope._china_tz()
    now = datetime(2024, 1, 1, 0, 0, 0, tzinfo=timezone.utc)
    assert now.astimezone(tz).utcoffset().total_seconds() == 8 * 3600
