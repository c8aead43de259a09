"""The agent's HTTP transfer endpoint against slow or hostile clients.

A crowd of half-open connections holds neither threads nor the way for a real pull; a connection that
stops sending is closed after the request timeout; requests too large are refused; the workers are a
fixed pool. Each test runs a real :class:`TransferServer` in this process (so threads are counted with
``threading.active_count``) and pulls as FATE-Serving does (:func:`pull_model`). Run with ``-s`` to see
the figures.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import resource
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fate_registry.config import PLAINTEXT, TlsConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.http_limits import HttpLimits
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.transfer_http import PATH, TransferServer
from tests.support.certs import Authority
from tests.support.serving import PullError, pull_model

NAMESPACE = "guest#9999#arbiter-10000#guest-9999#host-10000#model"
VERSION = "202401010000000000000"
KEY = "lr_0.model:HeteroLogisticRegressionParam"
HALF_REQUEST = f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode()
CROWD = 1000
PIECE = 1 << 20
PROMPT_SECONDS = 2.0  # a pull among the crowd, however long the crowd's own timeout
WAIT_SECONDS = 10.0  # the most any single wait in these tests may take


class Source:
    """The agent's ``transfer_body`` for one model version: FATE-Flow's answer in 1 MiB pieces.

    ``pause`` seconds pass before each piece (a slow disk); with ``gate`` the pieces wait for it to be set.
    """

    def __init__(self, size: int = 3 * PIECE, pause: float = 0.0, gate: threading.Event | None = None) -> None:
        self.buffer = os.urandom(size)
        data = {KEY: base64.b64encode(self.buffer).decode("ascii")}
        self.answer = json.dumps({"retcode": 0, "retmsg": "success", "data": data}).encode()
        self.pause = pause
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, ref: PartyModelRef) -> tuple[Iterator[bytes], int]:
        if (f"{ref.role}#{ref.party_id}#{ref.model_id}", ref.model_version) != (NAMESPACE, VERSION):
            raise RegistryError(Reason.MODEL_NOT_FOUND, "model not found")
        return self._pieces(), len(self.answer)

    def _pieces(self) -> Iterator[bytes]:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT_SECONDS)
        for start in range(0, len(self.answer), PIECE):
            time.sleep(self.pause)  # the slow disk being simulated, not a wait for the server
            yield self.answer[start : start + PIECE]


@contextlib.contextmanager
def serving(source: Source, tls: TlsConf = PLAINTEXT, limits: HttpLimits | None = None) -> Iterator[TransferServer]:
    server = TransferServer("127.0.0.1", 0, source, tls, limits or HttpLimits())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def url_of(server: TransferServer, tls: TlsConf = PLAINTEXT) -> str:
    return f"{'https' if tls.cert else 'http'}://127.0.0.1:{server.server_address[1]}{PATH}"


def timed_pull(server: TransferServer, source: Source, server_tls: TlsConf, client_tls: TlsConf) -> float:
    """Pull as FATE-Serving does; check the buffer; return the seconds it took."""
    started = time.monotonic()
    buffers = pull_model(url_of(server, server_tls), VERSION, NAMESPACE, WAIT_SECONDS, client_tls)
    elapsed = time.monotonic() - started
    assert buffers == {KEY: source.buffer}
    return elapsed


@contextlib.contextmanager
def crowd(server: TransferServer, count: int, payload: bytes) -> Iterator[list[socket.socket]]:
    """``count`` connections that each send ``payload`` (maybe nothing) and then wait; all closed on exit."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=WAIT_SECONDS)
            sockets.append(sock)
            if payload:
                sock.sendall(payload)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def is_open(sock: socket.socket) -> bool:
    """The server has neither closed the connection nor answered on it."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return False if sock.recv(1, socket.MSG_PEEK) == b"" else pytest.fail("the server answered a half request")
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)


def closed_after(sock: socket.socket, since: float) -> float:
    """Wait (bounded) for the server to close ``sock`` without an answer; the seconds since ``since``."""
    sock.settimeout(WAIT_SECONDS)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        data = b""
    assert data == b"", f"the server answered instead of closing: {data[:80]!r}"
    return time.monotonic() - since


def answer_of(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Read an HTTP answer to its end (the server closes the connection): its status and JSON body."""
    sock.settimeout(WAIT_SECONDS)
    response = http.client.HTTPResponse(sock)
    response.begin()
    status, body = response.status, json.loads(response.read())
    response.close()
    return status, body


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.fixture
def enough_file_descriptors() -> None:
    """The crowd's 1,000 sockets and the server's 1,000 live in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 4 * CROWD
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE {hard} is too low for a crowd of {CROWD}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def server_and_client_tls(tmp_path: Path, require_client_cert: bool = False) -> tuple[TlsConf, TlsConf]:
    authority = Authority.create(tmp_path / "ca")
    server = authority.issue("party-9999").tls(authority.ca, require_client_cert=require_client_cert)
    client = authority.issue("serving").tls(authority.ca) if require_client_cert else TlsConf(ca=authority.ca)
    return server, client


# -- a crowd of half-open connections ------------------------------------------------------------------


@pytest.mark.usefixtures("enough_file_descriptors")
@pytest.mark.parametrize("secure", [False, True], ids=["http-half-requests", "https-no-client-hello"])
def test_a_pull_among_a_thousand_half_open_connections_is_prompt_and_threads_stay_bounded(
    tmp_path: Path, secure: bool
) -> None:
    source = Source()
    server_tls, client_tls = server_and_client_tls(tmp_path) if secure else (PLAINTEXT, PLAINTEXT)
    limits = HttpLimits()  # the defaults: the crowd's timeout is 10 s, far above the pull's bound
    threads_before = threading.active_count()
    with serving(source, server_tls, limits) as server:
        alone = timed_pull(server, source, server_tls, client_tls)
        rss_before = rss_kib()
        opened = time.monotonic()
        # over HTTPS the crowd sends nothing at all: not even a ClientHello
        with crowd(server, CROWD, b"" if secure else HALF_REQUEST) as held:
            opening = time.monotonic() - opened
            among = timed_pull(server, source, server_tls, client_tls)
            threads, rss = threading.active_count(), rss_kib()
            still_open = sum(is_open(sock) for sock in held)
    print(
        f"\n[{'https' if secure else 'http'}] pull alone {alone * 1000:.0f} ms, among {CROWD} half-open connections"
        f" {among * 1000:.0f} ms (crowd opened in {opening:.2f} s); threads {threads_before} before, {threads}"
        f" during the crowd (cap {limits.workers} workers); RSS {rss_before} KiB before, {rss} KiB during"
    )
    assert among <= PROMPT_SECONDS < limits.request_timeout
    assert threads <= threads_before + limits.workers + 2  # the workers, the acceptor, and one to spare
    assert still_open == CROWD  # held without a thread each, not dropped: they still have time to send


def test_when_more_connections_wait_than_allowed_the_oldest_is_closed(enough_file_descriptors: None) -> None:
    source = Source(size=1024)
    limits = HttpLimits(pending=8)
    with serving(source, limits=limits) as server, crowd(server, 20, HALF_REQUEST) as held:
        opened = time.monotonic()
        assert timed_pull(server, source, PLAINTEXT, PLAINTEXT) <= PROMPT_SECONDS
        assert closed_after(held[0], opened) <= PROMPT_SECONDS
        assert sum(is_open(sock) for sock in held) <= limits.pending


# -- timeouts ----------------------------------------------------------------------------------------------


def test_a_connection_that_stops_sending_is_closed_after_the_request_timeout(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    source = Source(size=1024)
    limits = HttpLimits(request_timeout=0.5)
    server_tls, client_tls = server_and_client_tls(tmp_path)
    with serving(source, limits=limits) as server, crowd(server, 2, b"") as (silent, half):
        half.sendall(HALF_REQUEST)
        started = time.monotonic()
        for sock in (silent, half):
            assert 0.4 <= closed_after(sock, started) <= limits.request_timeout + PROMPT_SECONDS
        timed_pull(server, source, PLAINTEXT, PLAINTEXT)  # the server itself is none the worse
    context = ssl.create_default_context(cafile=str(client_tls.ca))
    with serving(source, server_tls, limits) as server, crowd(server, 2, b"") as (silent_tcp, raw):
        started = time.monotonic()
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as half_tls:  # a TLS session, then half a request
            half_tls.sendall(HALF_REQUEST)
            for sock in (silent_tcp, half_tls):
                assert 0.4 <= closed_after(sock, started) <= limits.request_timeout + PROMPT_SECONDS
        timed_pull(server, source, server_tls, client_tls)
    assert "Traceback" not in capfd.readouterr().err
    assert all(record.exc_info is None and "\n" not in record.getMessage() for record in caplog.records)


def test_a_long_answer_streams_on_past_the_request_timeout() -> None:
    source = Source(pause=0.15)  # 4 pieces: more than twice the request timeout in all
    limits = HttpLimits(request_timeout=0.25)
    with serving(source, limits=limits) as server:
        assert timed_pull(server, source, PLAINTEXT, PLAINTEXT) > 2 * limits.request_timeout


# -- sizes -----------------------------------------------------------------------------------------------------


def test_a_request_head_larger_than_the_maximum_is_refused_with_431() -> None:
    limits = HttpLimits(max_head=1024)
    with serving(Source(size=1024), limits=limits) as server, crowd(server, 1, b"") as (sock,):
        sock.sendall(HALF_REQUEST + b"X-Padding: " + b"a" * limits.max_head)  # and never ends its head
        status, body = answer_of(sock)
    assert (status, body["retcode"]) == (431, 431)


def test_a_body_larger_than_the_maximum_is_refused_with_413_before_it_is_read() -> None:
    source = Source(size=1024)
    limits = HttpLimits(max_body=4096)
    request = json.dumps({"name": VERSION, "namespace": NAMESPACE}).encode()
    with serving(source, limits=limits) as server:
        port = server.server_address[1]
        for size, expected in ((limits.max_body, 200), (limits.max_body + 1, 413), (8 * PIECE, 413)):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_SECONDS)
            try:
                connection.request("POST", PATH, request.ljust(size), {"Content-Type": "application/json"})
                response = connection.getresponse()
                status, body = response.status, json.loads(response.read())
            finally:
                connection.close()
            assert (size, status) == (size, expected)
            if status == 200:  # a body of the maximum is served
                assert body["data"] == {KEY: base64.b64encode(source.buffer).decode("ascii")}
            else:
                assert body["retcode"] == 413


# -- the worker pool ----------------------------------------------------------------------------------------


def test_when_every_worker_is_busy_and_the_queue_is_full_a_request_gets_503_at_once() -> None:
    gate = threading.Event()
    source = Source(size=1024, gate=gate)
    limits = HttpLimits(workers=1, queued=0)
    outcome: list[float] = []
    with serving(source, limits=limits) as server:
        first = threading.Thread(target=lambda: outcome.append(timed_pull(server, source, PLAINTEXT, PLAINTEXT)))
        first.start()
        try:
            assert source.entered.wait(WAIT_SECONDS)  # the only worker is answering the first pull
            started = time.monotonic()
            with pytest.raises(PullError, match="HTTP 503"):
                pull_model(url_of(server), VERSION, NAMESPACE, WAIT_SECONDS)
            assert time.monotonic() - started <= PROMPT_SECONDS
        finally:
            gate.set()
            first.join(WAIT_SECONDS)
    assert len(outcome) == 1


# -- TLS ---------------------------------------------------------------------------------------------------------


def test_with_a_required_client_certificate_only_a_holder_pulls(tmp_path: Path) -> None:
    source = Source(size=1024)
    server_tls, client_tls = server_and_client_tls(tmp_path, require_client_cert=True)
    with serving(source, server_tls) as server:
        timed_pull(server, source, server_tls, client_tls)
        with pytest.raises(PullError):
            pull_model(url_of(server, server_tls), VERSION, NAMESPACE, WAIT_SECONDS, TlsConf(ca=client_tls.ca))


def test_limits_are_checked() -> None:
    for bad in ({"workers": 0}, {"queued": -1}, {"pending": 0}, {"request_timeout": 0}, {"io_timeout": -1}):
        with pytest.raises(ValueError):
            HttpLimits(**bad)
