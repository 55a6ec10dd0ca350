"""The project as a user installs it: its wheel, built from a copy of the source, and fresh
virtual environments that hold nothing but what a test installs into them.

The wheel is built offline with the setuptools that requirements-dev.txt pins (no build
isolation), from a copy of the tree, so that a stale ``build/`` left by an earlier ``pip install .``
cannot slip files into it. The environments are made without pip (pip of the test's own venv
installs into them with ``--python``): nothing is in them that the wheel did not bring.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
# What a build reads: the metadata, the long description and the packages.
SOURCES = ("pyproject.toml", "README.md", "src")
# pyproject.toml's [build-system] requires; requirements-dev.txt pins a version of it.
SETUPTOOLS_AT_LEAST = Version("77")
PIP_TIMEOUT = 180  # an install from PyPI on a fresh machine (no pip cache) downloads a few MB


def _run(command: list[str], what: str, timeout: float, cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_clean_env())
    if done.returncode != 0:
        raise AssertionError(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def _clean_env() -> dict[str, str]:
    """This environment without what would reach into the child's imports (PYTHONPATH, a venv)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}


def build_wheel(workdir: Path) -> Path:
    """Build the project's wheel from a copy of its sources; its path."""
    try:
        setuptools = Version(importlib.metadata.version("setuptools"))
    except importlib.metadata.PackageNotFoundError:
        setuptools = None
    assert setuptools is not None and setuptools >= SETUPTOOLS_AT_LEAST, (
        f"setuptools {setuptools or '(none)'} in {sys.prefix}; the wheel needs >= {SETUPTOOLS_AT_LEAST}, "
        "which requirements-dev.txt pins: pip install -r requirements-dev.txt (make deps)")
    source = workdir / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, source / name)
    out = workdir / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-build-isolation", "--no-deps", "--no-index",
          "--wheel-dir", str(out), str(source)], "building the wheel (pip wheel --no-build-isolation)",
         timeout=120)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}, found {wheels}"
    return wheels[0]


@dataclass(frozen=True)
class WheelInfo:
    names: frozenset[str]  # the files in the wheel
    metadata: Message  # its METADATA (Requires-Dist, Provides-Extra, ...)
    entry_points: str  # its entry_points.txt

    @classmethod
    def read(cls, wheel: Path) -> WheelInfo:
        with zipfile.ZipFile(wheel) as archive:
            names = frozenset(archive.namelist())
            dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
            metadata = email.parser.Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
            entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        return cls(names, metadata, entry_points)


class FreshVenv:
    """A new virtual environment with no package in it (not even pip)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        venv.EnvBuilder(with_pip=False, clear=True).create(path)
        self.python = path / "bin" / "python"

    def install(self, *requirements: str, offline: bool) -> None:
        """``pip install`` into this venv (pip of the test's own venv, run with --python)."""
        command = [sys.executable, "-m", "pip", "--python", str(self.python), "install", "--quiet",
                   "--only-binary", ":all:"]
        if offline:
            command.append("--no-index")
        _run([*command, *requirements], f"pip install {' '.join(requirements)} into {self.path}",
             timeout=PIP_TIMEOUT)

    def command(self, script: Path, *args: str) -> list[str]:
        """Run ``script`` isolated (-I): no PYTHON* variable, no user site, not the script's folder
        first on sys.path, so that only the venv's own packages can be imported."""
        return [str(self.python), "-I", str(script), *args]

    def run(self, script: Path, *args: str, timeout: float = 60) -> str:
        return _run(self.command(script, *args), f"{script.name} in {self.path}", timeout=timeout, cwd=self.path)

    def popen(self, script: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``script`` with its output (both streams) in ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen(self.command(script, *args), cwd=self.path, stdout=out,
                                    stderr=subprocess.STDOUT, env=_clean_env())
