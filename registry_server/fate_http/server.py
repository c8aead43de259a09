"""The coordinator's HTTP server for FATE's clients.

FATE-Flow 1.11's routes for models, tags and checkpoints, the rest passed to an upstream FATE-Flow (or answered
FATE-Flow's not-found).

It keeps :class:`~fate_registry.http_limits.HttpLimits` (a worker thread only for a request whose head has
arrived; JSON bodies read whole, at most ``MAX_JSON_BODY``; an import's body and a pass-through's streamed).
``GET /metrics`` answers the coordinator's Prometheus metrics (:mod:`fate_registry.metrics`), ``GET /dashboard/``
its web dashboard (:mod:`registry_server.dashboard`) when ``coordinator.http.dashboard`` is on.
HTTPS with the coordinator's certificate when its ``tls`` has one; with ``require_client_cert``, a caller
must present a certificate of its CA naming one of ``tls.allow``.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from client.confs import Conf
from client.render import envelope
from fate_registry import metrics
from fate_registry.config import ServiceConf
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.grpc_server import as_registry_error, bind_problem, http_port_file, write_port_file
from fate_registry.http_limits import BoundedHTTPServer, BufferedRequestHandler, HttpLimits, https_context
from registry_server import dashboard
from registry_server.fate_http import archives, auth, routes, upstream
from registry_server.fate_http.bodies import ModelKeys
from registry_server.fate_http.calls import Registry
from registry_server.fate_http.replies import (
    METHOD_NOT_ALLOWED_RETMSG,
    NOT_FOUND_RETMSG,
    Reply,
    download_error_reply,
    json_reply,
)
from registry_server.servicer import RegistryServicer

log = logging.getLogger(__name__)
MAX_JSON_BODY = 4 * 1024 * 1024
IMPORT = f"{routes.V1}/model/import"
EXPORT = f"{routes.V1}/model/export"
# A tag route with an operation FATE-Flow lacks: its answer, by the route's prefix.
UNSUPPORTED_TAG_OPERATION = {
    f"{routes.V1}/model/model_tag/": "'{}' is not currently supported.",
    f"{routes.V1}/model/tag/": "The {} operation is not currently supported.",
}
METRICS = "/metrics"
DASHBOARD = "/dashboard"
ARCHIVE_ROUTES = {IMPORT: routes.GET_OR_POST, EXPORT: routes.GET_OR_POST}


def route_path(target: str) -> str:
    """A request target's path as routes are named: no query, no trailing slash (FATE-Flow accepts one)."""
    return urlsplit(target).path.rstrip("/") or "/"


