"""Build and verify an offline wheelhouse for one target platform and Python version.

Why not just ``pip download --platform win_amd64 --python-version 3.9``: pip evaluates
environment markers against the machine it runs on (pypa/pip#4304), so a set built on Linux
for Windows lacks ``tzdata`` (``platform_system == "Windows"``) and, for Python 3.9/3.10,
``tomli`` and ``exceptiongroup`` (``python_version < "3.11"``); ``pip install --no-index``
then fails on the hospital server. Here pip only fetches wheels; the requirement closure is
computed from each wheel's own metadata with ``packaging.markers`` evaluated for the target,
and whatever pip left out is fetched by name, until the set is closed. ``verify`` walks the
same closure and checks that every requirement has a wheel whose tags the target accepts.

    python deploy/wheelhouse.py build  --target win_amd64-py39 --out wheelhouse/win_amd64-py39
    python deploy/wheelhouse.py verify --target win_amd64-py39 --out wheelhouse/win_amd64-py39

Targets: ``win_amd64-py39`` … ``win_amd64-py313``, ``manylinux_x86_64-py39`` …,
``manylinux_aarch64-py39`` …, or ``host`` (this machine's platform and Python).
"""
from __future__ import annotations

import argparse
import email.parser
import platform
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

try:
    from packaging.requirements import Requirement
    from packaging.tags import Tag, compatible_tags, cpython_tags
    from packaging.utils import canonicalize_name, parse_wheel_filename
    from packaging.version import Version
except ImportError:  # the venv has pip, and pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.tags import (  # type: ignore[no-redef]
        Tag,
        compatible_tags,
        cpython_tags,
    )
    from pip._vendor.packaging.utils import (  # type: ignore[no-redef]
        canonicalize_name,
        parse_wheel_filename,
    )
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ("39", "310", "311", "312", "313")
# manylinux glibc levels a current pip on the server accepts; pyodbc's wheels are 2_17..2_28.
MANYLINUX_GLIBC = [(2, minor) for minor in range(28, 16, -1)]
_TARGET = re.compile(r"^(win_amd64|manylinux_x86_64|manylinux_aarch64)-py(3\d{1,2})$")


class TargetError(ValueError):
    """A target name this tool does not know."""


@dataclass(frozen=True)
class Target:
    """One platform + CPython version a wheelhouse is built for."""

    name: str
    platform_kind: str  # win_amd64 | manylinux_x86_64 | manylinux_aarch64
    py: Tuple[int, int]

    @property
    def pip_platforms(self) -> List[str]:
        if self.platform_kind == "win_amd64":
            return ["win_amd64"]
        arch = self.platform_kind.split("_", 1)[1]
        tags = [f"manylinux_{a}_{b}_{arch}" for a, b in MANYLINUX_GLIBC]
        return tags + [f"manylinux2014_{arch}"]

    @property
    def abi(self) -> str:
        return f"cp{self.py[0]}{self.py[1]}"

    def marker_env(self) -> Dict[str, str]:
        """The PEP 508 marker environment of the target (what pip should have used)."""
        version = f"{self.py[0]}.{self.py[1]}"
        if self.platform_kind == "win_amd64":
            system = dict(os_name="nt", sys_platform="win32", platform_system="Windows",
                          platform_machine="AMD64", platform_release="", platform_version="")
        else:
            machine = "x86_64" if self.platform_kind.endswith("x86_64") else "aarch64"
            system = dict(os_name="posix", sys_platform="linux", platform_system="Linux",
                          platform_machine=machine, platform_release="", platform_version="")
        return dict(system, python_version=version, python_full_version=f"{version}.0",
                    implementation_name="cpython", implementation_version=f"{version}.0",
                    platform_python_implementation="CPython", extra="")

    def tags(self) -> Set[Tag]:
        """Every wheel tag a CPython of this version on this platform installs."""
        plats = self.pip_platforms
        found = set(cpython_tags(self.py, abis=[self.abi, "abi3", "none"], platforms=plats))
        found |= set(compatible_tags(self.py, interpreter=self.abi, platforms=plats))
        return found


def parse_target(name: str) -> Target:
    if name == "host":
        return host_target()
    m = _TARGET.match(name)
    if not m or m.group(2) not in PYTHONS:
        raise TargetError(f"unknown target {name!r}: use win_amd64-py39 … py313, "
                          "manylinux_x86_64-py3XX, manylinux_aarch64-py3XX or host")
    digits = m.group(2)
    return Target(name, m.group(1), (3, int(digits[1:])))


