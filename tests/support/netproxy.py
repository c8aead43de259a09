"""A TCP proxy on loopback that a fault test can cut: a network partition between two processes.

    with TcpProxy("127.0.0.1:50051") as proxy:   # listens on proxy.address, forwards to the target
        proxy.partition()  # every byte, on open and new connections, is read and dropped: calls hang
        proxy.heal()       # the cut connections are closed (their streams lost bytes); new ones pass

Traffic stays on loopback; every thread and socket is the proxy's own and is closed by :meth:`close`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

BUFFER = 64 * 1024


class TcpProxy:
    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._cut = threading.Event()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, name="proxy-accept", daemon=True)]
        self._threads[0].start()

    def partition(self) -> None:
        """From now on nothing passes either way; the connections stay open, as behind a dead link."""
        self._cut.set()

    def heal(self) -> None:
        """Close every connection that lost bytes to the partition; new connections pass again."""
        with self._lock:
            cut, self._sockets = self._sockets, []
        for sock in cut:
            _close(sock)
        self._cut.clear()

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.heal()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(source, sink), name="proxy-pump", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes until either side closes; while partitioned, read and drop them."""
        try:
            while data := source.recv(BUFFER):
                if not self._cut.is_set():
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
