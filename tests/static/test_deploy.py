"""Deployment artefacts (deploy/**): well-formed, consistent with each other and with the
settings model. Fast, no Docker, no database: every file is parsed, and every setting the
examples use is loaded through mi_worker.config.load, so a renamed or removed key fails here
instead of on a hospital's server.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from mi_worker import config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.9/3.10
    import tomli as tomllib

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the compose/k8s files")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
WINDOWS = DEPLOY / "windows"
DOCKER = DEPLOY / "docker"
K8S = DEPLOY / "k8s"
UNITS = [SYSTEMD / "mi-worker.service", SYSTEMD / "mi-worker@.service"]

# Names that look like settings but are not: the only non-key variable mi-worker reads.
NON_KEY_VARS = {"MI_WORKER_CONFIG"}


# -- helpers ------------------------------------------------------------------------------
def known_env_vars() -> Dict[str, str]:
    """MI_WORKER_<SECTION>_<KEY> -> section.key for every setting."""
    return {var: key for key, _default, var, _doc in config.reference_rows()}


def default_grace() -> float:
    return config.Settings().worker.grace_seconds


def unit_settings(path: Path) -> Dict[str, List[str]]:
    """Key -> values of a systemd unit (comments skipped; keys may repeat)."""
    found: Dict[str, List[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def seconds(text: str) -> float:
    """'45', '45s', '45 sec', '1min' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|second|seconds|m|min|mins|minute|minutes)?\s*",
                     text)
    assert m, f"cannot read a duration from {text!r}"
    value = float(m.group(1))
    return value * 60 if (m.group(2) or "s").startswith("m") else value


