"""Transports A/B/C end to end against the sandbox, settings validation, the factory, TLS,
and the 国密 plug-ins through a mocked HTTP layer."""
from __future__ import annotations

import json
import ssl

import httpx
import pytest

from mi_worker.config import ConfigError
from mi_worker.gateway import gm
from mi_worker.gateway.base import Outcome
from mi_worker.gateway.client import NHSAClient, SignInError
from mi_worker.gateway.factory import NoopGateway, build_gateway
from mi_worker.gateway.settings import GatewaySettings
from mi_worker.gateway.transports import (
    CsbTransport,
    TifTransport,
    make_transport,
    tls_verify,
)
from mi_worker.sandbox import client_settings_for, start_for_settings
from mi_worker.sandbox.testing import (
    MsgidCounter,
    client_settings,
    make_ctx,
    running_sandbox,
)
from mi_worker.states import ErrorCode


@pytest.mark.parametrize("transport", ["single", "tif", "csb"])
def test_transport_end_to_end(transport):
    with running_sandbox(transport=transport) as box:
        c = NHSAClient(client_settings(box))
        try:
            r = c.call(make_ctx("1101", {"data": {"certno": "110101198001010011",
                                                  "psn_name": "王小明"}}))
        finally:
            c.close()
        assert r.outcome is Outcome.COMPLETED and r.infcode == "0"
        assert r.response["output"]["baseinfo"]["psn_name"] == "王小明"
        assert [c.http_status for c in box.calls.calls()] == [200, 200, 200]  # 9001 1101 9002
        if transport != "single":
            assert box.calls.calls("1101")[0].path.endswith("/1101")


@pytest.mark.parametrize("transport", ["tif", "csb"])
def test_wrong_secret_rejected(transport):
    with running_sandbox(transport=transport) as box:
        c = NHSAClient(client_settings(box, secret="wrong"))
        try:
            r = c.call(make_ctx("1101"))
            with pytest.raises(SignInError):
                c.sign_in()
        finally:
            c.close()
        assert r.outcome is Outcome.ERROR and r.error_code == ErrorCode.GATEWAY
        assert "签名校验失败" in r.error_message and "9001" in r.error_message
        assert r.attempt_log[0]["http_status"] == 401
        assert len(box.calls.calls("9001")) == 2  # one per call, never retried
        assert box.ledger.entries() == []


def test_wrong_paasid_and_access_key_rejected():
    with running_sandbox(transport="tif") as box:
        c = NHSAClient(client_settings(box, paasid="other", sign_in=False))
        r = c.call(make_ctx("1101"))
        c.close()
        assert r.outcome is Outcome.ERROR and "paasid" in r.error_message
    with running_sandbox(transport="csb") as box:
        c = NHSAClient(client_settings(box, access_key="other", sign_in=False))
        r = c.call(make_ctx("1101"))
        c.close()
        assert r.outcome is Outcome.ERROR and "_api_access_key" in r.error_message


def test_tif_path_table_and_csb_names_and_seconds():
    paths = {"1101": "/fsi/api/fsiPsnInfoService/queryPsnInfo"}
    with running_sandbox(transport="tif") as box:
        c = NHSAClient(client_settings(box, paths=paths))
        assert c.call(make_ctx("1101")).outcome is Outcome.COMPLETED
        c.close()
        assert box.calls.calls("1101")[0].path.endswith("/fsi/api/fsiPsnInfoService/queryPsnInfo")
    with running_sandbox(transport="csb") as box:
        c = NHSAClient(client_settings(box, csb_api_names={"1101": "hsa.psn.query"},
                                       csb_timestamp_unit="s"))
        assert c.call(make_ctx("1101")).outcome is Outcome.COMPLETED
        c.close()


def test_url_rules():
    s = GatewaySettings(url="https://gw/ebus/hsa/hgs/", transport="tif",
                        paths={"9001": "/fsi/api/signIn", "2601": "https://other/revs"})
    t = make_transport(s)
    assert isinstance(t, TifTransport)
    assert t.url("1101") == "https://gw/ebus/hsa/hgs/1101"
    assert t.url("9001") == "https://gw/ebus/hsa/hgs/fsi/api/signIn"
    assert t.url("2601") == "https://other/revs"
    star = make_transport(GatewaySettings(url="https://gw/x", transport="tif",
                                          paths={"*": "/callService"}))
    assert star.url("1101") == "https://gw/x/callService"
    csb = make_transport(GatewaySettings(url="https://gw/power-csb/powercsb",
                                         transport="csb", access_key="AK", secret="SK"))
    assert isinstance(csb, CsbTransport)
    assert csb.url("9001") == "https://gw/power-csb/powercsb/9001"
    h = csb.headers("9001")
    assert h["_api_name"] == "9001" and len(h["_api_timestamp"]) == 13
    single = make_transport(GatewaySettings(url="https://gw/fsi/api/callService"))
    assert single.url("2207") == "https://gw/fsi/api/callService"
    assert "x-tif-signature" not in single.headers("2207")


