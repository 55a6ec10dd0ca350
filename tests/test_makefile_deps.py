"""What `make demo` and `make test` install, read off make itself in a scratch copy of the project's
Makefile and requirement files (so nothing is installed: `make -n` prints the recipes, and the one
real run below finds everything installed already and only stamps it).

`make demo` installs requirements.txt (not the test tools) and Azurite only for the blob lease,
saying what it installs; `make test` installs everything; `make azurite` logs no line per request."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.processes import ROOT

FILES = ("Makefile", "requirements.txt", "requirements-dev.txt", "requirements-bench.txt", "package.json",
         "package-lock.json")


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    for name in FILES:
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def make(directory: Path, *args: str, dry: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("ELECTION_BACKEND", "MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(["make", "--no-print-directory", *(["-n"] if dry else []), *args], cwd=directory,
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_requirements_txt_is_the_demo_and_dev_adds_the_test_tools() -> None:
    runtime = (ROOT / "requirements.txt").read_text()
    dev = (ROOT / "requirements-dev.txt").read_text()
    for tool in ("pytest", "ruff", "mypy", "hypothesis", "pytest-xdist"):
        assert f"\n{tool}==" not in "\n" + runtime, f"{tool} is a test tool: requirements-dev.txt"
        assert f"\n{tool}==" in "\n" + dev
    assert dev.startswith("-r requirements.txt\n")


@pytest.mark.parametrize(("backend", "azurite"), [(None, True), ("azure", True), ("raft", False),
                                                  ("zookeeper", False)])
def test_make_demo_installs_the_demos_packages_and_azurite_only_for_the_blob_lease(
        scratch: Path, backend: str | None, azurite: bool) -> None:
    recipes = make(scratch, "demo", *([f"ELECTION_BACKEND={backend}"] if backend else []))
    assert "installing the demo's Python packages (requirements.txt) into .venv" in recipes
    assert "-r requirements.txt" in recipes
    assert "requirements-dev.txt" not in recipes, "make demo installs the test tools"
    assert ("npm ci" in recipes) is azurite, recipes
    if azurite:
        assert "installing Azurite (the Azure Storage emulator the blob lease runs on) from npm" in recipes
        assert "--progress=false" in recipes  # the line says what is going on; no bare spinner


def test_make_test_installs_everything(scratch: Path) -> None:
    recipes = make(scratch, "test")
    assert "-r requirements-dev.txt" in recipes and "npm ci" in recipes
    assert "installing the Python packages for the demo and the tests into .venv" in recipes


def test_a_venv_made_by_make_test_needs_no_pip_for_the_demo(scratch: Path) -> None:
    """For real, not -n: with make test's stamps newer than the files, make demo-deps installs
    nothing (PYTHON=false would fail any pip or venv call) and only stamps the demo's set."""
    (scratch / ".venv").mkdir()
    (scratch / "node_modules").mkdir()
    later = time.time() + 5
    for stamp in (scratch / ".venv" / ".installed", scratch / "node_modules" / ".installed"):
        stamp.touch()
        os.utime(stamp, (later, later))
    output = make(scratch, "demo-deps", "PYTHON=false", dry=False)
    assert "installing" not in output, output
    assert (scratch / ".venv" / ".demo-installed").exists()


def test_make_azurite_keeps_the_access_log_off(scratch: Path) -> None:
    (scratch / "node_modules").mkdir()
    (scratch / "node_modules" / ".installed").touch()
    later = time.time() + 5
    os.utime(scratch / "node_modules" / ".installed", (later, later))
    recipes = make(scratch, "azurite")
    assert "azurite-blob --blobHost 127.0.0.1" in recipes and "--silent" in recipes, recipes
