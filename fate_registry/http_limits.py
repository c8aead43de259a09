"""Bounds for the registry's HTTP servers, and a server that keeps them against slow or hostile clients.

A thread per connection lets anyone hold every thread of a server by opening connections and sending
little or nothing; a fixed pool of threads that each read their own request only moves the problem, as a
few slow clients then occupy the pool and a real request waits for their timeouts. So
:class:`BoundedHTTPServer` gives a connection no thread until its request is whole:

* One *acceptor* (the thread running ``serve_forever``) accepts connections and reads every request at
  once over non-blocking sockets with a selector, the TLS handshake included. A connection that has not
  sent its whole request (the head, then the ``Content-Length`` body, both small) ``request_timeout``
  seconds after it was accepted is closed. A connection that sends nothing costs a file descriptor and at
  most ``max_head + max_body`` bytes, never a thread, and never holds up the others.
* At most ``pending`` connections (and at most half the process's file descriptors) may be sending their
  request: beyond that the oldest is closed. A crowd cannot shut out a client that sends its request at
  once, as a real pull does: the pull is read as soon as it arrives and answered as soon as a worker is free.
* A complete request goes to one of ``workers`` threads, which only writes the answer; up to ``queued``
  complete requests wait for a worker, any further one is answered 503 at once.
* A head longer than ``max_head`` bytes is refused with 431, a ``Content-Length`` over ``max_body`` with
  413 before the body is read, a body without a length (chunked) with 411. The server then reads and drops
  what the client still sends for up to ``LINGER_SECONDS``, so that the client reads the refusal rather
  than a connection reset.
* An answer is written in slices of ``WRITE_SLICE`` bytes, each allowed ``io_timeout`` seconds: a client
  that stops reading is dropped, while a long answer streams for as long as the client keeps reading.
* One request per connection (``Connection: close``): a kept-alive connection would hold a worker idle.
* A server may have some requests' bodies streamed (:meth:`BoundedHTTPServer.streams_body`: an upload):
  such a request goes to a worker once its head has arrived, the body read from the socket as the handler
  asks, each read allowed ``io_timeout`` seconds, with no ``max_body``.

Every failure is one log line; none reaches a client or the log as a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import queue
import re
import resource
import selectors
import socket
import socketserver
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from fate_registry.channels import read_pem
from fate_registry.config import TlsConf
from fate_registry.socket_io import SocketWriter, socket_reader

log = logging.getLogger(__name__)
READ_SIZE = 64 * 1024
LINGER_SECONDS = 2.0
ACCEPT_BATCH = 64  # connections accepted per turn of the loop, so that reading requests goes on meanwhile
ACCEPT_PAUSE_SECONDS = 0.1  # when no connection can be accepted (no file descriptor left) and none can be closed
WARNING_INTERVAL_SECONDS = 60.0
STOP_GRACE_SECONDS = 5.0
_HEAD_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP server of the registry allows its clients (see the module's docstring)."""

    workers: int = 16  # requests answered at once: the server's threads, besides the acceptor
    queued: int = 64  # complete requests waiting for a worker; beyond that, 503
    pending: int = 1024  # connections still sending their request; beyond that, the oldest is closed
    request_timeout: float = 10.0  # seconds from accepting a connection to having its whole request
    io_timeout: float = 30.0  # seconds allowed for each slice of an answer the client must take
    max_head: int = 8 * 1024  # bytes of the request line and headers; beyond that, 431
    max_body: int = 64 * 1024  # bytes of the request body; beyond that, 413

    def __post_init__(self) -> None:
        for name in ("workers", "pending", "request_timeout", "io_timeout", "max_head"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HTTP limits: {name} must be positive, not {getattr(self, name)!r}")
        for name in ("queued", "max_body"):
            if getattr(self, name) < 0:
                raise ValueError(f"HTTP limits: {name} must not be negative, not {getattr(self, name)!r}")


DEFAULT_LIMITS = HttpLimits()


def https_context(tls: TlsConf) -> ssl.SSLContext | None:
    """A server's TLS context from its ``tls`` conf (its certificate; with ``require_client_cert``, callers must
    present one signed by ``tls.ca``), or None for plain HTTP."""
    if not (tls.cert and tls.key):
        return None
    read_pem(tls.cert, "cert"), read_pem(tls.key, "key")  # a missing file is named, as for gRPC
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    if tls.require_client_cert and tls.ca:
        context.load_verify_locations(cadata=read_pem(tls.ca, "ca").decode("ascii", "replace"))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Refusal(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(eq=False)
class _Connection:
    """A connection the acceptor holds: its TLS handshake or its request still arriving, or lingering."""

    sock: socket.socket
    address: Any
    deadline: float
    handshaking: bool
    events: int = selectors.EVENT_READ
    data: bytearray = field(default_factory=bytearray)
    head_end: int = 0  # the head's length, once it has arrived
    body_length: int = 0
    streaming: bool = False  # the handler reads the body from the socket (BoundedHTTPServer.streams_body)
    lingering: bool = False

    @property
    def peer(self) -> str:
        return str(self.address[0])


def _body_length(head: bytes, max_body: int) -> tuple[int, bool]:
    """The request's ``Content-Length`` (0 without one) and whether it expects ``100 Continue``."""
    lengths: set[bytes] = set()
    expects_continue = False
    for line in head.split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length":
            lengths.add(value)
        elif name == b"transfer-encoding":
            raise _Refusal(HTTPStatus.LENGTH_REQUIRED, "a request body needs a Content-Length")
        elif name == b"expect":
            expects_continue = value.lower() == b"100-continue"
    if len(lengths) > 1 or not all(value.isdigit() for value in lengths):
        raise _Refusal(HTTPStatus.BAD_REQUEST, "the Content-Length is not one number")
    length = int(lengths.pop()) if lengths else 0
    if length > max_body:
        raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the request body is larger than {max_body} bytes")
    return length, expects_continue


def _pending_cap(pending: int) -> int:
    """``pending``, but at most half the file descriptors this process may open: the rest is for everything else."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or pending <= soft // 2:
        return pending
    log.info("at most %s connections may send their requests at once: RLIMIT_NOFILE is %s", soft // 2, soft)
    return max(1, soft // 2)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already gone
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class BufferedRequestHandler(BaseHTTPRequestHandler):
    """Answers one request the server has read: ``request`` is ``(its bytes, the socket, streamed)``, as a
    datagram handler's is with a flag: the request whole, or (streamed) its head and the socket to read on."""

    server: BoundedHTTPServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        data, self.connection, streaming = self.request
        self.rfile = socket_reader(data, self.connection) if streaming else io.BytesIO(data)
        self.wfile = SocketWriter(self.connection)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def handle_expect_100(self) -> bool:
        return True  # the acceptor sent ``100 Continue`` while it read the body

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s: %s %s", self.server.log_name, self.address_string(), format % args)


class BoundedHTTPServer(socketserver.TCPServer):
    """An HTTP server that keeps :class:`HttpLimits`; with ``context``, HTTPS.

    Run ``serve_forever`` in a thread of its own and end it with ``shutdown``; the handler is a
    :class:`BufferedRequestHandler`.
    """

    allow_reuse_address = True
    log_name = "http"

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BufferedRequestHandler],
        limits: HttpLimits = DEFAULT_LIMITS,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.limits = limits
        self._handler = handler  # RequestHandlerClass, typed so that the workers may call it with this server
        self._pending = _pending_cap(limits.pending)
        self.request_queue_size = self._pending  # the kernel's backlog, while the acceptor catches up
        # Made before the socket is bound: a bind that fails calls server_close, which closes these too.
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        super().__init__(address, handler)
        self.socket.setblocking(False)
        self._context = context
        self._reading: dict[socket.socket, _Connection] = {}  # in order of acceptance, so of deadline
        self._lingering: dict[socket.socket, _Connection] = {}  # in order of refusal, so of deadline
        self._requests: queue.Queue[tuple[socket.socket, bytes, bool, Any] | None] = queue.Queue()
        self._places = threading.BoundedSemaphore(limits.workers + limits.queued)  # requests answered or waiting
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._warned: dict[str, float] = {}

    # -- the acceptor ---------------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown`; ``poll_interval`` is not used: the loop wakes on events and deadlines."""
        workers = [
            threading.Thread(target=self._work, name=f"{self.log_name}-worker-{i}", daemon=True)
            for i in range(self.limits.workers)
        ]
        try:
            self._selector.register(self.socket, selectors.EVENT_READ, self._accept)
            self._selector.register(self._wake_reader, selectors.EVENT_READ, self._woken)
            for worker in workers:
                worker.start()
            while not self._stopping.is_set():
                for key, _ in self._selector.select(self._next_deadline()):
                    if not isinstance(key.data, _Connection):
                        key.data()  # the listener, or the wake-up call
                    elif key.data.sock.fileno() != -1:  # not closed earlier in this turn (evicted)
                        self._drain(key.data) if key.data.lingering else self._advance(key.data)
                self._expire(time.monotonic())
        except Exception as exc:  # a fault of this loop: said in one line, and the server stops
            log.error("%s: the server stopped: %s: %s", self.log_name, type(exc).__name__, exc)
        finally:
            self._wind_down(workers)

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (running, or yet to run in a thread already started) and wait for it."""
        self._stopping.set()
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # its buffer is full: the loop is being woken already
            self._wake_writer.send(b"x")

    def _woken(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_reader.recv(64):
                pass

    def _wind_down(self, workers: list[threading.Thread]) -> None:
        for table in (self._reading, self._lingering):
            for connection in list(table.values()):
                self._drop(connection)
        while True:
            try:
                item = self._requests.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                _close(item[0])
        for _ in workers:
            self._requests.put(None)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in workers:
            if worker.is_alive():
                worker.join(max(0.0, deadline - time.monotonic()))
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
        self._stopped.set()

    def _next_deadline(self) -> float | None:
        fronts = [next(iter(table.values())).deadline for table in (self._reading, self._lingering) if table]
        return max(0.0, min(fronts) - time.monotonic()) if fronts else None

    def _expire(self, now: float) -> None:
        for table in (self._reading, self._lingering):
            while table and (oldest := next(iter(table.values()))).deadline <= now:
                if not oldest.lingering:
                    log.debug(
                        "%s: %s did not send its request within %s s",
                        self.log_name,
                        oldest.peer,
                        self.limits.request_timeout,
                    )
                self._drop(oldest)

    def _warn(self, key: str, message: str, *args: object) -> None:
        """A warning at most once a minute per kind: a crowd must not flood the log."""
        now = time.monotonic()
        if now - self._warned.get(key, -WARNING_INTERVAL_SECONDS) >= WARNING_INTERVAL_SECONDS:
            self._warned[key] = now
            log.warning(message, *args)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, mostly: make room, or let the backlog wait
                self._warn("accept", "%s: cannot accept connections: %s", self.log_name, exc.strerror or exc)
                if not self._evict():
                    self._stopping.wait(ACCEPT_PAUSE_SECONDS)
                return
            if len(self._reading) + len(self._lingering) >= self._pending:
                self._warn(
                    "pending",
                    "%s: %s connections are sending their requests at once; closing the oldest for each new one",
                    self.log_name,
                    self._pending,
                )
                self._evict()
            self._admit(sock, address)

    def _admit(self, sock: socket.socket, address: Any) -> None:
        try:
            sock.setblocking(False)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError:
            _close(sock)
            return
        connection = _Connection(
            sock, address, time.monotonic() + self.limits.request_timeout, handshaking=self._context is not None
        )
        self._reading[sock] = connection
        self._selector.register(sock, connection.events, connection)

    def _evict(self) -> bool:
        """Close the oldest connection the acceptor holds, if any."""
        for table in (self._lingering, self._reading):
            if table:
                self._drop(next(iter(table.values())))
                return True
        return False

    def _watch(self, connection: _Connection, events: int) -> None:
        if connection.events != events:
            connection.events = events
            self._selector.modify(connection.sock, events, connection)

    def _drop(self, connection: _Connection) -> None:
        if connection.sock.fileno() == -1:
            return  # dropped already
        (self._lingering if connection.lingering else self._reading).pop(connection.sock, None)
        self._selector.unregister(connection.sock)
        _close(connection.sock)

    def _advance(self, connection: _Connection) -> None:
        """Take the handshake and the request as far as what has arrived allows."""
        sock = connection.sock
        try:
            if connection.handshaking:
                assert isinstance(sock, ssl.SSLSocket)
                sock.do_handshake()
                connection.handshaking = False
            while True:
                wanted = (
                    connection.head_end + connection.body_length if connection.head_end else self.limits.max_head + 1
                ) - len(connection.data)
                if connection.head_end and (wanted <= 0 or connection.streaming):
                    self._dispatch(connection)
                    return
                chunk = sock.recv(min(wanted, READ_SIZE))
                if not chunk:  # the client gave up before its request was whole
                    self._drop(connection)
                    return
                connection.data += chunk
                if not connection.head_end:
                    self._look_for_head(connection, len(connection.data) - len(chunk))
        except (ssl.SSLWantReadError, BlockingIOError):
            self._watch(connection, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            self._watch(connection, selectors.EVENT_WRITE)
        except _Refusal as refusal:
            self._refuse(connection, refusal.status, refusal.message)
        except ssl.SSLError as exc:
            log.info("%s: TLS with %s failed: %s", self.log_name, connection.peer, exc.reason or type(exc).__name__)
            self._drop(connection)
        except OSError:
            self._drop(connection)

    def _look_for_head(self, connection: _Connection, searched: int) -> None:
        end = _HEAD_END.search(connection.data, max(0, searched - 3))
        if end is None or end.end() > self.limits.max_head:
            if len(connection.data) > self.limits.max_head:
                raise _Refusal(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    f"the request line and headers are longer than {self.limits.max_head} bytes",
                )
            return
        connection.head_end = end.end()
        head = bytes(connection.data[: connection.head_end])
        connection.streaming = self.streams_body(head)
        max_body = sys.maxsize if connection.streaming else self.limits.max_body
        connection.body_length, expects_continue = _body_length(head, max_body)
        if expects_continue and len(connection.data) < connection.head_end + connection.body_length:
            connection.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def streams_body(self, head: bytes) -> bool:
        """Whether the request whose head (request line and headers) is ``head`` has its body streamed to
        the handler rather than read whole first (see the module's docstring); this server streams none."""
        return False

    def _dispatch(self, connection: _Connection) -> None:
        """Hand the whole request to the workers, or answer 503 when too many wait already."""
        if not self._places.acquire(blocking=False):
            self._warn(
                "busy",
                "%s: every worker is busy and %s requests wait; answering 503",
                self.log_name,
                self.limits.queued,
            )
            self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, "the server is busy; try again later")
            return
        del self._reading[connection.sock]
        self._selector.unregister(connection.sock)
        connection.sock.settimeout(self.limits.io_timeout)
        request = bytes(connection.data[: connection.head_end + connection.body_length])
        self._requests.put((connection.sock, request, connection.streaming, connection.address))

    def _refuse(self, connection: _Connection, status: HTTPStatus, message: str) -> None:
        """Answer ``status`` and stop sending; read and drop what the client still sends, then close."""
        log.info("%s: refused %s with %s: %s", self.log_name, connection.peer, int(status), message)
        body = json.dumps({"retcode": int(status), "retmsg": message}).encode()
        head = (
            f"HTTP/1.1 {int(status)} {status.phrase}\r\nContent-Type: application/json;charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            connection.sock.send(head.encode("ascii") + body)  # small: the socket's buffer takes it whole
            connection.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(connection)
            return
        del self._reading[connection.sock]
        connection.lingering, connection.deadline = True, time.monotonic() + LINGER_SECONDS
        self._lingering[connection.sock] = connection
        self._watch(connection, selectors.EVENT_READ)

    def _drain(self, connection: _Connection) -> None:
        try:
            for _ in range(16):  # a turn of the loop reads at most 1 MiB of it
                if not connection.sock.recv(READ_SIZE):
                    self._drop(connection)
                    return
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        except OSError:
            self._drop(connection)

    # -- the workers ------------------------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._requests.get()) is not None:
            sock, request, streaming, address = item
            try:
                # (its bytes, the socket, whether its body is streamed): typeshed knows only the first two
                self._handler(cast(Any, (request, sock, streaming)), address, self)
            except OSError as exc:  # the client stopped reading, or went away
                log.info(
                    "%s: the answer to %s was cut short: %s",
                    self.log_name,
                    address[0],
                    exc.strerror or type(exc).__name__,
                )
            except Exception as exc:  # a handler's fault must not cost a worker
                log.error("%s: the request of %s failed: %s: %s", self.log_name, address[0], type(exc).__name__, exc)
            finally:
                _close(sock)
                self._places.release()
