"""The agent's side of FATE's proxy.

``DataTransferService.unaryCall`` Packets, answered by the same PartyAgentService handlers as direct calls (same errors,
same idempotency, same tickets).

A Packet names the method in ``header.command.name`` and carries the call's gRPC metadata in
``header.task.model`` (:mod:`fate_registry.packets`). Unary calls (``RUN``) run the handler at
once. A client stream (import) is a session of ``PUT_DATA`` Packets fed, in ``seq`` order, to the
handler running in a thread, closed by ``STOP`` with the sha256 of the bytes; a server stream
(export) is a session whose ``GET_DATA`` Packets each take the next message from the handler,
the last answer being ``STOP`` with the sha256. ``KILL``, or no Packet for the stream's
``packetIntervalTimeout``, ends a session and the handler sees its stream cancelled.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import grpc

from fate_registry import packets
from fate_registry.errors import Reason, RegistryError
from fate_registry.fate import proxy_pb2, proxy_pb2_grpc
from fate_registry.grpc_server import as_registry_error
from fate_registry.malformed import parse
from fate_registry.prefetch import prefetch

if TYPE_CHECKING:
    from fate_registry.grpc_server import Handler

# Messages of an import held between the Packets and the handler: memory stays a few chunks.
UPLOAD_QUEUE = 4
# Messages of an export read and framed ahead of the GET_DATA Packets that take them.
DOWNLOAD_AHEAD = 4
_END = object()


class _PacketContext:
    """What the handlers read of a ServicerContext, for a call that arrived in a Packet."""

    def __init__(self, packet: proxy_pb2.Packet, headers: Mapping[str, str]) -> None:
        self._metadata = tuple(headers.items())
        src = packet.header.src
        self._peer = f"proxy:{src.role}@{src.partyId}"

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer


def _in(value: bytes, handler: Handler) -> Any:
    """The request a Packet carries, as the handler takes it (MalformedRequest if it does not parse)."""
    return parse(handler.request_deserializer, value) if handler.request_deserializer else value


def _out(message: Any, handler: Handler) -> bytes:
    return bytes(handler.response_serializer(message) if handler.response_serializer else message)


@dataclass
class _Upload:
    """An import in flight: Packets put messages, the handler's thread takes them."""

    interval: float
    messages: queue.Queue[Any] = field(default_factory=lambda: queue.Queue(UPLOAD_QUEUE))
    digest: Any = field(default_factory=hashlib.sha256)
    seq: int = 0
    answer: Future[bytes] = field(default_factory=Future)

    def take(self) -> Iterator[bytes]:
        while True:
            try:
                item = self.messages.get(timeout=self.interval)
            except queue.Empty:
                raise RegistryError(
                    Reason.DEADLINE_EXCEEDED, f"no Packet of the import arrived for {self.interval:g} s"
                ) from None
            if item is _END:
                return
            if isinstance(item, RegistryError):
                raise item
            yield item

    def put(self, item: Any) -> None:
        """Hand ``item`` to the handler, unless it already ended (its error, if any, is then raised)."""
        while not self.answer.done():
            try:
                self.messages.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if isinstance(item, RegistryError):
            return
        self.answer.result()


@dataclass
class _Download:
    """An export in flight: each GET_DATA Packet takes the next message."""

    messages: Iterator[bytes]
    touched: float
    interval: float
    digest: Any = field(default_factory=hashlib.sha256)
    seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        """Stop the handler's generator: it sees GeneratorExit, as on a cancelled direct call."""
        close = getattr(self.messages, "close", None)
        if close is not None:
            close()


