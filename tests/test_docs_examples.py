"""Every ```python block in README.md, README.vi.md and docs/*.md runs, so that no example can rot;
every relative link in them (and in the other READMEs) points to a file and heading that exist.

How a block runs is said by an HTML comment on the line before its fence (tests/support/markdown.py):

    no comment, or <!-- example -->    a whole program that ends by itself: exit code 0 within 90 s
    <!-- example: until="TEXT" -->     a program that runs until stopped (DistributedMutex.run()):
                                       it must print a line containing TEXT (its leader task ran),
                                       then it gets SIGTERM and must exit 0
        after-stop="TEXT"              ... and print TEXT after the SIGTERM (a task's cleanup ran)
        peers=3                        three copies side by side with NODE_ID=a, b, c (a Raft
                                       cluster): one of them prints the until TEXT, all exit 0
    <!-- fragment: WHY -->             not a whole program, not run; counted, and kept rare

Each program runs from a file in a fresh directory, with PYTHONPATH=src and the services its code
names: Azurite in AZURE_STORAGE_CONNECTION_STRING for AzureBlobLeaseBackend, a ZooKeeper server in
ZOOKEEPER_HOSTS for ZooKeeperBackend, three free ports from RAFT_PORT on for RaftBackend, the
machine's Redis in REDIS_URL (with a key prefix of the test's own in REDIS_KEY_PREFIX) for
RedisLeaseBackend, the machine's Redis as Celery's broker in CELERY_BROKER_URL with a queue of the
test's own in CELERY_QUEUE for code that imports celery, and for
code that imports mysql.connector the MySQL server in MYSQL_HOST, MYSQL_PORT, MYSQL_USER and
MYSQL_PASSWORD with a fresh, empty database in MYSQL_DATABASE, and for PostgresLeaseBackend or
psycopg a fresh database's URL in POSTGRES_URL. The file begins with blank lines, so
a traceback's line numbers are the Markdown file's.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from support.markdown import ROOT, Block, broken_links, documentation, linked_files, python_blocks, relative

START_TIMEOUT = 60.0  # until the until-text: a first acquire, or a Raft election after three starts
STOP_TIMEOUT = 20.0  # from SIGTERM to exit: stop the tasks, release (bounded by the library)
RUN_TIMEOUT = 90.0  # a program that ends by itself
MAX_FRAGMENTS = 3  # blocks that are not whole programs: each one is an example nobody runs
README_MAX_LINES = 320
CELERY_DB = 13  # the Celery examples' broker: a database of the machine's Redis that only Celery tests use  # the landing page stays a landing page ("at most about 300 lines")


def _collect() -> tuple[list[Block], list[str]]:
    blocks, problems = [], []
    for path in documentation():
        found, wrong = python_blocks(path)
        blocks += found
        problems += [f"{p.where}: {p.what}" for p in wrong]
    return blocks, problems


BLOCKS, MARKER_PROBLEMS = _collect()
EXAMPLES = [b for b in BLOCKS if b.kind == "example"]
FRAGMENTS = [b for b in BLOCKS if b.kind == "fragment"]


def _params() -> list[object]:
    params = []
    for block in EXAMPLES:
        params.append(pytest.param(block, id=block.where))
    return params


def test_every_marker_marks_a_python_block() -> None:
    assert not MARKER_PROBLEMS, "\n".join(MARKER_PROBLEMS)


def test_the_documentation_has_examples() -> None:
    """A parser that found nothing would make every other test here pass by running nothing."""
    assert len(EXAMPLES) >= 6, [b.where for b in EXAMPLES]
    assert {b.path.name for b in EXAMPLES} >= {"README.md", "README.vi.md", "library.md"}


def test_fragments_are_rare() -> None:
    listed = "\n".join(f"  {b.where}: {b.reason}" for b in FRAGMENTS)
    assert len(FRAGMENTS) <= MAX_FRAGMENTS, (
        f"{len(FRAGMENTS)} Python blocks are marked as fragments (at most {MAX_FRAGMENTS}): make them whole "
        f"programs that the tests run\n{listed}")


def test_the_readme_is_a_landing_page() -> None:
    for name in ("README.md", "README.vi.md"):
        lines = (ROOT / name).read_text(encoding="utf-8").count("\n")
        assert lines <= README_MAX_LINES, f"{name} has {lines} lines: move the depth to docs/"


@pytest.mark.parametrize("path", linked_files(), ids=relative)
def test_relative_links_point_to_what_exists(path: Path) -> None:
    problems = broken_links(path)
    assert not problems, "\n".join(f"{p.where}: {p.what}" for p in problems)


@pytest.mark.parametrize("block", _params())
def test_example_runs(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    if "AzureBlobLeaseBackend" in block.code:
        env["AZURE_STORAGE_CONNECTION_STRING"] = request.getfixturevalue("azurite").connection_string
    if "ZooKeeperBackend" in block.code:
        env["ZOOKEEPER_HOSTS"] = request.getfixturevalue("zookeeper_server").hosts
    if "RaftBackend" in block.code:
        env["RAFT_PORT"] = str(_free_ports(3))
    if "PostgresLeaseBackend" in block.code or "psycopg" in block.code:
        postgres = request.getfixturevalue("postgres_server")
        database = postgres.create_database()
        request.addfinalizer(lambda: postgres.drop_database(database))
        from harness.postgres import with_database

        env["POSTGRES_URL"] = with_database(postgres.url, database)
    if "RedisLeaseBackend" in block.code:  # the machine's Redis, under a key prefix deleted afterwards
        env.update(REDIS_URL=request.getfixturevalue("redis_url"), REDIS_KEY_PREFIX=request.getfixturevalue("redis_prefix"))
    if "from celery import" in block.code:  # the machine's Redis as the broker, a queue of this test's own
        queue = f"docs-{uuid.uuid4().hex[:12]}"
        from harness.redis_server import with_db

        env.update(CELERY_BROKER_URL=with_db(request.getfixturevalue("redis_url"), CELERY_DB), CELERY_QUEUE=queue)
        request.addfinalizer(lambda: _delete_keys(env["CELERY_BROKER_URL"], queue))
    if "mysql.connector" in block.code:
        mysql, database = request.getfixturevalue("mysql_server"), request.getfixturevalue("database")
        with mysql.connect() as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{database}`")
        env.update(MYSQL_HOST=mysql.host, MYSQL_PORT=str(mysql.port), MYSQL_USER=mysql.user,
                   MYSQL_PASSWORD=mysql.password, MYSQL_DATABASE=database)
    script = tmp_path / f"{block.path.stem}_{block.line}.py"
    script.write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")
    until = block.options.get("until")
    if until is None:
        # .run() runs until stopped: either the example stops itself (.stop()) or the test must.
        assert ".run()" not in block.code or ".stop()" in block.code, (
            f'{block.where}: this example calls .run(), which runs until stopped: mark it <!-- example: until="..." -->'
            " with a line its leader task prints")
        _run_to_the_end(block, script, env, tmp_path)
    else:
        _run_until_stopped(block, script, env, tmp_path, until)


def _run_to_the_end(block: Block, script: Path, env: dict[str, str], cwd: Path) -> None:
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.where}: the example did not end within {RUN_TIMEOUT:g} s\n"
                    f"{_tail(_text(exc.stdout), _text(exc.stderr))}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"{block.where}: the example exited with code {done.returncode}\n{_tail(done.stdout, done.stderr)}",
                    pytrace=False)


class _Program:
    """One running copy of an example: its stdout read line by line, its stderr in a file."""

    def __init__(self, script: Path, env: dict[str, str], cwd: Path, name: str, until: str,
                 seen: threading.Event) -> None:
        self.name = name
        self.lines: list[str] = []
        self.stopped_at = 0  # how many lines it had printed when it got SIGTERM
        self.stderr_path = cwd / f"{name}.stderr"
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen([sys.executable, str(script)], cwd=cwd, env=env, text=True,
                                            stdout=subprocess.PIPE, stderr=stderr)
        self._reader = threading.Thread(target=self._read, args=(until, seen), daemon=True)
        self._reader.start()

    def _read(self, until: str, seen: threading.Event) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if until in line:
                seen.set()
        seen.set()  # it ended: nothing more will come, let the test look

    def stop(self) -> int | None:
        """SIGTERM; the exit code, or None if it outlived STOP_TIMEOUT (then it is killed)."""
        self.stopped_at = len(self.lines)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        self._reader.join(5)
        return code

    def output(self) -> str:
        return _tail("".join(self.lines), self.stderr_path.read_text(errors="replace"), name=self.name)


def _run_until_stopped(block: Block, script: Path, env: dict[str, str], cwd: Path, until: str) -> None:
    peers = int(block.options.get("peers", "1"))
    seen = threading.Event()
    names = ["a", "b", "c", "d", "e"][:peers] if peers > 1 else ["example"]
    programs = []
    try:
        for name in names:
            directory = cwd / name
            directory.mkdir()
            programs.append(_Program(script, {**env, "NODE_ID": name} if peers > 1 else env, directory, name, until,
                                     seen))
        seen.wait(START_TIMEOUT)
        printed = [p for p in programs if any(until in line for line in p.lines)]
        if not printed:
            ended = [p.name for p in programs if p.process.poll() is not None]
            why = f"{', '.join(ended)} ended first" if ended else f"not within {START_TIMEOUT:g} s"
            pytest.fail(f"{block.where}: no copy printed a line with {until!r} ({why})\n"
                        + "\n".join(p.output() for p in programs), pytrace=False)
    finally:
        codes = {p.name: p.stop() for p in programs}
    failed = {name: code for name, code in codes.items() if code != 0}
    if failed:
        pytest.fail(f"{block.where}: after SIGTERM, exit codes {failed} (None: still running after {STOP_TIMEOUT:g} s),"
                    " expected 0\n" + "\n".join(p.output() for p in programs), pytrace=False)
    after = block.options.get("after-stop")
    if after is not None:
        leader = printed[0]
        if not any(after in line for line in leader.lines[leader.stopped_at:]):
            pytest.fail(f"{block.where}: {leader.name} printed no line with {after!r} after its SIGTERM\n"
                        f"{leader.output()}", pytrace=False)


def _delete_keys(url: str, containing: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = [key for key in client.scan_iter() if containing.encode() in key]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1 (for a Raft cluster's peers)."""
    for _ in range(200):
        first = random.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports found")


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def _tail(stdout: str, stderr: str, name: str = "example", lines: int = 25) -> str:
    def last(text: str) -> str:
        return "\n".join(text.splitlines()[-lines:])
    return f"--- {name} stdout (last {lines} lines) ---\n{last(stdout)}\n--- {name} stderr ---\n{last(stderr)}"
