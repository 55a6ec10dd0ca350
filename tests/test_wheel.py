"""The package as a user gets it: the wheel built from this tree, installed into fresh venvs.

    the wheel            both packages, py.typed, the demo's command, no dependency but the extras',
                         whose ranges admit the versions requirements.txt pins
    no extra             `import DistributedMutex` loads nothing outside the standard library; a
                         backend or integration whose extra is missing refuses in one line naming
                         the extra
    no extra, Raft       three processes with RaftBackend(peers, node_id, data_dir) and the default
                         timing: one leads; kill -9 it and another leads within a few seconds
    [azure]              installed with the pinned versions, a leader elected on Azurite

The wheel and the no-extra venv are made once for this file; everything lives in pytest's
temporary directories (nothing kept between runs). Only the [azure] install reaches PyPI (or
pip's cache).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from harness.processes import wait_until
from harness.services import Azurite, free_port
from support.wheel import ROOT, FreshVenv, WheelInfo, build_wheel

SCRIPTS = Path(__file__).parent / "support" / "installed"
EXTRAS = {
    "azure": {"azure-storage-blob", "azure-core", "azure-identity"},
    "zookeeper": {"kazoo"},
    "postgres": {"psycopg"},
    "redis": {"redis"},
    "metrics": {"prometheus-client"},
    "certificates": {"cryptography"},
    "apscheduler": {"apscheduler"},
    "celery": {"celery"},
    "demo": {"distributed-mutex", "requests", "mysql-connector-python", "python-dotenv", "starlette", "uvicorn", "rich"},
}
# Raft's default election timeout is 1-2 s: the followers miss the dead leader's heartbeats within
# 2 s, elect within a round trip, and the new leader acts at once (its term is new). 2 x the
# maximum timeout, as in test_raft_processes, plus a second for three processes on 2 busy cores.
RAFT_FAILOVER_BOUND = 5.0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def bare_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    """A fresh venv with the wheel and no extra, installed offline: a dependency the core
    declared by mistake would fail the install."""
    env = FreshVenv(tmp_path_factory.mktemp("bare") / "venv")
    env.install(str(wheel), offline=True)
    return env


def pinned() -> dict[str, str]:
    """requirements.txt: name -> pinned version."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match[1].lower()] = match[2]
    return pins


def test_the_wheel_holds_both_packages_py_typed_the_demo_command_and_only_optional_dependencies(wheel: Path) -> None:
    info = WheelInfo.read(wheel)
    for name in ("DistributedMutex/__init__.py", "DistributedMutex/py.typed", "DistributedMutex/backends/raft/core.py",
                 "DistributedMutex/backends/azure/lease.py", "DistributedMutex/backends/zookeeper/backend.py",
                 "DistributedMutex/integrations/apscheduler.py", "DistributedMutex/integrations/celery.py",
                 "distributed_mutex_demo/cli.py", "distributed_mutex_demo/stores/sqlite.py",
                 "distributed_mutex_demo/launcher/static/index.html", "distributed_mutex_demo/launcher/static/demo.js",
                 "distributed_mutex_demo/launcher/static/demo.css"):
        assert name in info.names, f"{name} is not in {wheel.name}"
    assert not [n for n in info.names if n.startswith(("tests/", "bench/", "support/"))]

    assert re.search(r"^distributed-mutex-demo = distributed_mutex_demo\.entry:run$", info.entry_points, re.M)
    # The library's own command (docs/run.md): nothing of the demo's.
    assert re.search(r"^distributed-mutex = DistributedMutex\.cli:run$", info.entry_points, re.M)

    requirements = [Requirement(r) for r in info.metadata.get_all("Requires-Dist") or []]
    core = [str(r) for r in requirements if r.marker is None]
    assert core == [], f"the core must need no third-party package: {core}"
    assert set(info.metadata.get_all("Provides-Extra") or []) == set(EXTRAS)
    pins = pinned()
    for extra, expected in EXTRAS.items():
        wanted = [r for r in requirements if r.marker is not None and r.marker.evaluate({"extra": extra})]
        assert {r.name.lower() for r in wanted} == expected, f"[{extra}]: {[str(r) for r in wanted]}"
        for requirement in wanted:
            if requirement.name == "distributed-mutex":  # the demo pulls in the other extras
                assert requirement.extras == {"azure", "zookeeper", "postgres", "redis", "metrics", "certificates"}
                continue
            assert requirement.specifier, f"[{extra}] {requirement.name} has no version range"
            pin = pins.get(requirement.name.lower())
            assert pin is not None, f"requirements.txt pins no version of {requirement.name}"
            assert requirement.specifier.contains(pin), (
                f"requirements.txt pins {requirement.name}=={pin}, outside [{extra}]'s range {requirement.specifier}")


