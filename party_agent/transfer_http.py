"""The agent's HTTP endpoint: FATE-Serving's model pull and the agent's Prometheus metrics.

FATE-Serving pulls model bytes with ``POST /v1/model/transfer``; ``GET /metrics`` serves the metrics.

Body ``{"namespace": <party_model_id>, "name": <model_version>}`` (or the path form
``/v1/model/transfer/<party_model_id with # as ~>/<model_version>``); the answer is FATE-Flow's
``{"retcode": 0, "retmsg": "success", "data": {"<cpn>.<alias>:<ModelName>": base64}}``, streamed
with a Content-Length computed from the manifest, every buffer checked against it first.

The endpoint is open to the network, so it keeps :class:`~fate_registry.http_limits.HttpLimits`: a
connection gets one of a fixed pool of worker threads only once its whole request has arrived (the TLS
handshake and the request are read by one selector thread, within a deadline), so a crowd of slow or
silent clients holds neither threads nor the way for FATE-Serving's pull; oversized requests are refused
(431, 413). See :mod:`fate_registry.http_limits`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from urllib.parse import unquote

from fate_registry import metrics
from fate_registry.config import PLAINTEXT, TlsConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.http_limits import (
    DEFAULT_LIMITS,
    BoundedHTTPServer,
    BufferedRequestHandler,
    HttpLimits,
    https_context,
)
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.model_cache import ref_of

log = logging.getLogger(__name__)
PATH = "/v1/model/transfer"

# (the answer's pieces in order, their total length) for a party model version
Source = Callable[[PartyModelRef], tuple[Iterator[bytes], int]]


class _Handler(BufferedRequestHandler):
    server: TransferServer

    def _answer(self, status: int, retcode: int, retmsg: str) -> None:
        body = json.dumps({"retcode": retcode, "retmsg": retmsg}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """``/metrics``: the agent's Prometheus metrics (:mod:`fate_registry.metrics`); nothing else is a GET."""
        if self.path.split("?", 1)[0].rstrip("/") != "/metrics":
            self._answer(404, 404, "not found")
            return
        body, content_type = metrics.exposition()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        try:
            ref = self._model()
            pieces, length = self.server.source(ref)
        except RegistryError as exc:
            status = 404 if exc.reason is Reason.MODEL_NOT_FOUND else 400 if exc.fate_retcode < 500 else 500
            self._answer(status, status if status != 500 else 100, exc.message)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for piece in metrics.counted(pieces, "to_serving"):
                self.wfile.write(piece)
        except RegistryError as exc:  # a buffer failed its check: the answer stops short, and the connection closes
            log.error("transfer of %s %s stopped: %s", ref.model_id, ref.model_version, exc.message)

    def _model(self) -> PartyModelRef:
        if self.path.rstrip("/") == PATH:
            length = int(self.headers.get("Content-Length") or 0)  # at most max_body: the server checked
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                raise RegistryError(Reason.INVALID_ARGUMENT, "the request body is not JSON") from None
            namespace, name = (body.get("namespace"), body.get("name")) if isinstance(body, dict) else (None, None)
        elif self.path.startswith(PATH + "/"):
            namespace, _, name = unquote(self.path[len(PATH) + 1 :]).rstrip("/").rpartition("/")
            namespace = namespace.replace("~", "#")
        else:
            raise RegistryError(Reason.MODEL_NOT_FOUND, "model not found")
        if not namespace or not name or not isinstance(namespace, str) or not isinstance(name, str):
            raise RegistryError(Reason.INVALID_ARGUMENT, "namespace and name are required")
        return ref_of(namespace, name)


class TransferServer(BoundedHTTPServer):
    """Plain HTTP, or HTTPS with the agent's certificate when ``tls`` names one.

    With ``tls.require_client_cert`` only a caller presenting a certificate signed by ``tls.ca`` is served.
    """

    log_name = "transfer"

    def __init__(
        self, host: str, port: int, source: Source, tls: TlsConf = PLAINTEXT, limits: HttpLimits = DEFAULT_LIMITS
    ) -> None:
        super().__init__((host, port), _Handler, limits, https_context(tls))
        self.source = source
        self._thread = threading.Thread(target=self.serve_forever, name="transfer-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.ident is not None:  # started: its serve_forever ends, or has ended, and says so
            self.shutdown()
        self.server_close()
