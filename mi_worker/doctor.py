"""`mi-worker doctor`: the go-live preflight ops run before the cashier windows open.

One line per check, ✓ or ✗, in 简体中文 (the people who run it on go-live day read Chinese)
with the configuration key names exactly as they are written in the TOML file, and for every
✗ the fix. The exit status is non-zero when any check fails, so a deployment script can stop.

Checks, in order (a failed prerequisite skips what depends on it):
  配置       the settings load and validate (the error names the key), incl. the fake-centre rule
  ODBC驱动   pyodbc and the driver named by database.url are installed (names the package / MSI)
  数据库连接 reachable and the login accepted (no file is created for SQLite)
  数据库结构 every migration of this version applied
  HIS存储过程 sp_medical_insurance_call_v2 present and executable by the HIS role
  时钟偏差   host clock against the database clock
  网关DNS / 网关TCP / 网关TLS   name resolution, TCP connect and a TLS handshake with the
             configured trust (subject, issuer and expiry of the chain the server sent)
  9001签到   optional (--sign-in): a real 9001 with gateway.opter, then 9002
  告警Webhook optional (--webhook): one test message to alerts.webhook_url

Nothing here writes to the database except --sign-in's msgid sequence (as the worker does).
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import time
from typing import Any, Callable, List, Optional
from urllib.parse import urlsplit

import httpx

from mi_worker import config
from mi_worker.db import connect, dialect_for
from mi_worker.db.migrate import migrations
from mi_worker.doctor_probes import (  # noqa: F401 - Check, render: the doctor's API
    CERT_WARN_DAYS,
    FAIL,
    OK,
    SKIP,
    Check,
    _cert_lines,
    _chain,
    _classify_db_error,
    _driver_fix,
    _driver_name,
    _host_port,
    marks,
    render,
    tls_handshake,
)
from mi_worker.gateway.client import NHSAClient, SignInError
from mi_worker.gateway.transports import describe_tls_error, tls_verify
from mi_worker.masking import mask_value
from mi_worker.notify import body

MAX_SKEW_SECONDS = 5.0
PROCEDURE = "sp_medical_insurance_call_v2"


class Doctor:
    """Runs the checks; ``report`` is called with each Check as soon as it is known."""

    def __init__(self, config_path: Optional[str], *, sign_in: bool = False,
                 webhook: bool = False, his_role: str = "",
                 report: Callable[[Check], None] = lambda c: None) -> None:
        self.config_path = config_path
        self.sign_in, self.webhook, self.his_role = sign_in, webhook, his_role
        self.report = report
        self.checks: List[Check] = []
        self.settings: Optional[config.Settings] = None

    def add(self, name: str, ok: Optional[bool], detail: str, fix: str = "",
            more: Optional[List[str]] = None) -> Check:
        c = Check(name, ok, detail, fix, more or [])
        self.checks.append(c)
        self.report(c)
        return c

    @property
    def failed(self) -> bool:
        return any(c.ok is False for c in self.checks)

    def run(self) -> List[Check]:
        if self.check_config():
            db = self.check_database()
            if db is not None:
                try:
                    self.check_schema(db)
                    self.check_procedure(db)
                    self.check_clock(db)
                    self.check_gateway(db)
                finally:
                    db.close()
            else:
                self.check_gateway(None)
            if self.webhook:
                self.check_webhook()
        return self.checks

    # -- config
    def check_config(self) -> bool:
        try:
            s = config.load(self.config_path)
        except config.ConfigError as exc:
            self.add("配置", FAIL, f"配置无效: {exc}", "按提示修改该配置项 (键名如上), 再运行 "
                     "mi-worker doctor")
            return False
        try:
            config.check_fake_centre(s)
        except config.ConfigError as exc:
            self.settings = s
            self.add("配置", FAIL, str(exc), "上线前设置 gateway.kind = \"nhsa\" 与真实的 "
                     "gateway.url")
            return False
        self.settings = s
        src = "默认值 (无配置文件)" if s.source == "defaults" else s.source
        if s.gateway.kind != "nhsa":
            self.add("配置", FAIL, f"配置有效 (来自 {src}), 但 gateway.kind = {s.gateway.kind} "
                     "是假医保中心 (FAKE), 结算不会到达国家平台",
                     "上线前设置 gateway.kind = \"nhsa\" 与真实的 gateway.url")
            return True
        self.add("配置", OK, f"有效 (来自 {src}); database {s.database.url.split(':', 1)[0]}, "
                 f"gateway.kind = nhsa, gateway.transport = {s.gateway.transport}")
        return True

    # -- database
    def check_database(self) -> Any:

        s = self.settings
        assert s is not None
        url = s.database.url
        try:
            dialect = dialect_for(url, s.database.connect_timeout)
        except ValueError as exc:
            self.add("数据库连接", FAIL, str(exc), "修改 database.url")
            return None
        safe = dialect.safe_url()
        if dialect.name == "sqlite":
            self.add("ODBC驱动", SKIP, "SQLite 不需要 ODBC 驱动")
            path = getattr(dialect, "path", "")
            if path != ":memory:" and not os.path.isfile(path):
                self.add("数据库连接", FAIL, f"SQLite 数据库文件 {os.path.abspath(path)} 不存在",
                         "检查 database.url 的路径; 新库请先运行 mi-worker db upgrade")
                return None
        else:
            if not self.check_odbc(url, dialect.name):
                return None
        where = _host_port(url, dialect.name) if dialect.name != "sqlite" else safe
        t0 = time.monotonic()
        try:
            raw = dialect.connect()
            raw.close()
        except Exception as exc:  # driver errors have no common base class
            detail, fix = _classify_db_error(str(exc), where)
            self.add("数据库连接", FAIL, f"{detail}: {str(exc)[:300]}", fix)
            return None
        ms = (time.monotonic() - t0) * 1000
        self.add("数据库连接", OK, f"{safe} 可达, 登录成功 ({ms:.0f} ms)")
        return connect(url, s.database.connect_timeout, reconnect_max_seconds=0, pool_size=1)

    def check_odbc(self, url: str, dialect: str) -> bool:
        driver = _driver_name(url, dialect)
        try:
            import pyodbc
        except ImportError:
            self.add("ODBC驱动", FAIL, "未安装 Python 包 pyodbc",
                     "pip install \"mi-worker[odbc]\" (离线: 从 wheelhouse 安装 pyodbc)")
            return False
        installed = list(pyodbc.drivers())
        if driver and driver not in installed:
            self.add("ODBC驱动", FAIL, f"database.url 要求的 ODBC 驱动 “{driver}” 未安装 "
                     f"(已安装: {', '.join(installed) or '无'})", _driver_fix(dialect, driver))
            return False
        self.add("ODBC驱动", OK, f"“{driver or '连接串指定'}” 已安装")
        return True

    def check_schema(self, db: Any) -> None:

        try:
            done = {int(r["version"]) for r in db.run("applied_migrations", retry=False)}
        except Exception as exc:
            self.add("数据库结构", FAIL, f"没有 mi-worker 的表 ({str(exc)[:200]})",
                     "由 DBA 运行 mi-worker db upgrade (需建表权限)")
            return
        want = [m.version for m in migrations(db.name)]
        missing = [v for v in want if v not in done]
        if missing:
            self.add("数据库结构", FAIL, f"缺少迁移 {missing} (已应用 {sorted(done)})",
                     "由 DBA 运行 mi-worker db upgrade")
        else:
            self.add("数据库结构", OK, f"已是当前版本 (迁移 {want[-1]:03d})")

    def check_procedure(self, db: Any) -> None:
        if db.name == "sqlite":
            self.add("HIS存储过程", SKIP, "SQLite 没有存储过程 (HIS 用 mi-worker call 调用)")
            return
        try:
            row = db.run_one("doctor_procedure", his_role=self.his_role or "")
        except Exception as exc:
            self.add("HIS存储过程", FAIL, f"无法检查 {PROCEDURE}: {str(exc)[:200]}",
                     "确认 database.url 的登录可读系统目录")
            return
        role = row["role_name"]
        if not int(row["present"] or 0):
            self.add("HIS存储过程", FAIL, f"{PROCEDURE} 不存在", "运行 mi-worker db upgrade")
        elif not int(row["role_exists"] or 0):
            self.add("HIS存储过程", FAIL, f"{PROCEDURE} 存在, 但 HIS 角色 {role} 不存在",
                     "用 --his-role 指定 HIS 登录/角色; SQL Server 先运行 "
                     "sql/mssql/security.sql")
        elif not int(row["executable"] or 0):
            self.add("HIS存储过程", FAIL, f"{PROCEDURE} 存在, 但 {role} 没有 EXECUTE 权限",
                     f"GRANT EXECUTE 给 {role} (SQL Server: sql/mssql/security.sql)")
        elif int(row["table_rights"] or 0) < 3:
            self.add("HIS存储过程", FAIL, f"{role} 可执行 {PROCEDURE}, 但不能执行它调用的 "
                     "mi_his_enqueue / mi_his_poll / mi_his_timeout (PostgreSQL 的过程以调用者权限运行)",
                     f"运行 sql/postgresql/security.sql 并把 {role} 加入 mi_his_caller_role")
        else:
            self.add("HIS存储过程", OK, f"{PROCEDURE} 存在, {role} 可执行")

    def check_clock(self, db: Any) -> None:
        try:
            t0 = time.time()
            row = db.run_one("doctor_db_time", retry=False)
            t1 = time.time()
        except Exception as exc:
            self.add("时钟偏差", FAIL, f"无法读取数据库时间: {str(exc)[:200]}", "检查数据库连接")
            return
        skew = float(row["epoch"]) - (t0 + t1) / 2
        text = f"本机比数据库{'慢' if skew > 0 else '快'} {abs(skew):.1f} s (往返 {(t1 - t0) * 1000:.0f} ms)"
        if abs(skew) > MAX_SKEW_SECONDS:
            self.add("时钟偏差", FAIL, text + f", 超过 {MAX_SKEW_SECONDS:.0f} s",
                     "同步两台机器的时间 (Windows: w32tm /resync; Linux: chronyc makestep); "
                     "msgid、签名时间戳和超时都依赖时钟")
        else:
            self.add("时钟偏差", OK, text)

    # -- gateway
    def check_gateway(self, db: Any) -> None:
        s = self.settings
        assert s is not None
        g = s.gateway
        if g.kind != "nhsa":
            for name in ("网关DNS", "网关TCP", "网关TLS"):
                self.add(name, SKIP, f"gateway.kind = {g.kind}: 不连接真实网关")
            return
        parts = urlsplit(g.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addrs = sorted({i[4][0] for i in infos})
            self.add("网关DNS", OK, f"{host} → {', '.join(addrs)}")
        except OSError as exc:
            self.add("网关DNS", FAIL, f"无法解析 {host} ({exc})",
                     "检查 gateway.url 的主机名, 或在 DNS / hosts 文件中加入医保专网地址")
            self.add("网关TCP", SKIP, "DNS 失败, 未检查")
            self.add("网关TLS", SKIP, "DNS 失败, 未检查")
            return
        t0 = time.monotonic()
        try:
            socket.create_connection((host, port), timeout=g.connect_timeout).close()
            self.add("网关TCP", OK, f"{host}:{port} 可连接 "
                     f"({(time.monotonic() - t0) * 1000:.0f} ms)")
        except OSError as exc:
            self.add("网关TCP", FAIL, f"无法连接 {host}:{port} ({exc})",
                     "检查医保专网线路、前置机是否启动、防火墙是否放行该端口 "
                     "(gateway.url, gateway.connect_timeout)")
            self.add("网关TLS", SKIP, "TCP 失败, 未检查")
            return
        if parts.scheme != "https":
            self.add("网关TLS", SKIP, f"gateway.url 是 {parts.scheme}://, 不使用 TLS")
        else:
            self.check_tls(host, port)
        if self.sign_in:
            self.check_sign_in(db)

    def check_tls(self, host: str, port: int) -> None:

        s = self.settings
        assert s is not None
        g = s.gateway
        try:
            ctx = tls_verify(g)
        except (ValueError, ssl.SSLError, OSError) as exc:
            self.add("网关TLS", FAIL, f"无法加载客户端证书: {exc}",
                     "检查 gateway.client_cert / gateway.client_key / gateway.client_key_password")
            return
        assert isinstance(ctx, ssl.SSLContext)
        err, chain = tls_handshake(host, port, ctx, g.connect_timeout)
        lines = _cert_lines(chain) if chain else []
        trust = ("系统证书库" + (f" + gateway.ca_bundle ({g.ca_bundle})" if g.ca_bundle else ""))
        if err is not None:
            text = describe_tls_error(err, f"{host}:{port}") or f"{type(err).__name__}: {err}"
            fix = ("把医保专网 CA 导入系统证书库 (Windows: certlm.msc → 受信任的根证书颁发机构; "
                   "Linux: update-ca-certificates), 或设置 gateway.ca_bundle 为其 PEM 文件; "
                   "服务器要求客户端证书时设置 gateway.client_cert")
            self.add("网关TLS", FAIL, f"握手失败 (信任: {trust}): {text}", fix,
                     ["服务器出示的证书:"] + lines if lines else [])
            return
        if not g.verify_tls:
            self.add("网关TLS", FAIL, "握手成功, 但 gateway.verify_tls = false: 证书未校验, "
                     "任何人都可冒充医保中心",
                     "设置 gateway.verify_tls = true, 并通过系统证书库或 gateway.ca_bundle 信任 CA",
                     lines)
            return
        note = ""
        if chain:
            from cryptography import x509
            leaf = x509.load_der_x509_certificate(chain[0])
            try:
                na = leaf.not_valid_after_utc
            except AttributeError:
                na = leaf.not_valid_after.replace(tzinfo=dt.timezone.utc)
            days = (na - dt.datetime.now(dt.timezone.utc)).days
            if days < CERT_WARN_DAYS:
                note = f"; 注意: 服务器证书 {days} 天后到期"
        client = f", 客户端证书 {g.client_cert}" if g.client_cert else ""
        self.add("网关TLS", OK, f"握手成功, 证书已校验 (信任: {trust}{client}){note}", "", lines)

    def check_sign_in(self, db: Any) -> None:

        s = self.settings
        assert s is not None
        if not s.gateway.sign_in:
            self.add("9001签到", SKIP, "gateway.sign_in = false")
            return

        def msgid() -> str:
            if db is None:
                raise RuntimeError("数据库不可用, 无法生成 msgid")
            return db.run_one("next_msgid", fixmedins_code=s.gateway.fixmedins_code)["msgid"]

        client = NHSAClient(s.gateway, pool_size=1, msgid_factory=msgid)
        try:
            sign_no = client.sign_in(force=True)
            self.add("9001签到", OK, f"操作员 gateway.opter = {s.gateway.opter or '(空)'} 签到成功, "
                     f"sign_no {mask_value(sign_no)} (随后 9002 签退)")
        except (SignInError, RuntimeError) as exc:
            self.add("9001签到", FAIL, f"签到失败: {exc}",
                     "检查 gateway.opter / gateway.fixmedins_code / gateway.mdtrtarea_admvs, "
                     "TIF/CSB 的 gateway.paasid / gateway.access_key / gateway.secret")
        finally:
            client.close()

    def check_webhook(self) -> None:


        s = self.settings
        assert s is not None
        a = s.alerts
        if not a.webhook_url:
            self.add("告警Webhook", FAIL, "alerts.webhook_url 为空", "设置 alerts.webhook_url "
                     "(MI_WORKER_ALERTS_WEBHOOK_URL) 为企业微信/钉钉机器人地址")
            return
        payload = body(a.webhook_kind, "DOCTOR_TEST", "INFO",
                       "mi-worker doctor 测试消息: 告警通道可用", socket.gethostname())
        try:
            r = httpx.post(a.webhook_url, json=payload, timeout=5.0)
            r.raise_for_status()
            answer = r.json() if r.content else {}
            if isinstance(answer, dict) and answer.get("errcode", 0) not in (0, "0"):
                raise RuntimeError(f"机器人拒绝: {answer}")
        except Exception as exc:
            text = str(exc).replace(a.webhook_url, "***")  # the URL carries the robot key
            self.add("告警Webhook", FAIL, f"测试消息发送失败: {text[:300]}",
                     "检查 alerts.webhook_url / alerts.webhook_kind, 以及机器人的关键词/加签设置")
            return
        self.add("告警Webhook", OK, f"测试消息已发送 ({a.webhook_kind})")