def test_without_extras_import_loads_no_third_party_module_and_a_missing_extra_is_one_line(bare_venv: FreshVenv) -> None:
    report = json.loads(bare_venv.run(SCRIPTS / "bare_imports.py"))
    assert Path(report["file"]).is_relative_to(bare_venv.path), f"imported from {report['file']}, not the venv"
    assert report["not_stdlib"] == [], f"`import DistributedMutex` loaded {report['not_stdlib']}"
    assert report["py_typed"], "py.typed is not installed"
    assert (bare_venv.path / "bin" / "distributed-mutex-demo").is_file()

    # The library's command without extras: it runs (Raft needs none), and a backend whose extra is
    # missing is the same one line, exit 2.
    done = subprocess.run([str(bare_venv.path / "bin" / "distributed-mutex"), "run", "--election-backend=zookeeper",
                           "--", "true"], capture_output=True, text=True, timeout=30, cwd=bare_venv.path)
    assert (done.returncode, done.stdout) == (2, ""), done
    assert done.stderr.splitlines() == [
        "configuration error: ZooKeeperBackend: needs the module 'kazoo', which is not installed: "
        "pip install 'distributed-mutex[zookeeper]'"], done.stderr

    for what, (module, extra) in {
        "ZooKeeperBackend": ("kazoo", "zookeeper"),
        "PostgresLeaseBackend": ("psycopg", "postgres"),
        "RedisLeaseBackend": ("redis", "redis"),
        "AzureBlobLeaseBackend": ("azure.storage.blob", "azure"),
        "AzureBlobLeaseBackend.from_container_sas_url": ("azure.storage.blob", "azure"),
        "DistributedMutex.metrics": ("prometheus_client", "metrics"),
        "make_certificates": ("cryptography", "certificates"),
        "DistributedMutex.integrations.apscheduler": ("apscheduler", "apscheduler"),
        "DistributedMutex.integrations.celery": ("celery", "celery"),
    }.items():
        refusal = report["refusals"][what]
        assert refusal["message"] == (f"{what.split('.from_')[0]}: needs the module {module!r}, which is not "
                                      f"installed: pip install 'distributed-mutex[{extra}]'"), refusal
        assert refusal["extra"] == extra and refusal["configuration_error"], refusal

    # What the user sees: a traceback ending in that one line, with no ModuleNotFoundError before it.
    done = subprocess.run(bare_venv.command(SCRIPTS / "missing_extra_line.py"), capture_output=True, text=True,
                          timeout=30, cwd=bare_venv.path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "DistributedMutex.errors.MissingExtraError: ZooKeeperBackend: needs the module 'kazoo', which is not "
        "installed: pip install 'distributed-mutex[zookeeper]'"), done.stderr
    assert "ModuleNotFoundError" not in done.stderr, done.stderr

    # The demo's command without the demo's extra: one line saying what to install, exit 2.
    done = subprocess.run([str(bare_venv.path / "bin" / "distributed-mutex-demo")], capture_output=True, text=True,
                          timeout=30, cwd=bare_venv.path)
    assert (done.returncode, done.stdout) == (2, ""), done
    assert done.stderr.splitlines() == [
        "the demo needs the module 'dotenv', which is not installed: pip install 'distributed-mutex[demo]'"], done.stderr


