"""FATE-Flow's answers on the wire.

The JSON envelope (Flask's ``jsonify``: sorted keys, compact, a newline) with HTTP 200, or ``error_response`` (HTTP
status = retcode, ``{"retmsg", "retcode"}``) where FATE-Flow answers so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from client.render import envelope
from fate_registry.errors import Reason, RegistryError

JSON_TYPE = "application/json"
# FATE-Flow's answer to a route it does not have (Werkzeug's NotFound, as its error handler prints it).
NOT_FOUND_RETMSG = "<NotFound '404: Not Found'>"
METHOD_NOT_ALLOWED_RETMSG = "<MethodNotAllowed '405: Method Not Allowed'>"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body, its Content-Type and any other headers."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(answer: Mapping[str, Any], status: int = 200) -> Reply:
    """FATE-Flow's ``get_json_result``: every key sorted, compact JSON."""
    return Reply(status, (json.dumps(answer, sort_keys=True, separators=(",", ":")) + "\n").encode())


def status_reply(status: int, retmsg: str, **extra: Any) -> Reply:
    """FATE-Flow's ``error_response``: the HTTP status is the retcode; ``extra`` keys follow."""
    return Reply(status, json.dumps({"retmsg": retmsg, "retcode": status, **extra}).encode())


def error_reply(error: RegistryError, **data: Any) -> Reply:
    """An error as FATE-Flow answers it.

    An HTTP-style retcode (400, 404, 409, 210) as the status, any other with HTTP 200; ``data`` (when given) goes into
    the envelope, for the clients that read it on failure.
    """
    retcode = error.fate_retcode
    if 200 < retcode < 600:
        return status_reply(retcode, error.message, **data)
    return json_reply(envelope(retcode, error.message, **data))


def download_error_reply(error: RegistryError) -> Reply:
    """An error on a route whose HTTP 200 means "the body is the file" (export, a predict DSL with a file name).

    Never 200, or FATE's client would save the error as the file.
    """
    retcode = error.fate_retcode
    if 200 < retcode < 600:
        status = retcode
    elif error.reason in (Reason.MISSING_ARGUMENT, Reason.INVALID_ARGUMENT, Reason.INVALID_ID, Reason.UNKNOWN_PARTY):
        status = 400
    elif error.reason in (Reason.PARTY_UNAVAILABLE, Reason.DEADLINE_EXCEEDED):
        status = 503
    elif error.reason in (Reason.UNAUTHENTICATED, Reason.PERMISSION_DENIED):
        status = 401 if error.reason is Reason.UNAUTHENTICATED else 403
    else:
        status = 500
    return Reply(status, json.dumps({"retmsg": error.message, "retcode": retcode}).encode())
