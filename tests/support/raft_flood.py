"""A flood of well-formed Raft messages from many connections, run as its own process so that
its sending does not share the nodes' interpreter lock:

    python -m support.raft_flood HOST PORT SRC DST SECONDS CONNECTIONS

Each connection streams stale heartbeats (term 0) claiming ``SRC``, reconnecting if closed, until
SECONDS have passed; prints how many bytes it wrote."""

from __future__ import annotations

import socket
import sys
import threading
import time

from DistributedMutex.backends.raft.messages import Heartbeat, encode


def flood(address: tuple[str, int], batch: bytes, deadline: float, sent: list[int]) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(address, timeout=1) as sock:
                sock.settimeout(0.5)
                while time.monotonic() < deadline:
                    try:
                        sock.sendall(batch)
                        sent.append(len(batch))
                    except TimeoutError:
                        continue  # pushed back: try again until the deadline
        except OSError:
            time.sleep(0.01)


def main() -> None:
    host, port, src, dst, seconds, connections = sys.argv[1:7]
    line = encode(Heartbeat(src, dst, 0, 1.0))
    batch = line * (65536 // len(line))
    deadline = time.monotonic() + float(seconds)
    sent: list[int] = []
    threads = [threading.Thread(target=flood, args=((host, int(port)), batch, deadline, sent))
               for _ in range(int(connections))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(float(seconds) + 5)
    print(sum(sent), flush=True)


if __name__ == "__main__":
    main()
