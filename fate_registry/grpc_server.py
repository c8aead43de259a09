"""gRPC server plumbing shared by the coordinator and the agents.

Every server gets the standard health and reflection services and one interceptor that turns
exceptions into statuses: a :class:`RegistryError` becomes its code with an ``ErrorInfo``; an
unexpected exception becomes INTERNAL with an error id, logged with its class and message only.
"""

from __future__ import annotations

import errno
import logging
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import peewee
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fate_registry import metrics
from fate_registry.channels import CHANNEL_OPTIONS, read_pem
from fate_registry.config import PLAINTEXT, TlsConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.malformed import MalformedRequest, refusal, screened, tolerant

log = logging.getLogger(__name__)
# What SQLite says when a write, or the shared-memory file of a WAL database, finds the disk full.
SQLITE_DISK_ERRORS = frozenset({"database or disk is full", "disk I/O error"})

# Threads serving RPCs unless a conf says otherwise (the agents take it; bench.catalog_scale measured it).
DEFAULT_RPC_WORKERS = 32


def _out_of_space(exc: Exception) -> bool:
    if isinstance(exc, shutil.Error):  # copytree gathers its failures as (src, dst, message) triples
        failures = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        return any(f"[Errno {errno.ENOSPC}]" in str(failure[-1]) for failure in failures)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def as_registry_error(exc: Exception, method: str, peer: str = "") -> RegistryError:
    """The status a handler's exception is answered with; ``peer``, the caller, is named in the log."""
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, MalformedRequest):
        return refusal(exc, method, peer)
    if _out_of_space(exc):
        return RegistryError(Reason.NO_SPACE, "no space left on the party's disk; nothing was changed")
    if isinstance(exc, peewee.OperationalError) and str(exc) in SQLITE_DISK_ERRORS:
        # SQLite keeps no errno: on a full disk it cannot even recreate the shared-memory file to read
        log.error("database error in %s: %s", method, exc)
        return RegistryError(Reason.NO_SPACE, f"the database cannot write to its disk ({exc}: no space left?)")
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s in %s: %s: %.2000s", error_id, method, exc.__class__.__name__, exc)
    return RegistryError(Reason.INTERNAL, f"internal error in {method} (error id {error_id}, see the server log)")


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    error = as_registry_error(exc, method, context.peer())
    metrics.count_refusal(method, error)
    context.abort_with_status(error.to_status())


if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.ServerInterceptor[Any, Any]
else:
    Interceptor = grpc.ServerInterceptor


Behavior = Callable[[Any, grpc.ServicerContext], Any]
Deserializer = Callable[[bytes], Any]


def wrap_handler(
    handler: Handler,
    unary: Callable[[Behavior], Behavior],
    stream: Callable[[Behavior], Behavior],
    request_deserializer: Deserializer | None = None,
) -> Handler:
    """The same handler with its behaviour wrapped: ``unary`` for unary responses, ``stream`` for streamed ones;
    its requests parsed by ``request_deserializer`` when one is given."""
    parse = request_deserializer or handler.request_deserializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), parse, handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), parse, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), parse, handler.response_serializer)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), parse, handler.response_serializer)


