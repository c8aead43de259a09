"""How the coordinator's calls reach an agent: straight over gRPC, or as eggroll Packets via a proxy.

:class:`AgentClients` speaks to a :class:`Transport` in serialized messages: a unary call, a
client stream (import) and a server stream (export). :class:`DirectTransport` makes the gRPC call
itself; :class:`PacketTransport` wraps each call in ``DataTransferService.unaryCall`` Packets
(:mod:`fate_registry.packets`), a stream as one Packet per message with sequence numbers and a
final sha256 of the bytes, and turns an answer's carried status back into the agent's error.
Every failure is a :class:`RegistryError` naming the party.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, TypeVar

import grpc

from fate_registry import packets
from fate_registry.channels import CHANNEL_OPTIONS, never_connected, open_channel
from fate_registry.config import Address, TlsConf
from fate_registry.errors import Reason, RegistryError, from_rpc_error
from fate_registry.fate import proxy_pb2
from fate_registry.prefetch import prefetch

Metadata = Mapping[str, str]
# Response Packets of a stream fetched ahead of the relay (each up to one download chunk).
PREFETCH_PACKETS = 4
# gRPC's own bound of a connection attempt that gets no answer (SYNs dropped: a host down, a firewall).
GRPC_CONNECT_SECONDS = 20.0
# How long a unary call that could not connect is sent again: past the channels' longest reconnect
# backoff (1 s, and gRPC's jitter of 20 %) and a connection attempt, so a peer that is back (an agent
# restarted) is reached even from a channel that failed to reach it a moment ago; a peer that stays
# away fails the call once this has passed, marked UNREACHABLE_KEY.
CONNECT_RETRY_SECONDS = 2.5
FIRST_CONNECT_WAIT = 0.1
UNREACHABLE_KEY = "unreachable"
"""Metadata of a party's error when no connection to it could be made: the request never reached it."""
T = TypeVar("T")


def reconnecting(call: Callable[[float], T], timeout: float) -> T:
    """``call(remaining timeout)``, sent again while no connection could be made.

    The request never left, so this is safe for any call; for up to :data:`CONNECT_RETRY_SECONDS` within ``timeout``.
    """
    start = time.monotonic()
    give_up = start + min(timeout, CONNECT_RETRY_SECONDS)
    wait = FIRST_CONNECT_WAIT
    while True:
        try:
            return call(max(0.1, timeout - (time.monotonic() - start)))
        except grpc.RpcError as exc:
            now = time.monotonic()
            if not never_connected(exc) or now >= give_up:
                raise
        time.sleep(min(wait, give_up - now))
        wait *= 2


def agent_channel(address: Address, tls: TlsConf, call_timeout: float) -> grpc.Channel:
    """A channel whose connection attempts give up within ``call_timeout`` (at most gRPC's 20 s).

    A party that cannot be reached fails a call within the short deadline, even a call allowed to run far longer.
    """
    connect_ms = int(min(call_timeout, GRPC_CONNECT_SECONDS) * 1000)
    return open_channel(str(address), tls, [*CHANNEL_OPTIONS, ("grpc.min_reconnect_backoff_ms", connect_ms)])


# Calls are made as registered methods (``_registered_method=True``), as the generated stubs make
# them: on grpc 1.85 an unregistered call to an agent that was restarted on the same port could
# wait out its deadline (tests/faults/test_deploy_faults.py) where the registered call connects.


def party_error(exc: grpc.RpcError, party_id: str, via: str = "", tls: bool = False) -> RegistryError:
    """The agent's own error, or a transport failure that names the party (and the proxy it went through).

    ``tls``: the coordinator spoke TLS, so a refused handshake is told as such.
    """
    error = from_rpc_error(exc, context=f"party {party_id} did not answer{via}", tls=tls)
    flags = {UNREACHABLE_KEY: "true"} if never_connected(exc) else {}
    return RegistryError(error.reason, error.message, {**error.metadata, "party_id": party_id, **flags}, error.retcode)


