"""国密 helpers (optional): SM3/SM4 standard vectors, SM4 output decryption, SM2 cainfo."""
from __future__ import annotations

import base64

import pytest

from mi_worker.gateway import gm

pytest.importorskip("cryptography")

KEY = "0123456789abcdeffedcba9876543210"


def test_sm3_vector():
    assert gm.sm3_hex(b"abc") == \
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_sm4_vector():
    out = gm.sm4_ecb_encrypt(bytes.fromhex(KEY), bytes.fromhex(KEY), pad=False)
    assert out.hex() == "681edf34d206965e86b3e94f536e4246"
    assert gm.sm4_ecb_decrypt(bytes.fromhex(KEY), out, pad=False).hex() == KEY


def test_output_roundtrip():
    output = {"setlinfo": {"setl_id": "S1", "psn_name": "王小明", "medfee_sumamt": 12.5}}
    cipher = gm.encrypt_output(output, KEY)
    base64.b64decode(cipher, validate=True)
    assert gm.decrypt_output(cipher, KEY) == output
    with pytest.raises(ValueError):
        gm.decrypt_output("not base64!!", KEY)


def test_signing_string_excludes_cainfo_and_input():
    env = {"infno": "2207", "msgid": "M", "cainfo": "X", "input": {"a": 1}, "sign_no": "",
           "opter": "001"}
    assert gm.signing_string(env) == "infno=2207&msgid=M&opter=001&sign_no="


def test_sm2_cainfo_roundtrip():
    pytest.importorskip("gmssl")
    priv, pub = gm.sm2_keypair()
    env = {"infno": "2207", "msgid": "M" * 30, "cainfo": "", "signtype": "", "input": {}}
    gm.sign_envelope(env, priv, pub)
    assert env["signtype"] == "SM2"
    data = gm.signing_string(env).encode("utf-8")
    assert gm.sm2_verify(env["cainfo"], data, pub)
    assert gm.sm2_verify(env["cainfo"], data, "04" + pub)
    assert not gm.sm2_verify(env["cainfo"], data + b"x", pub)