class FateHttpHandler(BufferedRequestHandler):
    """One HTTP request of a FATE client: routed, signature-checked, answered or passed upstream."""

    server: FateHttpServer

    @property
    def registry(self) -> Registry:
        assert self.server.registry is not None
        return self.server.registry

    @property
    def peer(self) -> str:
        return f"http:{self.client_address[0]}:{self.client_address[1]}"

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)

    def check_signature(self, body: bytes = b"", form: bytes = b"") -> None:
        """FATE-Flow's signature check, when the conf switches it on (:mod:`registry_server.fate_http.auth`)."""
        conf = self.server.conf.coordinator.http.authentication
        if conf.switch:
            auth.check(conf, self.headers, self.path.rstrip("?"), body, form)

    def _serve(self) -> None:
        path = route_path(self.path)
        methods, route = self.server.resolve(path)
        try:
            self._check_peer()
            if self.command == "GET" and (path == METRICS or self.server.dashboard_path(path)):
                self.check_signature()  # FATE's signature, when switched on, covers the pages too
                self.reply(self._page(path))
                return
            if methods is None and self.server.upstream:  # the upstream FATE-Flow checks its signature
                upstream.forward(self, self.server.upstream, self.server.conf.coordinator.deploy_timeout)
                return
            if path == IMPORT:  # a streamed body: its signature covers its text fields, checked as they come
                if methods is not None and self.command in methods:
                    self.reply(archives.import_model(self))
                else:
                    self.reply(json_reply(envelope(int(Retcode.EXCEPTION_ERROR), METHOD_NOT_ALLOWED_RETMSG)))
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            conf, signed_body, signed_form = self._parse(body)
            self.check_signature(signed_body, signed_form)  # before routing, as FATE-Flow's authentication
            if methods is None or self.command not in methods:
                unserved = NOT_FOUND_RETMSG if methods is None else METHOD_NOT_ALLOWED_RETMSG
                self.reply(json_reply(envelope(int(Retcode.EXCEPTION_ERROR), unserved)))
                return
            if path == EXPORT:
                archives.export_model(self, conf.read(ModelKeys).ref())
                return
            assert route is not None
            reply = route(routes.Call(conf, self.registry, self.peer))
        except OSError:
            raise  # the connection failed (the client went, or stopped sending): the worker logs it
        except Exception as exc:  # the boundary: a class and an error id in the log, never a traceback
            error = as_registry_error(exc, path, self.peer)
            # on export, HTTP 200 means "the body is the archive" to FATE's client: a refusal must not be 200
            reply = (
                download_error_reply(error)
                if path == EXPORT
                else json_reply(envelope(error.fate_retcode, error.message))
            )
        self.reply(reply)

    def _page(self, path: str) -> Reply:
        """``/metrics``, or a dashboard page (its query's first values as parameters)."""
        if path == METRICS:
            body, content_type = metrics.exposition()
            return Reply(200, body, content_type)
        query = dict(parse_qsl(urlsplit(self.path).query))
        return dashboard.serve(path.removeprefix(DASHBOARD), query, self.registry, self.peer)

    def _parse(self, body: bytes) -> tuple[Conf, bytes, bytes]:
        """The body as FATE-Flow reads it, and the two parts of it its signature covers.

        FATE-Flow reads JSON whatever the Content-Type, else a urlencoded form; neither: no keys.
        """
        try:
            data: Any = json.loads(body) if body.strip() else None
        except ValueError:
            data = None
        if isinstance(data, dict):
            return Conf(data), body if data else b"", b""
        form = (
            dict(parse_qsl(body.decode("utf-8", "replace")))
            if "urlencoded" in self.headers.get("Content-Type", "")
            else {}
        )
        return Conf(form), b"", auth.form_text(form) if form else b""

    def _check_peer(self) -> None:
        """With mutual TLS, the caller's certificate must name one of ``tls.allow`` (as on the gRPC API)."""
        tls = self.server.conf.coordinator.tls
        if not (tls.require_client_cert and isinstance(self.connection, ssl.SSLSocket)):
            return
        certificate: dict[str, Any] = dict(self.connection.getpeercert() or {})
        names = {str(value) for rdn in certificate.get("subject", ()) for key, value in rdn if key == "commonName"}
        names |= {str(value) for _, value in certificate.get("subjectAltName", ())}
        if not names & set(tls.allow):
            raise RegistryError(
                Reason.PERMISSION_DENIED, f"the caller {', '.join(sorted(names)) or 'without a name'} is not allowed"
            )


class FateHttpServer(BoundedHTTPServer):
    """Bound when made (port 0: a free port), serving once :meth:`start` has the RPC methods to call."""

    log_name = "fate-http"

    def __init__(self, conf: ServiceConf) -> None:
        http = conf.coordinator.http
        address = http.bound_address
        limits = HttpLimits(max_body=MAX_JSON_BODY)
        context = https_context(conf.coordinator.tls)
        try:
            super().__init__((address.host, address.port), FateHttpHandler, limits, context)
        except OSError:
            problem = bind_problem(address.host, address.port)
            raise OSError(f"cannot listen on {address} (coordinator.http.address): {problem}") from None
        self.conf = conf
        self.upstream = http.upstream
        self.dashboard = bool(http.dashboard)
        self.registry: Registry | None = None
        self._thread = threading.Thread(target=self.serve_forever, name="fate-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def resolve(self, path: str) -> tuple[frozenset[str] | None, routes.Route | None]:
        """The methods and route serving ``path``; (None, None) when the registry does not serve it."""
        if path in ARCHIVE_ROUTES:
            return ARCHIVE_ROUTES[path], None
        if path in routes.ROUTES:
            return routes.ROUTES[path]
        for prefix, message in UNSUPPORTED_TAG_OPERATION.items():
            operation = path.removeprefix(prefix)
            if path.startswith(prefix) and "/" not in operation:
                return routes.POST, routes.unsupported(message.format(operation))
        return None, None

    def dashboard_path(self, path: str) -> bool:
        return self.dashboard and (path == DASHBOARD or path.startswith(DASHBOARD + "/"))

    def streams_body(self, head: bytes) -> bool:
        """An import's body, and one passed to the upstream, are read as they arrive, not whole first."""
        target = head.split(b" ", 2)[1].decode("latin-1") if head.count(b" ") >= 2 else ""
        path = route_path(target)
        return path == IMPORT or (bool(self.upstream) and self.resolve(path)[0] is None)

    def start(self, servicer: RegistryServicer, port_file: Path | None) -> None:
        self.registry = Registry(servicer)
        self._thread.start()
        if port_file is not None:
            write_port_file(http_port_file(port_file), self.address)
        log.info(
            "FATE-Flow HTTP API on %s%s",
            self.address,
            f", passing the rest to {self.upstream}" if self.upstream else "",
        )

    def stop(self) -> None:
        if self._thread.ident is not None:
            self.shutdown()
        self.server_close()