class RaftMembers:
    """Three raft_member.py processes of the no-extra venv on loopback."""

    def __init__(self, env: FreshVenv, workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.peers = {f"node-{i}": ("127.0.0.1", free_port()) for i in range(3)}
        self.starts = workdir / "leader-starts.txt"
        self.starts.touch()
        self.processes = {name: env.popen(SCRIPTS / "raft_member.py", json.dumps(self.peers), name,
                                          str(workdir / "data"), str(self.starts), log=self.log(name))
                          for name in self.peers}

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def leaders(self) -> list[tuple[str, int, float]]:
        """Every leader task started so far: (node, term, time.monotonic() at its start)."""
        return [(node, int(term), float(at)) for node, term, at in
                (line.split() for line in self.starts.read_text().splitlines())]

    def next_leader(self, after: int, timeout: float) -> tuple[str, int, float]:
        def started() -> tuple[str, int, float] | None:
            leaders = self.leaders()
            if len(leaders) > after:
                return leaders[after]
            if all(process.poll() is not None for process in self.processes.values()):
                raise AssertionError("every member has exited")
            return None

        try:
            leader: tuple[str, int, float] = wait_until(started, timeout, f"no leader task started after {after}")
        except AssertionError as exc:  # what the members said, as of now
            raise AssertionError(f"{exc}; started: {self.leaders()}\n{self.describe()}") from None
        return leader

    def describe(self) -> str:
        return "\n".join(f"--- {name} (exit code {process.poll()}):\n"
                         + "\n".join(self.log(name).read_text(errors="replace").splitlines()[-15:])
                         for name, process in self.processes.items())

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.fixture
def raft_members(bare_venv: FreshVenv, tmp_path: Path) -> Iterator[RaftMembers]:
    members = RaftMembers(bare_venv, tmp_path)
    yield members
    members.close()


def test_without_extras_three_raft_processes_with_default_timing_elect_and_fail_over(raft_members: RaftMembers) -> None:
    first, term, _ = raft_members.next_leader(after=0, timeout=20)
    assert len(raft_members.leaders()) == 1, f"two leader tasks started: {raft_members.leaders()}"

    leader = raft_members.processes[first]
    killed_at = _monotonic_kill(leader)
    second, second_term, started_at = raft_members.next_leader(after=1, timeout=RAFT_FAILOVER_BOUND + 10)
    assert second != first and second_term > term, raft_members.leaders()
    assert started_at - killed_at <= RAFT_FAILOVER_BOUND, (
        f"{second}'s leader task started {started_at - killed_at:.2f} s after kill -9 of {first}\n"
        f"{raft_members.describe()}")
    survivors = [p for name, p in raft_members.processes.items() if name != first]
    assert all(p.poll() is None for p in survivors), raft_members.describe()


def _monotonic_kill(process: subprocess.Popen[bytes]) -> float:
    """SIGKILL, and the time.monotonic() it was sent at (the children stamp on the same clock)."""
    at = time.monotonic()
    process.send_signal(signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL
    return at


def test_with_the_azure_extra_at_its_pinned_versions_a_leader_is_elected_on_azurite(
        wheel: Path, azurite: Azurite, container_name: str, tmp_path: Path) -> None:
    env = FreshVenv(tmp_path / "venv")
    # The versions the tests run on (requirements.txt as constraints), from PyPI or pip's cache.
    env.install("--constraint", str(ROOT / "requirements.txt"), f"{wheel}[azure]", offline=False)
    report = json.loads(env.run(SCRIPTS / "azure_leader.py", azurite.connection_string, container_name,
                                timeout=60).splitlines()[-1])
    assert report["azure_at_import"] == [], "the Azure SDK was imported before the backend was used"
    led = report["led"]
    assert led.get("active") is True and isinstance(led.get("term"), int) and led["term"] >= 1, report
    assert re.fullmatch(r".+-\d+", led["instance_id"]), f"not <hostname>-<pid>: {led}"
