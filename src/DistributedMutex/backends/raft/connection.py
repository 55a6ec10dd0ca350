"""One incoming connection of a peer's listener (listener.py): its state, and its socket-level
steps, plain or TLS, none of which ever blocks. The listener decides what to do with what they
return; this only hides how TCP and TLS differ.

TLS runs non-blocking: the handshake is stepped on each selector event (``handshake``) and may
wait to read or to write; a read may bring a partial record (nothing yet) or leave decrypted bytes
in the TLS buffer, which no selector event would ever announce (``read`` takes them at once).
"""

from __future__ import annotations

import enum
import socket
import ssl

READ_SIZE = 16 * 1024  # one read per ready connection per round: the others' turn comes next
_NOT_YET = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Handshake(enum.Enum):
    DONE = "done"
    WANT_READ = "want read"
    WANT_WRITE = "want write"


class Connection:
    __slots__ = ("buffer", "events", "handshake_until", "ids", "last_message", "out", "out_since", "paused", "queued",
                 "sock", "source", "spoke", "want_write")

    def __init__(self, sock: socket.socket, source: str, now: float, *, handshake_until: float = 0.0) -> None:
        self.sock = sock
        self.source = source
        self.handshake_until = handshake_until  # TLS: handshaking until done or then (0: done, or plain)
        self.want_write = False  # the handshake waits to write, not to read
        self.ids: frozenset[str] | None = None  # TLS: the peer ids its certificate names (None: plain TCP)
        self.buffer = bytearray()
        self.out = bytearray()  # a status reply not yet written
        self.out_since = 0.0
        self.last_message = now
        self.spoke = False  # sent at least one complete line
        self.queued = 0  # its messages the driver has not taken yet
        self.paused = False  # not read until the driver took some of its messages
        self.events = 0  # what the listener's selector watches it for (0: not registered)

    def read(self) -> bytes | None:
        """What arrived: None if nothing yet (a partial TLS record), b"" if the connection ended."""
        sock = self.sock
        try:
            data = sock.recv(READ_SIZE)
            if isinstance(sock, ssl.SSLSocket):
                # Decrypted bytes left in the TLS buffer make no selector event: take them now
                # (at most the rest of one record, so the round stays fair).
                while pending := sock.pending():
                    data += sock.recv(pending)
        except _NOT_YET:
            return None
        except OSError:
            return b""
        return data

    def handshake(self) -> Handshake:
        """One step of the TLS handshake; OSError (ssl.SSLError) if it failed."""
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self.want_write = False
            return Handshake.WANT_READ
        except ssl.SSLWantWriteError:
            self.want_write = True
            return Handshake.WANT_WRITE
        self.handshake_until = 0.0
        self.want_write = False
        return Handshake.DONE

    def certificate(self) -> dict[str, object] | None:
        """The client's verified certificate (TLS, once the handshake is done)."""
        return self.sock.getpeercert() if isinstance(self.sock, ssl.SSLSocket) else None  # type: ignore[return-value]

    def has_pending(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def send_out(self) -> bool:
        """Write what it can of ``out``; False if the connection failed."""
        try:
            sent = self.sock.send(self.out)
        except _NOT_YET:
            return True
        except OSError:
            return False
        del self.out[:sent]
        return True


def tls_reason(exc: OSError) -> str:
    """A short reason, e.g. "certificate verify failed" or "wrong version number" (a plain client)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or "certificate verify failed"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return exc.strerror or type(exc).__name__
