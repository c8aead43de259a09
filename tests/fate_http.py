"""FATE-Flow HTTP calls as FATE's 1.11 clients make them (``requests``' wire format), over plain http.client,
for the tests of the coordinator's FATE-Flow HTTP API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

BOUNDARY = "a3c1f0e2b4d6"
PIECE = 256 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def signed_headers(
    keys: tuple[str, str], path: str, body: bytes = b"", form: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The four headers FATE's client sends when it has an app key and a secret key (its own algorithm)."""
    app_key, secret = keys
    timestamp, nonce = str(int(time.time() * 1000)), str(uuid.uuid1())
    form_text = urlencode(sorted(form.items()), quote_via=quote, safe="-._~").encode() if form else b""
    signed = signature(secret, timestamp, nonce, app_key, path, body, form_text)
    return {"TIMESTAMP": timestamp, "NONCE": nonce, "APP_KEY": app_key, "SIGNATURE": signed}


def signature(
    secret_key: str, timestamp: str, nonce: str, app_key: str, path: str, body: bytes = b"", form_text: bytes = b""
) -> str:
    """FATE's client signature (reference §5), written from the reference, apart from the server's own."""
    message = b"\n".join([timestamp.encode(), nonce.encode(), app_key.encode(), path.encode(), body, form_text])
    return base64.b64encode(hmac.new(secret_key.encode(), message, hashlib.sha1).digest()).decode()


def send(
    address: str, method: str, path: str, body: bytes | Iterator[bytes] = b"", headers: Mapping[str, str] | None = None
) -> Response:
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=600)
    try:
        connection.request(method, path, body=body, headers={"Accept-Encoding": "identity", **(headers or {})})
        answer = connection.getresponse()
        return Response(answer.status, dict(answer.getheaders()), answer.read())
    finally:
        connection.close()


def call(
    address: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    method: str = "POST",
    keys: tuple[str, str] | None = None,
) -> Response:
    """A JSON request as FATE's CLI sends it (``json.dumps`` with default separators)."""
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if keys:
        headers.update(signed_headers(keys, path, raw))
    return send(address, method, path, raw, headers)


def _multipart(fields: Mapping[str, str], archive: Path) -> tuple[list[bytes], bytes, int]:
    """``requests``' form: a text part per field, then the file part (named ``file``, no Content-Type)."""
    texts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{archive.name}"\r\n\r\n'.encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return [*texts, head], tail, sum(map(len, texts)) + len(head) + archive.stat().st_size + len(tail)


def import_archive(
    address: str, fields: Mapping[str, str], archive: Path, keys: tuple[str, str] | None = None
) -> Response:
    """``flow model import``: the conf's keys and the client's path as text fields, the archive streamed from disk."""
    fields = {**fields, "file": str(archive)}
    parts, tail, length = _multipart(fields, archive)

    def body() -> Iterator[bytes]:
        yield from parts
        with archive.open("rb") as source:
            while piece := source.read(PIECE):
                yield piece
        yield tail

    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(length)}
    if keys:
        headers.update(signed_headers(keys, "/v1/model/import", form=fields))
    return send(address, "POST", "/v1/model/import", body(), headers)
