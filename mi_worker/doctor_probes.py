"""The doctor's report lines and its probes: ✓/✗ lines, which ODBC driver a URL needs and
how to install it, what a database error means for ops, and a TLS handshake that keeps the
chain the server sent (so an untrusted CA can still be named). Kept apart from doctor.py,
which runs the checks in order."""
from __future__ import annotations

import datetime as dt
import socket
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional
from urllib.parse import parse_qsl, urlsplit

from mi_worker.db.mssql import DEFAULT_DRIVER as MS_DRIVER
from mi_worker.db.postgresql import DEFAULT_DRIVER as PG_DRIVER

OK, FAIL, SKIP = True, False, None
CERT_WARN_DAYS = 30


@dataclass
class Check:
    """One line of the report: ``ok`` True (✓), False (✗) or None (skipped, –)."""

    name: str
    ok: Optional[bool]
    detail: str
    fix: str = ""
    more: List[str] = field(default_factory=list)  # indented lines (the certificate chain)


def marks(stream: Any = None) -> tuple[str, str, str]:
    """✓ ✗ – where the console can show them, else OK / FAIL / -- (a GBK pipe on Windows)."""
    enc = getattr(stream or sys.stdout, "encoding", None) or "utf-8"
    try:
        "✓✗–".encode(enc)
        return "✓", "✗", "–"
    except (UnicodeEncodeError, LookupError):
        return "OK", "FAIL", "--"


def render(check: Check, stream: Any = None) -> str:
    ok, fail, skip = marks(stream)
    mark = ok if check.ok is True else fail if check.ok is False else skip
    line = f"{mark} {check.name}: {check.detail}"
    if check.ok is False and check.fix:
        line += f" → 修复: {check.fix}"
    return "\n".join([line] + [f"    {m}" for m in check.more])


# -- database ----------------------------------------------------------------------------------
def _driver_name(url: str, dialect: str) -> str:
    if url.lower().startswith("odbc://"):
        for part in url[len("odbc://"):].split(";"):
            key, _, value = part.partition("=")
            if key.strip().upper() == "DRIVER":
                return value.strip().strip("{}")
        return ""
    query = dict(parse_qsl(urlsplit(url).query))
    if "driver" in query:
        return query["driver"]
    return PG_DRIVER if dialect == "postgresql" else MS_DRIVER


def _driver_fix(dialect: str, driver: str) -> str:
    windows = sys.platform.startswith("win")
    if dialect == "postgresql":
        if windows:
            return ("安装 psqlODBC (psqlodbc_x64.msi, https://www.postgresql.org/ftp/odbc/releases/); "
                    "它注册的驱动名是 “PostgreSQL Unicode(x64)”, 在 database.url 末尾加 "
                    "?driver=PostgreSQL+Unicode(x64)")
        return ("安装 psqlODBC: Debian/Ubuntu `apt-get install odbc-postgresql`, RHEL/麒麟 "
                "`dnf install postgresql-odbc`; 驱动名须与 database.url 的 driver= 一致 "
                "(odbcinst -q -d 查看)")
    if windows:
        return ("安装 Microsoft ODBC Driver 18 for SQL Server (msodbcsql.msi); SQL Server "
                "2012/2014 请装 ODBC Driver 17 并在 database.url 写 "
                "driver=ODBC+Driver+17+for+SQL+Server")
    return ("安装 msodbcsql18: 加 Microsoft 软件源后 `ACCEPT_EULA=Y apt-get install msodbcsql18` "
            "(或 dnf); SQL Server 2012/2014 用 msodbcsql17 与 driver=ODBC+Driver+17+for+SQL+Server")


def _classify_db_error(text: str, where: str) -> tuple[str, str]:
    low = text.lower()
    if any(s in low for s in ("password authentication failed", "login failed",
                              "authentication failed", "28p01", "28000", "role \"")):
        return (f"{where} 拒绝登录 (认证失败)", "检查 database.url 中的用户名和密码 "
                "(MI_WORKER_DATABASE_URL), 以及该登录是否有权访问此数据库")
    if "does not exist" in low or "cannot open database" in low or "3d000" in low:
        return (f"{where} 上没有该数据库", "检查 database.url 中的库名, 或请 DBA 建库")
    if any(s in low for s in ("timeout", "timed out", "could not connect", "connection refused",
                              "unable to connect", "tcp provider", "could not translate host",
                              "08001", "hyt00")):
        return (f"无法连接 {where}", "检查主机名/端口、数据库服务是否启动、防火墙是否放行 "
                "(database.url, database.connect_timeout)")
    return (f"连接 {where} 失败", "检查 database.url")


def _host_port(url: str, dialect: str) -> str:
    if url.lower().startswith("odbc://"):
        return "ODBC 连接串中的服务器"
    parts = urlsplit(url)
    default = 5432 if dialect == "postgresql" else 1433
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or default}"


# -- TLS ---------------------------------------------------------------------------------------
def _cert_lines(ders: List[bytes]) -> List[str]:
    from cryptography import x509

    lines = []
    now = dt.datetime.now(dt.timezone.utc)
    for i, der in enumerate(ders):
        cert = x509.load_der_x509_certificate(der)
        try:
            not_after = cert.not_valid_after_utc
        except AttributeError:  # cryptography < 42
            not_after = cert.not_valid_after.replace(tzinfo=dt.timezone.utc)
        days = (not_after - now).days
        left = f"已过期 {-days} 天" if days < 0 else f"剩 {days} 天"
        lines.append(f"[{i}] subject: {cert.subject.rfc4514_string()} | issuer: "
                     f"{cert.issuer.rfc4514_string()} | 到期: {not_after:%Y-%m-%d} ({left})")
    return lines


def _chain(sock: ssl.SSLSocket, verified: bool) -> List[bytes]:
    """DER certificates the server sent (verified chain when available: Python 3.10+)."""
    obj = getattr(sock, "_sslobj", None)
    name = "get_verified_chain" if verified else "get_unverified_chain"
    for target in (sock, obj):
        fn = getattr(target, name, None)
        if fn is None:
            continue
        try:
            certs = fn() or []
        except (ssl.SSLError, ValueError):
            continue
        out = []
        for c in certs:
            out.append(c.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
                       if hasattr(c, "public_bytes") else c)
        if out:
            return out
    leaf = sock.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def tls_handshake(host: str, port: int, ctx: ssl.SSLContext, timeout: float
                  ) -> tuple[Optional[BaseException], List[bytes]]:
    """Handshake with ``ctx``; on failure, handshake again without verification to show what
    the server presents (ops need the issuer's name to know which CA to import)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                chain = _chain(s, verified=True)
                # With TLS 1.3 a server that wants a client certificate says so only after
                # the handshake: send one request and read, so a refusal shows up here.
                s.sendall(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                          .encode("ascii"))
                try:
                    s.recv(1)
                except socket.timeout:
                    pass
                return None, chain
    except (ssl.SSLError, OSError) as exc:
        err = exc
    look = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    look.check_hostname = False
    look.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with look.wrap_socket(raw, server_hostname=host) as s:
                return err, _chain(s, verified=False)
    except (ssl.SSLError, OSError):
        return err, []


# -- the doctor --------------------------------------------------------------------------------
