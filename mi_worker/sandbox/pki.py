"""A throw-away PKI for rehearsing the 医保专网's TLS on loopback: a CA, a server certificate
for 127.0.0.1 / localhost, and a client certificate as PEM (encrypted key) and PKCS#12.

Tests use it to run the sandbox over real TLS (trusted through SSL_CERT_FILE, through
gateway.ca_bundle, refused with an unknown CA, mutual TLS); ops can use it to try
``mi-worker doctor`` before the province's certificates arrive. Made with ``cryptography``
(already a dependency for .pfx client certificates); EC P-256 keys, so it takes milliseconds.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class LoopbackPKI:
    """Paths of the files made by :func:`make_pki`; ``password`` protects the client key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_ca_cert: Path
    client_cert: Path
    client_key: Path
    client_pfx: Path
    password: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mi-worker test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _ca(cn: str, days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(cn: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, days: int,
          server: bool) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             ca_key.public_key()), critical=False)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]),
                        critical=False))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def make_pki(folder: Path, password: str = "客户端证书密码-1", days: int = 30,
             server_cn: str = "sandbox.医保专网.test") -> LoopbackPKI:
    """Write a CA, a server cert (SAN 127.0.0.1, localhost) and a client cert into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("mi-worker test 医保专网 CA", days)
    srv_key, srv_cert = _leaf(server_cn, ca_key, ca_cert, days, server=True)
    cca_key, cca_cert = _ca("mi-worker test client CA", days)
    cli_key, cli_cert = _leaf("H99000000001 test hospital", cca_key, cca_cert, days,
                              server=False)
    paths = LoopbackPKI(ca_cert=folder / "ca.pem", server_cert=folder / "server.pem",
                    server_key=folder / "server.key", client_ca_cert=folder / "client-ca.pem",
                    client_cert=folder / "client.pem", client_key=folder / "client.key",
                    client_pfx=folder / "client.pfx", password=password)
    paths.ca_cert.write_bytes(_pem_cert(ca_cert))
    # the chain a real front-end sends: leaf, then its CA
    paths.server_cert.write_bytes(_pem_cert(srv_cert) + _pem_cert(ca_cert))
    paths.server_key.write_bytes(_pem_key(srv_key))
    paths.client_ca_cert.write_bytes(_pem_cert(cca_cert))
    paths.client_cert.write_bytes(_pem_cert(cli_cert))
    paths.client_key.write_bytes(_pem_key(cli_key, password))
    paths.client_pfx.write_bytes(pkcs12.serialize_key_and_certificates(
        b"client", cli_key, cli_cert, [cca_cert],
        serialization.BestAvailableEncryption(password.encode("utf-8"))))
    return paths
