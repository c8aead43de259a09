"""File objects over a connected socket, for the registry's HTTP servers (:mod:`fate_registry.http_limits`)."""

from __future__ import annotations

import io
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

WRITE_SLICE = 64 * 1024
READ_BUFFER = 64 * 1024


class SocketWriter(io.BufferedIOBase):
    """Sends what is written in slices of ``WRITE_SLICE`` bytes, each given the socket's timeout: a client that
    stops reading is dropped, while a long answer streams for as long as the client keeps reading."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        with memoryview(data) as view, view.cast("B") as octets:
            for start in range(0, len(octets), WRITE_SLICE):
                self._sock.sendall(octets[start : start + WRITE_SLICE])
            return len(octets)


class _PrefixedSocket(io.RawIOBase):
    """The bytes already read from a connection, then the rest from the socket itself."""

    def __init__(self, prefix: bytes, sock: socket.socket) -> None:
        self._prefix = memoryview(prefix)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        with memoryview(buffer) as view, view.cast("B") as target:
            if self._prefix:
                count = min(len(target), len(self._prefix))
                target[:count] = self._prefix[:count]
                self._prefix = self._prefix[count:]
                return count
            return self._sock.recv_into(target)


def socket_reader(prefix: bytes, sock: socket.socket) -> io.BufferedReader:
    """A reader of ``prefix`` (what was read of the request so far), then of ``sock``, each read given the
    socket's timeout. A reader must not ask for more than the request holds: that read waits for the timeout."""
    return io.BufferedReader(_PrefixedSocket(prefix, sock), READ_BUFFER)