class HandlerInterceptor(Interceptor):
    """An interceptor that rewrites the handler of each call it has one for (:meth:`rewrite`)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(details)
        return None if handler is None else self.rewrite(handler, details)

    def rewrite(self, handler: Handler, details: grpc.HandlerCallDetails) -> Handler:
        raise NotImplementedError


class ErrorInterceptor(HandlerInterceptor):
    """Maps exceptions raised by handlers (also mid-stream) to rich gRPC statuses, and requests that do
    not parse to INVALID_ARGUMENT before the handler runs (its deserializer made :func:`tolerant`)."""

    def rewrite(self, handler: Handler, details: grpc.HandlerCallDetails) -> Handler:
        method = details.method.rsplit("/", 1)[-1]
        streaming = handler.request_streaming

        def wrap_unary(behavior: Behavior) -> Behavior:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return behavior(screened(request, streaming), context)
                except Exception as exc:  # the boundary: nothing unexpected leaves as a traceback
                    _abort(context, exc, method)

            return run

        def wrap_stream(behavior: Behavior) -> Behavior:
            def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behavior(screened(request, streaming), context)
                except Exception as exc:
                    _abort(context, exc, method)

            return run

        deserializer = handler.request_deserializer
        return wrap_handler(handler, wrap_unary, wrap_stream, tolerant(deserializer) if deserializer else None)


class MetricsInterceptor(HandlerInterceptor):
    """Counts every call by method and status code and times it (:mod:`fate_registry.metrics`). Outermost, it
    reads the status the error interceptor set (``context.code()``; none and no exception: OK) and counts the
    bytes of raw archive streams (a handler without a request deserializer or response serializer)."""

    def __init__(self) -> None:
        self.meters = metrics.RpcMeters()

    def rewrite(self, handler: Handler, details: grpc.HandlerCallDetails) -> Handler:
        name = details.method
        timer = self.meters.timer(name)
        inbound = handler.request_streaming and handler.request_deserializer is None
        outbound = handler.response_streaming and handler.response_serializer is None

        def done(context: grpc.ServicerContext, start: float, failed: bool) -> None:
            timer.observe(time.perf_counter() - start)
            set_code = context.code()  # type: ignore[attr-defined]  # grpc-stubs lag: the server context has it
            code = set_code or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
            self.meters.count(name, code.name)

        def wrap_unary(behavior: Behavior) -> Behavior:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                start, failed = time.perf_counter(), True
                try:
                    answer = behavior(metrics.counted(request, "in") if inbound else request, context)
                    failed = False
                    return answer
                finally:
                    done(context, start, failed)

            return run

        def wrap_stream(behavior: Behavior) -> Behavior:
            def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                start, failed = time.perf_counter(), True
                try:
                    answers = behavior(metrics.counted(request, "in") if inbound else request, context)
                    yield from metrics.counted(answers, "out") if outbound else answers
                    failed = False
                finally:
                    done(context, start, failed)

            return run

        return wrap_handler(handler, wrap_unary, wrap_stream)


class _HandlerCapture:
    """Stands in for a server to collect what a generated ``add_*Servicer_to_server`` registers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        self.handlers = dict(handlers)


def servicer_handlers(
    add_to_server: Callable[[Any, Any], None], servicer: Any, overrides: dict[str, Handler] | None = None
) -> dict[str, Handler]:
    """A generated servicer's method handlers by method name, some replaced by ``overrides``."""
    capture = _HandlerCapture()
    add_to_server(servicer, capture)
    return {**capture.handlers, **(overrides or {})}


def register_servicer(
    server: grpc.Server,
    add_to_server: Callable[[Any, Any], None],
    servicer: Any,
    service_name: str,
    overrides: dict[str, Handler] | None = None,
) -> None:
    """Register a generated servicer, replacing some methods' handlers (e.g. raw-bytes relays)."""
    register_handlers(server, service_name, servicer_handlers(add_to_server, servicer, overrides))


def register_handlers(server: grpc.Server, service_name: str, handlers: dict[str, Handler]) -> None:
    """Serve ``handlers`` (by method name) as the methods of ``service_name``."""
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, handlers),))
    server.add_registered_method_handlers(service_name, handlers)  # type: ignore[attr-defined]  # grpc-stubs lag


def archive_handlers(
    import_raw: Callable[[Any, grpc.ServicerContext], Any],
    import_response: Any,
    export_raw: Callable[[Any, grpc.ServicerContext], Any],
    export_request: Any,
) -> dict[str, Handler]:
    """ImportModel and ExportModel handlers that take and give serialized archive messages.

    The import handler receives raw request bytes and the export handler yields raw response
    bytes, so archive chunks cross the server without protobuf decoding or encoding them.
    """
    return {
        "ImportModel": grpc.stream_unary_rpc_method_handler(
            import_raw, request_deserializer=None, response_serializer=import_response.SerializeToString
        ),
        "ExportModel": grpc.unary_stream_rpc_method_handler(
            export_raw, request_deserializer=export_request.FromString, response_serializer=None
        ),
    }