def test_tls_verify_options():
    import certifi

    # Default trust is the OS store (an SSLContext), never httpx's certifi default.
    ctx = tls_verify(GatewaySettings())
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    off = tls_verify(GatewaySettings(verify_tls=False))
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname
    ctx = tls_verify(GatewaySettings(ca_bundle=certifi.where()))
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("changes,key", [
    ({"kind": "real"}, "kind"), ({"transport": "soap"}, "transport"),
    ({"fixmedins_code": "H1"}, "fixmedins_code"), ({"opter_type": "9"}, "opter_type"),
    ({"kind": "nhsa", "url": ""}, "url"),
    ({"kind": "nhsa", "url": "https://x", "transport": "tif"}, "secret"),
    ({"kind": "nhsa", "url": "https://x", "transport": "csb", "secret": "s"}, "secret"),
    ({"sign_no_error_pattern": "("}, "sign_no_error_pattern"),
    ({"ca_bundle": "/nonexistent.pem"}, "ca_bundle"), ({"read_timeout": 0}, "read_timeout"),
    ({"gm_sm4_key": "abc"}, "gm_sm4_key"), ({"gm_sign": "rsa"}, "gm_sign"),
    ({"gm_sign": "sm2"}, "gm_sm2_private_key"), ({"csb_timestamp_unit": "us"},
                                                  "csb_timestamp_unit")])
def test_settings_validate(changes, key):
    with pytest.raises(ConfigError, match=f"gateway.{key}"):
        GatewaySettings(**changes).validate()


def test_settings_defaults_valid():
    GatewaySettings().validate()
    GatewaySettings(kind="nhsa", url="https://gw", transport="tif", paasid="p",
                    secret="s").validate()


def test_factory():
    assert isinstance(build_gateway(GatewaySettings(kind="noop")), NoopGateway)
    with pytest.raises(ValueError):
        build_gateway(GatewaySettings(kind="sandbox"))
    for transport in ("single", "tif", "csb"):
        settings = GatewaySettings(kind="sandbox", transport=transport)
        box = start_for_settings(settings)
        try:
            gw = build_gateway(client_settings_for(settings, box.url), pool_size=8)
            assert isinstance(gw, NHSAClient)
            r = gw.call(make_ctx("1101", msgids=MsgidCounter(settings.fixmedins_code)))
            gw.close()
        finally:
            box.stop()
        assert r.outcome is Outcome.COMPLETED, r.error_message
    real = build_gateway(GatewaySettings(kind="nhsa", url="https://gw.invalid/x"))
    assert isinstance(real, NHSAClient)
    real.close()


def _mock_client(settings, handler):
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return NHSAClient(settings, http_client=http)


def test_gm_output_decrypted_and_cainfo_signed():
    pytest.importorskip("cryptography")
    pytest.importorskip("gmssl")
    key = "0123456789abcdeffedcba9876543210"
    priv, pub = gm.sm2_keypair()
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        env = json.loads(request.content.decode("utf-8"))
        seen["env"] = env
        body = {"infcode": "0", "output": gm.encrypt_output({"baseinfo": {"psn_no": "P9"}}, key)}
        return httpx.Response(200, json=body)

    settings = GatewaySettings(url="http://centre/x", sign_in=False, gm_sm4_key=key,
                               gm_sign="sm2", gm_sm2_private_key=priv, gm_sm2_public_key=pub)
    settings.validate()
    c = _mock_client(settings, handler)
    r = c.call(make_ctx("1101", {"data": {}}))
    c.close()
    assert r.outcome is Outcome.COMPLETED
    assert r.response["output"] == {"baseinfo": {"psn_no": "P9"}}
    env = seen["env"]
    assert env["signtype"] == "SM2"
    assert gm.sm2_verify(env["cainfo"], gm.signing_string(env).encode("utf-8"), pub)


def test_numeric_and_string_infcode_and_429():
    answers = iter([httpx.Response(429), httpx.Response(200, json={"infcode": 0, "output": {}}),
                    httpx.Response(200, json={"infcode": "-1", "err_msg": "参数错误"}),
                    httpx.Response(404, text="not found")])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    settings = GatewaySettings(url="http://centre/x", sign_in=False, retry_initial_seconds=0.01)
    c = _mock_client(settings, handler)
    first = make_ctx("2207", {"data": {}})
    r = c.call(first)
    assert r.outcome is Outcome.COMPLETED and r.infcode == "0"
    assert [a["msgid"] for a in r.attempt_log] == [first.msgid] * 2  # 429: not delivered
    r = c.call(make_ctx("2207", {"data": {}}))
    assert r.outcome is Outcome.ERROR and r.infcode == "-1" and r.error_message == "参数错误"
    r = c.call(make_ctx("2207", {"data": {}}))
    assert r.outcome is Outcome.ERROR and "HTTP 404" in r.error_message
    c.close()
