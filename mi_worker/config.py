"""Settings: one TOML file plus MI_WORKER_* environment overrides, validated with clear errors.

Every key is a dataclass field with a default and a one-line doc in its metadata, so the
configuration reference in README is generated from this model (``mi-worker config
reference``) and a test keeps the two in step. Environment variables are named after the key
(``database.url`` -> ``MI_WORKER_DATABASE_URL``) because secrets belong in the service
manager's environment file, not in a TOML file ops may mail around.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

from mi_worker.config_fields import ConfigError, doc
from mi_worker.db import dialect_for
from mi_worker.display import zone
from mi_worker.gateway.settings import GatewaySettings

ENV_PREFIX = "MI_WORKER_"
DEFAULT_SQLITE_URL = "sqlite:///mi_worker.db"


@dataclass
class DatabaseSettings:
    url: str = doc("Database URL: sqlite:///path, postgresql://user:pw@host:5432/db, "
                   "mssql+pyodbc://user:pw@host:1433/db?driver=ODBC+Driver+18+for+SQL+Server, "
                   "or a raw ODBC connection string prefixed mssql+odbc:// or postgresql+odbc:// "
                   "(or odbc:// with database.dialect); passwords in it are masked in logs",
                   DEFAULT_SQLITE_URL)
    dialect: str = doc("mssql or postgresql: the SQL a raw odbc:// connection string runs "
                       "(required there, never guessed from the driver name); empty when the "
                       "URL scheme names the database", "")
    connect_timeout: int = doc("Seconds to wait for a database connection", 10)
    pool_size: int = doc("Database sessions per worker process, shared by its threads", 10)
    reconnect_max_seconds: float = doc("Longest pause between reconnect attempts when the "
                                       "database is away", 30.0)


@dataclass
class WorkerSettings:
    service_name: str = doc("Name in sdk_heartbeat.service_name; workers of one cluster share it",
                            "medical_insurance_sdk")
    threads: int = doc("Concurrent gateway calls per worker process", 16)
    batch_size: int = doc("Most rows taken by one claim statement", 16)
    prefetch: int = doc("Claimed rows allowed to wait for a free thread (0 = claim only for idle "
                        "threads). More lets one claim fetch a bigger batch when calls are "
                        "short; a prefetched row is still PROCESSING and leased", 0)
    poll_interval: float = doc("Longest idle sleep between claims, seconds (adaptive back-off "
                               "starts at min_poll_interval); bounds the pick-up delay of a "
                               "request arriving at an idle worker", 0.1)
    min_poll_interval: float = doc("First idle sleep after an empty claim, seconds", 0.01)
    lease_seconds: int = doc("How long a claim is valid without a heartbeat extending it", 120)
    grace_seconds: float = doc("On SIGTERM/Ctrl-C, how long in-flight calls may finish", 30.0)
    retry_base_seconds: float = doc("Deprecated and ignored: the back-off of a retryable call "
                                    "is gateway.retry_initial_seconds (doubling up to "
                                    "gateway.retry_max_seconds). Still accepted so older "
                                    "files load", 1.0)
    limits: Dict[str, int] = doc("Most in-flight calls per interface code across all workers, "
                                 'e.g. {"2207" = 4, "*" = 32}; "*" applies to every code not '
                                 "named; empty = no limit", {})


@dataclass
class JobSettings:
    heartbeat_seconds: float = doc("Heartbeat interval (also extends this worker's leases)", 10.0)
    heartbeat_stale_seconds: int = doc("A worker whose last beat is older is considered dead", 30)
    expire_seconds: float = doc("Interval of the sweep that times out PENDING rows past their "
                                "deadline", 5.0)
    lease_recovery_seconds: float = doc("Interval of the sweep that recovers rows of dead "
                                        "workers", 15.0)
    reversal_seconds: float = doc("Interval of the 2601 reversal job", 10.0)
    reversal_max_attempts: int = doc("2601 attempts before a row becomes NEEDS_MANUAL", 5)
    reversal_done_pattern: str = doc("Regular expression on a failed 2601's err_msg meaning the "
                                     "original is already reversed", "已冲正|已经冲正")
    reversal_not_found_pattern: str = doc(
        "Regular expression on a failed 2601's err_msg meaning the centre has no such original; "
        "believed only when the last of reversal_max_attempts spaced attempts still says so "
        "(the original may still be on its way)", "原交易不存在|无此交易|交易不存在")
    reversal_delay_seconds: float = doc("Wait this long after a row falls in doubt before the "
                                        "first 2601, and this times the attempt number between "
                                        "attempts", 10.0)
    reversal_timeout_seconds: int = doc("Deadline of a queued 2601 reversal request", 300)
    his_manual_reversal: bool = doc("Let the HIS call 2601 冲正 through the procedure (manual "
                                    "reversal); off: refused with -1001 because the reversal "
                                    "job sends it. Written to the database by `mi-worker db "
                                    "upgrade`", False)
    reverse_late_completions: bool = doc("Reverse a state-changing call that COMPLETED after "
                                         "its HIS caller gave up", True)
    alerts_seconds: float = doc("Interval of the alert scan", 60.0)
    reconcile_time: str = doc("China time (HH:MM) of the daily 3201 reconciliation of the "
                              "previous day; empty = off", "")
    reconcile_setl_optins: str = doc("结算经办机构 (setl_optins) sent in 3201; empty = "
                                     "gateway.mdtrtarea_admvs", "")
    reconcile_groups: List[str] = doc('insutype:clr_type groups always reconciled, even with no '
                                      'local settlement that day (so a settlement only the centre '
                                      'has is found), e.g. ["310:11", "390:11"]', [])
    reconcile_catch_up_days: int = doc("A worker starting after a missed daily 3201 runs it for "
                                       "each of this many past China days still without a "
                                       "reconciliation; a day left without one raises "
                                       "RECONCILIATION_MISSING (0 = off)", 3)
    retention_days: int = doc("Terminal rows older than this many days leave the live table "
                              "(moved to medical_insurance_requests_archive, or deleted); "
                              "open, UNCERTAIN, NEEDS_MANUAL, to-be-reversed and unbalanced-"
                              "对账 rows always stay; 0 = keep everything", 400)
    retention_archive: bool = doc("Move old rows into medical_insurance_requests_archive "
                                  "(true) or delete them (false)", True)
    retention_batch_rows: int = doc("Rows moved per statement (small batches keep locks short "
                                    "while workers claim)", 500)
    retention_max_rows: int = doc("Most rows one retention run moves (the rest wait for the "
                                  "next run)", 200000)
    retention_seconds: float = doc("Interval of the retention job", 3600.0)


@dataclass
class AlertSettings:
    error_rate_percent: float = doc("Alert when the last hour's error rate exceeds this", 10.0)
    error_rate_min_calls: int = doc("…but only with at least this many calls in the hour", 10)
    slow_avg_ms: int = doc("Alert when the last hour's average latency exceeds this", 5000)
    backlog_pending: int = doc("Alert when more PENDING rows than this wait", 100)
    backlog_age_seconds: int = doc("…or the oldest PENDING row is older than this", 60)
    dedup_minutes: int = doc("An open alert of one type is not raised again within this", 30)
    webhook_url: str = doc("企业微信 or 钉钉 robot URL; empty = no webhook", "", secret=True)
    webhook_kind: str = doc("wecom or dingtalk", "wecom")
    webhook_secret: str = doc("钉钉 robot 加签 secret (SEC…): each post carries timestamp and "
                              "HMAC-SHA256 sign; empty = no signature", "", secret=True)
    webhook_keyword: str = doc("钉钉 robot 自定义关键词: put at the start of every message so a "
                               "keyword robot accepts it; empty = none", "")
    webhook_attempts: int = doc("Tries per notification (exponential back-off between them); "
                                "failures are counted in mi_webhook_notifications", 4)


@dataclass
class LoggingSettings:
    level: str = doc("DEBUG, INFO, WARNING or ERROR", "INFO")
    file: str = doc("Log file path (rotated at midnight, 14 kept; safe with other readers "
                    "and writers on Windows); empty = stderr only", "")
    format: str = doc("text, or json (one JSON object per line, for ELK / Loki)", "text")


@dataclass
class MetricsSettings:
    port: int = doc("`mi-worker run` serves Prometheus /metrics on this port (0 = off; "
                    "`--metrics-port` overrides)", 0)
    host: str = doc("Address the metrics endpoint binds", "127.0.0.1")


@dataclass
class DisplaySettings:
    timezone: str = doc("IANA time zone every time shown to people is converted to (CLI "
                        "tables, --json as ISO 8601 with offset, log lines), always with an "
                        "explicit offset; the database keeps UTC", "Asia/Shanghai")


@dataclass
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    display: DisplaySettings = field(default_factory=DisplaySettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    source: str = field(default="defaults", metadata={"internal": True})
    # "section.key" of every value given by the file or the environment (not defaulted): some
    # keys have a default only for the embedded first run (gateway.kind, database.url).
    given: List[str] = field(default_factory=list, metadata={"internal": True})
    env_kind: bool = field(default=False, metadata={"internal": True})

    def secrets(self) -> List[str]:
        """Every non-empty secret value, so the log filter can blank them out."""
        found = []
        for section_name, _ in _sections():
            section = getattr(self, section_name)
            for f in dataclasses.fields(section):
                value = getattr(section, f.name)
                if f.metadata.get("secret") and isinstance(value, str) and value:
                    found.append(value)
        return found


def _sections() -> List[Tuple[str, type]]:
    hints = typing.get_type_hints(Settings)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(Settings)
            if not f.metadata.get("internal")]


def _coerce(key: str, raw: Any, annotation: Any, from_env: bool = False) -> Any:
    """Turn a TOML or environment value into the field's type, or say exactly what is wrong.

    Booleans are booleans: a TOML value must be true or false unquoted, and an environment
    value (always text) true/false/1/0. "yes", "no", "off" or a quoted "false" are errors, so
    ``verify_tls = "no"`` can never be read one way by a person and another way by the code.
    """
    origin = typing.get_origin(annotation)
    try:
        if annotation is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if from_env and text in ("1", "true"):
                return True
            if from_env and text in ("0", "false"):
                return False
            raise ValueError("expected true or false" + (
                " (unquoted in TOML)" if not from_env else " (or 1 / 0)"))
        if annotation is int:
            if isinstance(raw, bool):
                raise ValueError("expected a whole number")
            return int(raw)
        if annotation is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if annotation is str:
            if isinstance(raw, (dict, list)):
                raise ValueError("expected a string")
            return str(raw)
        if origin in (dict, Dict):
            value = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(value, Mapping):
                raise ValueError("expected a table")
            _, vtype = typing.get_args(annotation)
            return {str(k): _coerce(f"{key}.{k}", v, vtype) for k, v in value.items()}
        if origin in (list, List):
            value = json.loads(raw) if isinstance(raw, str) and raw.startswith("[") else raw
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            (itype,) = typing.get_args(annotation)
            return [_coerce(key, v, itype) for v in value]
        if origin is typing.Union:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if raw is None or raw == "":
                return None
            return _coerce(key, raw, args[0])
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config key {key}: bad value {raw!r}: {exc}") from None
    return raw


def _apply(section_obj: Any, section_name: str, values: Mapping[str, Any], origin: str) -> None:
    hints = typing.get_type_hints(type(section_obj))
    names = {f.name for f in dataclasses.fields(section_obj)}
    for key, raw in values.items():
        if key not in names:
            raise ConfigError(f"{origin}: unknown config key {section_name}.{key} "
                              f"(known: {', '.join(sorted(names))})")
        setattr(section_obj, key, _coerce(f"{section_name}.{key}", raw, hints[key],
                                          from_env=origin == "environment"))


def load(path: Optional[os.PathLike] = None, env: Optional[Mapping[str, str]] = None) -> Settings:
    """Read the TOML file (``--config``, else MI_WORKER_CONFIG, else none) and the environment."""
    env = os.environ if env is None else env
    settings = Settings()
    path = path or env.get(ENV_PREFIX + "CONFIG") or None
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            # utf-8-sig: Windows Notepad saves UTF-8 with a byte-order mark.
            data = tomllib.loads(p.read_text(encoding="utf-8-sig"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            # Notepad on a Chinese Windows saves ANSI = GBK by default.
            raise ConfigError(f"config file {p} is not UTF-8 (byte 0x{exc.object[exc.start]:02x} "
                              f"at offset {exc.start}, probably GBK/ANSI): save it as UTF-8 "
                              "(Notepad: 另存为 → 编码 UTF-8)") from None
        sections = dict(_sections())
        for name, values in data.items():
            if name not in sections:
                raise ConfigError(f"{p}: unknown config section [{name}] "
                                  f"(known: {', '.join(sorted(sections))})")
            if not isinstance(values, Mapping):
                raise ConfigError(f"{p}: [{name}] must be a table")
            _apply(getattr(settings, name), name, values, str(p))
            settings.given += [f"{name}.{k}" for k in values]
        settings.source = str(p)
    for name, _ in _sections():
        section = getattr(settings, name)
        overrides = {}
        for f in dataclasses.fields(section):
            var = env_var(name, f.name)
            if var in env:
                overrides[f.name] = env[var]
        if overrides:
            _apply(section, name, overrides, "environment")
            settings.given += [f"{name}.{k}" for k in overrides]
    validate(settings)
    settings.env_kind = env_var("gateway", "kind") in env
    return settings


FAKE_KINDS = ("sandbox", "noop")


def is_embedded(s: Settings) -> bool:
    """The first-run default: no configuration file and a SQLite database."""
    return s.source == "defaults" and s.database.url.startswith("sqlite:")


def check_fake_centre(s: Settings) -> None:
    """Never settle against a fake centre by accident (DESIGN: go-live safety).

    The sandbox and noop gateways answer 0 with made-up settlement ids, so the HIS would
    record money that never reached the national platform. They start by themselves only for
    the embedded default; with a configuration file or a server database ``gateway.kind``
    must be given, a fake kind on a server database also needs
    ``gateway.allow_fake_centre = true``, and the real centre needs a real database URL
    (never a silent ./mi_worker.db).

    Checked by the commands that talk to a gateway (``run``, ``doctor``, ``config check``),
    not by read-only ones: a DBA's ``status`` needs no gateway.kind.
    """
    kind_given = "gateway.kind" in s.given
    if not kind_given and not is_embedded(s):
        why = (f"a configuration file ({s.source}) is used" if s.source != "defaults"
               else "the database is not the embedded SQLite one")
        raise ConfigError(
            f"config key gateway.kind: has no default once {why}; set gateway.kind = \"nhsa\" "
            f"for the real 医保中心 (or {env_var('gateway', 'kind')}=nhsa); sandbox / noop are "
            "fake centres for tests")
    server_db = not s.database.url.startswith("sqlite:")
    if s.gateway.kind in FAKE_KINDS and server_db and not s.gateway.allow_fake_centre:
        raise ConfigError(
            f"config key gateway.allow_fake_centre: gateway.kind = {s.gateway.kind!r} is a FAKE "
            f"centre and the database is a server database ({s.database.url.split(':', 1)[0]}); "
            "settlements would never reach the national platform. Set gateway.kind = \"nhsa\", "
            "or, for an acceptance test on purpose, gateway.allow_fake_centre = true"
            + (f" (gateway.kind came from {env_var('gateway', 'kind')})"
               if s.env_kind else ""))
    if s.gateway.kind == "nhsa" and "database.url" not in s.given:
        raise ConfigError(
            "config key database.url: gateway.kind = \"nhsa\" needs the HIS database URL "
            f"(database.url or {env_var('database', 'url')}); refusing to fall back to "
            f"{DEFAULT_SQLITE_URL} in the current directory")


def env_var(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _dialect_ok(url: str, dialect: str) -> bool:
    try:
        dialect_for(url, 1, dialect)
    except ValueError:
        return False
    return True


def validate(s: Settings) -> None:
    """Range checks that a type cannot express; each error names its key."""
    checks = [
        ("worker.threads", s.worker.threads >= 1, "must be at least 1"),
        ("worker.batch_size", 1 <= s.worker.batch_size <= 1000, "must be 1..1000"),
        ("worker.poll_interval", s.worker.poll_interval > 0, "must be positive"),
        ("worker.min_poll_interval", 0 < s.worker.min_poll_interval <= s.worker.poll_interval,
         "must be positive and not above worker.poll_interval"),
        # Upper bounds (tsql-review D12): SQL Server computes these in INT milliseconds, which
        # overflow after 24.8 days; a day is far beyond any real lease or reversal deadline.
        ("worker.lease_seconds", 10 <= s.worker.lease_seconds <= 86400, "must be 10..86400"),
        ("jobs.reversal_timeout_seconds", 1 <= s.jobs.reversal_timeout_seconds <= 86400,
         "must be 1..86400"),
        # D13: the HIS procedures answer -1002 when no worker beat within 30 s (fixed window).
        ("jobs.heartbeat_seconds", s.jobs.heartbeat_seconds <= 15,
         "must be at most 15: the HIS procedure answers -1002 after 30 s without a beat"),
        ("jobs.heartbeat_seconds", 0 < s.jobs.heartbeat_seconds < s.jobs.heartbeat_stale_seconds,
         "must be positive and below jobs.heartbeat_stale_seconds"),
        ("database.dialect", _dialect_ok(s.database.url, s.database.dialect),
         "must be mssql or postgresql for a raw odbc:// connection string (the driver name is "
         "never used to guess), and agree with the URL scheme"),
        ("logging.level", s.logging.level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
         "must be DEBUG, INFO, WARNING or ERROR"),
        ("alerts.webhook_kind", s.alerts.webhook_kind in ("wecom", "dingtalk"),
         "must be wecom or dingtalk"),
        ("alerts.webhook_attempts", s.alerts.webhook_attempts >= 1, "must be at least 1"),
        ("logging.format", s.logging.format in ("text", "json"), "must be text or json"),
        ("metrics.port", 0 <= s.metrics.port <= 65535, "must be 0..65535"),
        ("jobs.retention_days", s.jobs.retention_days == 0 or s.jobs.retention_days >= 30,
         "must be 0 (keep everything) or at least 30"),
        ("jobs.retention_batch_rows", 1 <= s.jobs.retention_batch_rows <= 10000,
         "must be 1..10000"),
        ("jobs.retention_seconds", s.jobs.retention_seconds > 0, "must be positive"),
        ("jobs.reconcile_catch_up_days", 0 <= s.jobs.reconcile_catch_up_days <= 31,
         "must be 0..31"),
    ]
    for code, limit in s.worker.limits.items():
        checks.append((f"worker.limits.{code}", limit >= 1, "must be at least 1"))
    if s.jobs.reconcile_time:
        parts = s.jobs.reconcile_time.split(":")
        ok = len(parts) == 2 and all(p.isdigit() for p in parts) and int(parts[0]) < 24 \
            and int(parts[1]) < 60
        checks.append(("jobs.reconcile_time", ok, "must be HH:MM"))
    try:
        zone(s.display.timezone)
    except ValueError as exc:
        checks.append(("display.timezone", False, str(exc)))
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"config key {key}: {why}")
    s.gateway.validate()


def reference_rows() -> List[Tuple[str, str, str, str]]:
    """(key, default, env var, doc) for every setting: the source of the README reference."""
    rows = []
    for name, cls in _sections():
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f.default
            else:
                default = f.default_factory()  # type: ignore[misc]
            shown = "(secret)" if f.metadata.get("secret") and default else json.dumps(
                default, ensure_ascii=False)
            rows.append((f"{name}.{f.name}", shown, env_var(name, f.name),
                         f.metadata.get("doc", "")))
    return rows


def reference_markdown() -> str:
    """The configuration reference as a Markdown table (README embeds this verbatim)."""
    lines = ["| key | default | environment variable | meaning |", "|---|---|---|---|"]
    for key, default, var, text in reference_rows():
        lines.append(f"| `{key}` | `{default}` | `{var}` | {text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