def _with_party(error: RegistryError, party_id: str) -> RegistryError:
    return RegistryError(error.reason, error.message, {**error.metadata, "party_id": party_id}, error.retcode)


class Transport(Protocol):
    """A way to an agent: unary, client-stream and server-stream calls in serialized messages."""

    def unary(self, method: str, request: bytes, metadata: Metadata, timeout: float) -> bytes: ...

    def client_stream(self, method: str, messages: Iterator[bytes], metadata: Metadata) -> bytes: ...

    def server_stream(self, method: str, request: bytes, metadata: Metadata) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class DirectTransport:
    """Plain gRPC to the agent's own address."""

    def __init__(self, party_id: str, address: Address, tls: TlsConf, call_timeout: float) -> None:
        self.party_id = party_id
        self.tls = tls.enabled
        self.channel = agent_channel(address, tls, call_timeout)
        self._unary: dict[str, grpc.UnaryUnaryMultiCallable[bytes, bytes]] = {}

    def close(self) -> None:
        self.channel.close()

    def unary(self, method: str, request: bytes, metadata: Metadata, timeout: float) -> bytes:
        call = self._unary.get(method)
        if call is None:  # made once per method: a deploy calls each party twice, 32 parties at once
            call = self._unary[method] = self.channel.unary_unary(  # type: ignore[call-arg]  # grpc-stubs lag
                method, request_serializer=None, response_deserializer=None, _registered_method=True
            )
        try:
            answer: bytes = reconnecting(
                lambda remaining: call(request, timeout=remaining, metadata=tuple(metadata.items())), timeout
            )
        except grpc.RpcError as exc:
            raise party_error(exc, self.party_id, tls=self.tls) from None
        return answer

    def _await_ready(self) -> None:
        """Give a channel that lost its peer a moment to connect again before a stream starts.

        A stream, unlike a unary call, cannot be sent again once it began (a peer that stays away fails the stream after
        this).
        """
        with contextlib.suppress(grpc.FutureTimeoutError):
            grpc.channel_ready_future(self.channel).result(timeout=CONNECT_RETRY_SECONDS)

    def client_stream(self, method: str, messages: Iterator[bytes], metadata: Metadata) -> bytes:
        self._await_ready()
        call = self.channel.stream_unary(  # type: ignore[call-arg]  # grpc-stubs lag
            method, request_serializer=None, response_deserializer=None, _registered_method=True
        )
        try:
            answer: bytes = call(messages, metadata=tuple(metadata.items()))
        except grpc.RpcError as exc:
            raise party_error(exc, self.party_id, tls=self.tls) from None
        return answer

    def server_stream(self, method: str, request: bytes, metadata: Metadata) -> Iterator[bytes]:
        self._await_ready()
        call = self.channel.unary_stream(  # type: ignore[call-arg]  # grpc-stubs lag
            method, request_serializer=None, response_deserializer=None, _registered_method=True
        )
        stream = call(request, metadata=tuple(metadata.items()))
        try:
            yield from stream
        except grpc.RpcError as exc:
            raise party_error(exc, self.party_id, tls=self.tls) from None
        finally:
            stream.cancel()  # type: ignore[no-untyped-call]


