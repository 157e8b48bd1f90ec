"""The settings model: every configuration key, as a dataclass field with its default and
its one-line doc (``doc``), one dataclass per TOML section. config.py loads and validates it;
the README's configuration reference is generated from it."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from mi_worker.config_fields import doc
from mi_worker.gateway.settings import GatewaySettings

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
    batch_size: int = doc("Rows taken by the first claim statement, and the fewest a claim "
                          "asks for with enough threads free", 16)
    max_batch_size: int = doc("Most rows one claim statement may take: the claim size doubles "
                              "from batch_size while claims come back full (a backlog) and "
                              "halves when one comes back short; = batch_size fixes it", 256)
    prefetch: int = doc("Claimed rows allowed to wait for a free thread: -1 = adaptive (the "
                        "rows the threads can start within 25 ms at the measured call time: "
                        "many with a fast gateway, a few at 100 ms, none when slow), 0 = claim "
                        "only for idle threads, N = fixed. A prefetched row is PROCESSING and "
                        "leased", -1)
    poll_interval: float = doc("Longest idle sleep between claims, seconds (adaptive back-off "
                               "starts at min_poll_interval); bounds the pick-up delay of a "
                               "request arriving at an idle worker", 0.1)
    min_poll_interval: float = doc("Idle sleep after a claim that found fewer rows than it "
                                   "asked for, seconds; it stays this short for the next 8 "
                                   "empty claims (rows arriving every few ms are picked up at "
                                   "once), then doubles on every empty claim up to "
                                   "poll_interval, so an idle worker still settles at "
                                   "1/poll_interval claims per second", 0.002)
    lease_seconds: int = doc("How long a claim is valid without a heartbeat extending it", 120)
    async_deadline_seconds: int = doc("Deadline of a call queued by `mi-worker submit` (nobody "
                                      "waits on it; sp_medical_insurance_submit_v2's own "
                                      "default is the same 86400 s = 24 h), 1..604800", 86400)
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
    catalog_time: str = doc("China time (HH:MM) of the daily catalogue sync (目录下载) of "
                            "jobs.catalog_codes; empty = off", "")
    catalog_codes: List[str] = doc('Catalogues the daily sync loads, e.g. ["1301", "1302", '
                                   '"1305", "1306"]', [])
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
class WorkflowSettings:
    file: str = doc("JSON file of settlement workflow definitions that replace or add to the "
                    "shipped ones by name (README, Workflows); checked at start", "")
    advance_seconds: float = doc("Interval of the job that advances workflows (each step waits "
                                 "up to this long after the previous one ends)", 0.2)


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
    workflows: WorkflowSettings = field(default_factory=WorkflowSettings)
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
