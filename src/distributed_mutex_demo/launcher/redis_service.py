"""Redis for ``make demo ELECTION_BACKEND=redis``: the server REDIS_URL names; unset, the local one at
127.0.0.1:6379 if it answers, otherwise a ``redis-server`` of the demo's own (Debian's package) on a
free port, without persistence, stopped with the demo.

The demo's election gets a key prefix of its own (``distributed-mutex:demo-<random>``), deleted
when the demo ends, so that it never meets the keys of another run or of another program on a
shared server. Every instance reaches a TCP server through a proxy of its own, so that the demo can
cut it off; the password in REDIS_URL goes to the instances and is never shown (``masked``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

from distributed_mutex_demo.errors import LaunchError
from DistributedMutex.backends.redis.arguments import RedisAddress, parse_redis_url
from DistributedMutex.errors import ConfigurationError

LOCAL_URL = "redis://127.0.0.1:6379/0"


class RedisService:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"distributed-mutex:demo-{uuid.uuid4().hex[:8]}"
        self.address: RedisAddress | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Find (or start) the server; returns where the election happens, for the first line."""
        given = os.environ.get("REDIS_URL", "").strip()
        try:
            address = parse_redis_url("REDIS_URL", given or LOCAL_URL)
        except ConfigurationError as exc:
            raise LaunchError(str(exc)) from None
        problem = _ping(address)
        if problem and not given:
            address = self._own_server(problem)
        elif problem:
            raise LaunchError(f"REDIS_URL: no Redis server answers at {address.masked} ({problem}): start it, or "
                              "unset REDIS_URL to use a local one")
        self.address = address
        return f"Redis at {address.masked}, keys {{{self.prefix}}}:*"

    @property
    def upstream(self) -> tuple[str, int] | None:
        """(host, port) for a TCP proxy; None for a unix socket or TLS (no proxy: cannot be cut off)."""
        assert self.address is not None, "start() first"
        parts = urlsplit(self.address.url)
        if parts.scheme != "redis":
            return None
        return parts.hostname or "127.0.0.1", parts.port or 6379

    def env(self, proxy_port: int | None) -> dict[str, str]:
        """The settings of one instance: REDIS_URL through its proxy (if any), the demo's prefix."""
        assert self.address is not None, "start() first"
        url = self.address.url
        if proxy_port is not None:
            parts = urlsplit(url)
            credentials = parts.netloc.rpartition("@")[0]
            url = parts._replace(netloc=f"{credentials + '@' if credentials else ''}127.0.0.1:{proxy_port}").geturl()
        return {"ELECTION_BACKEND": "redis", "REDIS_URL": url, "REDIS_KEY_PREFIX": self.prefix}

    def stop(self) -> None:
        if self.address is not None and self.process is None:
            _delete_prefix(self.address, self.prefix)  # a shared server: leave nothing of ours behind
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _own_server(self, problem: str) -> RedisAddress:
        binary = shutil.which("redis-server")
        if binary is None:
            raise LaunchError(f"no Redis server answers at {LOCAL_URL} ({problem}) and redis-server is not installed: "
                              "apt-get install redis-server, or set REDIS_URL")
        from distributed_mutex_demo.launcher.services import die_with_parent, free_port

        port = free_port()
        log_path = self.workdir / "redis.log"
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--dir", str(self.workdir)],
                stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        address = parse_redis_url("REDIS_URL", f"redis://127.0.0.1:{port}/0")
        deadline = time.monotonic() + 10
        while _ping(address):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise LaunchError(f"redis-server did not answer on port {port} within 10 s; see {log_path}")
            time.sleep(0.1)
        return address


def _redis() -> ModuleType:
    try:
        import redis
    except ModuleNotFoundError:
        raise LaunchError("the Redis demo needs the module 'redis', which is not installed: "
                          "pip install 'distributed-mutex[demo]'") from None
    return redis


def _ping(address: RedisAddress) -> str | None:
    """None if the server answers PING, otherwise why not (one line, no password)."""
    redis = _redis()
    client = redis.Redis.from_url(address.url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if address.password:
            text = text.replace(address.password, "***")
        return f"{type(exc).__name__}: {text[:160]}"
    finally:
        client.close()
    return None


def _delete_prefix(address: RedisAddress, prefix: str) -> None:
    redis = _redis()
    client = redis.Redis.from_url(address.url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # the keys expire or stay; nothing to stop the demo's end for
    finally:
        client.close()
