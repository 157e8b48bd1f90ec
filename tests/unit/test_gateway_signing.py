"""TIF and CSB header signatures."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

import pytest

from mi_worker.gateway import signing


def test_tif_vector():
    assert signing.tif_signature("1700000000", "testtoken", "123456789abcdefg") == \
        "060761be9727db9c507f22d330a473b75290eed0c7567be808a091d4dd1f2509"


def test_tif_utf8_secret():
    expected = hashlib.sha256("1700000000密钥abcdefghijklmnop1700000000".encode())
    assert signing.tif_signature("1700000000", "密钥", "abcdefghijklmnop") == \
        expected.hexdigest()


def test_tif_headers_format():
    before = int(time.time())
    h = signing.tif_headers("paas1", "secret")
    assert set(h) == {"x-tif-paasid", "x-tif-timestamp", "x-tif-nonce", "x-tif-signature"}
    assert h["x-tif-paasid"] == "paas1"
    assert h["x-tif-timestamp"].isdigit() and len(h["x-tif-timestamp"]) == 10
    assert before <= int(h["x-tif-timestamp"]) <= int(time.time())  # true epoch seconds
    assert re.fullmatch(r"[A-Za-z0-9]{16,}", h["x-tif-nonce"])
    assert re.fullmatch(r"[0-9a-f]{64}", h["x-tif-signature"])
    assert h["x-tif-signature"] == signing.tif_signature(h["x-tif-timestamp"], "secret",
                                                         h["x-tif-nonce"])
    assert signing.tif_headers("p", "s")["x-tif-nonce"] != h["x-tif-nonce"]


def test_tif_headers_fixed_inputs():
    h = signing.tif_headers("p", "testtoken", now=1700000000.9, nonce_value="123456789abcdefg")
    assert h["x-tif-timestamp"] == "1700000000"
    assert h["x-tif-signature"].startswith("060761be")


def test_nonce_length():
    assert len(signing.nonce()) == 32
    with pytest.raises(ValueError):
        signing.nonce(8)


def test_csb_string_sorted():
    params = {"_api_version": "1.0.0", "_api_name": "2207", "_api_timestamp": "1700000000000",
              "_api_access_key": "AK"}
    assert signing.csb_string_to_sign(params) == \
        "_api_access_key=AK&_api_name=2207&_api_timestamp=1700000000000&_api_version=1.0.0"


def test_csb_signature_hmac_sha1():
    params = {"_api_access_key": "AK", "_api_name": "2207", "_api_timestamp": "1700000000000",
              "_api_version": "1.0.0"}
    msg = b"_api_access_key=AK&_api_name=2207&_api_timestamp=1700000000000&_api_version=1.0.0"
    expected = base64.b64encode(hmac.new(b"SK", msg, hashlib.sha1).digest()).decode()
    assert signing.csb_signature("SK", params) == expected
    assert expected == "qMJzw+cidxZsQyTMuUw6yHjozxE="
    assert signing.csb_signature("密钥", params) == "xq3lH8Ym9eef9dX7UaqAKAnOhvw="
    assert len(base64.b64decode(expected)) == 20


def test_csb_headers_units():
    h = signing.csb_headers("9001", "AK", "SK", now=1700000000.123)
    assert h["_api_timestamp"] == "1700000000123"
    assert h["_api_version"] == "1.0.0" and h["_api_name"] == "9001"
    assert h["_api_access_key"] == "AK"
    params = {k: v for k, v in h.items() if k != "_api_signature"}
    assert h["_api_signature"] == signing.csb_signature("SK", params)
    s = signing.csb_headers("9001", "AK", "SK", unit="s", now=1700000000.9)
    assert s["_api_timestamp"] == "1700000000"
