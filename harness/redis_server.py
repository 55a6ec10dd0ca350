"""Redis for the tests and the chaos rounds: the machine's server (REDIS_URL, by default
127.0.0.1:6379), where each test works under a key prefix of its own and deletes it afterwards; and
a throwaway ``redis-server`` of Debian's package on a free port, for what may not be done to a
shared server (restarting it, FLUSHALL, CLIENT KILL of every connection)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import redis

from harness.services import free_port, stop_process

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def shared_url() -> str:
    """The server the tests share: REDIS_URL, or the local default."""
    return os.environ.get("REDIS_URL", "").strip() or DEFAULT_URL


def with_db(url: str, db: int) -> str:
    """``url`` with its database number replaced by ``db`` (the Celery tests' broker database)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


def check_answers(url: str, timeout: float = 2.0) -> None:
    """RuntimeError (one line, what to do) unless a Redis server answers PING at ``url``."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(f"no Redis server answers at {url} ({type(exc).__name__}): start one "
                           "(apt-get install -y redis-server; redis-server --port 6379 --save '' --daemonize yes) "
                           "or set REDIS_URL") from None
    finally:
        client.close()


def new_prefix(what: str = "test") -> str:
    return f"dm-{what}-{uuid.uuid4().hex[:12]}"


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key of one election (its keys are ``{prefix}:...``); how many there were."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


class RedisServer:
    """A ``redis-server`` of our own on a free port, in the foreground, without persistence
    (``--save ""``, no AOF): a restart forgets everything, as a failover to a stale replica would."""

    def __init__(self, port: int | None = None, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="redis-"))

    @property
    def url(self) -> str:
        return f"redis://{f':{self.password}@' if self.password else ''}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.workdir), "--loglevel", "warning",
             *(("--requirepass", self.password) if self.password else ())],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                check_answers(self.url, timeout=0.5)
                return self
            except RuntimeError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not start within {timeout:g} s") from None
                time.sleep(0.05)

    def restart(self) -> None:
        """Stop and start again on the same port: every key is gone (no persistence)."""
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5, decode_responses=True)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
