"""``model/import`` and ``model/export``: the archive streamed between FATE's client and the party's agent.

An import's multipart body is parsed as it arrives (:mod:`registry_server.fate_http.multipart`): its text fields (FATE's
client sends them first, one of them a ``file`` holding the client's path) make the header of the gRPC
import stream, and the part named ``file`` with a file name becomes its chunks, sent on to the agent as they
arrive. An export's chunks are written to the client as the agent sends them (chunked transfer encoding: the
archive's size is known only at its end). Neither holds more of an archive than a chunk or two.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from client import render
from fate_registry.errors import Reason, RegistryError, missing_keys
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb
from registry_server.fate_http import auth
from registry_server.fate_http.multipart import READ_BYTES, MultipartReader, Part, boundary_of, malformed
from registry_server.fate_http.replies import Reply, download_error_reply, error_reply, json_reply, status_reply
from registry_server.required import REF_KEYS

if TYPE_CHECKING:
    from registry_server.fate_http.server import FateHttpHandler

log = logging.getLogger(__name__)
MAX_FIELD_BYTES = 64 * 1024  # a text field of the import's form
CHUNKED_END = b"0\r\n\r\n"


def _force_update(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("", "0", "false", "none"):
        return False
    raise RegistryError(Reason.INVALID_ARGUMENT, f"force_update must be 0 or 1, got {json.dumps(text[:20])}")


def _text_fields(parts: Iterator[Part]) -> tuple[dict[str, str], Part | None]:
    """The text fields before the archive (the first value of each name), and the archive's part if any."""
    fields: dict[str, str] = {}
    for part in parts:
        if part.name == "file" and part.filename is not None:
            return fields, part
        if part.filename is None:
            value = bytearray()
            for piece in part.data:
                value += piece
                if len(value) > MAX_FIELD_BYTES:
                    raise malformed(f"the text field {part.name} is longer than {MAX_FIELD_BYTES} bytes")
            fields.setdefault(part.name, value.decode("utf-8", "replace"))
    return fields, None


def _header(fields: dict[str, str], archive: Part) -> pb.ImportModelRequest:
    target = common.PartyModelRef(**{key: fields.get(key, "") for key in REF_KEYS})
    header = common.ImportModelHeader(
        target=target,
        force_update=_force_update(fields.get("force_update", "")),
        sha256=fields.get("hash", ""),
        file_name=archive.filename or "",
    )
    return pb.ImportModelRequest(header=header)


def _archive_messages(first: pb.ImportModelRequest, archive: Part) -> Iterator[bytes]:
    yield first.SerializeToString()
    for piece in archive.data:
        yield pb.ImportModelRequest(chunk=piece).SerializeToString()


def _drain(body: io.BufferedIOBase, remaining: int) -> None:
    """Read what the client still sends, so that it reads the answer rather than a reset connection."""
    while remaining > 0 and (piece := body.read(min(READ_BYTES, remaining))):
        remaining -= len(piece)


def import_model(handler: FateHttpHandler) -> Reply:
    """FATE-Flow's answers: a missing key 101, no archive part 400, an existing version 409 (HTTP status too)."""
    length = int(handler.headers.get("Content-Length") or 0)
    boundary = boundary_of(handler.headers.get("Content-Type", ""))
    if boundary is None:
        body = handler.rfile.read(length)
        handler.check_signature(body)
        data = json.loads(body) if body.strip().startswith(b"{") else {}
        missing = [key for key in REF_KEYS if not str(data.get(key) or "").strip()]
        return error_reply(missing_keys(missing)) if missing else status_reply(400, "`file` is required.")
    form = MultipartReader(handler.rfile, length, boundary)
    try:
        parts = form.parts()
        fields, archive = _text_fields(parts)
        handler.check_signature(form=auth.form_text(fields))
        if archive is None:
            missing = [key for key in REF_KEYS if not fields.get(key, "").strip()]
            return error_reply(missing_keys(missing)) if missing else status_reply(400, "`file` is required.")
        response = handler.registry.import_archive(_archive_messages(_header(fields, archive), archive), handler.peer)
        return json_reply(render.import_answer(response.result))
    except RegistryError as exc:
        return error_reply(exc)
    finally:
        _drain(handler.rfile, form.remaining)


def export_model(handler: FateHttpHandler, model: common.PartyModelRef) -> None:
    """HTTP 200 with the archive and FATE's unquoted ``Content-Disposition``; an error is never HTTP 200."""
    try:
        messages = handler.registry.export(pb.ExportModelRequest(model=model), handler.peer)
        first = pb.ExportModelResponse.FromString(next(messages))
    except RegistryError as exc:
        handler.reply(download_error_reply(exc))
        return
    handler.send_response(200)
    handler.send_header("Content-Type", "application/zip")
    handler.send_header("Content-Disposition", f"attachment; filename={first.header.file_name}")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Connection", "close")
    handler.end_headers()
    try:
        for raw in messages:
            message = pb.ExportModelResponse.FromString(raw)
            if message.WhichOneof("payload") == "chunk" and message.chunk:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(message.chunk), message.chunk))
    except RegistryError as exc:  # the answer stops short of its last chunk: the client sees it cut
        log.error("export of %s %s stopped: %s", model.model_id, model.model_version, exc.message)
        return
    handler.wfile.write(CHUNKED_END)
