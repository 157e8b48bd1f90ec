"""Offline wheelhouses per target (deploy/wheelhouse.py, `make wheelhouse TARGET=…`).

The slow tests download from PyPI: Windows targets are checked wheel by wheel against the
target's full requirement set (markers evaluated for Windows); the Linux target matching this
machine is really installed offline into a fresh venv, which then runs `mi-worker --version`
and `db upgrade` on SQLite and PostgreSQL.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import ROOT

# The tests build mi-worker's own wheel from this checkout, which uses one build/ folder:
# they run in make test's serial part, never beside another build.
pytestmark = pytest.mark.serial

spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "deploy" / "wheelhouse.py")
wheelhouse = importlib.util.module_from_spec(spec)
sys.modules["wheelhouse"] = wheelhouse
spec.loader.exec_module(wheelhouse)


def test_targets_and_their_markers():
    win39 = wheelhouse.parse_target("win_amd64-py39")
    assert win39.py == (3, 9) and win39.pip_platforms == ["win_amd64"]
    env = win39.marker_env()
    from packaging.markers import Marker
    assert Marker('platform_system == "Windows"').evaluate(env)
    assert Marker('python_version < "3.11"').evaluate(env)
    lin = wheelhouse.parse_target("manylinux_aarch64-py313")
    assert not Marker('platform_system == "Windows"').evaluate(lin.marker_env())
    assert not Marker('python_version < "3.11"').evaluate(lin.marker_env())
    assert "manylinux_2_28_aarch64" in lin.pip_platforms
    for bad in ("win32-py39", "win_amd64-py38", "macos-py311", ""):
        with pytest.raises(wheelhouse.TargetError):
            wheelhouse.parse_target(bad)


def _names(folder: Path) -> set:
    return set(wheelhouse.wheels(folder))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache: dict = {}

    def get(target_name: str, extras: str = "odbc") -> Path:
        key = (target_name, extras)
        if key not in cache:
            out = tmp_path_factory.mktemp(target_name.replace("-", "_"))
            problems = wheelhouse.build(wheelhouse.parse_target(target_name), out, extras)
            assert not problems, problems
            cache[key] = out
        return cache[key]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", [f"win_amd64-py{v}" for v in wheelhouse.PYTHONS])
def test_windows_wheelhouse_has_a_wheel_for_every_requirement(built, name):
    target = wheelhouse.parse_target(name)
    out = built(name)
    walked, problems = wheelhouse.closure(out, "mi-worker[odbc]", target)
    assert not problems, problems
    names = _names(out)
    # What pip on Linux leaves out when it evaluates markers for itself:
    assert {"tzdata", "pyodbc"} <= names, names
    if target.py < (3, 11):
        assert {"tomli", "exceptiongroup"} <= names, names
    else:
        assert "tomli" not in names
    for spec_, wheel in walked:
        assert wheel is not None and wheel.tags & target.tags(), spec_
    pyodbc = wheelhouse.wheels(out)["pyodbc"][0]
    assert any(t.platform == "win_amd64" and t.abi == target.abi for t in pyodbc.tags)


@pytest.mark.slow
def test_verify_finds_a_missing_wheel(built, tmp_path):
    out = built("win_amd64-py39")
    copy = tmp_path / "wh"
    copy.mkdir()
    for whl in out.glob("*.whl"):
        if not whl.name.startswith("tzdata-"):
            (copy / whl.name).write_bytes(whl.read_bytes())
    _, problems = wheelhouse.closure(copy, "mi-worker[odbc]", wheelhouse.parse_target(
        "win_amd64-py39"))
    assert any("tzdata" in p for p in problems), problems
    assert wheelhouse.main(["verify", "--target", "win_amd64-py39", "--out", str(copy)]) == 1


@pytest.mark.slow
def test_aarch64_wheelhouse_complete(built):
    target = wheelhouse.parse_target("manylinux_aarch64-py39")
    out = built(target.name)
    _, problems = wheelhouse.closure(out, "mi-worker[odbc]", target)
    assert not problems
    assert "tomli" in _names(out) and "tzdata" not in _names(out)


def _run(cmd, **kw):
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, **kw.pop("env", {}))
    env.pop("MI_WORKER_CONFIG", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, **kw)


@pytest.mark.slow
def test_host_linux_wheelhouse_installs_offline_and_upgrades_a_database(built, tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("the offline install test runs on Linux")
    target = wheelhouse.host_target()
    out = built(target.name)
    venv = tmp_path / "venv"
    r = _run([sys.executable, "-m", "venv", str(venv)])
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    r = _run([str(py), "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
              str(out), "mi-worker[odbc]"])
    assert r.returncode == 0, r.stdout + r.stderr
    exe = venv / "bin" / "mi-worker"
    r = _run([str(exe), "--version"], cwd=str(tmp_path))
    assert r.returncode == 0 and "mi-worker, version" in r.stdout, r.stdout + r.stderr
    sqlite_url = f"sqlite:///{tmp_path / 'offline.db'}"
    r = _run([str(exe), "db", "upgrade"], cwd=str(tmp_path),
             env={"MI_WORKER_DATABASE_URL": sqlite_url})
    assert r.returncode == 0 and "applied" in (r.stdout + r.stderr), r.stdout + r.stderr
    # PostgreSQL, when the test database server is here.
    try:
        from conftest import _pg_admin, _pg_url
        admin = _pg_admin()
    except Exception as exc:  # no server: SQLite proved the install
        pytest.skip(f"PostgreSQL not reachable ({exc}); SQLite upgrade passed")
    name = f"mi_offline_{uuid.uuid4().hex[:8]}"
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        r = _run([str(exe), "db", "upgrade"], cwd=str(tmp_path),
                 env={"MI_WORKER_DATABASE_URL": _pg_url(name)})
        assert r.returncode == 0 and "6" in (r.stdout + r.stderr), r.stdout + r.stderr
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
