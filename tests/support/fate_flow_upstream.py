"""A small stand-in for an upstream FATE-Flow: the server the registry forwards the routes it does not serve to.

It is not the registry (so a test may run it in its own thread): it records every request as it arrived
(method, path with query, headers, body bytes), checks FATE's client signature as FATE-Flow does when it was
given the keys (reference §5: HMAC-SHA1 over TIMESTAMP, NONCE, APP_KEY, the path and, for a JSON body, the
body), and answers FATE-Flow's envelope: ``job/submit`` a job id, ``data/upload`` the SHA-256 and size of the
body it got, anything else FATE-Flow's not-found answer. An echoing one (``echo``) answers every request
instead with HTTP 201 and the request's method, path and body digest, so a test sees that an answer other than
FATE-Flow's comes back unchanged. Every answer has the header ``X-Upstream: fate-flow``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fate_http import signature

JOB_ID = "202612071500000000000"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class Upstream:
    app_key: str = ""
    secret_key: str = ""
    echo: bool = False
    received: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def signed_correctly(self, request: Received) -> bool:
        values = [request.header(h) or "" for h in ("TIMESTAMP", "NONCE", "APP_KEY", "SIGNATURE")]
        json_body = request.body if (request.header("Content-Type") or "").startswith("application/json") else b""
        expected = signature(self.secret_key, values[0], values[1], values[2], request.path, json_body)
        return values[2] == self.app_key and hmac.compare_digest(values[3], expected)

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if self.app_key and not self.signed_correctly(request):
            return 200, {"retcode": 109, "retmsg": "signature authentication failed"}
        if self.echo:
            digest = hashlib.sha256(request.body).hexdigest()
            echoed = {"method": request.method, "path": request.path, "sha256": digest}
            return 201, {"retcode": 0, "retmsg": "success", "data": echoed}
        route = request.path.split("?", 1)[0].rstrip("/")
        if route == "/v1/job/submit":
            document = json.loads(request.body)
            return 200, {
                "data": {"job_id": JOB_ID, "model_info": {"model_id": "m", "model_version": JOB_ID}},
                "jobId": JOB_ID,
                "retcode": 0,
                "retmsg": f"success: {sorted(document)}",
            }
        if route == "/v1/data/upload":
            digest = hashlib.sha256(request.body).hexdigest()
            return 200, {"data": {"sha256": digest, "bytes": len(request.body)}, "retcode": 0, "retmsg": "success"}
        return 404, {"retcode": 100, "retmsg": "<NotFound '404: Not Found'>"}


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self) -> None:
            request = Received(self.command, self.path, list(self.headers.items()), self._body())
            upstream.received.append(request)
            status, document = upstream.answer(request)
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Upstream", "fate-flow")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def upstream_server(app_key: str = "", secret_key: str = "", echo: bool = False) -> Iterator[Upstream]:
    """An :class:`Upstream` on a free loopback port, served by a thread until the end of the block."""
    upstream = Upstream(app_key, secret_key, echo)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream))
    upstream.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
