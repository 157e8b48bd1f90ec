"""TLS trust as the hospital's machine has it: real TLS on loopback, CA made in the test.

The sandbox serves HTTPS with a certificate signed by a CA created here (mi_worker.sandbox.pki).
The production client (NHSAClient, gateway.kind = nhsa) must trust it through the system
store (SSL_CERT_FILE is how a Linux test installs a CA: OpenSSL's default path), through
gateway.ca_bundle on top of the system store, refuse it with an unknown CA with a message
naming the server and the CA problem, and present PEM or PKCS#12 client certificates to a
front-end that demands them (mutual TLS).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mi_worker import config
from mi_worker.gateway.base import Outcome
from mi_worker.gateway.client import NHSAClient, SignInError
from mi_worker.sandbox.pki import make_pki
from mi_worker.sandbox.testing import client_settings, make_ctx, running_sandbox

INPUT = {"data": {"psn_no": "T0001", "insuplc_admdvs": "110000"}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory):
    """A second, unrelated CA: what the worker trusts when the 专网 CA is missing."""
    return make_pki(tmp_path_factory.mktemp("other"))


@pytest.fixture
def tls_box(pki):
    with running_sandbox(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)) as box:
        yield box


@pytest.fixture
def mtls_box(pki):
    with running_sandbox(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key),
                         tls_client_ca=str(pki.client_ca_cert)) as box:
        yield box


def one_call(settings) -> object:
    client = NHSAClient(settings)
    try:
        return client.call(make_ctx("1101", INPUT))
    finally:
        client.close()


def test_sandbox_serves_https(tls_box):
    assert tls_box.url.startswith("https://127.0.0.1:")


def test_trusted_through_the_system_store(tls_box, pki, monkeypatch):
    # SSL_CERT_FILE is OpenSSL's system-store override: what update-ca-certificates feeds.
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    result = one_call(client_settings(tls_box))
    assert result.outcome == Outcome.COMPLETED, result.error_message
    assert result.response["output"]["baseinfo"]["psn_no"] == "T0001"


def test_system_store_in_a_fresh_process(tls_box, pki, tmp_path):
    """The same through a new interpreter whose environment alone installs the CA."""
    script = (
        "import json, sys\n"
        "from mi_worker.gateway.client import NHSAClient\n"
        "from mi_worker.sandbox.testing import make_ctx\n"
        "from mi_worker.gateway.settings import GatewaySettings\n"
        "s = GatewaySettings(**json.loads(sys.argv[1]))\n"
        "c = NHSAClient(s)\n"
        "r = c.call(make_ctx('1101', {'data': {'psn_no': 'T0002'}}))\n"
        "c.close()\n"
        "print(r.outcome.value, r.error_message)\n")
    s = client_settings(tls_box)
    values = {k: getattr(s, k) for k in ("kind", "url", "transport", "secret", "fixmedins_code",
                                         "mdtrtarea_admvs", "insuplc_admdvs", "opter")}
    env = {"SSL_CERT_FILE": str(pki.ca_cert), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script, json.dumps(values)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == Outcome.COMPLETED.value, out.stdout
    # and without the CA in the store, the same process is refused
    env["SSL_CERT_FILE"] = str(tmp_path / "empty.pem")
    (tmp_path / "empty.pem").write_text("")
    out = subprocess.run([sys.executable, "-c", script, json.dumps(values)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split()[0] != Outcome.COMPLETED.value, out.stdout


def test_trusted_through_ca_bundle_on_top_of_the_system_store(tls_box, pki, other_pki,
                                                               monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(other_pki.ca_cert))  # the store lacks our CA
    result = one_call(client_settings(tls_box, ca_bundle=str(pki.ca_cert)))
    assert result.outcome == Outcome.COMPLETED, result.error_message


def test_unknown_ca_is_refused_with_a_clear_error(tls_box, other_pki, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(other_pki.ca_cert))
    settings = client_settings(tls_box)
    with pytest.raises(SignInError) as info:
        NHSAClient(settings).sign_in()
    msg = str(info.value)
    assert f"127.0.0.1:{tls_box.port}" in msg  # names the server
    assert "not trusted" in msg and "gateway.ca_bundle" in msg  # the CA problem, and the fix
    assert ("self-signed certificate in certificate chain" in msg
            or "unable to get local issuer certificate" in msg), msg
    assert tls_box.calls.count("9001") == 0  # nothing was sent


def test_verify_tls_false_still_connects(tls_box, other_pki, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(other_pki.ca_cert))
    result = one_call(client_settings(tls_box, verify_tls=False))
    assert result.outcome == Outcome.COMPLETED, result.error_message


@pytest.mark.parametrize("form", ["pem", "pkcs12"])
def test_mutual_tls_with_client_certificate(mtls_box, pki, form):
    if form == "pem":
        extra = {"client_cert": str(pki.client_cert), "client_key": str(pki.client_key),
                 "client_key_password": pki.password}
    else:
        extra = {"client_cert": str(pki.client_pfx), "client_key_password": pki.password}
    settings = client_settings(mtls_box, ca_bundle=str(pki.ca_cert), **extra)
    settings.validate()
    result = one_call(settings)
    assert result.outcome == Outcome.COMPLETED, result.error_message


def test_mutual_tls_without_client_certificate_is_refused(mtls_box, pki):
    result = one_call(client_settings(mtls_box, ca_bundle=str(pki.ca_cert)))
    assert result.outcome != Outcome.COMPLETED
    assert mtls_box.calls.count("1101") == 0


@pytest.mark.parametrize("form", ["pem", "pkcs12"])
def test_wrong_client_key_password_names_the_key(pki, form):
    from mi_worker.gateway.settings import GatewaySettings
    from mi_worker.gateway.transports import tls_verify
    cert = pki.client_cert if form == "pem" else pki.client_pfx
    key = str(pki.client_key) if form == "pem" else ""
    with pytest.raises(ValueError, match="gateway.client_key_password"):
        tls_verify(GatewaySettings(client_cert=str(cert), client_key=key,
                                   client_key_password="wrong"))


def test_client_key_password_is_a_secret_masked_in_logs(tmp_path, pki):
    toml = tmp_path / "c.toml"
    toml.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n[gateway]\nkind = "sandbox"\n'
                    f'client_cert = "{pki.client_pfx}"\n', encoding="utf-8")
    s = config.load(toml, env={"MI_WORKER_GATEWAY_CLIENT_KEY_PASSWORD": pki.password})
    assert pki.password in s.secrets()
    assert s.gateway.client_key_password == pki.password
    assert "(secret)" not in dict((r[0], r[1]) for r in config.reference_rows())[
        "gateway.client_key_password"]  # empty default shows as ""


@pytest.mark.parametrize("raw", ['"no"', '"yes"', '"false"', '"off"', "1"])
def test_booleans_are_booleans_in_toml(tmp_path, raw):
    toml = tmp_path / "c.toml"
    toml.write_text(f'[gateway]\nkind = "sandbox"\nverify_tls = {raw}\n', encoding="utf-8")
    with pytest.raises(config.ConfigError, match="gateway.verify_tls"):
        config.load(toml, env={"MI_WORKER_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})


@pytest.mark.parametrize("raw,ok", [("false", False), ("0", False), ("true", True),
                                    ("no", None), ("yes", None)])
def test_booleans_from_the_environment(tmp_path, raw, ok):
    env = {"MI_WORKER_GATEWAY_VERIFY_TLS": raw}
    if ok is None:
        with pytest.raises(config.ConfigError, match="gateway.verify_tls"):
            config.load(None, env=env)
    else:
        assert config.load(None, env=env).gateway.verify_tls is ok
