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
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

from mi_worker.config_fields import ConfigError
from mi_worker.config_model import (  # noqa: F401 - the model, imported from here by callers
    DEFAULT_SQLITE_URL,
    AlertSettings,
    DatabaseSettings,
    DisplaySettings,
    JobSettings,
    LoggingSettings,
    MetricsSettings,
    Settings,
    WorkerSettings,
    _sections,
)
from mi_worker.db import dialect_for
from mi_worker.display import zone

ENV_PREFIX = "MI_WORKER_"


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
        ("workflows.advance_seconds", 0 < s.workflows.advance_seconds <= 60, "must be 0..60"),
        ("worker.batch_size", 1 <= s.worker.batch_size <= 1000, "must be 1..1000"),
        ("worker.max_batch_size", 1 <= s.worker.max_batch_size <= 10000, "must be 1..10000"),
        ("worker.prefetch", s.worker.prefetch >= -1, "must be -1 (adaptive), 0 or more"),
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
    for key in ("reconcile_time", "catalog_time"):
        value = getattr(s.jobs, key)
        if value:
            parts = value.split(":")
            ok = len(parts) == 2 and all(p.isdigit() for p in parts) and int(parts[0]) < 24 \
                and int(parts[1]) < 60
            checks.append((f"jobs.{key}", ok, "must be HH:MM"))
    bad_codes = [c for c in s.jobs.catalog_codes if c not in [str(n) for n in range(1301, 1320)]]
    checks.append(("jobs.catalog_codes", not bad_codes,
                   f"not catalogue codes (1301…1319): {', '.join(map(str, bad_codes))}"))
    checks.append(("worker.async_deadline_seconds",
                   1 <= s.worker.async_deadline_seconds <= 604800, "must be 1..604800"))
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
