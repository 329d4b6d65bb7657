"""A loopback relay in front of Postgres that counts what clients send, message by message.

Statements and round trips are counted on the wire, where nothing can hide them: a statement
is an ``Execute`` (extended protocol) or a ``Query`` (simple protocol: psycopg's ``BEGIN`` and
``COMMIT``), and a round trip ends with a ``Sync`` or a ``Query``, the two messages after which
the client waits for the server. The relay forwards every byte unchanged in both directions.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


@dataclass(frozen=True, slots=True)
class WireCount:
    statements: int
    round_trips: int

    def __sub__(self, other: WireCount) -> WireCount:
        return WireCount(self.statements - other.statements, self.round_trips - other.round_trips)


class CountingRelay:
    """Listens on 127.0.0.1; each client connection gets its own connection to the server."""

    def __init__(self, server_host: str, server_port: int) -> None:
        self._server = (server_host, server_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._counts: Counter[str] = Counter()
        self.texts: list[str] = []
        """The text of every statement sent (``Parse`` and ``Query`` bodies), in order."""
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="wire-count").start()

    def count(self) -> WireCount:
        with self._lock:
            c = self._counts
            return WireCount(statements=c["E"] + c["Q"], round_trips=c["S"] + c["Q"])

    def close(self) -> None:
        self._closed.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._server)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()
            threading.Thread(target=self._frontend, args=(client, server), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _frontend(self, client: socket.socket, server: socket.socket) -> None:
        """Client → server: forward, and parse the message stream to count its types."""
        buf = b""
        started = False
        try:
            while data := client.recv(65536):
                server.sendall(data)
                buf += data
                while True:
                    if not started:
                        if len(buf) < 8:
                            break
                        length, code = struct.unpack("!II", buf[:8])
                        if len(buf) < length:
                            break
                        buf = buf[length:]
                        started = code not in (SSL_REQUEST, GSSENC_REQUEST)
                        continue
                    if len(buf) < 5:
                        break
                    kind = chr(buf[0])
                    (length,) = struct.unpack("!I", buf[1:5])
                    if len(buf) < 1 + length:
                        break
                    body, buf = buf[5 : 1 + length], buf[1 + length :]
                    with self._lock:
                        self._counts[kind] += 1
                        if kind == "Q":
                            self.texts.append(body.rstrip(b"\0").decode(errors="replace"))
                        elif kind == "P":  # name, NUL, text, NUL, parameter types
                            text = body.split(b"\0", 2)[1]
                            self.texts.append(text.decode(errors="replace"))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