def host_target() -> Target:
    machine = platform.machine().lower()
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    if sys.platform == "win32":
        return parse_target(f"win_amd64-{py}")
    if sys.platform.startswith("linux") and machine in ("x86_64", "amd64"):
        return parse_target(f"manylinux_x86_64-{py}")
    if sys.platform.startswith("linux") and machine in ("aarch64", "arm64"):
        return parse_target(f"manylinux_aarch64-{py}")
    raise TargetError(f"no wheelhouse target for this machine ({sys.platform} {machine})")


# -- wheels in a folder ------------------------------------------------------------------------
@dataclass
class Wheel:
    path: Path
    name: str
    version: Version
    tags: frozenset

    def requires(self) -> List[str]:
        with zipfile.ZipFile(self.path) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            msg = email.parser.Parser().parsestr(zf.read(meta).decode("utf-8"))
        return msg.get_all("Requires-Dist") or []


def wheels(folder: Path) -> Dict[str, List[Wheel]]:
    found: Dict[str, List[Wheel]] = {}
    for path in sorted(folder.glob("*.whl")):
        name, version, _build, tags = parse_wheel_filename(path.name)
        found.setdefault(str(name), []).append(Wheel(path, str(name), version, frozenset(tags)))
    return found


def _applies(req: Requirement, env: Dict[str, str], extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate(dict(env, extra=e)) for e in (list(extras) or [""]))


def closure(folder: Path, root: str, target: Target) -> Tuple[List[Tuple[str, Optional[Wheel]]],
                                                             List[str]]:
    """Walk ``root``'s requirements through the wheels in ``folder`` with the target's
    markers. Return ([(requirement, wheel or None)], [problems])."""
    have = wheels(folder)
    env = target.marker_env()
    accepted = target.tags()
    todo = [(Requirement(root), ("",))]
    seen: Set[Tuple[str, Tuple[str, ...]]] = set()
    walked: List[Tuple[str, Optional[Wheel]]] = []
    problems: List[str] = []
    while todo:
        req, _ = todo.pop()
        key = (canonicalize_name(req.name), tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        candidates = [w for w in have.get(str(canonicalize_name(req.name)), [])
                      if req.specifier.contains(w.version, prereleases=True)
                      and w.tags & accepted]
        if not candidates:
            walked.append((str(req), None))
            problems.append(f"no wheel for {req} on {target.name}")
            continue
        best = max(candidates, key=lambda w: w.version)
        walked.append((str(req), best))
        for line in best.requires():
            sub = Requirement(line)
            if _applies(sub, env, req.extras):
                sub.marker = None
                todo.append((sub, tuple(sorted(sub.extras))))
    return walked, problems


# -- building -----------------------------------------------------------------------------------
def _pip_download(target: Target, out: Path, specs: List[str], deps: bool) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "--implementation", "cp", "--python-version",
           f"{target.py[0]}.{target.py[1]}", "--abi", target.abi, "--abi", "abi3",
           "--abi", "none", "--find-links", str(out), "-d", str(out)]
    for plat in target.pip_platforms:
        cmd += ["--platform", plat]
    if not deps:
        cmd.append("--no-deps")
    subprocess.run(cmd + specs, check=True)


def build(target: Target, out: Path, extras: str = "odbc") -> List[str]:
    """Fill ``out`` with mi-worker's wheel and its complete requirement set for ``target``;
    return the problems left (empty when the set is complete)."""
    out.mkdir(parents=True, exist_ok=True)
    made = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                           "--disable-pip-version-check", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True)
    if made.returncode != 0:  # setuptools' warnings are noise; show them only on failure
        sys.stderr.write(made.stdout + made.stderr)
        made.check_returncode()
    root = f"mi-worker[{extras}]" if extras else "mi-worker"
    _pip_download(target, out, [root], deps=True)
    for _ in range(20):  # fetch what pip's host-evaluated markers left out, until closed
        walked, problems = closure(out, root, target)
        missing = [spec for spec, wheel in walked if wheel is None]
        if not missing:
            return []
        _pip_download(target, out, missing, deps=False)
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("build", "verify"))
    ap.add_argument("--target", default="host")
    ap.add_argument("--out", default=None, help="folder (default wheelhouse/<target>)")
    ap.add_argument("--extras", default="odbc", help="mi-worker extras, e.g. odbc,gm")
    args = ap.parse_args(argv)
    try:
        target = parse_target(args.target)
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or ROOT / "wheelhouse" / target.name)
    root = f"mi-worker[{args.extras}]" if args.extras else "mi-worker"
    if args.action == "build":
        problems = build(target, out, args.extras)
    else:
        problems = closure(out, root, target)[1]
    for spec, wheel in closure(out, root, target)[0]:
        print(f"  {spec:45s} {wheel.path.name if wheel else 'MISSING'}")
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 1
    print(f"{out}: complete for {target.name} ({len(list(out.glob('*.whl')))} wheels); on the "
          f"server: pip install --no-index --find-links {out.name} \"{root}\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