class PacketTransport:
    """Every call as ``DataTransferService.unaryCall`` Packets through FATE's proxy at ``proxy``.

    ``stream_timeout`` bounds each Packet of a stream (and is the agent's packet interval);
    ``call_timeout`` bounds the Packet that abandons a stream.
    """

    def __init__(
        self, src_party: str, party_id: str, proxy: Address, call_timeout: float, stream_timeout: float, tls: TlsConf
    ) -> None:
        self.src_party = src_party
        self.party_id = party_id
        self.via = f" through the proxy at {proxy}"
        self.call_timeout = call_timeout
        self.stream_timeout = stream_timeout
        self.tls = tls.enabled
        self.channel = agent_channel(proxy, tls, call_timeout)
        self._call = self.channel.unary_unary(  # type: ignore[call-arg]  # grpc-stubs lag
            packets.UNARY_CALL,
            request_serializer=proxy_pb2.Packet.SerializeToString,
            response_deserializer=proxy_pb2.Packet.FromString,
            _registered_method=True,
        )

    def close(self) -> None:
        self.channel.close()

    def _send(self, packet: proxy_pb2.Packet, timeout: float) -> proxy_pb2.Packet:
        routing = packets.routing_metadata(self.src_party, self.party_id)
        try:
            answer: proxy_pb2.Packet = reconnecting(
                lambda remaining: self._call(packet, timeout=remaining, metadata=routing), timeout
            )
        except grpc.RpcError as exc:
            raise party_error(exc, self.party_id, self.via, self.tls) from None
        failure = packets.failure_of(answer)
        if failure is not None:
            raise _with_party(failure, self.party_id)
        return answer

    def _packet(
        self,
        method: str,
        operator: str,
        metadata: Metadata,
        timeout: float,
        value: bytes = b"",
        seq: int = 0,
        key: str = "",
    ) -> proxy_pb2.Packet:
        timeout_ms = int(timeout * 1000)
        return packets.request_packet(
            self.src_party, self.party_id, method, operator, metadata, timeout_ms, value=value, seq=seq, key=key
        )

    def unary(self, method: str, request: bytes, metadata: Metadata, timeout: float) -> bytes:
        return self._send(self._packet(method, packets.RUN, metadata, timeout, value=request), timeout).body.value

    def _stream_metadata(self, metadata: Metadata) -> dict[str, str]:
        return {**metadata, packets.STREAM_ID_KEY: uuid.uuid4().hex}

    def client_stream(self, method: str, messages: Iterator[bytes], metadata: Metadata) -> bytes:
        headers = self._stream_metadata(metadata)
        timeout = self.stream_timeout
        digest = hashlib.sha256()
        seq = 0
        try:
            for message in messages:
                seq += 1
                digest.update(message)
                self._send(self._packet(method, packets.PUT_DATA, headers, timeout, value=message, seq=seq), timeout)
        except BaseException:
            self._abandon(method, headers)
            raise
        end = self._packet(
            method,
            packets.STOP,
            headers,
            timeout,
            value=digest.hexdigest().encode(),
            seq=seq + 1,
            key=packets.DIGEST_KEY,
        )
        return self._send(end, timeout).body.value

    def server_stream(self, method: str, request: bytes, metadata: Metadata) -> Iterator[bytes]:
        """The response messages; the next Packet is asked for while the caller relays this one."""
        return prefetch(self._fetch(method, request, metadata), PREFETCH_PACKETS)

    def _fetch(self, method: str, request: bytes, metadata: Metadata) -> Iterator[bytes]:
        headers = self._stream_metadata(metadata)
        timeout = self.stream_timeout
        digest = hashlib.sha256()
        seq = 0
        finished = False
        try:
            while True:
                ask = self._packet(
                    method, packets.GET_DATA, headers, timeout, value=request if seq == 0 else b"", seq=seq
                )
                answer = self._send(ask, timeout)
                if answer.header.operator == packets.STOP:
                    finished = True
                    if answer.body.value.decode() != digest.hexdigest():
                        raise RegistryError(
                            Reason.DATA_LOSS,
                            f"the export from party {self.party_id} arrived{self.via} with other bytes than the party "
                            "sent (sha256 mismatch)",
                            {"party_id": self.party_id},
                        )
                    return
                seq += 1
                digest.update(answer.body.value)
                yield answer.body.value
        finally:
            if not finished:
                self._abandon(method, headers)

    def _abandon(self, method: str, headers: Metadata) -> None:
        """Tell the agent to drop a stream the coordinator gave up on (best effort: it also times out)."""
        with contextlib.suppress(RegistryError):
            self._send(self._packet(method, packets.KILL, headers, self.call_timeout), self.call_timeout)