class EnvelopeServicer(proxy_pb2_grpc.DataTransferServiceServicer):
    """Dispatches Packets addressed to this party's agent role to ``handlers`` (by full method name)."""

    def __init__(self, party_id: str, service_name: str, handlers: Mapping[str, Handler]) -> None:
        self.party_id = party_id
        self.handlers = {f"/{service_name}/{name}": handler for name, handler in handlers.items()}
        self._lock = threading.Lock()
        self._uploads: dict[str, _Upload] = {}
        self._downloads: dict[str, _Download] = {}

    def unaryCall(self, request: proxy_pb2.Packet, context: grpc.ServicerContext) -> proxy_pb2.Packet:
        method = request.header.command.name
        try:
            return self._dispatch(request, method)
        except Exception as exc:  # the answer carries the status, so it crosses any proxy
            return packets.failure_packet(request, as_registry_error(exc, method.rsplit("/", 1)[-1], context.peer()))

    def _dispatch(self, request: proxy_pb2.Packet, method: str) -> proxy_pb2.Packet:
        dst = request.header.dst
        if dst.partyId != self.party_id or dst.role != packets.AGENT_ROLE:
            raise RegistryError(
                Reason.PERMISSION_DENIED,
                f"this is the agent of party {self.party_id} (role {packets.AGENT_ROLE}); "
                f"the Packet is for party {dst.partyId} role {dst.role}",
            )
        handler = self.handlers.get(method)
        if handler is None:
            raise RegistryError(Reason.NOT_IMPLEMENTED, f"the agent has no method {method}")
        headers = packets.headers_of(request)
        context = cast(grpc.ServicerContext, _PacketContext(request, headers))
        operator = request.header.operator
        stream_id = headers.get(packets.STREAM_ID_KEY, "")
        interval = max(request.header.conf.packetIntervalTimeout, 1000) / 1000
        if operator == packets.RUN and handler.unary_unary:
            return packets.answer_packet(
                request, _out(handler.unary_unary(_in(request.body.value, handler), context), handler)
            )
        if stream_id and handler.stream_unary and operator in (packets.PUT_DATA, packets.STOP, packets.KILL):
            return self._upload(request, operator, stream_id, handler, context, interval)
        if stream_id and handler.unary_stream and operator in (packets.GET_DATA, packets.KILL):
            return self._download(request, operator, stream_id, handler, context, interval)
        raise RegistryError(Reason.INVALID_ARGUMENT, f"a {operator or 'blank'} Packet does not fit method {method}")

    # -- client streams (import) -------------------------------------------------------------------

    def _upload(
        self,
        request: proxy_pb2.Packet,
        operator: str,
        stream_id: str,
        handler: Handler,
        context: grpc.ServicerContext,
        interval: float,
    ) -> proxy_pb2.Packet:
        with self._lock:
            upload = self._uploads.get(stream_id)
            if upload is None and operator == packets.PUT_DATA and request.header.seq == 1:
                upload = self._uploads[stream_id] = _Upload(interval)
                threading.Thread(
                    target=self._run_upload, args=(stream_id, upload, handler, context), daemon=True
                ).start()
        if upload is None:
            if operator == packets.KILL:
                return packets.answer_packet(request, b"")
            raise RegistryError(Reason.INVALID_ARGUMENT, "the import's stream is unknown or already ended")
        if operator == packets.KILL:
            self._end_upload(stream_id, upload, RegistryError(Reason.CANCELLED, "the coordinator abandoned the import"))
            return packets.answer_packet(request, b"")
        if request.header.seq != upload.seq + 1:
            raise self._end_upload(
                stream_id,
                upload,
                RegistryError(
                    Reason.DATA_LOSS, f"Packet {request.header.seq} of the import arrived after Packet {upload.seq}"
                ),
            )
        upload.seq += 1
        if operator == packets.PUT_DATA:
            upload.digest.update(request.body.value)
            upload.put(request.body.value)
            return packets.answer_packet(request, b"")
        if request.body.value.decode() != upload.digest.hexdigest():
            raise self._end_upload(
                stream_id,
                upload,
                RegistryError(Reason.DATA_LOSS, "the import arrived with other bytes than were sent (sha256 mismatch)"),
            )
        upload.put(_END)
        answer = upload.answer.result()
        self._forget_upload(stream_id, upload)
        return packets.answer_packet(request, answer)

    def _end_upload(self, stream_id: str, upload: _Upload, error: RegistryError) -> RegistryError:
        """Fail the import with ``error`` and wait until its handler has ended (and cleaned up)."""
        upload.put(error)
        upload.answer.exception()
        self._forget_upload(stream_id, upload)
        return error

    def _forget_upload(self, stream_id: str, upload: _Upload) -> None:
        with self._lock:
            if self._uploads.get(stream_id) is upload:
                del self._uploads[stream_id]

    def _run_upload(self, stream_id: str, upload: _Upload, handler: Handler, context: grpc.ServicerContext) -> None:
        assert handler.stream_unary is not None
        try:
            messages = (_in(raw, handler) for raw in upload.take())
            upload.answer.set_result(_out(handler.stream_unary(messages, context), handler))
        except Exception as exc:
            upload.answer.set_exception(as_registry_error(exc, "ImportModel", context.peer()))
        finally:
            self._forget_upload(stream_id, upload)

    # -- server streams (export) -------------------------------------------------------------------

    def _download(
        self,
        request: proxy_pb2.Packet,
        operator: str,
        stream_id: str,
        handler: Handler,
        context: grpc.ServicerContext,
        interval: float,
    ) -> proxy_pb2.Packet:
        now = time.monotonic()
        with self._lock:
            self._reap(now)
            download = self._downloads.get(stream_id)
            if download is None and operator == packets.GET_DATA and request.header.seq == 0:
                assert handler.unary_stream is not None
                messages = handler.unary_stream(_in(request.body.value, handler), context)
                serialized = prefetch((_out(m, handler) for m in messages), DOWNLOAD_AHEAD)
                download = self._downloads[stream_id] = _Download(serialized, now, interval)
        if download is None:
            if operator == packets.KILL:
                return packets.answer_packet(request, b"")
            raise RegistryError(Reason.INVALID_ARGUMENT, "the export's stream is unknown or already ended")
        with download.lock:
            download.touched = time.monotonic()
            if operator == packets.KILL or request.header.seq != download.seq:
                self._end_download(stream_id, download)
                if operator == packets.KILL:
                    return packets.answer_packet(request, b"")
                raise RegistryError(
                    Reason.DATA_LOSS, f"Packet {request.header.seq} of the export was asked after Packet {download.seq}"
                )
            try:
                message = next(download.messages, None)
            except BaseException:
                self._end_download(stream_id, download)
                raise
            if message is None:
                self._end_download(stream_id, download)
                return packets.answer_packet(
                    request, download.digest.hexdigest().encode(), key=packets.DIGEST_KEY, operator=packets.STOP
                )
            download.seq += 1
            download.digest.update(message)
            answer = packets.answer_packet(request, message)
            answer.header.seq = download.seq
            return answer

    def _end_download(self, stream_id: str, download: _Download) -> None:
        with self._lock:
            self._downloads.pop(stream_id, None)
        download.close()

    def _reap(self, now: float) -> None:
        """End exports nobody asked a Packet of for their interval (called under ``_lock``)."""
        for stream_id, download in list(self._downloads.items()):
            if now - download.touched > download.interval and download.lock.acquire(blocking=False):
                try:
                    self._downloads.pop(stream_id, None)
                    download.close()
                finally:
                    download.lock.release()
