"""Connections to a TLS Raft peer, as fast as they go, from its own process:

    python -m support.raft_tls_flood HOST PORT SECONDS THREADS MODE [CERT KEY CA SRC DST]

MODE "handshake": full TLS handshakes with no client certificate, closed at once (what a stranger
can make the peer compute); "stream": one authenticated connection per thread (CERT, KEY, CA),
streaming stale heartbeats from SRC to DST. Prints how many handshakes or bytes it managed."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import time

from DistributedMutex.backends.raft.messages import Heartbeat, encode


def handshakes(address: tuple[str, int], deadline: float, done: list[int]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(address, timeout=2) as raw, context.wrap_socket(raw) as sock:
                done.append(1)
                sock.settimeout(0.2)
                try:
                    sock.recv(1)  # TLS 1.3: the refusal of the missing certificate arrives now
                except (OSError, ssl.SSLError):
                    pass
        except OSError:
            time.sleep(0.001)


def stream(address: tuple[str, int], context: ssl.SSLContext, batch: bytes, deadline: float,
           sent: list[int]) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(address, timeout=2) as raw, context.wrap_socket(raw) as sock:
                sock.settimeout(0.5)
                while time.monotonic() < deadline:
                    try:
                        sock.sendall(batch)
                        sent.append(len(batch))
                    except TimeoutError:
                        continue
        except OSError:
            time.sleep(0.01)


def main() -> None:
    host, port, seconds, threads, mode = sys.argv[1:6]
    address, deadline = (host, int(port)), time.monotonic() + float(seconds)
    done: list[int] = []
    if mode == "handshake":
        workers = [threading.Thread(target=handshakes, args=(address, deadline, done)) for _ in range(int(threads))]
    else:
        cert, key, ca, src, dst = sys.argv[6:11]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(cafile=ca)
        context.load_cert_chain(cert, key)
        line = encode(Heartbeat(src, dst, 0, 1.0))
        batch = line * (65536 // len(line))
        workers = [threading.Thread(target=stream, args=(address, context, batch, deadline, done))
                   for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(float(seconds) + 5)
    print(sum(done), flush=True)


if __name__ == "__main__":
    main()
