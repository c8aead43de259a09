"""Pass-through.

A request the registry does not serve goes to the upstream FATE-Flow unchanged (method, path and query, headers with the
signature's, body) and its answer comes back unchanged (status, headers, body), both bodies streamed. The upstream
checks its own signatures.
"""

from __future__ import annotations

import http.client
import logging
import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from client.render import envelope
from fate_registry.errors import Retcode
from registry_server.fate_http.replies import json_reply

if TYPE_CHECKING:
    from registry_server.fate_http.server import FateHttpHandler

log = logging.getLogger(__name__)
PIECE_BYTES = 256 * 1024
# Headers of one connection, not of the request or answer (RFC 9110 §7.6.1), and the framing this side redoes.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _connection(upstream: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(upstream)
    host, port = parts.hostname or "", parts.port
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    return http.client.HTTPConnection(host, port, timeout=timeout)


def forward(handler: FateHttpHandler, upstream: str, timeout: float) -> None:
    """Send ``handler``'s request to ``upstream`` and its answer back.

    An unreachable upstream is answered with retcode 100 naming it, as FATE's clients print any answer.
    """
    connection = _connection(upstream, timeout)
    try:
        try:
            connection.putrequest(handler.command, handler.path, skip_host=True, skip_accept_encoding=True)
            for name, value in handler.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    connection.putheader(name, value)
            connection.endheaders()
            remaining = int(handler.headers.get("Content-Length") or 0)
            while remaining > 0:
                piece = handler.rfile.read(min(PIECE_BYTES, remaining))
                if not piece:
                    break
                connection.send(piece)
                remaining -= len(piece)
            response = connection.getresponse()
        except OSError as exc:
            log.info("the upstream FATE-Flow %s could not be reached: %s", upstream, exc.strerror or type(exc).__name__)
            handler.reply(
                json_reply(
                    envelope(
                        int(Retcode.EXCEPTION_ERROR),
                        f"the upstream FATE-Flow {upstream} could not be reached: {exc.strerror or type(exc).__name__}",
                    )
                )
            )
            return
        handler.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                handler.send_header(name, value)
        handler.send_header("Connection", "close")
        handler.end_headers()
        while piece := response.read(PIECE_BYTES):
            handler.wfile.write(piece)
    finally:
        connection.close()