@dataclass
class RunningServer:
    """A server that owns its port; it answers once :meth:`serve` has registered its services and started it."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: Sequence[str] = ()

    def serve(self, register: Callable[[grpc.Server], None]) -> None:
        register(self.server)
        self.server.start()
        for name in ["", *self.service_names]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def bind_problem(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on, as the kernel tells a plain bind (gRPC keeps the reason to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"the host name does not resolve ({exc.strerror})"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return "the address is already in use by another program"
                if exc.errno == errno.EADDRNOTAVAIL:
                    return "it is not an address of this host"
                return exc.strerror or exc.__class__.__name__
    return "gRPC could not bind it"


def listen_exclusively(server: grpc.Server, host: str, port: int, tls: TlsConf) -> int:
    """Bind ``host:port`` (0: a free port) for ``server`` alone, or raise an OSError naming the address.

    The server is made with ``grpc.so_reuseport`` off (:func:`bind_server`): with gRPC's default a second
    program on the same port binds too and the kernel splits the connections between the two.
    """
    target = f"{host}:{port}"
    try:
        bound = (
            server.add_secure_port(target, server_credentials(tls)) if tls.cert else server.add_insecure_port(target)
        )
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {target}: {bind_problem(host, port)}")
    return bound


def server_credentials(tls: TlsConf) -> grpc.ServerCredentials:
    """The server side of ``tls``: its certificate and key; with ``require_client_cert``, only callers
    presenting a certificate signed by ``tls.ca`` complete the handshake."""
    assert tls.cert is not None and tls.key is not None
    return grpc.ssl_server_credentials(
        [(read_pem(tls.key, "key"), read_pem(tls.cert, "cert"))],
        root_certificates=read_pem(tls.ca, "ca") if tls.ca else None,
        require_client_auth=tls.require_client_cert,
    )


def bind_server(
    host: str,
    port: int,
    service_names: list[str],
    max_workers: int = DEFAULT_RPC_WORKERS,
    tls: TlsConf = PLAINTEXT,
    interceptors: Sequence[Interceptor] = (),
) -> RunningServer:
    """A server with health and reflection that owns ``host:port`` (0 picks a free port); it answers once
    :meth:`RunningServer.serve` has registered the services. Binding first lets a program that cannot have
    its port stop before it acts on anything (a recovery, say, of state another running copy owns).

    TLS when ``tls`` names a certificate, plain text otherwise. Every call is metered (:class:`MetricsInterceptor`,
    outermost). ``interceptors`` (authorisation) run inside the error interceptor, so what they refuse reaches
    the caller as a status with a reason.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        interceptors=[MetricsInterceptor(), ErrorInterceptor(), *interceptors],
        options=[*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)],
    )
    bound = listen_exclusively(server, host, port, tls)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return RunningServer(server, bound, health_servicer, tuple(service_names))


def write_port_file(port_file: Path, address: str) -> None:
    """Publish a bound address for a launcher: written aside and renamed, so it is never read half-written."""
    port_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(f"{address}\n", encoding="utf-8")
    tmp.replace(port_file)


def http_port_file(port_file: Path) -> Path:
    """Where a coordinator writes its FATE-Flow HTTP API's bound address, beside its gRPC ``port_file``."""
    return port_file.with_suffix(".http")


def wait_for_signal(running: RunningServer, port_file: Path | None, host: str) -> None:
    """Write the bound address to ``port_file`` (for launchers), then serve until SIGTERM/SIGINT."""
    if port_file is not None:
        write_port_file(port_file, f"{host}:{running.port}")
    stop = StopFlag.install()
    stop.wait()
    log.info("stopping")
    running.stop()


class StopFlag:
    """Set by SIGTERM or SIGINT. The handler only assigns an attribute: taking a lock there (as
    ``threading.Event.set`` does) deadlocks when a second signal lands while the first is handled."""

    def __init__(self) -> None:
        self.stopping = False

    @classmethod
    def install(cls) -> StopFlag:
        flag = cls()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, flag._handle)
        return flag

    def _handle(self, signum: int, frame: object) -> None:
        self.stopping = True

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until stopping (True) or ``timeout`` seconds passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.stopping:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True