def interpolate(text: str, values: Dict[str, str]) -> str:
    """docker compose variable interpolation: $$, ${VAR}, ${VAR:-default}, ${VAR:?error}."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if values.get(name):
            return values[name]
        if op == ":?":
            raise AssertionError(f"compose variable {name} is required: {arg}")
        return arg or ""
    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, text)


def dotenv(path: Path) -> Dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def compose() -> dict:
    text = (DOCKER / "docker-compose.yml").read_text(encoding="utf-8")
    return yaml.safe_load(interpolate(text, dotenv(DOCKER / ".env.example")))


def k8s_docs(name: str) -> List[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]


def k8s_toml() -> str:
    (cm,) = k8s_docs("configmap.yaml")
    return cm["data"]["mi-worker.toml"]


def load_toml_example(text: str, tmp_path: Path, env: Dict[str, str]) -> config.Settings:
    """Load an example TOML through the real loader, placeholders replaced, env overrides on."""
    text = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "placeholder", text)
    path = tmp_path / "example.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(path, env=env)


def secret_env() -> Dict[str, str]:
    """What a real installation puts into the environment next to the TOML file."""
    return {"MI_WORKER_DATABASE_URL": "sqlite:///unused.db"}


# -- settings drift -------------------------------------------------------------------------
@pytest.mark.parametrize("example", [
    SYSTEMD / "mi-worker.toml.example",
    WINDOWS / "mi-worker.toml.example",
    "k8s-configmap",
], ids=["systemd", "windows", "k8s"])
def test_toml_examples_load_with_the_settings_model(example, tmp_path):
    text = k8s_toml() if example == "k8s-configmap" else Path(example).read_text(encoding="utf-8")
    settings = load_toml_example(text, tmp_path, secret_env())
    assert settings.gateway.kind == "nhsa"
    assert len(settings.gateway.fixmedins_code) == 12
    # No secrets in the TOML examples: they belong to the env file / XML <env> / Secret.
    data = tomllib.loads(text)
    assert "url" not in data.get("database", {}), "database.url carries a password"
    for key in ("secret", "cainfo", "gm_sm4_key", "gm_sm2_private_key", "serv_sign"):
        assert key not in data.get("gateway", {}), f"gateway.{key} is a secret"
    assert "webhook_url" not in data.get("alerts", {})


def test_toml_examples_are_utf8_without_bom():
    for path in (SYSTEMD / "mi-worker.toml.example", WINDOWS / "mi-worker.toml.example"):
        assert not path.read_bytes().startswith(b"\xef\xbb\xbf"), path


def mentioned_env_vars() -> List[Tuple[str, str]]:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()] + [ROOT / "docs" / "operations.md"]
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        for var in sorted(set(re.findall(r"\bMI_WORKER_[A-Z0-9_]*[A-Z0-9]\b", text))):
            found.append((str(path.relative_to(ROOT)), var))
    return found


def test_every_mi_worker_variable_in_deploy_and_docs_is_a_setting():
    known = set(known_env_vars()) | NON_KEY_VARS
    unknown = [(where, var) for where, var in mentioned_env_vars() if var not in known]
    assert not unknown, f"MI_WORKER_* names that are no setting (typo or renamed key): {unknown}"


def test_systemd_env_example_loads(tmp_path):
    env = dotenv(SYSTEMD / "mi-worker.env.example")
    assert env["MI_WORKER_DATABASE_URL"].startswith("mssql+pyodbc://")
    config.load(None, env=env)


def test_compose_worker_environment_loads():
    services = compose()["services"]
    for name in ("worker", "db-init"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = config.load(None, env=env)
        assert settings.gateway.url == "http://sandbox:8097/fsi/api/rsfComIfsService/callService"
        assert settings.database.url.startswith("odbc://DRIVER={FreeTDS}")
        assert "TDS_Version=7.4" in settings.database.url
        assert "ClientCharset=UTF-8" in settings.database.url


def test_k8s_environment_loads_with_the_example_secret(tmp_path):
    (secret,) = k8s_docs("secret.example.yaml")
    values = secret["stringData"]
    for manifest in ("deployment.yaml", "job-db-upgrade.yaml"):
        (doc,) = k8s_docs(manifest)
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        env = {}
        for item in container["env"]:
            if "value" in item:
                env[item["name"]] = str(item["value"])
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"]
                env[item["name"]] = values[ref["key"]]
        assert env.pop("MI_WORKER_CONFIG") == "/etc/mi-worker/mi-worker.toml"
        load_toml_example(k8s_toml(), tmp_path, env)


def test_winsw_environment_loads():
    root = ET.parse(WINDOWS / "mi-worker-service.xml").getroot()
    env = {e.get("name"): e.get("value") for e in root.findall("env")}
    assert "&" in env["MI_WORKER_DATABASE_URL"], "the XML parser must have unescaped &amp;"
    config.load(None, env={k: v for k, v in env.items() if v})


# -- systemd ---------------------------------------------------------------------------------
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_unit_settings(unit):
    s = unit_settings(unit)
    assert s["Type"] == ["simple"]
    assert s["Restart"] == ["always"]
    assert s["User"] == ["mi-worker"]
    assert s["EnvironmentFile"] and s["EnvironmentFile"][0].startswith("/etc/mi-worker/")
    assert s["KillSignal"] == ["SIGTERM"]
    assert seconds(s["TimeoutStopSec"][0]) > default_grace()
    assert seconds(s["RestartSec"][0]) == 5
    (exec_start,) = s["ExecStart"]
    assert exec_start.startswith("/opt/mi-worker/venv/bin/mi-worker --config /etc/mi-worker/")
    assert exec_start.endswith(" run")
    for key, value in (("NoNewPrivileges", "true"), ("ProtectSystem", "strict"),
                       ("PrivateTmp", "true"), ("ReadWritePaths", "/var/log/mi-worker")):
        assert s[key] == [value], key
    # The example's log file must be inside the writable path.
    toml = tomllib.loads((SYSTEMD / "mi-worker.toml.example").read_text(encoding="utf-8"))
    assert toml["logging"]["file"].startswith(s["ReadWritePaths"][0] + "/")
    assert toml["worker"]["grace_seconds"] < seconds(s["TimeoutStopSec"][0])


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    paths = []
    for unit in UNITS:
        text = re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", unit.read_text(encoding="utf-8"))
        name = unit.name.replace("@.service", "@verify.service")
        (tmp_path / name).write_text(text, encoding="utf-8")
        paths.append(str(tmp_path / name))
    try:
        proc = subprocess.run([tool, "verify", *paths], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"systemd-analyze verify cannot run here: {exc}")
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 and str(tmp_path) not in output:
        pytest.skip(f"systemd-analyze verify cannot run in this environment: {output.strip()[:300]}")
    ours = [line for line in output.splitlines() if str(tmp_path) in line]
    assert proc.returncode == 0 and not ours, output


def test_mi_worker_ctl_is_posix_sh():
    ctl = SYSTEMD / "mi-worker-ctl"
    assert ctl.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    proc = subprocess.run([sh, "-n", str(ctl)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_mi_worker_ctl_loads_the_env_file_literally(tmp_path):
    """Values with $, backquotes, & and # reach the command exactly as systemd would pass them."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    (tmp_path / "mi-worker.env").write_text(
        "# comment\nMI_WORKER_DATABASE_URL=odbc://DRIVER={FreeTDS};PWD={a$b`x`};A=1&B=2\n"
        'MI_WORKER_GATEWAY_SECRET="with space # hash"\n', encoding="utf-8")
    (tmp_path / "mi-worker.toml").write_text("", encoding="utf-8")
    fake = tmp_path / "mi-worker"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$*" "$MI_WORKER_DATABASE_URL" '
                    '"$MI_WORKER_GATEWAY_SECRET"\n', encoding="utf-8")
    fake.chmod(0o755)
    import getpass
    env = {"PATH": "/usr/bin:/bin", "MI_CTL_ETC": str(tmp_path), "MI_CTL_BIN": str(fake),
           "MI_CTL_USER": getpass.getuser()}
    proc = subprocess.run([sh, str(SYSTEMD / "mi-worker-ctl"), "requests", "list"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"--config {tmp_path}/mi-worker.toml requests list",
        "odbc://DRIVER={FreeTDS};PWD={a$b`x`};A=1&B=2",
        "with space # hash",
    ]


# -- Windows ---------------------------------------------------------------------------------
def test_winsw_xml():
    root = ET.parse(WINDOWS / "mi-worker-service.xml").getroot()
    assert root.tag == "service"
    text = {child.tag: (child.text or "").strip() for child in root}
    assert text["id"] == "mi-worker"
    assert text["name"] and text["description"]
    assert text["executable"].lower().endswith(r"\venv\scripts\mi-worker.exe")
    args = text["arguments"]
    assert args.startswith("--config ") and args.endswith(" run") and "mi-worker.toml" in args
    assert seconds(text["stoptimeout"]) > default_grace()
    assert text["stopparentprocessfirst"] == "true"
    assert text["startmode"] == "Automatic"
    restarts = [e for e in root.findall("onfailure") if e.get("action") == "restart"]
    assert restarts and all(e.get("delay") for e in restarts)
    log = root.find("log")
    assert log is not None and log.get("mode", "").startswith("roll-by-")
    if log.get("mode") == "roll-by-size":
        assert int(log.findtext("keepFiles")) >= 1
    names = [e.get("name") for e in root.findall("env")]
    assert "MI_WORKER_DATABASE_URL" in names and "MI_WORKER_GATEWAY_SECRET" in names


def test_windows_toml_uses_literal_strings_for_paths():
    text = (WINDOWS / "mi-worker.toml.example").read_text(encoding="utf-8")
    for line in text.splitlines():
        if re.match(r"\s*#?\s*[a-z_]+\s*=\s*\"[A-Za-z]:\\", line):
            pytest.fail(f"Windows path in a basic string (backslashes are escapes): {line}")


def test_install_ps1_is_ascii_and_uses_the_files_next_to_it():
    raw = (WINDOWS / "install.ps1").read_bytes()
    # Windows PowerShell 5.1 reads a BOM-less script in the ANSI code page (GBK).
    assert all(b < 128 for b in raw), "install.ps1 must stay ASCII"
    text = raw.decode("ascii")
    assert "Set-StrictMode" in text and "$ErrorActionPreference = 'Stop'" in text
    for name in ("mi-worker.toml.example", "mi-worker-service.xml"):
        assert name in text and (WINDOWS / name).is_file()
    assert "--no-index" in text and "--find-links" in text
    for opener, closer in ("()", "{}", "[]"):
        assert text.count(opener) == text.count(closer), f"unbalanced {opener}{closer}"


# -- Docker ----------------------------------------------------------------------------------
def dockerfile_instructions() -> List[Tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^\s*#.*\n", "", text)        # comment lines, also inside continuations
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile():
    ins = dockerfile_instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    args = dict(rest.split("=", 1) for word, rest in ins if word == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert froms[-1] == "${PYTHON_IMAGE}"
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (health,) = [rest for word, rest in ins if word == "HEALTHCHECK"]
    assert '"mi-worker", "health"' in health
    assert ("ENTRYPOINT", '["mi-worker"]') in ins
    assert ("CMD", '["run"]') in ins
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    for package in ("unixodbc", "odbc-postgresql", "tdsodbc"):
        assert package in runs
    assert "INSTALL_MSODBC18" in runs and "msodbcsql18" in runs


def test_compose_services():
    services = compose()["services"]
    assert {"mssql", "db-init", "worker", "sandbox"} <= set(services)
    mssql = services["mssql"]
    assert mssql["image"].startswith("mcr.microsoft.com/mssql/server:2022")
    assert mssql["environment"]["ACCEPT_EULA"] == "Y" and "healthcheck" in mssql
    init = services["db-init"]
    assert init["depends_on"]["mssql"]["condition"] == "service_healthy"
    assert "mi-worker db upgrade" in " ".join(init["command"])
    assert "CREATE DATABASE" in " ".join(init["command"])
    worker = services["worker"]
    assert worker["depends_on"]["db-init"]["condition"] == "service_completed_successfully"
    assert "sandbox" in worker["depends_on"]
    assert worker["deploy"]["replicas"] >= 2
    assert seconds(worker["stop_grace_period"]) > default_grace()
    assert worker["healthcheck"]["test"][1:3] == ["mi-worker", "health"]
    sandbox = services["sandbox"]
    assert sandbox["command"][:1] == ["sandbox"] and "0.0.0.0" in sandbox["command"]
    assert "8097" in sandbox["command"]


def test_compose_env_example_has_no_real_looking_secrets_committed():
    values = dotenv(DOCKER / ".env.example")
    assert "ChangeMe" in values["MSSQL_SA_PASSWORD"]


# -- Kubernetes ------------------------------------------------------------------------------
def test_k8s_manifests():
    kinds = {name: [d["kind"] for d in k8s_docs(name)] for name in
             ("deployment.yaml", "configmap.yaml", "secret.example.yaml", "job-db-upgrade.yaml")}
    assert kinds == {"deployment.yaml": ["Deployment"], "configmap.yaml": ["ConfigMap"],
                     "secret.example.yaml": ["Secret"], "job-db-upgrade.yaml": ["Job"]}
    (deployment,) = k8s_docs("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    grace = tomllib.loads(k8s_toml())["worker"]["grace_seconds"]
    assert pod["terminationGracePeriodSeconds"] > max(grace, default_grace())
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"] == ["run"]
    for probe in ("livenessProbe", "readinessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["mi-worker", "health"] and "--max-age" in command
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp and any(v["name"] == tmp[0]["name"] and "emptyDir" in v for v in pod["volumes"])
    assert container["resources"]["limits"]["memory"] == "256Mi"
    assert "memory" in container["resources"]["requests"]
    (job,) = k8s_docs("job-db-upgrade.yaml")
    (job_container,) = job["spec"]["template"]["spec"]["containers"]
    assert job_container["args"] == ["db", "upgrade"]
    assert job_container["image"] == container["image"]


def test_k8s_secret_example_holds_placeholders_only():
    (secret,) = k8s_docs("secret.example.yaml")
    values = secret["stringData"]
    assert "CHANGE_ME" in values["database-url"] and values["gateway-secret"] == "CHANGE_ME"
