"""Gateway settings ([gateway] in the TOML file). Owned by the gateway package.

Provinces expose the platform differently (one URL, a TIF gateway, an Alibaba-CSB gateway),
ask for different envelope extras and sometimes for 国密 crypto, so all of it is configuration
with safe defaults; ``validate`` names the key of any bad value.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from mi_worker.config_fields import ConfigError, doc

KINDS = ("sandbox", "nhsa", "noop")
TRANSPORTS = ("single", "tif", "csb")
DEFAULT_SIGN_NO_ERROR_PATTERN = r"签到|sign_no|signno|sign no"


def is_pkcs12(path: str) -> bool:
    """A .pfx / .p12 file (CFCA and provincial CAs hand these out on Windows)."""
    return path.lower().endswith((".pfx", ".p12"))


@dataclass
class GatewaySettings:
    kind: str = doc("nhsa (a real province gateway), sandbox (built-in FAKE centre, started in "
                    "process) or noop (answers at once, for the benchmark). The default sandbox "
                    "holds only for the embedded first run (no config file, SQLite); with a "
                    "config file or a server database this key is required", "sandbox")
    allow_fake_centre: bool = doc("Allow kind sandbox / noop on a server (non-SQLite) database, "
                                  "e.g. for an acceptance test; such workers are flagged in "
                                  "sdk_heartbeat.gateway_kind, status and the FAKE_GATEWAY "
                                  "alert", False)
    url: str = doc("Gateway URL (transport single) or base URL (tif, csb)", "")
    transport: str = doc("single: one URL, infno in the body; tif: base URL + infno (or "
                         "gateway.paths) with x-tif-* SHA-256 headers; csb: base URL + / + infno "
                         "with _api_* HMAC-SHA1 headers", "single")
    paths: dict[str, str] = doc(  # noqa: RUF009 - doc() builds the field, as in config.py
        "tif only: path per infno appended to the base URL, e.g. "
        '{"9001" = "/fsi/api/signInSignOutService/signIn"}; a code not named uses "/" + infno; '
        '"*" sets a common path', {})
    paasid: str = doc("tif: x-tif-paasid issued by the province", "")
    secret: str = doc("tif: the x-tif secret (token); csb: the secretKey for HMAC-SHA1",
                      "", secret=True)
    access_key: str = doc("csb: _api_access_key", "")
    csb_version: str = doc("csb: _api_version", "1.0.0")
    csb_timestamp_unit: str = doc("csb: _api_timestamp in ms (milliseconds) or s (seconds)", "ms")
    csb_api_names: dict[str, str] = doc(  # noqa: RUF009 - doc() builds the field
        "csb: _api_name per infno when the province uses service names; a code not named "
        "sends the infno", {})
    fixmedins_code: str = doc("定点医药机构编号, 12 characters; the first part of every msgid",
                              "H00000000000")
    fixmedins_name: str = doc("定点医药机构名称", "")
    mdtrtarea_admvs: str = doc("就医地医保区划 (6 digits)", "")
    insuplc_admdvs: str = doc("参保地医保区划 used when input carries a psn_no and neither the "
                              "call nor its input names one", "")
    recer_sys_code: str = doc("接收方系统代码 given by the province (e.g. YBXT)", "")
    infver: str = doc("接口版本号", "V1.0")
    opter_type: str = doc("经办人类别: 1 经办人, 2 自助终端, 3 移动终端", "1")
    opter: str = doc("经办人 / terminal number; also the operator that signs in (9001)", "")
    opter_name: str = doc("经办人姓名", "")
    dev_no: str = doc("设备编号", "")
    dev_safe_info: str = doc("设备安全信息", "")
    signtype: str = doc("signtype sent in the envelope (set to SM2 automatically when "
                        "gateway.gm_sign = sm2)", "")
    cainfo: str = doc("Fixed cainfo sent in the envelope (when not computed by gm_sign)", "",
                      secret=True)
    enc_type: str = doc("Province extra field enc_type; sent only when not empty", "")
    fixmedins_soft_fcty: str = doc("Province extra field 软件厂商; sent only when not empty", "")
    serv_code: str = doc("Province extra field 服务商识别码; sent only when not empty", "")
    serv_sign: str = doc("Province extra field 厂商代码/签名; sent only when not empty", "",
                         secret=True)
    sign_in: bool = doc("Sign in with 9001 (per operator, per China calendar day) and send "
                        "its sign_no; false sends sign_no empty", True)
    sign_in_mac: str = doc("签到MAC地址 sent in 9001", "")
    sign_in_ip: str = doc("签到IP地址 sent in 9001", "127.0.0.1")
    sign_no_error_pattern: str = doc("Regular expression on err_msg that means the centre "
                                     "rejected the sign_no: sign in again and retry that call "
                                     "once", DEFAULT_SIGN_NO_ERROR_PATTERN)
    ca_bundle: str = doc("PEM file of extra CA(s) trusted for the gateway (the 医保专网 CA), "
                         "added ON TOP of the operating system's store (Windows certificate "
                         "store / Linux system bundle, SSL_CERT_FILE honoured); empty = the "
                         "system store only", "")
    client_cert: str = doc("Client certificate for mutual TLS: a PEM file (with client_key if "
                           "the key is separate) or a PKCS#12 .pfx / .p12 file holding both; "
                           "empty = none", "")
    client_key: str = doc("PEM private key of client_cert (if not inside it)", "")
    client_key_password: str = doc("Password of the encrypted PEM client_key, or of the .pfx / "
                                   ".p12 client_cert", "", secret=True)
    verify_tls: bool = doc("Verify the gateway's TLS certificate (false only on a test "
                           "network: warned at start, shown in status, alerted on every scan)",
                           True)
    connect_timeout: float = doc("Seconds to open a connection (nothing sent yet: always "
                                 "retried)", 10.0)
    read_timeout: float = doc("Seconds to wait for the answer once the request is sent", 30.0)
    max_connections: int = doc("Most HTTP requests in flight at once in a process that has "
                               "no worker threads to size it by (the CLI's tools); "
                               "`mi-worker run` allows worker.threads. Each thread keeps its "
                               "own kept-alive connection (gateway/http_pool.py)", 64)
    keepalive_seconds: float = doc("Idle seconds after which a pooled connection is dropped; "
                                   "keep it below the gateway's own idle timeout, or a "
                                   "settlement sent on a connection the gateway is closing "
                                   "ends UNCERTAIN", 15.0)
    retry_initial_seconds: float = doc("First back-off between attempts of one call, "
                                       "doubled per attempt with jitter", 0.5)
    retry_max_seconds: float = doc("Longest back-off between attempts of one call", 5.0)
    gm_sm4_key: str = doc("国密 (province-specific): 32 hex chars of the SM4 key when the "
                          "centre returns output SM4-ECB encrypted as Base64; empty = off",
                          "", secret=True)
    gm_sign: str = doc("国密 (province-specific): sm2 = put an SM2 signature of the sorted "
                       "envelope fields (except cainfo, input) in cainfo; empty = off", "")
    gm_sm2_private_key: str = doc("SM2 private key (hex) for gm_sign; needs the gmssl extra",
                                  "", secret=True)
    gm_sm2_public_key: str = doc("SM2 public key (hex, 04|x|y or x|y) matching the private key",
                                 "")

    file_upload_mode: str = doc("9101 文件上传: envelope (the file base64 in input.fsUploadIn.in, "
                                "as .NET/Java clients serialise byte[]) or multipart (form "
                                "fields jsonStr + file, where the province wants it)", "envelope")
    file_directory: str = doc("Directory for files exchanged with the centre (9101 uploads, "
                              "9102 downloads: catalogues, 3202 results); relative to the "
                              "working directory", "mi-worker-files")
    file_max_bytes: int = doc("Largest file uploaded or downloaded (a larger one is refused, "
                              "the partial download deleted)", 512 * 1024 * 1024)
    file_attempts: int = doc("Attempts of one 9101 / 9102 transfer (a truncated or failed "
                             "download is fetched again; 9101 only before anything was sent)", 3)

    def validate(self) -> None:
        """Check every value a type cannot; raise ConfigError naming the key."""
        def bad(key: str, why: str) -> None:
            raise ConfigError(f"config key gateway.{key}: {why}")

        if self.kind not in KINDS:
            bad("kind", f"must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.transport not in TRANSPORTS:
            bad("transport", f"must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        if self.file_upload_mode not in ("envelope", "multipart"):
            bad("file_upload_mode", f"must be envelope or multipart, not {self.file_upload_mode!r}")
        if self.file_max_bytes < 1 or self.file_attempts < 1:
            bad("file_max_bytes" if self.file_max_bytes < 1 else "file_attempts",
                "must be at least 1")
        if len(self.fixmedins_code) != 12:
            bad("fixmedins_code", f"must be 12 characters (it starts every 30-character msgid), "
                f"got {len(self.fixmedins_code)}")
        if self.opter_type not in ("1", "2", "3"):
            bad("opter_type", "must be 1 (经办人), 2 (自助终端) or 3 (移动终端)")
        if self.csb_timestamp_unit not in ("ms", "s"):
            bad("csb_timestamp_unit", "must be ms or s")
        for key in ("connect_timeout", "read_timeout", "retry_initial_seconds",
                    "retry_max_seconds", "keepalive_seconds"):
            if getattr(self, key) <= 0:
                bad(key, "must be positive")
        if self.max_connections < 1:
            bad("max_connections", "must be at least 1")
        try:
            re.compile(self.sign_no_error_pattern)
        except re.error as exc:
            bad("sign_no_error_pattern", f"is not a valid regular expression: {exc}")
        if self.kind == "nhsa":
            if not self.url.startswith(("http://", "https://")):
                bad("url", "must be the gateway's http(s):// URL when gateway.kind = nhsa")
            if self.transport == "tif" and not (self.paasid and self.secret):
                bad("secret", "transport tif needs gateway.paasid and gateway.secret")
            if self.transport == "csb" and not (self.access_key and self.secret):
                bad("secret", "transport csb needs gateway.access_key and gateway.secret")
        for key in ("ca_bundle", "client_cert", "client_key"):
            path = getattr(self, key)
            if path and not os.path.isfile(path):
                bad(key, f"file {path} does not exist")
        if self.client_key and not self.client_cert:
            bad("client_key", "is set but gateway.client_cert is empty")
        if self.client_cert and is_pkcs12(self.client_cert) and self.client_key:
            bad("client_key", "must be empty when gateway.client_cert is a PKCS#12 (.pfx/.p12) "
                "file: the key is inside it")
        if self.gm_sm4_key and not re.fullmatch(r"[0-9a-fA-F]{32}", self.gm_sm4_key):
            bad("gm_sm4_key", "must be 32 hex characters (a 128-bit SM4 key)")
        if self.gm_sign not in ("", "sm2"):
            bad("gm_sign", "must be empty or sm2")
        if self.gm_sign == "sm2" and not (self.gm_sm2_private_key and self.gm_sm2_public_key):
            bad("gm_sm2_private_key", "gm_sign = sm2 needs gm_sm2_private_key and "
                "gm_sm2_public_key")
